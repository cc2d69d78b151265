/**
 * End-to-end: input checked at the edge, against the real server on both
 * stores. Ill-formed strings never reach the store, so they can neither
 * merge identities (SQLite) nor fail the other requests of their pass
 * (PostgreSQL); interface names follow the kernel's rules; a bad list
 * cursor is the asker's error, not the store's.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { ctl } from "./helpers/ctl.ts";
import { e2eTest } from "./helpers/e2e.ts";
import { startPostgres } from "./helpers/postgres.ts";
import { type ServerHandle, startServer } from "./helpers/server.ts";
import { requestBody, WireClient } from "./helpers/wire.ts";

const surrogate = (address: string) =>
  `{"address":"${address}","ifname":"eth1","addr_family":0,"cmd":0,"version":1}`;

Deno.test("lone surrogates are bad_request: two ill-formed spellings never become one lease", async () => {
  await using server = await startServer();
  using client = new WireClient(server.socketName);
  for (const address of ["x\\ud800", "x\\udbff", "x\\udc00"]) {
    const reply = await client.call(surrogate(address));
    assertEquals([reply.cmd, reply.error], [3, "bad_request"]);
    assertMatch(String(reply.message), /well-formed Unicode; "address" has a lone surrogate/);
  }
  assertEquals(server.leases(), []);
  // A surrogate pair is one character, and fine.
  assertEquals((await client.call(surrogate("x\\ud83d\\ude00"))).table, 10000);
  assertEquals(server.leases().map((l) => l.address), ["x\u{1f600}"]);
});

Deno.test("ifnames the kernel refuses and tags with control characters are bad_request", async () => {
  await using server = await startServer();
  using client = new WireClient(server.socketName);
  const refused: Array<[string, RegExp]> = [
    [requestBody("10.0.0.1", { ifname: "eth\u00a01" }), /"ifname" is not a valid interface name/],
    [requestBody("10.0.0.1", { ifname: "à" }), /white space, \/ or :/],
    [requestBody("10.0.0.1", { ifname: "e\u2028" }), /white space/],
    [requestBody("10.0.0.1", { ifname: ".." }), /\. or \.\./],
    [requestBody("10.0.0.1", { ifname: "e\u0085" }), /control characters/],
    [requestBody("10.0.0.1", { tag: "wan\u001b[31m" }), /"tag" has control characters/],
  ];
  for (const [payload, message] of refused) {
    const reply = await client.call(payload);
    assertEquals(reply.error, "bad_request", payload);
    assertMatch(String(reply.message), message);
  }
  assertEquals(server.leases(), []);
  assertEquals((await client.request("10.0.0.1", { ifname: "wlp2s0", tag: "wan é" })).table, 10000);
});

/** ctl leases --after with a cursor no page gave out. */
async function badCursor(server: ServerHandle): Promise<void> {
  for (const cursor of ["garbage", '["x"]', "[1,2]", '["a",1.5]']) {
    const result = await ctl(["-d", server.socketName, "leases", "--after", cursor]);
    assertEquals(result.code, 1, cursor);
    assertMatch(
      result.stderr,
      /^table-allocator-ctl: list: bad_request: the cursor .* is not from list\(\)/,
    );
  }
}

e2eTest("a malformed list cursor is bad_request on SQLite", { root: true }, async () => {
  await using server = await startServer();
  await badCursor(server);
});

e2eTest(
  "on PostgreSQL, ill-formed datagrams in a pass never fail its good requests; a bad cursor is bad_request",
  { postgres: true, sanitize: false },
  async () => {
    await using pg = await startPostgres();
    await using server = await startServer({
      config: { store: pg.storeKey, num_tables: 200, addr_families: { inet: true, unspec: true } },
    });
    // 100 good requests and 100 poisoned ones at once, from 200 sockets: they share passes.
    const replies = await Promise.all(Array.from({ length: 200 }, async (_, i) => {
      using client = new WireClient(server.socketName);
      const good = i % 2 === 0;
      const reply = await client.call(
        good ? requestBody(`10.0.${i >> 8}.${i & 255}`) : surrogate(`bad${i}\\ud800`),
      );
      return { good, reply };
    }));
    for (const { good, reply } of replies) {
      if (good) assertEquals(reply.cmd, 2, JSON.stringify(reply));
      else assertEquals(reply.error, "bad_request");
    }
    assert(!server.output().includes("store_failure"), "no request failed in the store");
    await badCursor(server);
  },
);
