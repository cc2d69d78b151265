import type postgres from "postgres";
import { assert, assertEquals, assertInstanceOf, assertMatch } from "../../tests/helpers/assert.ts";
import { ignoreWithoutPg, type PgHandle, startPostgres } from "../../tests/helpers/postgres.ts";
import { allocateLowest, lease, storeConformance } from "../../tests/helpers/store_conformance.ts";
import { ConcurrencyError, type Lease, type LeaseStore, TransientError } from "./lease_store.ts";
import { PostgresLeaseStore, SCHEMA_VERSION } from "./postgres_store.ts";
import { waitFor } from "../../tests/helpers/netns.ts";

const ignore = ignoreWithoutPg("PostgreSQL store tests");

// One throwaway server for the whole file, a fresh database per test; the
// last test of the file stops it (and the helper's unload handler, if the
// file is cut short).
let server: Promise<PgHandle> | undefined;
const pg = () => server ??= startPostgres();

storeConformance("postgres", async () => {
  const config = await (await pg()).createDatabase();
  return {
    open: () => PostgresLeaseStore.open(config),
    reopen: () => PostgresLeaseStore.open(config),
    cleanup: () => Promise.resolve(),
  };
}, ignore);

/** Runs `fn` with a fresh database, its stores closed and raw connections ended afterwards. */
function pgTest(
  name: string,
  fn: (
    ctx: {
      pg: PgHandle;
      config: Awaited<ReturnType<PgHandle["createDatabase"]>>;
      open: (
        options?: Parameters<typeof PostgresLeaseStore.open>[1],
      ) => Promise<PostgresLeaseStore>;
      sql: () => postgres.Sql;
    },
  ) => Promise<void>,
): void {
  Deno.test({
    name: `PostgresLeaseStore ${name}`,
    ignore,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const handle = await pg();
      const config = await handle.createDatabase();
      const stores: LeaseStore[] = [];
      const pools: postgres.Sql[] = [];
      try {
        await fn({
          pg: handle,
          config,
          open: async (options) => {
            const store = await PostgresLeaseStore.open(config, options);
            stores.push(store);
            return store;
          },
          sql: () => {
            const sql = handle.connect(config.database);
            pools.push(sql);
            return sql;
          },
        });
      } finally {
        for (const store of stores) await store.close().catch(() => {});
        for (const sql of pools) await sql.end({ timeout: 1 }).catch(() => {});
      }
    },
  });
}

const id = (address: string) => `2/eth1/${address}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function put(store: LeaseStore, clientId: string, leases: Lease[]): Promise<void> {
  const { token } = await store.lookup(clientId);
  await store.update(clientId, leases, token);
}

pgTest(
  "creates its schema once when several servers open a new database at once",
  async ({ open, sql }) => {
    const stores = await Promise.all(Array.from({ length: 4 }, () => open()));
    await put(stores[0], id("10.0.0.1"), [lease("10.0.0.1", 10000)]);
    assertEquals((await stores[3].peek(id("10.0.0.1"))).map((l) => l.table), [10000]);
    const db = sql();
    assertEquals(await db`SELECT schema_version FROM table_allocator_meta`, [{
      schema_version: SCHEMA_VERSION,
    }]);
    const indexes =
      await db`SELECT indexname FROM pg_indexes WHERE tablename = 'leases' ORDER BY 1`;
    assertEquals(indexes.map((r) => r.indexname), [
      "leases_bound_table",
      "leases_expiry",
      "leases_history",
      "leases_pkey",
      "leases_reserved_table",
      "leases_uid",
    ]);
  },
);

pgTest(
  "open() refuses a database whose schema is newer, naming both versions",
  async ({ config, open, sql }) => {
    await (await open()).close();
    await sql()`UPDATE table_allocator_meta SET schema_version = 99`;
    const error = await PostgresLeaseStore.open(config).catch((e) => e);
    assertInstanceOf(error, Error);
    assertMatch(
      error.message,
      new RegExp(
        `^Cannot open PostgreSQL at .*:5432 database "${config.database}": its schema version 99 is newer than this server's \\(${SCHEMA_VERSION}\\)`,
      ),
    );
  },
);

pgTest("open() names the server and database it cannot reach", async ({ config }) => {
  const error = await PostgresLeaseStore.open({ ...config, host: "/nonexistent/socket-dir" })
    .catch((e) => e);
  assertInstanceOf(error, Error);
  assertMatch(
    error.message,
    new RegExp(
      `^Cannot open PostgreSQL at /nonexistent/socket-dir:5432 database "${config.database}": `,
    ),
  );
});

