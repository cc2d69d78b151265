/**
 * End-to-end: the real server process over its abstract socket, driven the
 * way the C client drives it (padded names, v1 JSON).
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { startServer } from "./helpers/server.ts";
import { requestBody, WireClient } from "./helpers/wire.ts";
import { AbstractDatagramSocket } from "../src/unix/abstract_socket.ts";
import { ErrnoError } from "../ffi/libc.ts";

Deno.test("server grants the lowest free table, refreshes it, and releases it idempotently", async () => {
  await using server = await startServer();
  using client = new WireClient(server.socketName);

  const first = await client.request("192.168.5.113", { tag: "wan" });
  assertEquals(first.version, 1);
  assertEquals(first.cmd, 2);
  assertEquals(first.table, 10000);
  assertEquals(typeof first.lease_expires, "number");
  const [stored] = server.leases();
  assertEquals(
    { ...stored, expiresAt: 0 },
    {
      family: 2,
      ifname: "eth1",
      address: "192.168.5.113",
      table: 10000,
      expiresAt: 0,
      tag: "wan",
      state: "bound",
    },
  );
  // The stored expiry is wall clock: one table_timeout from now.
  assert(
    Math.abs(stored.expiresAt - (Date.now() + 3600_000)) < 5000,
    `expires_at ${stored.expiresAt}`,
  );

  assertEquals((await client.request("192.168.5.114")).table, 10001);
  await new Promise((r) => setTimeout(r, 20));
  const refresh = await client.request("192.168.5.113");
  assertEquals(refresh.table, 10000, "a refresh returns the same table");
  assert(server.leases()[0].expiresAt > stored.expiresAt, "a refresh extends the lease");

  // The same table number is leased per family.
  assertEquals((await client.request("2001:db8::1", { family: 10 })).table, 10000);
  assertEquals((await client.request("any-identifier", { family: 0 })).table, 10000);

  assertEquals(await client.release("192.168.5.113"), {
    version: 1,
    cmd: 2,
    table: 0,
    lease_expires: 0,
  });
  assertEquals(await client.release("192.168.5.113"), {
    version: 1,
    cmd: 2,
    table: 0,
    lease_expires: 0,
  });
  assertEquals(server.leases().filter((l) => l.family === 2).map((l) => l.table), [10001]);
  assertEquals(
    server.allLeases().filter((l) => l.address === "192.168.5.113").map((l) => [l.state, l.table]),
    [["released", 10000]],
    "a released lease stays as history",
  );
  const ended = server.allLeases().find((l) => l.address === "192.168.5.113")!.expiresAt;
  assert(
    Math.abs(ended - Date.now()) < 5000,
    `a history row's expires_at is when it ended, got ${ended}`,
  );
  // The freed table is the lowest again.
  assertEquals((await client.request("192.168.5.115")).table, 10000);
  await server.waitForLog(
    / INFO released family=inet ifname=eth1 address=192\.168\.5\.113 table=10000 /,
  );
});

Deno.test("server logs every lease event with the sender's kernel-verified credentials", async () => {
  await using server = await startServer();
  using client = new WireClient(server.socketName, "eth9-10.1.2.3-2");
  await client.request("10.1.2.3", { ifname: "eth9" });
  const line = await server.waitForLog(/ INFO granted /);
  assertMatch(line, /family=inet ifname=eth9 address=10\.1\.2\.3 table=10000 /);
  assertMatch(
    line,
    new RegExp(`from=@eth9-10\\.1\\.2\\.3-2 pid=${Deno.pid} uid=${Deno.uid()} gid=${Deno.gid()}`),
  );
});

Deno.test("server canonicalises IPv6 identities, so one address in two spellings is one lease", async () => {
  await using server = await startServer();
  using client = new WireClient(server.socketName);
  assertEquals((await client.request("2001:DB8:0:0::1", { family: 10 })).table, 10000);
  assertEquals((await client.request("2001:db8::1", { family: 10 })).table, 10000);
  assertEquals(server.leases().map((l) => l.address), ["2001:db8::1"]);
});

Deno.test("server answers an exhausted pool with an error reply and loses nothing", async () => {
  await using server = await startServer({ config: { num_tables: 2 } });
  using client = new WireClient(server.socketName);
  assertEquals((await client.request("10.0.0.1")).table, 10000);
  assertEquals((await client.request("10.0.0.2")).table, 10001);
  const full = await client.request("10.0.0.3");
  assertEquals(full.version, 1);
  assertEquals(full.cmd, 3);
  assertEquals(full.error, "pool_exhausted");
  assertMatch(String(full.message), /all 2 tables of pool default \(10000-10001\) are taken/);
  assertEquals(server.leases().map((l) => [l.address, l.table]), [["10.0.0.1", 10000], [
    "10.0.0.2",
    10001,
  ]]);
  // Holders still refresh, and a release makes room.
  assertEquals((await client.request("10.0.0.2")).table, 10001);
  await client.release("10.0.0.1");
  assertEquals((await client.request("10.0.0.3")).table, 10000);
});

Deno.test("server answers every malformed input with a reason and keeps serving", async () => {
  await using server = await startServer({ config: { addr_families: { inet: true } } });
  using client = new WireClient(server.socketName);
  const bad: Array<[string, string | Uint8Array<ArrayBuffer>, RegExp]> = [
    ["bad_json", "this is not json", /not a JSON object/],
    ["bad_json", "[1,2,3]", /not a JSON object/],
    ["bad_json", new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), /not a JSON object/],
    [
      "bad_request",
      '{"address":"10.0.0.1","ifname":"eth1","addr_family":"2","cmd":0,"version":1}',
      /"addr_family" must be an integer, got "2"/,
    ],
    [
      "bad_request",
      '{"address":10,"ifname":"eth1","addr_family":2,"cmd":0,"version":1}',
      /"address" must be a string, got 10/,
    ],
    [
      "bad_request",
      '{"ifname":"eth1","addr_family":2,"cmd":0,"version":1}',
      /"address" is missing/,
    ],
    ["bad_request", requestBody("10.0.0.256"), /"address" is not an IPv4 address: "10\.0\.0\.256"/],
    [
      "bad_request",
      requestBody("10.0.0.1", { ifname: "an-interface-name-too-long" }),
      /"ifname" must be 1 to 15 bytes/,
    ],
    [
      "bad_request",
      requestBody("10.0.0.1", { tag: "t".repeat(128) }),
      /"tag" must be 1 to 127 bytes/,
    ],
    [
      "bad_request",
      requestBody("10.0.0.1", { family: 7 }),
      /"addr_family" must be 0, 2 or 10, got 7/,
    ],
    [
      "unknown_cmd",
      requestBody("10.0.0.1", { cmd: 7 }),
      /"cmd" must be 0 \(request\) or 1 \(release\), got 7/,
    ],
    ["unknown_cmd", requestBody("10.0.0.1", { cmd: 2 }), /got 2/],
    [
      "bad_version",
      '{"address":"10.0.0.1","ifname":"eth1","addr_family":2,"cmd":0,"version":2}',
      /"version" must be 1, got 2/,
    ],
    [
      "family_disabled",
      requestBody("2001:db8::1", { family: 10 }),
      /address family 10 \(inet6\) is not enabled/,
    ],
    [
      "oversize",
      `{"address":"10.0.0.1","pad":"${"x".repeat(2000)}"}`,
      /datagram of \d+ bytes exceeds 1024/,
    ],
  ];
  for (const [code, payload, message] of bad) {
    const reply = await client.call(payload);
    assertEquals(
      [reply.version, reply.cmd, reply.error],
      [1, 3, code],
      `reply to ${String(payload).slice(0, 60)}`,
    );
    assertMatch(String(reply.message), message);
    assert(JSON.stringify(reply).length <= 254, "error replies fit the C client's 254-byte buffer");
  }
  assertEquals(server.leases(), []);
  assertEquals((await client.request("10.0.0.1")).table, 10000);
  assertEquals(server.process.pid > 0, true);
  // Log lines follow the replies (no reply waits for one): wait for it rather than race it.
  await server.waitForLog(/ WARN rejected error=oversize /);
});

Deno.test("server replies to the exact address it received from, padded or not", async () => {
  await using server = await startServer();
  // A peer bound with the short form of an abstract name (not padded).
  using peer = AbstractDatagramSocket.bind(null);
  peer.sendToName(new TextEncoder().encode(requestBody("10.9.9.9")), server.socketName);
  assert(await peer.readable(5000));
  assertEquals(JSON.parse(new TextDecoder().decode(peer.receive()!.data)).table, 10000);
  // The server itself is bound to the padded name: the short form is another address.
  const short = new Uint8Array(3 + server.socketName.length);
  short[0] = 1;
  short.set(new TextEncoder().encode(server.socketName), 3);
  let refused = false;
  try {
    peer.send(new Uint8Array([123, 125]), short);
  } catch (error) {
    refused = error instanceof ErrnoError && error.code === "ECONNREFUSED";
  }
  assert(refused, "sending to the unpadded server name must be refused");
});

Deno.test("server answers a burst of concurrent clients, one transaction per pass", async () => {
  await using server = await startServer({ config: { num_tables: 300 } });
  const clients = Array.from({ length: 200 }, () => new WireClient(server.socketName));
  try {
    await Promise.all(clients.map((c, i) => c.send(requestBody(`10.1.${i >> 8}.${i & 255}`))));
    const replies = await Promise.all(clients.map((c) => c.receive()));
    const tables = replies.map((r) => r?.table as number).sort((a, b) => a - b);
    assertEquals(
      tables,
      Array.from({ length: 200 }, (_, i) => 10000 + i),
      "200 distinct lowest tables",
    );
    assertEquals(server.leases().length, 200);
    await server.stop();
    const [, batches, requests] = server.output().match(/stopped batches=(\d+) requests=(\d+)/) ??
      [];
    assertEquals(Number(requests), 200);
    assert(Number(batches) < 200, `datagrams waiting together share a pass (${batches} passes)`);
  } finally {
    for (const c of clients) c[Symbol.dispose]();
  }
});
