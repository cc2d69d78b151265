/**
 * End-to-end: pools selected by tag and interface name, reservations from
 * the config and from control requests, and the control operations of the
 * real server over its socket.
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { startServer } from "./helpers/server.ts";
import { WireClient, type WireReply } from "./helpers/wire.ts";
import { encodeControlRequest } from "../src/control/protocol.ts";

/** Sends a control request and returns the reply. */
function control(
  client: WireClient,
  op: string,
  args: Record<string, unknown> = {},
): Promise<WireReply> {
  return client.call(encodeControlRequest(op, args));
}

const POOLS = {
  addr_families: { inet: true, inet6: true },
  pools: [
    { name: "wan", family: "inet", ranges: [{ first: 20000, last: 20001 }], tags: ["wan"] },
    { name: "lte", family: "inet", ranges: [{ first: 30000, last: 30000 }], ifnames: ["wwan*"] },
  ],
  table_offset: 10000,
  num_tables: 10,
};

Deno.test("a request is served by the first pool whose tag and interface selectors match", async () => {
  await using server = await startServer({ config: POOLS });
  using client = new WireClient(server.socketName);
  assertEquals((await client.request("10.0.0.1", { tag: "wan" })).table, 20000);
  assertEquals((await client.request("10.0.0.2", { ifname: "wwan0" })).table, 30000);
  assertEquals(
    (await client.request("10.0.0.3")).table,
    10000,
    "no selector matches: the default pool",
  );
  assertEquals((await client.request("10.0.0.4", { tag: "other" })).table, 10001);
  // A full pool does not spill into the next one: its tables are its own.
  const full = await client.request("10.0.0.5", { ifname: "wwan1" });
  assertEquals([full.cmd, full.error], [3, "pool_exhausted"]);
  assertMatch(String(full.message), /all 1 tables of pool lte \(30000-30000\) are taken/);
  assertMatch(await server.waitForLog(/ granted .*address=10\.0\.0\.1 /), /pool=wan /);
});

Deno.test("a request that no pool serves is answered with no_pool", async () => {
  await using server = await startServer({
    config: {
      table_offset: undefined,
      num_tables: undefined,
      pools: [{ family: "inet", ranges: [{ first: 500, last: 509 }], ifnames: ["eth*"] }],
    },
  });
  using client = new WireClient(server.socketName);
  assertEquals((await client.request("10.0.0.1", { ifname: "eth3" })).table, 500);
  const none = await client.request("10.0.0.2", { ifname: "wg0" });
  assertEquals([none.cmd, none.error], [3, "no_pool"]);
  assertMatch(String(none.message), /no pool of family inet serves ifname wg0 without a tag/);
});

Deno.test("a reserved table goes to its owner only, and stays reserved after the owner leaves", async () => {
  await using server = await startServer({
    config: {
      num_tables: 10,
      reservations: [
        { table: 10000, ifname: "eth0", address: "192.0.2.1", family: "inet" },
        { table: 10005, ifname: "eth9" },
        { table: 50000, ifname: "wg0" },
      ],
    },
  });
  using client = new WireClient(server.socketName);
  assertEquals((await client.request("10.0.0.1")).table, 10001, "10000 is reserved: skipped");
  assertEquals(
    (await client.request("192.0.2.1", { ifname: "eth0" })).table,
    10000,
    "the owner gets it",
  );
  await client.release("192.0.2.1", { ifname: "eth0" });
  assertEquals(
    (await client.request("10.0.0.2")).table,
    10002,
    "still reserved after the owner left",
  );
  assertEquals(
    (await client.request("192.0.2.1", { ifname: "eth0" })).table,
    10000,
    "the owner gets it back",
  );
  // An interface-wide reservation applies per family; a second address of it gets a pool table.
  assertEquals((await client.request("10.0.0.9", { ifname: "eth9" })).table, 10005);
  assertEquals((await client.request("2001:db8::9", { ifname: "eth9", family: 10 })).table, 10005);
  assertEquals((await client.request("10.0.0.10", { ifname: "eth9" })).table, 10003);
  // A reserved table may lie outside every pool.
  assertEquals((await client.request("10.9.9.9", { ifname: "wg0" })).table, 50000);
  assertEquals(
    server.allLeases().filter((l) => l.state === "reserved").map((
      l,
    ) => [l.family, l.table, l.ifname, l.address]),
    [
      [0, 10005, "eth9", "*"],
      [0, 50000, "wg0", "*"],
      [2, 10000, "eth0", "192.0.2.1"],
      [2, 10005, "eth9", "*"],
      [2, 50000, "wg0", "*"],
      [10, 10005, "eth9", "*"],
      [10, 50000, "wg0", "*"],
    ],
  );
});