pgTest("open() takes the connection from a libpq-style URL", async ({ pg, config }) => {
  const url = `postgres://${pg.user}@/${config.database}?host=${encodeURIComponent(pg.socketDir)}`;
  const store = await PostgresLeaseStore.open({
    ...config,
    url,
    host: undefined,
    database: undefined,
  });
  try {
    await put(store, id("10.0.0.1"), [lease("10.0.0.1", 10000)]);
  } finally {
    await store.close();
  }
  const bad = await PostgresLeaseStore.open({ ...config, url: `${url}&fallback=1` }).catch((e) =>
    e
  );
  assertInstanceOf(bad, TypeError);
  assertMatch(bad.message, /"url" parameter "fallback" is not supported/);
});

pgTest("commits every update issued together in one transaction", async ({ open, sql }) => {
  const store = await open();
  // Records the top-level transaction of every lease row written (each
  // update's savepoint has its own xmin, so xmin cannot tell).
  const db = sql();
  await db.unsafe(`
    CREATE TABLE inserted_by (tx bigint);
    CREATE FUNCTION record_tx() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO inserted_by VALUES (txid_current()); RETURN NEW; END $$;
    CREATE TRIGGER record_tx AFTER INSERT ON leases FOR EACH ROW EXECUTE FUNCTION record_tx();`);
  const lookups = await Promise.all(
    Array.from({ length: 20 }, (_, i) => store.lookup(id(`10.0.0.${i}`))),
  );
  const updates = lookups.map(({ token }, i) =>
    store.update(id(`10.0.0.${i}`), [lease(`10.0.0.${i}`, 10000 + i)], token)
  );
  await store.flush();
  await Promise.all(updates);
  const [{ transactions, rows }] = await db`
    SELECT count(DISTINCT tx)::int AS transactions, count(*)::int AS rows FROM inserted_by`;
  assertEquals({ transactions, rows }, { transactions: 1, rows: 20 });
});

pgTest(
  "flush() asks where to wait for a batch it commits, and not for an empty one",
  async ({ open }) => {
    const store = await open();
    let asked = 0;
    const background = () => (asked++, true);
    await store.flush({ background });
    assertEquals(asked, 0, "nothing queued, nothing to wait for");
    const { token } = await store.lookup(id("10.0.0.1"));
    const update = store.update(id("10.0.0.1"), [lease("10.0.0.1", 10000)], token);
    await store.flush({ background });
    await update;
    assertEquals(asked, 1, "the daemon decides there whether to drain its socket meanwhile");
  },
);

pgTest(
  "one stale token or taken table in a batch fails alone; the others commit",
  async ({ open }) => {
    const store = await open();
    await put(store, id("10.0.0.9"), [lease("10.0.0.9", 10009)]);
    const stale = await store.lookup(id("10.0.0.1"));
    await put(store, id("10.0.0.1"), [lease("10.0.0.1", 10001)]);
    const [a, b, c] = await Promise.all([
      store.lookup(id("10.0.0.2")),
      store.lookup(id("10.0.0.3")),
      store.lookup(id("10.0.0.4")),
    ]);
    const results = await Promise.allSettled([
      store.update(id("10.0.0.2"), [lease("10.0.0.2", 10002)], a.token),
      store.update(id("10.0.0.1"), [lease("10.0.0.1", 10005)], stale.token),
      store.update(id("10.0.0.3"), [lease("10.0.0.3", 10009)], b.token),
      store.update(id("10.0.0.4"), [lease("10.0.0.4", 10004)], c.token),
      store.flush(),
    ]);
    assertEquals(results.map((r) => r.status), [
      "fulfilled",
      "rejected",
      "rejected",
      "fulfilled",
      "fulfilled",
    ]);
    assertInstanceOf((results[1] as PromiseRejectedResult).reason, ConcurrencyError);
    const taken = (results[2] as PromiseRejectedResult).reason;
    assertInstanceOf(taken, ConcurrencyError);
    assertMatch(taken.message, /leased to another client/);
    assertEquals((await store.usedTables()).map(([, t]) => t).toSorted(), [
      10001,
      10002,
      10004,
      10009,
    ]);
  },
);

