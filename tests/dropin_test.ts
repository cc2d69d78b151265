/**
 * End-to-end: our server started where the original ran. It takes over
 * the original's database (its `RtTables` leases, once, leaving the table
 * readable for a rollback) and loads a config with keys the original
 * ignored.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { CLOCK_BOOTTIME, clockSeconds } from "../ffi/libc.ts";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { startServer } from "./helpers/server.ts";
import { WireClient } from "./helpers/wire.ts";

/** RtTables rows: table, family, ifname, address, LeaseExpires (monotonic seconds), tag. */
type CRow = [number, number, string, string, number, string | null];

/** A new directory holding a database as the original server leaves it; removed on dispose. */
interface CDatabaseDir extends AsyncDisposable {
  dir: string;
}

/** Writes a database as the original server leaves it, in a new directory. */
async function cDatabase(rows: CRow[], writtenAtMs?: number): Promise<CDatabaseDir> {
  const dir = await Deno.makeTempDir({ prefix: "ta-dropin-" });
  const path = `${dir}/leases.db`;
  const db = new DatabaseSync(path);
  db.exec(`CREATE TABLE RtTables(RtTable INTEGER, AddrFamily INTEGER, Ifname TEXT, Addr TEXT,
    LeaseExpires INTEGER, Tag TEXT, PRIMARY KEY(RtTable, AddrFamily))`);
  const insert = db.prepare("INSERT INTO RtTables VALUES (?, ?, ?, ?, ?, ?)");
  for (const row of rows) insert.run(...row);
  db.close();
  if (writtenAtMs !== undefined) Deno.utimeSync(path, writtenAtMs / 1000, writtenAtMs / 1000);
  return { dir, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

const near = (actual: number, expected: number, what: string) =>
  assert(Math.abs(actual - expected) < 30_000, `${what}: ${actual} is not near ${expected}`);

Deno.test("the original's leases are imported at start: running ones keep their time, the rest get a full lease", async () => {
  const mono = Math.floor(clockSeconds());
  await using c = await cDatabase([
    [10004, 2, "eth1", "10.90.5.2", mono + 600, null], // running: 600 s left
    [10007, 2, "eth2", "10.90.7.2", mono - 100, "wan"], // ran out while no server ran
    [20000, 2, "eth3", "10.90.9.2", mono + 900, null], // outside the configured pool
    [10001, 10, "eth1", "2001:DB8::2", mono + 300, null],
  ]);
  await using server = await startServer({ dir: c.dir, config: { table_timeout: 3600 } });
  const now = Date.now();
  assertMatch(
    server.output(),
    /INFO imported the leases of the original server's database rows=4 imported=4 kept=3 renewed=1 skipped=0/,
  );
  assertMatch(server.output(), /INFO ready .*leased=4/);
  assertMatch(server.output(), /WARN stored lease outside the configured pools .*table=20000/);
  const leases = server.leases();
  assertEquals(
    leases.map((l) => [l.family, l.table, l.ifname, l.address, l.tag]),
    [
      [2, 10004, "eth1", "10.90.5.2", null],
      [2, 10007, "eth2", "10.90.7.2", "wan"],
      [2, 20000, "eth3", "10.90.9.2", null],
      [10, 10001, "eth1", "2001:db8::2", null],
    ],
  );
  near(leases[0].expiresAt, now + 600_000, "the running lease keeps its 600 s");
  near(leases[1].expiresAt, now + 3600_000, "the expired one gets table_timeout");
  near(leases[3].expiresAt, now + 300_000, "the IPv6 lease keeps its 300 s");

  // A C client refreshing keeps its table (its rules never move).
  using client = new WireClient(server.socketName);
  assertEquals((await client.request("10.90.5.2", { ifname: "eth1" })).table, 10004);
  assertEquals((await client.request("10.90.9.2", { ifname: "eth3" })).table, 20000);
  // A new identity gets the lowest table nobody imported.
  assertEquals((await client.request("10.90.1.1", { ifname: "eth4" })).table, 10000);
  assertEquals((await client.release("10.90.5.2", { ifname: "eth1" })).table, 0);

  // A second start imports nothing again: the released lease stays released.
  await server.stop();
  await using again = await startServer({ dir: c.dir, socketName: server.socketName });
  assert(!/imported the leases/.test(again.output()), again.output());
  assertEquals(again.leases().map((l) => l.table), [10000, 10007, 20000, 10001]);
  // RtTables is untouched, for a rollback to the original server.
  const db = new DatabaseSync(server.dbPath, { readOnly: true });
  try {
    assertEquals(db.prepare("SELECT COUNT(*) AS n FROM RtTables").get(), { n: 4 });
  } finally {
    db.close();
  }
});

Deno.test("leases of a database last written before this boot all get a full table_timeout", async () => {
  const bootedAt = Date.now() - clockSeconds(CLOCK_BOOTTIME) * 1000;
  const mono = Math.floor(clockSeconds());
  // These values would look alive now, but they are another boot's clock.
  await using c = await cDatabase([
    [10000, 2, "eth1", "10.90.5.2", mono + 60, null],
    [10001, 2, "eth2", "10.90.6.2", mono + 7200, null],
  ], bootedAt - 3600_000);
  await using server = await startServer({ dir: c.dir, config: { table_timeout: 1800 } });
  const now = Date.now();
  assertMatch(server.output(), /imported=2 kept=0 renewed=2 skipped=0/);
  for (const lease of server.leases()) {
    near(lease.expiresAt, now + 1800_000, `table ${lease.table}`);
  }
});

Deno.test("rows that cannot be leases are logged with their reason and left in RtTables", async () => {
  const mono = Math.floor(clockSeconds());
  await using c = await cDatabase([
    [10000, 2, "eth1", "not-an-address", mono + 60, null],
    [10001, 2, "eth1", "10.90.5.2", mono + 60, null],
  ]);
  await using server = await startServer({ dir: c.dir });
  assertMatch(server.output(), /imported=1 kept=1 renewed=0 skipped=1/);
  assertMatch(
    server.output(),
    /WARN row of RtTables not imported \(it stays in RtTables\) reason="table 10000 family 2: \\"address\\" is not an IPv4 address/,
  );
  assertEquals(server.leases().map((l) => l.table), [10001]);
});

Deno.test("a config with keys the original ignored loads, with a warning naming each key", async () => {
  await using server = await startServer({
    config: { _comment: "from the C package", tabel_timeout: 60 },
  });
  assertMatch(server.output(), /WARN "_comment" is not a known key \(ignored\) config=/);
  assertMatch(
    server.output(),
    /WARN "tabel_timeout" is not a known key \(ignored\); did you mean "table_timeout"\? config=/,
  );
  using client = new WireClient(server.socketName);
  assertEquals((await client.request("10.0.0.1")).table, 10000);
});