Deno.test("reservations removed from the config are removed at restart, and the table returns to its pool", async () => {
  const first = await startServer({
    config: { num_tables: 3, reservations: [{ table: 10000, ifname: "eth0" }] },
  });
  try {
    {
      using client = new WireClient(first.socketName);
      assertEquals((await client.request("10.0.0.1")).table, 10001);
    }
    await first.stop();
    await using second = await startServer({
      dir: first.dir,
      socketName: first.socketName,
      config: { num_tables: 3 },
    });
    await second.waitForLog(/config reservation removed .*table=10000/);
    using client = new WireClient(first.socketName);
    assertEquals((await client.request("10.0.0.2")).table, 10000);
  } finally {
    await first[Symbol.asyncDispose]();
  }
});

Deno.test("control: a reservation made at run time moves its owner to the reserved table on refresh", async () => {
  await using server = await startServer({
    config: { num_tables: 10, addr_families: { inet: true } },
  });
  using client = new WireClient(server.socketName);
  assertEquals((await client.request("192.0.2.1", { ifname: "eth0" })).table, 10000);
  assertEquals((await client.request("10.0.0.1")).table, 10001);
  // Table 10001 is leased to someone else: the reservation is refused, naming the holder.
  const refused = await control(client, "reserve", {
    table: 10001,
    ifname: "eth0",
    address: "192.0.2.1",
    family: 2,
  });
  assertEquals([refused.cmd, refused.error], [3, "conflict"]);
  assertMatch(
    String(refused.message),
    /table 10001 of family inet is leased to eth1 10\.0\.0\.1 until .*; release it first/,
  );
  const reserved = await control(client, "reserve", {
    table: 10007,
    ifname: "eth0",
    address: "192.0.2.1",
    family: 2,
  });
  assertEquals(reserved.cmd, 17);
  assertEquals((reserved.result as { reserved: unknown[] }).reserved.length, 1);
  const moved = await client.request("192.0.2.1", { ifname: "eth0" });
  assertEquals(moved.table, 10007, "the owner moves to its reservation");
  assertMatch(await server.waitForLog(/ moved /), /table=10007 previous_table=10000 /);
  assertEquals((await client.request("10.0.0.2")).table, 10000, "its old table is free again");
  // Unreserving keeps the bound lease; the table returns to the pool when it ends.
  assertEquals((await control(client, "unreserve", { table: 10007 })).cmd, 17);
  assertEquals((await client.request("192.0.2.1", { ifname: "eth0" })).table, 10007);
  await client.release("192.0.2.1", { ifname: "eth0" });
  const missing = await control(client, "unreserve", { table: 10007 });
  assertEquals([missing.cmd, missing.error], [3, "not_found"]);
});