pgTest("a token made stale by another server is refused", async ({ open }) => {
  const [a, b] = [await open(), await open()];
  const first = await a.lookup(id("10.0.0.1"));
  await put(b, id("10.0.0.1"), [lease("10.0.0.1", 10001)]);
  const error = await a.update(id("10.0.0.1"), [lease("10.0.0.1", 10002)], first.token).catch(
    (e) => e,
  );
  assertInstanceOf(error, ConcurrencyError);
  assertEquals((await a.peek(id("10.0.0.1"))).map((l) => l.table), [10001]);
});

pgTest(
  "two servers racing read-modify-write on one client never lose an update",
  async ({ open }) => {
    const stores = [await open(), await open()];
    const client = id("10.0.0.1");
    const base = Date.now() + 3600_000;
    await put(stores[0], client, [lease("10.0.0.1", 10000, base)]);
    let conflicts = 0;
    const increment = async (store: LeaseStore) => {
      for (;;) {
        const { leases, token } = await store.lookup(client);
        await sleep(Math.random() * 3);
        try {
          await store.update(client, [{ ...leases[0], expiresAt: leases[0].expiresAt + 1 }], token);
          return;
        } catch (error) {
          if (!(error instanceof ConcurrencyError)) throw error;
          conflicts++;
        }
      }
    };
    await Promise.all(Array.from({ length: 60 }, (_, i) => increment(stores[i % 2])));
    assertEquals((await stores[1].peek(client))[0].expiresAt, base + 60);
    assert(conflicts > 0, "the two servers did race");
  },
);

pgTest(
  "two servers allocating at once never hand one table to two clients",
  async ({ open, sql }) => {
    const stores = [await open(), await open()];
    const allocate = (n: number) => allocateLowest(stores[n % 2], `10.0.1.${n}`);
    const tables = await Promise.all(Array.from({ length: 60 }, (_, n) => allocate(n)));
    assertEquals(new Set(tables).size, 60);
    const rows = await sql()`
    SELECT client_id, table_id::int AS table FROM leases WHERE state = 'bound' ORDER BY client_id`;
    assertEquals(rows.length, 60);
    for (const row of rows) assertEquals(row.table, tables[Number(row.client_id.split(".")[3])]);
  },
);

pgTest(
  "an update waiting on another server's uncommitted table gives up after the lock timeout, alone",
  async ({ open, sql }) => {
    const store = await open();
    const db = sql();
    const other = await db.reserve();
    try {
      // Another server's transaction holds table 10000 without committing.
      await other`BEGIN`;
      await other`INSERT INTO leases VALUES ('2/eth1/10.9.9.9', 2, 'eth1', '10.9.9.9', 10000,
      ${Date.now() + 3600_000}, NULL, 'other', 'bound', 0)`;
      const [a, b] = await Promise.all([
        store.lookup(id("10.0.0.1")),
        store.lookup(id("10.0.0.2")),
      ]);
      const started = performance.now();
      const results = await Promise.allSettled([
        store.update(id("10.0.0.1"), [lease("10.0.0.1", 10000)], a.token),
        store.update(id("10.0.0.2"), [lease("10.0.0.2", 10001)], b.token),
      ]);
      const waited = performance.now() - started;
      assertEquals(results.map((r) => r.status), ["rejected", "fulfilled"]);
      const busy = (results[0] as PromiseRejectedResult).reason;
      assertInstanceOf(busy, ConcurrencyError);
      assertMatch(busy.message, /being changed by another server/);
      assert(waited >= 90 && waited < 2000, `waited ${waited} ms for the lock timeout`);
    } finally {
      await other`ROLLBACK`.catch(() => {});
      other.release();
    }
    assertEquals(await store.usedTables(), [[2, 10001]]);
  },
);

pgTest("an expiry is announced exactly once across two servers", async ({ open }) => {
  const stores = [await open({ sweepIntervalMs: 50 }), await open({ sweepIntervalMs: 50 })];
  const seen: Array<[number, string]> = [];
  stores.forEach((store, i) => store.onExpire((l) => seen.push([i, l.address])));
  const soon = Date.now() + 300;
  const addresses = Array.from({ length: 40 }, (_, i) => `10.0.2.${i}`);
  await Promise.all(
    addresses.map((address, i) =>
      put(stores[i % 2], id(address), [lease(address, 10000 + i, soon + (i % 4) * 10)])
    ),
  );
  await sleep(1000);
  assertEquals(seen.map(([, a]) => a).toSorted(), addresses.toSorted());
  assertEquals(await stores[0].usedTables(), []);
  // Each lease was reclaimed by one store's sweep; both stores swept.
  assertEquals((await stores[1].list({ state: "expired" })).leases.length, 40);
});

