import { DatabaseSync } from "node:sqlite";
import {
  assertEquals,
  assertInstanceOf,
  assertMatch,
  assertThrowsType,
} from "../../tests/helpers/assert.ts";
import { lease, storeConformance } from "../../tests/helpers/store_conformance.ts";
import { TransientError } from "./lease_store.ts";
import { SCHEMA_VERSION, SqliteLeaseStore } from "./sqlite_store.ts";

storeConformance("sqlite", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-store-" });
  const path = `${dir}/leases.db`;
  return {
    open: () => Promise.resolve(SqliteLeaseStore.open(path)),
    reopen: () => Promise.resolve(SqliteLeaseStore.open(path)),
    cleanup: () => Deno.remove(dir, { recursive: true }),
  };
});

async function withStore(
  fn: (store: SqliteLeaseStore, path: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ta-store-" });
  const store = SqliteLeaseStore.open(`${dir}/sub/leases.db`);
  try {
    await fn(store, `${dir}/sub/leases.db`);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("SqliteLeaseStore uses WAL, synchronous FULL and a versioned schema", async () => {
  await withStore((_store, path) => {
    const db = new DatabaseSync(path, { readOnly: true });
    try {
      assertEquals(db.prepare("PRAGMA journal_mode").get(), { journal_mode: "wal" });
      assertEquals(db.prepare("PRAGMA user_version").get(), { user_version: SCHEMA_VERSION });
    } finally {
      db.close();
    }
    return Promise.resolve();
  });
});

Deno.test("SqliteLeaseStore commits every update issued together in one transaction", async () => {
  await withStore(async (store, path) => {
    const lookups = await Promise.all(
      Array.from({ length: 20 }, (_, i) => store.lookup(`2/eth1/10.0.0.${i}`)),
    );
    const updates = lookups.map(({ token }, i) =>
      store.update(`2/eth1/10.0.0.${i}`, [lease(`10.0.0.${i}`, 10000 + i)], token)
    );
    // Not yet committed: another connection sees nothing.
    const reader = new DatabaseSync(path, { readOnly: true });
    try {
      assertEquals(reader.prepare("SELECT count(*) AS n FROM leases").get(), { n: 0 });
      await store.flush();
      await Promise.all(updates);
      assertEquals(reader.prepare("SELECT count(*) AS n FROM leases").get(), { n: 20 });
    } finally {
      reader.close();
    }
  });
});

Deno.test("SqliteLeaseStore reports a locked database as a TransientError and keeps the token valid", async () => {
  await withStore(async (store, path) => {
    const { token } = await store.lookup("2/eth1/10.0.0.1");
    const other = new DatabaseSync(path);
    other.exec("BEGIN IMMEDIATE");
    const error = await store.update("2/eth1/10.0.0.1", [lease("10.0.0.1", 10000)], token).catch((
      e,
    ) => e);
    other.exec("ROLLBACK");
    other.close();
    assertInstanceOf(error, TransientError);
    assertMatch(error.message, /locked|busy/);
    await store.update("2/eth1/10.0.0.1", [lease("10.0.0.1", 10000)], token);
    assertEquals((await store.peek("2/eth1/10.0.0.1")).length, 1);
  });
});

Deno.test("SqliteLeaseStore.open() refuses a second owner and a newer schema with clear errors", async () => {
  await withStore(async (_store, path) => {
    const error = assertThrowsType(() => SqliteLeaseStore.open(path), Error);
    assertMatch(
      error.message,
      /Cannot open database ".*leases\.db": it is locked by another process/,
    );
    const dir = await Deno.makeTempDir();
    try {
      const db = new DatabaseSync(`${dir}/new.db`);
      db.exec("PRAGMA user_version = 99");
      db.close();
      const newer = assertThrowsType(() => SqliteLeaseStore.open(`${dir}/new.db`), Error);
      assertMatch(
        newer.message,
        new RegExp(`schema version 99 is newer than this server's \\(${SCHEMA_VERSION}\\)`),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("SqliteLeaseStore.open() names the file when it cannot be opened", () => {
  const error = assertThrowsType(() => SqliteLeaseStore.open("/proc/version/leases.db"), Error);
  assertMatch(error.message, /Cannot open database "\/proc\/version\/leases\.db": /);
});

Deno.test("SqliteLeaseStore migrates a version 1 database and keeps its leases bound, as root's", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-store-" });
  try {
    const path = `${dir}/v1.db`;
    const db = new DatabaseSync(path);
    db.exec(`
      CREATE TABLE leases (client_id TEXT NOT NULL, family INTEGER NOT NULL, ifname TEXT NOT NULL,
        address TEXT NOT NULL, table_id INTEGER NOT NULL, expires_at INTEGER NOT NULL, tag TEXT,
        owner TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'bound', updated_at INTEGER NOT NULL,
        PRIMARY KEY (client_id, table_id)) WITHOUT ROWID;
      CREATE UNIQUE INDEX leases_family_table ON leases (family, table_id);
      CREATE INDEX leases_expires_at ON leases (expires_at);
      PRAGMA user_version = 1;`);
    const expiresAt = Date.now() + 3600_000;
    db.prepare(
      "INSERT INTO leases VALUES (?, 2, 'eth1', '10.0.0.1', 10000, ?, NULL, 'x', 'bound', 0)",
    )
      .run("2/eth1/10.0.0.1", expiresAt);
    db.close();
    const store = SqliteLeaseStore.open(path);
    try {
      assertEquals((await store.peek("2/eth1/10.0.0.1")).map((l) => [l.state, l.table, l.uid]), [[
        "bound",
        10000,
        0,
      ]], "a lease stored before uids were is root's");
      assertEquals(await store.usedTables(), [[2, 10000]]);
    } finally {
      await store.close();
    }
    const check = new DatabaseSync(path, { readOnly: true });
    assertEquals(check.prepare("PRAGMA user_version").get(), { user_version: SCHEMA_VERSION });
    check.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SqliteLeaseStore forgets released and expired leases after the history retention", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-store-" });
  const store = SqliteLeaseStore.open(`${dir}/l.db`, { historyRetentionMs: 200 });
  try {
    const a = await store.lookup("2/eth1/10.0.0.1");
    await store.update(
      "2/eth1/10.0.0.1",
      [{ ...lease("10.0.0.1", 10000), state: "released" }],
      a.token,
    );
    const b = await store.lookup("2/eth1/10.0.0.2");
    await store.update("2/eth1/10.0.0.2", [lease("10.0.0.2", 10001, Date.now() + 500)], b.token);
    assertEquals((await store.list({ state: "released" })).leases.length, 1);
    // The expiry at 500 ms prunes history older than 200 ms and keeps the new expired lease.
    await new Promise((r) => setTimeout(r, 800));
    assertEquals((await store.list()).leases.map((l) => [l.address, l.state]), [[
      "10.0.0.2",
      "expired",
    ]]);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