Deno.test("control: status, pools, list, show and release report the server's state", async () => {
  await using server = await startServer({
    config: { ...POOLS, reservations: [{ table: 10009, ifname: "eth5" }] },
  });
  using client = new WireClient(server.socketName);
  await client.request("10.0.0.1", { tag: "wan" });
  await client.request("10.0.0.2");
  await client.request("10.0.0.3");
  await client.release("10.0.0.3");

  const status = (await control(client, "status")).result as Record<string, unknown>;
  assertEquals(status.families, [2, 10]);
  assertEquals(status.leases, { bound: 2, reserved: 2, outside_pools: 0, held: 0 });
  assertEquals(status.socket, `@${server.socketName}`);
  assert(typeof status.uptime_s === "number" && typeof status.pid === "number");

  const pools =
    ((await control(client, "pools")).result as { pools: Array<Record<string, unknown>> }).pools;
  assertEquals(pools.map((p) => [p.name, p.family, p.size, p.bound, p.reserved, p.free]), [
    ["wan", 2, 2, 1, 0, 1],
    ["lte", 2, 1, 0, 0, 1],
    ["default", 2, 10, 1, 1, 8],
    ["default", 10, 10, 0, 1, 9],
  ]);

  const list = (await control(client, "list", { state: "bound", limit: 1 })).result as {
    leases: Array<Record<string, unknown>>;
    next: string;
  };
  assertEquals(list.leases.map((l) => l.address), ["10.0.0.1"]);
  const next = (await control(client, "list", { state: "bound", after: list.next })).result as {
    leases: Array<Record<string, unknown>>;
    next: null;
  };
  assertEquals([next.leases.map((l) => l.address), next.next], [["10.0.0.2"], null]);
  const released = (await control(client, "list", { state: "released" })).result as {
    leases: Array<Record<string, unknown>>;
  };
  assertEquals(released.leases.map((l) => [l.address, l.table]), [["10.0.0.3", 10001]]);

  const shown = (await control(client, "show", { family: 2, table: 20000 })).result as {
    leases: Array<Record<string, unknown>>;
  };
  assertEquals(shown.leases.map((l) => [l.ifname, l.address, l.state, l.tag]), [[
    "eth1",
    "10.0.0.1",
    "bound",
    "wan",
  ]]);
  const byIdentity =
    (await control(client, "show", { family: 2, ifname: "eth1", address: "10.0.0.3" })).result as {
      leases: Array<Record<string, unknown>>;
    };
  assertEquals(byIdentity.leases.map((l) => l.state), ["released"]);

  const done = (await control(client, "release", { family: 2, table: 20000 })).result as {
    released: Array<Record<string, unknown>>;
    held: Array<Record<string, unknown>>;
  };
  assertEquals(done.released.map((l) => [l.address, l.state]), [["10.0.0.1", "released"]]);
  assertEquals(done.held.map((h) => [h.table, h.ifname, h.address, h.reason]), [
    [20000, "eth1", "10.0.0.1", "admin_release"],
  ]);
  // The holder's rules may still route through 20000: held for it until it confirms.
  assertEquals(
    (await client.request("10.0.0.4", { tag: "wan" })).table,
    20001,
    "the released table is held for its holder",
  );
  assertEquals((await client.release("10.0.0.1")).table, 0, "the holder confirms");
  assertEquals(
    (await client.request("10.0.0.5", { tag: "wan" })).table,
    20000,
    "the confirmed table is free",
  );
  const gone = await control(client, "release", { family: 2, table: 10005 });
  assertEquals([gone.cmd, gone.error], [3, "not_found"]);
  assertMatch(await server.waitForLog(/ released .*by=control uid=0/), /table=20000/);
});

Deno.test("control: bad control requests are answered with the reason", async () => {
  await using server = await startServer();
  using client = new WireClient(server.socketName);
  const unknown = await control(client, "explode");
  assertEquals([unknown.cmd, unknown.error], [3, "unknown_cmd"]);
  const bad = await control(client, "list", { limit: 5000 });
  assertEquals([bad.cmd, bad.error], [3, "bad_request"]);
  assertMatch(String(bad.message), /"limit" must be an integer from 1 to 200, got 5000/);
  const cursor = await control(client, "list", { after: "garbage" });
  assertEquals([cursor.cmd, cursor.error, cursor.message], [
    3,
    "bad_request",
    'the cursor "garbage" is not from list()',
  ]);
});
