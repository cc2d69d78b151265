import { DatabaseSync } from "node:sqlite";
import { assert, assertEquals, assertMatch } from "../../tests/helpers/assert.ts";
import { type CRow, IMPORT_MARKER_TABLE, planImport } from "./c_database_import.ts";
import { SqliteLeaseStore } from "./sqlite_store.ts";

const NOW = 1_700_000_000_000;
const CLOCK = {
  nowMs: NOW,
  monotonicSeconds: 5000,
  writtenThisBoot: true,
  tableTimeout: 3600,
  owner: "test",
};

const row = (change: Partial<CRow> = {}): CRow => ({
  RtTable: 10000,
  AddrFamily: 2,
  Ifname: "eth1",
  Addr: "192.0.2.10",
  LeaseExpires: 5600,
  Tag: null,
  ...change,
});

Deno.test("planImport() keeps a running lease's remaining time and its table, tag and identity", () => {
  const plan = planImport([row({ Tag: "wan" })], CLOCK);
  assertEquals(plan.kept, 1);
  assertEquals(plan.skipped, []);
  assertEquals(plan.leases, [{
    clientId: "2/eth1/192.0.2.10",
    lease: {
      family: 2,
      ifname: "eth1",
      address: "192.0.2.10",
      table: 10000,
      expiresAt: NOW + 600_000,
      tag: "wan",
      owner: "test",
      uid: 0,
      state: "bound",
    },
  }]);
});

Deno.test("planImport() gives a full lease to expired rows, rows of an earlier boot and impossible ones", () => {
  const full = NOW + 3600_000;
  const expired = planImport([row({ LeaseExpires: 4000 })], CLOCK);
  assertEquals([expired.kept, expired.leases[0].lease.expiresAt], [0, full]);
  // Monotonic values of an earlier boot mean nothing now, even when they look alive.
  const earlier = planImport([row()], { ...CLOCK, writtenThisBoot: false });
  assertEquals([earlier.kept, earlier.leases[0].lease.expiresAt], [0, full]);
  // The C server never granted more than table_timeout.
  const beyond = planImport([row({ LeaseExpires: 5000 + 99_999 })], CLOCK);
  assertEquals([beyond.kept, beyond.leases[0].lease.expiresAt], [1, full]);
});

Deno.test("planImport() canonicalises IPv6 and keeps family 0 identifiers as they are", () => {
  const plan = planImport([
    row({ AddrFamily: 10, Addr: "2001:DB8:0:0::1" }),
    row({ AddrFamily: 0, Addr: "modem-1" }),
  ], CLOCK);
  assertEquals(plan.leases.map((l) => l.clientId), ["10/eth1/2001:db8::1", "0/eth1/modem-1"]);
});

Deno.test("planImport() skips rows that cannot be leases, naming the row and the reason", () => {
  const plan = planImport([
    row({ AddrFamily: 7 }),
    row({ RtTable: 254 }),
    row({ RtTable: "x" }),
    row({ Addr: "300.1.1.1" }),
    row({ Ifname: null }),
    row({ LeaseExpires: null }),
    row({ Tag: "t".repeat(200) }),
  ], CLOCK);
  assertEquals(plan.leases, []);
  const reasons = plan.skipped.map((s) => s.reason);
  assertMatch(reasons[0], /^table 10000 family 7: "addr_family" must be 0, 2 or 10/);
  assertMatch(reasons[1], /table 254 is reserved by the kernel/);
  assertMatch(reasons[2], /^table "x" family 2: RtTable must be an integer/);
  assertMatch(reasons[3], /is not an IPv4 address/);
  assertMatch(reasons[4], /Ifname and Addr must be text/);
  assertMatch(reasons[5], /LeaseExpires must be a number/);
  assertMatch(reasons[6], /Tag must be text of at most 127 bytes/);
});