pgTest(
  "a lease another server wrote and left behind expires through this server's periodic sweep",
  async ({ open }) => {
    // The survivor's first sweep runs on an empty database: no timer is
    // armed, only the periodic sweep can find what the other server writes.
    const survivor = await open({ sweepIntervalMs: 150 });
    const seen: string[] = [];
    survivor.onExpire((l) => seen.push(l.address));
    await sleep(50);
    const gone = await open({ sweepIntervalMs: 60_000 });
    await put(gone, id("10.0.3.1"), [lease("10.0.3.1", 10001, Date.now() + 100)]);
    await gone.close();
    await sleep(500);
    assertEquals(seen, ["10.0.3.1"]);
    assertEquals((await survivor.peek(id("10.0.3.1"))).map((l) => l.state), ["expired"]);
  },
);

pgTest(
  "the sweep forgets released and expired leases after the history retention",
  async ({ open, sql }) => {
    const store = await open({ historyRetentionMs: 200, sweepIntervalMs: 100 });
    await put(store, id("10.0.0.1"), [{ ...lease("10.0.0.1", 10000), state: "released" }]);
    await put(store, id("10.0.0.2"), [lease("10.0.0.2", 10001, Date.now() + 500)]);
    assertEquals((await store.list({ state: "released" })).leases.length, 1);
    await sleep(650);
    assertEquals((await store.list()).leases.map((l) => [l.address, l.state]), [[
      "10.0.0.2",
      "expired",
    ]]);
    // The released client's version row went with its last lease.
    assertEquals(
      (await sql()`SELECT client_id FROM lease_clients ORDER BY 1`).map((r) => r.client_id),
      [id("10.0.0.2")],
    );
  },
);

pgTest("close() commits the updates issued before it and refuses later work", async ({ open }) => {
  const store = await open();
  const { token } = await store.lookup(id("10.0.0.1"));
  const late = await store.lookup(id("10.0.0.2"));
  const update = store.update(id("10.0.0.1"), [lease("10.0.0.1", 10000)], token);
  const closing = store.close();
  await update;
  await closing;
  await store.close();
  const refused = await store.update(id("10.0.0.2"), [], late.token).catch((e) => e);
  assertInstanceOf(refused, TransientError);
  assertInstanceOf(await store.lookup(id("10.0.0.1")).catch((e) => e), TransientError);
  const again = await open();
  assertEquals((await again.peek(id("10.0.0.1"))).map((l) => l.table), [10000]);
});

pgTest(
  "an update with a NUL character fails alone, before reaching the database",
  async ({ open }) => {
    const store = await open();
    const [a, b] = await Promise.all([store.lookup(id("10.0.0.1")), store.lookup(id("10.0.0.2"))]);
    const results = await Promise.allSettled([
      store.update(id("10.0.0.1"), [{ ...lease("10.0.0.1", 10000), tag: "a\0b" }], a.token),
      store.update(id("10.0.0.2"), [lease("10.0.0.2", 10001)], b.token),
    ]);
    assertEquals(results.map((r) => r.status), ["rejected", "fulfilled"]);
    assertInstanceOf((results[0] as PromiseRejectedResult).reason, TypeError);
    assertEquals(await store.usedTables(), [[2, 10001]]);
  },
);

pgTest(
  "an update whose text the database refuses fails alone; the rest of its batch commits once",
  async ({ open }) => {
    const store = await open();
    const ids = ["10.0.0.1", "10.0.0.2", "10.0.0.3"].map(id);
    const tokens = await Promise.all(ids.map((i) => store.lookup(i)));
    // A lone surrogate, past the server's input checks: jsonb cannot hold it.
    const results = await Promise.allSettled([
      store.update(ids[0], [lease("10.0.0.1", 10000)], tokens[0].token),
      store.update(ids[1], [{ ...lease("10.0.0.2", 10001), address: "x\ud800" }], tokens[1].token),
      store.update(ids[2], [lease("10.0.0.3", 10002)], tokens[2].token),
    ]);
    assertEquals(results.map((r) => r.status), ["fulfilled", "rejected", "fulfilled"]);
    assertMatch(
      String((results[1] as PromiseRejectedResult).reason),
      /cannot update 2\/eth1\/10\.0\.0\.2 in PostgreSQL .*: invalid input syntax for type json/,
    );
    assertEquals((await store.usedTables()).map(([, t]) => t).toSorted(), [10000, 10002]);
  },
);

