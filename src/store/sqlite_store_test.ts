import { DatabaseSync } from "node:sqlite";
import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertMatch,
  assertThrowsType,
} from "../../tests/helpers/assert.ts";
import { lease, storeConformance } from "../../tests/helpers/store_conformance.ts";
import { ConcurrencyError, type Lease, listAll, TransientError } from "./lease_store.ts";
import { PAGE_SIZE } from "./sqlite_schema.ts";
import {
  CHECKPOINT_DELAY_MS,
  SCHEMA_VERSION,
  SqliteLeaseStore,
  SWEEP_CHUNK,
} from "./sqlite_store.ts";

storeConformance("sqlite", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-store-" });
  const path = `${dir}/leases.db`;
  return {
    open: () => Promise.resolve(SqliteLeaseStore.open(path)),
    reopen: () => Promise.resolve(SqliteLeaseStore.open(path)),
    cleanup: () => Deno.remove(dir, { recursive: true }),
  };
});

/** What another connection's BEGIN IMMEDIATE says now: "" when it takes the write lock. */
function tryWriteLock(other: DatabaseSync): string {
  try {
    other.exec("BEGIN IMMEDIATE");
    other.exec("ROLLBACK");
    return "";
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

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

Deno.test("SqliteLeaseStore uses WAL, 1 KiB pages and a versioned schema", async () => {
  await withStore((_store, path) => {
    const db = new DatabaseSync(path, { readOnly: true });
    try {
      assertEquals(db.prepare("PRAGMA journal_mode").get(), { journal_mode: "wal" });
      assertEquals(db.prepare("PRAGMA page_size").get(), { page_size: PAGE_SIZE });
      assertEquals(db.prepare("PRAGMA user_version").get(), { user_version: SCHEMA_VERSION });
    } finally {
      db.close();
    }
    return Promise.resolve();
  });
});

Deno.test("SqliteLeaseStore keeps the page size of an existing database", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-store-" });
  try {
    const path = `${dir}/old.db`;
    const db = new DatabaseSync(path);
    db.exec("PRAGMA page_size = 4096; CREATE TABLE other (x); DROP TABLE other");
    db.close();
    const store = SqliteLeaseStore.open(path);
    const { token } = await store.lookup("2/eth1/10.0.0.1");
    await Promise.all([
      store.update("2/eth1/10.0.0.1", [lease("10.0.0.1", 10000)], token),
      store.flush(),
    ]);
    await store.close();
    const check = new DatabaseSync(path, { readOnly: true });
    assertEquals(check.prepare("PRAGMA page_size").get(), { page_size: 4096 });
    assertEquals(check.prepare("SELECT count(*) AS n FROM leases").get(), { n: 1 });
    check.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Frames in the WAL now: `mxFrame` of the WAL-index header (SQLite's walformat, offset 16). */
function walFrames(path: string): number {
  const header = new Uint8Array(48);
  const shm = Deno.openSync(`${path}-shm`, { read: true });
  try {
    shm.readSync(header);
  } finally {
    shm.close();
  }
  return new DataView(header.buffer).getUint32(16, true);
}

Deno.test("SqliteLeaseStore syncs a commit that holds a table before it resolves, and not one that ends leases", async () => {
  await withStore(async (store) => {
    const id = "2/eth1/10.0.0.1";
    const before = store.walStats.syncs;
    const a = await store.lookup(id);
    let granted = false;
    const grant = store.update(id, [lease("10.0.0.1", 10000)], a.token).then(() => granted = true);
    const flushed = store.flush({ background: true });
    await Promise.resolve();
    assertEquals(granted, false, "not acknowledged before its sync");
    await flushed;
    await grant;
    assertEquals(store.walStats.syncs, before + 1);
    const b = await store.lookup(id);
    const release = store.update(id, [{ ...b.leases[0], state: "released" }], b.token);
    await store.flush();
    await release;
    assertEquals(store.walStats.syncs, before + 1, "a release becomes durable with the next sync");
    assertEquals((await store.peek(id))[0].state, "released");
  });
});

Deno.test("SqliteLeaseStore asks whether to sync in the background only when there is a sync", async () => {
  await withStore(async (store) => {
    const id = "2/eth1/10.0.0.1";
    const asked: string[] = [];
    const a = await store.lookup(id);
    const grant = store.update(id, [lease("10.0.0.1", 10000)], a.token);
    await store.flush({ background: () => (asked.push("grant"), false) });
    await grant;
    const b = await store.lookup(id);
    const release = store.update(id, [{ ...b.leases[0], state: "released" }], b.token);
    await store.flush({ background: () => (asked.push("release"), false) });
    await release;
    assertEquals(asked, ["grant"], "a release's commit has no sync to place");
  });
});

Deno.test("SqliteLeaseStore tells who asked which updates a durable commit holds, before their reactions run", async () => {
  await withStore(async (store) => {
    const order: string[] = [];
    const a = await store.lookup("2/eth1/10.0.0.1");
    const b = await store.lookup("2/eth1/10.0.0.2");
    const c = await store.lookup("2/eth1/10.0.0.3");
    const granted = store.update("2/eth1/10.0.0.1", [lease("10.0.0.1", 10000)], a.token);
    granted.then(() => order.push("reaction"));
    // A table already taken: refused by the store, not part of the commit.
    const taken = store.update("2/eth1/10.0.0.2", [lease("10.0.0.2", 10000)], b.token);
    taken.catch(() => {});
    const released = store.update("2/eth1/10.0.0.3", [], c.token);
    let heard: ReadonlySet<Promise<void>> | undefined;
    const flushed = store.flush({
      durable: (updates) => {
        heard = updates;
        order.push("durable");
      },
    });
    assertEquals(order, ["durable"], "told inside flush(), the sync being on this thread");
    assertEquals(heard, new Set([granted, released]));
    await flushed;
    await granted;
    assertEquals(order, ["durable", "reaction"]);
    assertInstanceOf(await taken.catch((e) => e), ConcurrencyError);
  });
});

Deno.test("SqliteLeaseStore tells nobody of a commit that failed", async () => {
  await withStore(async (store, path) => {
    const { token } = await store.lookup("2/eth1/10.0.0.1");
    await Deno.remove(path);
    const update = store.update("2/eth1/10.0.0.1", [lease("10.0.0.1", 10000)], token);
    update.catch(() => {});
    let told = false;
    // In the same turn as the update: before the flush it queues for itself.
    const flushed = await store.flush({ durable: () => told = true }).catch((e) => e);
    assertInstanceOf(flushed, Error);
    assertEquals(told, false);
  });
});

Deno.test("SqliteLeaseStore writes a refresh as one row's change, fewer pages than a grant", async () => {
  await withStore(async (store, path) => {
    const id = "2/eth1/10.0.0.1";
    // No await lets a timer (a checkpoint, which restarts the WAL) run in between.
    const write = async (next: (leases: Lease[]) => Lease[]) => {
      const { leases, token } = await store.lookup(id);
      const frames = walFrames(path);
      const done = store.update(id, next(leases), token);
      await store.flush();
      await done;
      return walFrames(path) - frames;
    };
    const granted = await write(() => [lease("10.0.0.1", 10000)]);
    const refreshed = await write(([l]) => [{ ...l, expiresAt: l.expiresAt + 60_000 }]);
    const released = await write(([l]) => [{ ...l, state: "released" }]);
    assert(refreshed <= 2, `a refresh wrote ${refreshed} pages (the row, its expiry entry)`);
    assert(refreshed < granted, `refresh ${refreshed} pages, grant ${granted}`);
    assert(refreshed < released, `refresh ${refreshed} pages, release ${released}`);
  });
});

Deno.test("SqliteLeaseStore writes the leases given, even ones the caller changed in place", async () => {
  await withStore(async (store) => {
    const id = "2/eth1/10.0.0.1";
    const a = await store.lookup(id);
    await Promise.all([store.update(id, [lease("10.0.0.1", 10000)], a.token), store.flush()]);
    const { leases, token } = await store.lookup(id);
    leases[0].state = "released"; // the lookup's own object
    leases[0].expiresAt = 5;
    await Promise.all([store.update(id, leases, token), store.flush()]);
    assertEquals((await store.peek(id)).map((l) => [l.state, l.expiresAt]), [["released", 5]]);
  });
});

Deno.test("SqliteLeaseStore writes a lease whose row went away after the lookup", async () => {
  await withStore(async (store, path) => {
    const id = "2/eth1/10.0.0.1";
    const a = await store.lookup(id);
    const history = { ...lease("10.0.0.1", 10000), state: "released" as const };
    await Promise.all([store.update(id, [history], a.token), store.flush()]);
    const { token } = await store.lookup(id);
    // The lookup's transaction ends when the event loop turns; an update may come later.
    await new Promise((r) => setTimeout(r, 10));
    // History may be pruned between a lookup and its update; here another connection does it.
    const other = new DatabaseSync(path);
    other.exec("DELETE FROM leases");
    other.close();
    await Promise.all([store.update(id, [lease("10.0.0.1", 10000)], token), store.flush()]);
    assertEquals((await store.peek(id)).map((l) => l.state), ["bound"]);
  });
});

Deno.test("SqliteLeaseStore moves a client's history row to its new table, and writes the rest", async () => {
  await withStore(async (store, path) => {
    const id = "2/eth1/10.0.0.1";
    const write = async (leases: Lease[]) => {
      const { token } = await store.lookup(id);
      await Promise.all([store.update(id, leases, token), store.flush()]);
    };
    const rows = () => {
      const db = new DatabaseSync(path, { readOnly: true });
      try {
        return db.prepare("SELECT table_id, state, tag, uid FROM leases ORDER BY table_id").all()
          .map((r) => [r.table_id, r.state, r.tag, r.uid]);
      } finally {
        db.close();
      }
    };
    const released = (table: number) => ({
      ...lease("10.0.0.1", table),
      state: "released" as const,
    });
    // A request after a release, on another table: the released row becomes the new lease.
    await write([released(10000)]);
    const granted = { ...lease("10.0.0.1", 10003), tag: "wan", uid: 1000 };
    await write([granted]);
    assertEquals(await store.peek(id), [granted]);
    assertEquals(rows(), [[10003, "bound", "wan", 1000]]);
    // Two rows of history, one new lease: one row moves, the other goes.
    await write([released(10001), released(10002)]);
    await write([lease("10.0.0.1", 10005)]);
    assertEquals(rows(), [[10005, "bound", null, 0]]);
    // One row of history, two new leases: one moves, one is inserted.
    await write([released(10005)]);
    await write([lease("10.0.0.1", 10007), lease("10.0.0.1", 10008)]);
    assertEquals(rows(), [[10007, "bound", null, 0], [10008, "bound", null, 0]]);
    // The history row went away after the lookup: the lease is inserted instead.
    await write([released(10009)]);
    const { token } = await store.lookup(id);
    await new Promise((r) => setTimeout(r, 10)); // the lookup's transaction ends
    const other = new DatabaseSync(path);
    other.exec("DELETE FROM leases");
    other.close();
    await Promise.all([store.update(id, [lease("10.0.0.1", 10010)], token), store.flush()]);
    assertEquals(rows(), [[10010, "bound", null, 0]]);
  });
});

Deno.test("SqliteLeaseStore checkpoints the WAL into the database file soon after a commit", async () => {
  await withStore(async (store, path) => {
    const dir = await Deno.makeTempDir({ prefix: "ta-ckpt-" });
    // The database file alone (no WAL): what a checkpoint has copied back.
    const fileRows = () => {
      Deno.copyFileSync(path, `${dir}/copy.db`);
      const db = new DatabaseSync(`${dir}/copy.db`, { readOnly: true });
      try {
        // The schema itself may still be in the WAL only.
        const table = db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'leases'").get();
        if (!table) return 0;
        return (db.prepare("SELECT count(*) AS n FROM leases").get() as { n: number }).n;
      } finally {
        db.close();
      }
    };
    try {
      const ids = Array.from({ length: 5 }, (_, i) => `10.0.0.${i}`);
      const lookups = await Promise.all(ids.map((a) => store.lookup(`2/eth1/${a}`)));
      const writes = ids.map((a, i) =>
        store.update(`2/eth1/${a}`, [lease(a, 10000 + i)], lookups[i].token)
      );
      await store.flush();
      await Promise.all(writes);
      assertEquals(fileRows(), 0, "the commit itself leaves the rows in the WAL");
      await new Promise((r) => setTimeout(r, CHECKPOINT_DELAY_MS + 300));
      assertEquals(store.walStats.checkpoints, 1);
      assertEquals(fileRows(), 5);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
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

Deno.test("SqliteLeaseStore: lookups run in the transaction their updates join, which a lookup alone ends when the event loop turns", async () => {
  await withStore(async (store, path) => {
    const other = new DatabaseSync(path, { timeout: 0 });
    try {
      await Promise.all([store.lookup("2/eth1/10.0.0.1"), store.lookup("2/eth1/10.0.0.2")]);
      // Held from the lookups on: no other writer can come between them and their updates.
      assertMatch(tryWriteLock(other), /locked/);
      await new Promise((r) => setTimeout(r, 10));
      assertEquals(tryWriteLock(other), "");
    } finally {
      other.close();
    }
  });
});

Deno.test("SqliteLeaseStore: an expected lookup's transaction is the one the next lookup and update use, and ends unused when the loop turns", async () => {
  await withStore(async (store, path) => {
    const other = new DatabaseSync(path, { timeout: 0 });
    try {
      store.expectLookup();
      assertMatch(tryWriteLock(other), /locked/);
      const { token } = await store.lookup("2/eth1/10.0.0.1");
      await store.update("2/eth1/10.0.0.1", [lease("10.0.0.1", 10000)], token);
      assertEquals(
        other.prepare("SELECT count(*) AS n FROM leases").get(),
        { n: 1 },
        "committed with the update",
      );
      store.expectLookup();
      assertMatch(tryWriteLock(other), /locked/, "held again");
      await new Promise((r) => setTimeout(r, 10));
      assertEquals(tryWriteLock(other), "", "ended unused when the loop turned");
    } finally {
      other.close();
    }
  });
});

Deno.test("SqliteLeaseStore: an expected lookup on a closed store throws nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-store-" });
  try {
    const store = SqliteLeaseStore.open(`${dir}/leases.db`);
    await store.close();
    store.expectLookup();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SqliteLeaseStore reports a locked database as a TransientError and keeps the token valid", async () => {
  await withStore(async (store, path) => {
    const { token } = await store.lookup("2/eth1/10.0.0.1");
    // The lookup's transaction ends when the event loop turns; then another connection locks.
    await new Promise((r) => setTimeout(r, 10));
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
    const names = check.prepare(
      "SELECT name FROM sqlite_master WHERE type IN ('index', 'trigger') AND sql IS NOT NULL",
    ).all().map((r) => r.name).toSorted();
    assertEquals(names, [
      "bound_runs_delete",
      "bound_runs_insert",
      "bound_runs_update",
      "leases_bound_table",
      "leases_expiry",
      "leases_reservations",
      "leases_reserved_table",
      "leases_uid",
    ], "as a new database has them: no history index (version 5)");
    check.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SqliteLeaseStore forgets released and expired leases after the history retention", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-store-" });
  const store = SqliteLeaseStore.open(`${dir}/l.db`, { historyRetentionMs: 300 });
  try {
    const a = await store.lookup("2/eth1/10.0.0.1");
    await store.update(
      "2/eth1/10.0.0.1",
      [{ ...lease("10.0.0.1", 10000), state: "released" }],
      a.token,
    );
    const b = await store.lookup("2/eth1/10.0.0.2");
    await store.update("2/eth1/10.0.0.2", [lease("10.0.0.2", 10001, Date.now() + 500)], b.token);
    const c = await store.lookup("2/eth1/10.0.0.3");
    await store.update("2/eth1/10.0.0.3", [lease("10.0.0.3", 10002)], c.token);
    assertEquals((await store.list({ state: "released" })).leases.length, 1);
    const states = async () =>
      (await store.list()).leases.map((l) => [l.address, l.state]).toSorted();
    // Just after the expiry at 500 ms: the release (older than 300 ms) is gone, the expiry not yet.
    await new Promise((r) => setTimeout(r, 650));
    assertEquals(await states(), [["10.0.0.2", "expired"], ["10.0.0.3", "bound"]]);
    // Once it is older than the retention, the expired lease goes too; bound leases stay.
    await new Promise((r) => setTimeout(r, 600));
    assertEquals(await states(), [["10.0.0.3", "bound"]]);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SqliteLeaseStore writes the bound tables as runs at a clean close, and a start reads them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-store-" });
  const path = `${dir}/l.db`;
  const runs = () => {
    const db = new DatabaseSync(path, { readOnly: true });
    try {
      return db.prepare("SELECT family, first, last FROM bound_runs ORDER BY family, first").all()
        .map((r) => [r.family, r.first, r.last]);
    } finally {
      db.close();
    }
  };
  try {
    let store = SqliteLeaseStore.open(path);
    for (const t of [10000, 10001, 10002, 10005]) {
      const { token } = await store.lookup(`2/eth1/a${t}`);
      await store.update(`2/eth1/a${t}`, [lease(`a${t}`, t)], token);
    }
    await store.close();
    assertEquals(runs(), [[2, 10000, 10002], [2, 10005, 10005]]);
    // What a start sees comes from the runs; a change of a bound lease empties them.
    const other = new DatabaseSync(path);
    other.exec("UPDATE bound_runs SET last = 10003 WHERE first = 10000");
    other.close();
    store = SqliteLeaseStore.open(path);
    assertEquals(await store.boundTables(), new Map([[2, [[10000, 10003], [10005, 10005]]]]));
    const refresh = await store.lookup("2/eth1/a10005");
    await store.update(
      "2/eth1/a10005",
      [lease("a10005", 10005, Date.now() + 7200_000)],
      refresh.token,
    );
    assertEquals(runs().length, 2, "a refresh changes no table: the runs stay");
    const { token } = await store.lookup("2/eth1/a10009");
    await store.update("2/eth1/a10009", [lease("a10009", 10009)], token);
    assertEquals(runs(), [], "a grant empties them");
    assertEquals(
      await store.boundTables(),
      new Map([[2, [[10000, 10002], [10005, 10005], [10009, 10009]]]]),
      "read from the leases again",
    );
    await store.close();
    assertEquals(runs(), [[2, 10000, 10002], [2, 10005, 10005], [2, 10009, 10009]]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SqliteLeaseStore: a change made by another writer while the server is down empties the runs", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-store-" });
  const path = `${dir}/l.db`;
  try {
    let store = SqliteLeaseStore.open(path);
    const { token } = await store.lookup("2/eth1/a");
    await store.update("2/eth1/a", [lease("a", 10000)], token);
    await store.close();
    const other = new DatabaseSync(path);
    other.exec("UPDATE leases SET state = 'released'"); // e.g. sqlite3 by hand
    other.close();
    store = SqliteLeaseStore.open(path);
    assertEquals(await store.boundTables(), new Map());
    await store.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SqliteLeaseStore holds versions only for the clients in flight, not for every client served", async () => {
  await withStore(async (store) => {
    for (let i = 0; i < 50; i++) {
      const id = `2/eth1/10.0.1.${i}`;
      const { token } = await store.lookup(id);
      await Promise.all([
        store.update(id, [lease(`10.0.1.${i}`, 10000 + i)], token),
        store.flush(),
      ]);
    }
    assertEquals(store.clientsInFlight, 0);
    const held = await store.lookup("2/eth1/10.0.1.7");
    const other = await store.lookup("2/eth1/10.0.1.7");
    assertEquals(store.clientsInFlight, 1, "a token is out");
    const write = store.update("2/eth1/10.0.1.7", [lease("10.0.1.7", 10007, 1e13)], other.token);
    await store.flush();
    await write;
    const stale = await store.update("2/eth1/10.0.1.7", held.leases, held.token).catch((e) => e);
    assertInstanceOf(stale, ConcurrencyError); // the token from before the update stays stale
    assertEquals(store.clientsInFlight, 0);
  });
});

/** The client's rows as another connection reads them from the file. */
function fileRows(path: string, clientId: string): unknown[] {
  const other = new DatabaseSync(path, { readOnly: true });
  try {
    return other.prepare(
      "SELECT family, ifname, address, table_id, expires_at, tag, owner, state, uid FROM leases " +
        "WHERE client_id = ? ORDER BY table_id",
    ).all(clientId).map((r) => Object.values(r));
  } finally {
    other.close();
  }
}

/** A lease as a row of {@link fileRows}. */
function asRow(l: Lease): unknown[] {
  return [
    l.family,
    l.ifname,
    l.address,
    l.table,
    l.expiresAt,
    l.tag ?? null,
    l.owner,
    l.state,
    l.uid,
  ];
}

Deno.test("SqliteLeaseStore: a lookup after a commit gives the file's rows, however they were written", async () => {
  await withStore(async (store, path) => {
    const id = "2/eth1/10.0.0.1";
    const write = async (next: Lease[]) => {
      const { token } = await store.lookup(id);
      await Promise.all([store.update(id, next, token), store.flush()]);
      const { leases, token: again } = await store.lookup(id);
      store.releaseToken(again);
      assertEquals(leases.map(asRow), fileRows(path, id));
      return leases;
    };
    // Two tables given out of order, a tag, an expiry with a fraction; then one of them moved.
    const two = await write([
      { ...lease("10.0.0.1", 10007, Date.now() + 60_000.7), tag: "wan" },
      lease("10.0.0.1", 10003),
    ]);
    assertEquals(two.map((l) => l.table), [10003, 10007]);
    await write([{ ...two[0], table: 10009, state: "released" }]);
    await write([]);
  });
});

Deno.test("SqliteLeaseStore caches the rows of a lone update's commit, not a crowd's", async () => {
  await withStore(async (store) => {
    let table = 10000;
    const write = async (addresses: string[]) => {
      const ids = addresses.map((a) => `2/eth1/${a}`);
      const tokens = await Promise.all(ids.map(async (id) => (await store.lookup(id)).token));
      // Issued in one run of code: one commit.
      const done = ids.map((id, i) => store.update(id, [lease(addresses[i], table++)], tokens[i]));
      await Promise.all([...done, store.flush()]);
    };
    await write(["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    assertEquals(store.cachedClients, 0);
    await write(["10.0.0.4"]);
    assertEquals(store.cachedClients, 1);
  });
});

Deno.test("SqliteLeaseStore: a lookup in the transaction of an update reads that update", async () => {
  await withStore(async (store) => {
    const id = "2/eth1/10.0.0.1";
    const a = await store.lookup(id);
    await Promise.all([store.update(id, [lease("10.0.0.1", 10000)], a.token), store.flush()]);
    const b = await store.lookup(id);
    const released = store.update(
      id,
      [{ ...lease("10.0.0.1", 10000), state: "released" }],
      b.token,
    );
    // Not committed yet: the lookup reads the open transaction, not the last commit.
    const c = await store.lookup(id);
    assertEquals(c.leases.map((l) => l.state), ["released"]);
    store.releaseToken(c.token);
    await Promise.all([released, store.flush()]);
  });
});

Deno.test("SqliteLeaseStore: a lookup sees another connection's commit to a client it wrote", async () => {
  await withStore(async (store, path) => {
    const id = "2/eth1/10.0.0.1";
    const a = await store.lookup(id);
    await Promise.all([store.update(id, [lease("10.0.0.1", 10000)], a.token), store.flush()]);
    // Once the store's transaction has ended (the loop turned), an administrator's sqlite3.
    await new Promise((r) => setTimeout(r, 10));
    const other = new DatabaseSync(path);
    other.exec(`UPDATE leases SET state = 'released' WHERE client_id = '${id}'`);
    other.close();
    assertEquals(
      (await store.peek(id)).map((l) => l.state),
      ["released"],
      "peek, outside a transaction",
    );
    const { leases, token } = await store.lookup(id);
    store.releaseToken(token);
    assertEquals(leases.map((l) => l.state), ["released"]);
  });
});

Deno.test("SqliteLeaseStore: a lookup after expiry or the history sweep reads what they left", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-store-" });
  const store = SqliteLeaseStore.open(`${dir}/l.db`, { historyRetentionMs: 300 });
  try {
    const states = async (id: string) => {
      const { leases, token } = await store.lookup(id);
      store.releaseToken(token);
      return leases.map((l) => l.state);
    };
    const expiring = "2/eth1/10.0.0.2";
    const a = await store.lookup(expiring);
    await Promise.all([
      store.update(expiring, [lease("10.0.0.2", 10001, Date.now() + 200)], a.token),
      store.flush(),
    ]);
    const released = "2/eth1/10.0.0.1";
    const b = await store.lookup(released);
    await Promise.all([
      store.update(released, [{ ...lease("10.0.0.1", 10000), state: "released" }], b.token),
      store.flush(),
    ]);
    assertEquals([await states(expiring), await states(released)], [["bound"], ["released"]]);
    await new Promise((r) => setTimeout(r, 350));
    assertEquals(await states(expiring), ["expired"]);
    // The release is older than the retention now: swept out of the file.
    const deadline = Date.now() + 3000;
    while ((await store.list({ state: "released" })).leases.length > 0) {
      assert(Date.now() < deadline, "the sweep did not run");
      await new Promise((r) => setTimeout(r, 20));
    }
    assertEquals(await states(released), []);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SqliteLeaseStore sweeps history out a chunk at a time, and nothing else", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-store-" });
  let now = 1_000_000;
  const store = SqliteLeaseStore.open(`${dir}/l.db`, {
    historyRetentionMs: 1000,
    now: () => now,
  });
  try {
    const count = 3 * SWEEP_CHUNK;
    const writes = [];
    for (let i = 0; i < count; i++) {
      const address = `10.1.${i >> 8}.${i & 255}`;
      const { token } = await store.lookup(`2/eth1/${address}`);
      const l = lease(address, 10000 + i, now + 3600_000);
      writes.push(
        store.update(`2/eth1/${address}`, [i % 2 ? l : { ...l, state: "released" }], token),
      );
    }
    await store.flush();
    await Promise.all(writes);
    now += 5000; // every release is older than the retention now
    const deadline = Date.now() + 5000;
    while ((await store.list({ state: "released", limit: 1 })).leases.length > 0) {
      assert(Date.now() < deadline, "the sweep did not finish");
      await new Promise((r) => setTimeout(r, 20));
    }
    const bound = [];
    for await (const l of listAll(store)) bound.push(l.state);
    assertEquals([bound.length, new Set(bound)], [count / 2, new Set(["bound"])]);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