Deno.test("planImport() keeps the longest-running table of an identity that holds two", () => {
  const plan = planImport([
    row({ RtTable: 10001, LeaseExpires: 5100 }),
    row({ RtTable: 10002, LeaseExpires: 5900 }),
    row({ RtTable: 10003, LeaseExpires: 5200 }),
  ], CLOCK);
  assertEquals(plan.leases.map((l) => l.lease.table), [10002]);
  assertEquals(plan.skipped.map((s) => s.row.RtTable), [10001, 10003]);
  assertMatch(plan.skipped[0].reason, /2\/eth1\/192\.0\.2\.10 also holds table 10002/);
});

/** A database file as the original server leaves it. */
function cDatabase(path: string, rows: CRow[]): void {
  const db = new DatabaseSync(path);
  db.exec(`CREATE TABLE RtTables(RtTable INTEGER, AddrFamily INTEGER, Ifname TEXT, Addr TEXT,
    LeaseExpires INTEGER, Tag TEXT, PRIMARY KEY(RtTable, AddrFamily))`);
  const insert = db.prepare("INSERT INTO RtTables VALUES (?, ?, ?, ?, ?, ?)");
  for (const r of rows) {
    insert.run(
      r.RtTable as number,
      r.AddrFamily as number,
      r.Ifname as string,
      r.Addr as string,
      r.LeaseExpires as number,
      r.Tag as string | null,
    );
  }
  db.close();
}

Deno.test("opening the original's database imports RtTables once and leaves it readable", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-cimport-" });
  try {
    const path = `${dir}/leases.db`;
    cDatabase(path, [row(), row({ RtTable: 10001, Addr: "192.0.2.11", LeaseExpires: 1 })]);
    const reports: unknown[] = [];
    const cImport = {
      tableTimeout: 3600,
      owner: "test",
      monotonicSeconds: () => 5000,
      bootedAtMs: () => 0,
      onImported: (report: unknown) => reports.push(report),
    };
    const store = SqliteLeaseStore.open(path, { now: () => NOW, cImport });
    // The original's clients ran as root: the imported leases are root's (uid 0).
    assertEquals(
      (await store.list()).leases.map((l) => [l.table, l.address, l.expiresAt, l.uid]),
      [
        [10000, "192.0.2.10", NOW + 600_000, 0],
        [10001, "192.0.2.11", NOW + 3600_000, 0],
      ],
    );
    assertEquals(reports, [{ rows: 2, imported: 2, kept: 1, renewed: 1, skipped: [] }]);
    // Released, and the history gone: a second open must not bring the rows back.
    const { token } = await store.lookup("2/eth1/192.0.2.10");
    await store.update("2/eth1/192.0.2.10", [], token);
    await store.close();
    const again = SqliteLeaseStore.open(path, { now: () => NOW, cImport });
    assertEquals((await again.list()).leases.map((l) => l.table), [10001]);
    await again.close();
    assertEquals(reports.length, 1, "imported once");

    const check = new DatabaseSync(path, { readOnly: true });
    assertEquals(check.prepare("SELECT COUNT(*) AS n FROM RtTables").get(), { n: 2 });
    assertEquals(
      check.prepare(`SELECT rows, imported, skipped FROM ${IMPORT_MARKER_TABLE}`).get(),
      { rows: 2, imported: 2, skipped: 0 },
    );
    check.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a database of ours without the marker is not imported into", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-cimport-" });
  try {
    const path = `${dir}/leases.db`;
    const store = SqliteLeaseStore.open(path, { now: () => NOW });
    const { token } = await store.lookup("2/eth9/192.0.2.99");
    await store.update("2/eth9/192.0.2.99", [{
      ...planImport([row({ Ifname: "eth9", Addr: "192.0.2.99" })], CLOCK).leases[0].lease,
    }], token);
    await store.close();
    cDatabase(path, [row()]);
    let imported = false;
    const reopened = SqliteLeaseStore.open(path, {
      now: () => NOW,
      cImport: { tableTimeout: 60, owner: "test", onImported: () => imported = true },
    });
    assertEquals((await reopened.list()).leases.map((l) => l.ifname), ["eth9"]);
    await reopened.close();
    assert(!imported);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