pgTest(
  "open() upgrades a version 1 schema: existing leases become root's (uid 0)",
  async ({ open, sql }) => {
    const first = await open();
    await put(first, id("10.0.0.1"), [lease("10.0.0.1", 10000)]);
    await first.close();
    const db = sql();
    await db.unsafe(`DROP INDEX leases_uid; ALTER TABLE leases DROP COLUMN uid;
      UPDATE table_allocator_meta SET schema_version = 1`);
    const store = await open();
    assertEquals((await store.peek(id("10.0.0.1"))).map((l) => [l.table, l.uid]), [[10000, 0]]);
    assertEquals(await db`SELECT schema_version FROM table_allocator_meta`, [{
      schema_version: SCHEMA_VERSION,
    }]);
    await put(store, id("10.0.0.2"), [{ ...lease("10.0.0.2", 10001), uid: 65534 }]);
    assertEquals(await store.boundCount(65534), 1);
  },
);

pgTest(
  "a stopped database server gives TransientErrors, and the store works again once it is back",
  async ({ pg, open }) => {
    const store = await open();
    await put(store, id("10.0.0.1"), [lease("10.0.0.1", 10000)]);
    const { token } = await store.lookup(id("10.0.0.2"));
    await pg.stop();
    try {
      const update = await store.update(id("10.0.0.2"), [lease("10.0.0.2", 10001)], token).catch((
        e,
      ) => e);
      assertInstanceOf(update, TransientError);
      assertMatch(update.message, /in PostgreSQL at .* database "test_\d+": /);
      assertInstanceOf(await store.lookup(id("10.0.0.1")).catch((e) => e), TransientError);
      assertInstanceOf(await store.usedTables().catch((e) => e), TransientError);
    } finally {
      await pg.start();
    }
    // The driver reconnects with a back-off: retry like a server would.
    for (let attempt = 0;; attempt++) {
      try {
        // The token survived the TransientError.
        await store.update(id("10.0.0.2"), [lease("10.0.0.2", 10001)], token);
        break;
      } catch (error) {
        if (!(error instanceof TransientError) || attempt > 50) throw error;
        await sleep(100);
      }
    }
    assertEquals((await store.usedTables()).map(([, t]) => t).toSorted(), [10000, 10001]);
  },
);

pgTest(
  "a database server that stops answering gives a TransientError after the query timeout, and the retry is safe",
  async ({ pg, open }) => {
    const store = await open({ queryTimeoutMs: 300 });
    await put(store, id("10.0.0.1"), [lease("10.0.0.1", 10000)]);
    const { token } = await store.lookup(id("10.0.0.2"));
    await pg.pause();
    try {
      const started = performance.now();
      const update = await store.update(id("10.0.0.2"), [lease("10.0.0.2", 10001)], token)
        .catch((e) => e);
      const waited = performance.now() - started;
      assertInstanceOf(update, TransientError);
      assertMatch(update.message, /no answer within 300 ms/);
      assert(waited < 2000, `gave up after ${waited} ms`);
      assertInstanceOf(await store.peek(id("10.0.0.1")).catch((e) => e), TransientError);
    } finally {
      await pg.resume();
    }
    // Until its probe reaches the database again, the store fails at once
    // instead of making every caller wait for the database.
    assertMatch(
      String(await store.peek(id("10.0.0.1")).catch((e) => e)),
      /is unreachable since .*\(no answer within 300 ms\); looking for it every 250 ms/,
    );
    await waitFor(
      "the store reaches the database again",
      () => store.peek(id("10.0.0.1")).then(() => true, () => false),
    );
    // The update that timed out was sent, and commits once the server
    // thaws, or its retry does: never both, thanks to the version check.
    const retry = await store.update(id("10.0.0.2"), [lease("10.0.0.2", 10001)], token)
      .then(() => "committed", (e) => e);
    assert(retry === "committed" || retry instanceof ConcurrencyError, String(retry));
    assertEquals((await store.peek(id("10.0.0.2"))).map((l) => l.table), [10001]);
    assertEquals((await store.usedTables()).map(([, t]) => t).toSorted(), [10000, 10001]);
  },
);

Deno.test({
  name: "PostgreSQL test server stops and its directory is removed",
  ignore,
  async fn() {
    if (!server) return;
    const handle = await server;
    server = undefined;
    await handle[Symbol.asyncDispose]();
    assertInstanceOf(await Deno.stat(handle.dir).catch((e) => e), Deno.errors.NotFound);
  },
});
