/**
 * The embedded {@link LeaseStore}: one SQLite file through `node:sqlite`
 * (SQLite is compiled into Deno: no native library to ship).
 *
 * - WAL journal, `synchronous=FULL`: a commit is durable when it returns.
 * - Group commit: updates run at once inside an open transaction; one
 *   COMMIT (one fsync) makes every update issued since durable, and only
 *   then do their promises resolve.
 * - A commit that only removes leases (releases, expiry) is not fsynced:
 *   the next fsynced commit makes it durable with itself, because the WAL
 *   is written in order. A crash in between brings the removed leases
 *   back, to expire as usual; a table can never be leased twice, since
 *   the commit that gives it to someone else is fsynced. Releases are
 *   best-effort in the protocol anyway (the client exits after 1 s).
 * - One writer: the process holds an exclusive lock on `<db>-lock` for as
 *   long as the store is open. A second server gets a clear error at start
 *   instead of silently diverging, and tokens can be checked against
 *   per-client versions held in memory. Other processes may still read
 *   the file (WAL readers never block the writer).
 * - Expiry is the store's: a timer on the earliest `expires_at` deletes
 *   leases the moment they expire and tells the expiry listeners.
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { dirname } from "node:path";
import type { AddrFamily } from "../net/family.ts";
import {
  ConcurrencyError,
  type ExpiryListener,
  holdsTable,
  type Lease,
  type LeasePage,
  type LeaseStore,
  type LeaseToken,
  type ListOptions,
  type LookupResult,
  TransientError,
} from "./lease_store.ts";

/** The schema this code reads and writes (`PRAGMA user_version`). */
export const SCHEMA_VERSION = 3;

/**
 * Version 2: lease states. Uniqueness of a table holds per state class
 * (one `bound` and one `reserved` lease per family and table), history
 * (`released`, `expired`) is kept until the retention passes.
 */
const INDEXES_V2 = `
CREATE UNIQUE INDEX leases_bound_table ON leases (family, table_id) WHERE state = 'bound';
CREATE UNIQUE INDEX leases_reserved_table ON leases (family, table_id) WHERE state = 'reserved';
CREATE INDEX leases_expiry ON leases (expires_at) WHERE state = 'bound';
CREATE INDEX leases_history ON leases (updated_at) WHERE state IN ('released', 'expired');
`;

/**
 * Version 3: reservations are listed at every start; this index keeps that
 * from scanning every lease (bound leases are not in it, so writes of the
 * hot path do not touch it).
 */
const INDEXES_V3 = `
CREATE INDEX leases_reservations ON leases (client_id, table_id) WHERE state = 'reserved';
`;

const SCHEMA = `
CREATE TABLE leases (
  client_id  TEXT    NOT NULL,
  family     INTEGER NOT NULL,
  ifname     TEXT    NOT NULL,
  address    TEXT    NOT NULL,
  table_id   INTEGER NOT NULL,
  expires_at INTEGER NOT NULL, -- wall clock, ms since the epoch (0: reserved)
  tag        TEXT,
  owner      TEXT    NOT NULL,
  state      TEXT    NOT NULL DEFAULT 'bound', -- bound, released, expired, reserved
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (client_id, table_id)
) WITHOUT ROWID;
${INDEXES_V2}
${INDEXES_V3}
PRAGMA user_version = ${SCHEMA_VERSION};
`;

/** Upgrades of older schemas, by the version they start from. */
const MIGRATIONS: Record<number, string> = {
  // v1 had one unique index over every lease, and every lease was bound.
  1: `
DROP INDEX leases_family_table;
DROP INDEX leases_expires_at;
${INDEXES_V2}
PRAGMA user_version = 2;
`,
  2: `
${INDEXES_V3}
PRAGMA user_version = 3;
`,
};

/** How long released and expired leases are kept as history, by default. */
export const DEFAULT_HISTORY_RETENTION_MS = 7 * 24 * 3600_000;

/** Options of {@link SqliteLeaseStore.open}. */
export interface SqliteStoreOptions {
  /** Wall clock in ms (tests may pass their own). */
  now?: () => number;
  /** How long `released` and `expired` leases are kept (default 7 days). */
  historyRetentionMs?: number;
}

interface Token {
  readonly clientId: string;
  readonly version: number;
  readonly store: SqliteLeaseStore;
  used: boolean;
}

interface Pending {
  resolve: () => void;
  reject: (error: Error) => void;
  /** Undo of the in-memory version bump, when the commit fails. */
  clientId: string;
  previousVersion: number;
  /** Leases reclaimed by expiry, announced after the commit. */
  expired?: Lease[];
}

type Row = [string, number, string, string, number, number, string | null, string, string];

const LEASE_COLUMNS = "client_id, family, ifname, address, table_id, expires_at, tag, owner, state";
const MAX_TIMER_MS = 2 ** 30; // setTimeout's limit is 2^31-1; re-arm past that

function toLease(row: Row): Lease {
  return {
    family: row[1] as AddrFamily,
    ifname: row[2],
    address: row[3],
    table: row[4],
    expiresAt: row[5],
    tag: row[6] ?? undefined,
    owner: row[7],
    state: row[8] as Lease["state"],
  };
}

/**
 * Maps a SQLite failure to the API's errors: a constraint failure is a
 * plain Error (bad data); anything else (locked, disk full, I/O error,
 * read-only file) is a TransientError, because nothing was written.
 */
function wrap(action: string, error: unknown): Error {
  const message = error instanceof Error ? error.message : String(error);
  if (/constraint failed/i.test(message)) {
    return new Error(`${action}: ${message}`, { cause: error });
  }
  return new TransientError(`${action}: ${message}`, { cause: error });
}

/** A {@link LeaseStore} in one SQLite file, owned by one process. */
export class SqliteLeaseStore implements LeaseStore {
  #db: DatabaseSync;
  #now: () => number;
  #historyRetentionMs: number;
  #versions = new Map<string, number>();
  #pending: Pending[] = [];
  #inTransaction = false;
  #transactionDurable = false;
  /** The connection's current `synchronous` setting: FULL (true) or NORMAL. */
  #syncDurable = true;
  /** Updates committed but not yet settled: they resolve at the next flush. */
  #committed: Pending[] = [];
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  #expiryTimer: ReturnType<typeof setTimeout> | undefined;
  #expiryAt = Infinity;
  #listeners = new Set<ExpiryListener>();
  #closed = false;
  #select: StatementSync;
  #delete: StatementSync;
  #insert: StatementSync;
  #nextExpiry: StatementSync;
  #expireDue: StatementSync;
  #pruneHistory: StatementSync;
  #page: StatementSync;
  #pageReserved: StatementSync;
  #used: StatementSync;
  // Transaction control, prepared once: db.exec() would compile it every time.
  #beginStatement: StatementSync;
  #commitStatement: StatementSync;
  #savepoint: StatementSync;
  #releaseSavepoint: StatementSync;
  #rollbackToSavepoint: StatementSync;
  #syncNormal: StatementSync;
  #syncFull: StatementSync;
  #lock: Deno.FsFile | undefined;
  /** The database file. */
  readonly path: string;

  private constructor(
    db: DatabaseSync,
    path: string,
    lock: Deno.FsFile | undefined,
    options: SqliteStoreOptions,
  ) {
    this.#db = db;
    this.#lock = lock;
    this.path = path;
    this.#now = options.now ?? Date.now;
    this.#historyRetentionMs = options.historyRetentionMs ?? DEFAULT_HISTORY_RETENTION_MS;
    // Rows as arrays: building an object per row costs several times more.
    const prepare = (sql: string): StatementSync => {
      // setReturnArrays exists in Deno's node:sqlite but not yet in its types.
      const statement = db.prepare(sql) as StatementSync & { setReturnArrays(on: boolean): void };
      statement.setReturnArrays(true);
      return statement;
    };
    this.#select = prepare(
      `SELECT ${LEASE_COLUMNS} FROM leases WHERE client_id = ? ORDER BY table_id`,
    );
    this.#delete = prepare("DELETE FROM leases WHERE client_id = ?");
    this.#insert = prepare(
      `INSERT INTO leases (${LEASE_COLUMNS}, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#nextExpiry = prepare("SELECT MIN(expires_at) FROM leases WHERE state = 'bound'");
    this.#expireDue = prepare(
      `UPDATE leases SET state = 'expired', updated_at = ?1
       WHERE state = 'bound' AND expires_at <= ?1 RETURNING ${LEASE_COLUMNS}`,
    );
    this.#pruneHistory = prepare(
      "DELETE FROM leases WHERE state IN ('released', 'expired') AND updated_at < ?",
    );
    // One statement for every filter: a NULL parameter switches its filter off.
    const filters = `(client_id, table_id) > ($afterClient, $afterTable)
         AND ($family IS NULL OR family = $family)
         AND ($ifname IS NULL OR ifname = $ifname)
         AND ($table IS NULL OR table_id = $table)
         AND ($owner IS NULL OR owner = $owner)`;
    this.#page = prepare(
      `SELECT ${LEASE_COLUMNS} FROM leases
       WHERE ${filters} AND ($states IS NULL OR instr($states, ',' || state || ',') > 0)
       ORDER BY client_id, table_id LIMIT $limit`,
    );
    // The same for reservations only, on their own small index.
    this.#pageReserved = prepare(
      `SELECT ${LEASE_COLUMNS} FROM leases WHERE state = 'reserved' AND ${filters}
       ORDER BY client_id, table_id LIMIT $limit`,
    );
    // Two index-only scans instead of one scan of the whole table.
    this.#used = prepare(
      `SELECT family, table_id FROM leases WHERE state = 'bound'
       UNION ALL SELECT family, table_id FROM leases WHERE state = 'reserved'`,
    );
    this.#beginStatement = db.prepare("BEGIN IMMEDIATE");
    this.#commitStatement = db.prepare("COMMIT");
    this.#savepoint = db.prepare("SAVEPOINT lease_update");
    this.#releaseSavepoint = db.prepare("RELEASE lease_update");
    this.#rollbackToSavepoint = db.prepare("ROLLBACK TO lease_update");
    this.#syncNormal = db.prepare("PRAGMA synchronous = NORMAL");
    this.#syncFull = db.prepare("PRAGMA synchronous = FULL");
    // Leases that expired while the server was down are reclaimed as soon
    // as the caller has had the chance to register its listeners.
    this.#armExpiry(0);
  }

  /**
   * Opens (creating if needed) the database and its directory, takes the
   * exclusive lock and checks the schema. Throws an Error naming the file
   * and the reason: locked by another process, unwritable, newer schema.
   */
  static open(path: string, options: SqliteStoreOptions = {}): SqliteLeaseStore {
    let db: DatabaseSync | undefined;
    let lock: Deno.FsFile | undefined;
    try {
      if (path !== ":memory:") {
        Deno.mkdirSync(dirname(path), { recursive: true });
        lock = Deno.openSync(`${path}-lock`, { create: true, write: true });
        if (!lock.tryLockSync(true)) {
          throw new Error(
            `it is locked by another process (${path}-lock): is another server using it?`,
          );
        }
      }
      db = new DatabaseSync(path);
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA synchronous = FULL");
      // Waiting for a lock would block the event loop: fail at once with a
      // TransientError instead (only outside writers can hold the lock).
      db.exec("PRAGMA busy_timeout = 0");
      db.exec("BEGIN IMMEDIATE");
      const version =
        (db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version;
      if (version === 0) db.exec(SCHEMA);
      else if (version < SCHEMA_VERSION) {
        for (let v = version; v < SCHEMA_VERSION; v++) db.exec(MIGRATIONS[v]);
      } else if (version > SCHEMA_VERSION) {
        throw new Error(
          `its schema version ${version} is newer than this server's (${SCHEMA_VERSION})`,
        );
      }
      db.exec("COMMIT");
      return new SqliteLeaseStore(db, path, lock, options);
    } catch (error) {
      try {
        db?.close();
      } catch { /* closing after a failed open has nothing left to report */ }
      lock?.close();
      const reason = error instanceof Error ? error.message : String(error);
      throw new Error(`Cannot open database "${path}": ${reason}`, { cause: error });
    }
  }

  lookup(clientId: string): Promise<LookupResult> {
    try {
      const leases = this.#read(clientId);
      const token: Token = {
        clientId,
        version: this.#versions.get(clientId) ?? 0,
        store: this,
        used: false,
      };
      return Promise.resolve({ leases, token: token as unknown as LeaseToken });
    } catch (error) {
      return Promise.reject(wrap(`cannot look up ${clientId}`, error));
    }
  }

  peek(clientId: string): Promise<Lease[]> {
    try {
      return Promise.resolve(this.#read(clientId));
    } catch (error) {
      return Promise.reject(wrap(`cannot look up ${clientId}`, error));
    }
  }

  update(clientId: string, leases: Lease[], leaseToken: LeaseToken): Promise<void> {
    const token = leaseToken as unknown as Token;
    if (this.#closed) return Promise.reject(new TransientError("the lease store is closed"));
    if (token.store !== this || token.clientId !== clientId) {
      return Promise.reject(
        new TypeError(`the token was not issued by this store for ${clientId}`),
      );
    }
    const previousVersion = this.#versions.get(clientId) ?? 0;
    if (token.used || token.version !== previousVersion) {
      token.used = true;
      return Promise.reject(new ConcurrencyError(clientId));
    }
    try {
      // Only a lease that holds a table must be fsynced before the reply.
      this.#begin(leases.some((l) => holdsTable(l.state)));
    } catch (error) {
      return Promise.reject(wrap("cannot start a transaction", error));
    }
    try {
      this.#savepoint.run();
      try {
        this.#delete.run(clientId);
        const now = this.#now();
        for (const l of leases) {
          this.#insert.run(
            clientId,
            l.family,
            l.ifname,
            l.address,
            l.table,
            Math.round(l.expiresAt),
            l.tag ?? null,
            l.owner,
            l.state,
            now,
          );
        }
        this.#releaseSavepoint.run();
      } catch (error) {
        this.#rollbackToSavepoint.run();
        this.#releaseSavepoint.run();
        throw error;
      }
    } catch (error) {
      token.used = true;
      const message = error instanceof Error ? error.message : String(error);
      if (/UNIQUE constraint failed/.test(message)) {
        return Promise.reject(
          new ConcurrencyError(
            clientId,
            `a table of ${clientId} is leased to another client`,
            "taken",
          ),
        );
      }
      return Promise.reject(wrap(`cannot update ${clientId}`, error));
    }
    token.used = true;
    this.#versions.set(clientId, previousVersion + 1);
    return new Promise((resolve, reject) => {
      this.#pending.push({
        resolve,
        reject,
        clientId,
        previousVersion,
      });
      this.#flushTimer ??= setTimeout(() => this.flush().catch(() => {}), 0);
    });
  }

  releaseToken(leaseToken: LeaseToken): void {
    (leaseToken as unknown as Token).used = true;
  }

  flush(): Promise<void> {
    if (this.#flushTimer !== undefined) clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    const failure = this.#inTransaction ? this.#commit() : undefined;
    // Removals committed earlier (see #begin) settle now, after their durable successors.
    const committed = this.#committed;
    this.#committed = [];
    for (const p of committed) {
      if (p.expired) { for (const lease of p.expired) this.#announce(lease); }
      p.resolve();
    }
    this.#armExpiry(failure ? 1000 : undefined);
    return failure ? Promise.reject(failure) : Promise.resolve();
  }

  /**
   * Commits the open transaction. Its updates move to the committed list;
   * on failure they are rejected and their version bumps undone (a
   * TransientError leaves the token valid). Returns the failure.
   */
  #commit(): Error | undefined {
    const pending = this.#pending;
    this.#pending = [];
    this.#inTransaction = false;
    try {
      this.#commitStatement.run();
    } catch (error) {
      try {
        this.#db.exec("ROLLBACK");
      } catch { /* the transaction may already be gone; the versions below are what matters */ }
      for (let i = pending.length - 1; i >= 0; i--) {
        this.#versions.set(pending[i].clientId, pending[i].previousVersion);
      }
      const failure = wrap("cannot commit", error);
      for (const p of pending) p.reject(failure);
      return failure;
    }
    this.#committed.push(...pending);
    return undefined;
  }

  list(options: ListOptions = {}): Promise<LeasePage> {
    const limit = options.limit ?? 1000;
    if (!Number.isInteger(limit) || limit < 1) {
      return Promise.reject(new RangeError(`limit must be a positive integer, got ${limit}`));
    }
    try {
      const [clientId, table] = options.after === undefined
        ? ["", -1]
        : JSON.parse(options.after) as [string, number];
      const states = options.state === undefined
        ? null
        : `,${(typeof options.state === "string" ? [options.state] : options.state).join(",")},`;
      const filters = {
        afterClient: clientId,
        afterTable: table,
        family: options.family ?? null,
        ifname: options.ifname ?? null,
        table: options.table ?? null,
        owner: options.owner ?? null,
        limit,
      };
      const rows = (states === ",reserved,"
        ? this.#pageReserved.all(filters)
        : this.#page.all({ ...filters, states })) as unknown as Row[];
      const last = rows.at(-1);
      return Promise.resolve({
        leases: rows.map(toLease),
        next: rows.length === limit && last ? JSON.stringify([last[0], last[4]]) : undefined,
      });
    } catch (error) {
      return Promise.reject(wrap("cannot list leases", error));
    }
  }

  usedTables(): Promise<Array<[AddrFamily, number]>> {
    try {
      return Promise.resolve(this.#used.all() as unknown as Array<[AddrFamily, number]>);
    } catch (error) {
      return Promise.reject(wrap("cannot read leased tables", error));
    }
  }

  onExpire(listener: ExpiryListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.flush();
    } finally {
      this.#closed = true;
      clearTimeout(this.#expiryTimer);
      clearTimeout(this.#flushTimer);
      this.#db.close();
      this.#lock?.close();
    }
  }

  #read(clientId: string): Lease[] {
    return (this.#select.all(clientId) as unknown as Row[]).map(toLease);
  }

  /**
   * Makes sure a transaction is open that is fsynced at commit when
   * `durable`. SQLite fixes the safety level when a transaction starts, so
   * a write arriving in a transaction of removals commits those first
   * (cheaply, without fsync) and opens a durable one.
   */
  #begin(durable: boolean): void {
    if (this.#inTransaction) {
      if (!durable || this.#transactionDurable) return;
      this.#commit();
    }
    if (this.#syncDurable !== durable) {
      (durable ? this.#syncFull : this.#syncNormal).run();
      this.#syncDurable = durable;
    }
    this.#beginStatement.run();
    this.#inTransaction = true;
    this.#transactionDurable = durable;
  }

  #announce(lease: Lease): void {
    for (const listener of this.#listeners) {
      try {
        listener(lease);
      } catch { /* a failing listener must not stop expiry for the others */ }
    }
  }

  /** Sets the expiry timer on the earliest expiry (or after `delayMs`). */
  #armExpiry(delayMs?: number): void {
    if (this.#closed) return;
    let at: number;
    if (delayMs !== undefined) at = this.#now() + delayMs;
    else {
      const row = this.#nextExpiry.get() as unknown as [number | null];
      at = row[0] ?? Infinity;
    }
    if (at === this.#expiryAt && this.#expiryTimer !== undefined) return;
    clearTimeout(this.#expiryTimer);
    this.#expiryTimer = undefined;
    this.#expiryAt = at;
    if (at === Infinity) return;
    const delay = Math.min(Math.max(0, at - this.#now()), MAX_TIMER_MS);
    this.#expiryTimer = setTimeout(() => this.#expire(), delay);
  }

  /** Deletes every expired lease in the current transaction and commits. */
  #expire(): void {
    this.#expiryTimer = undefined;
    this.#expiryAt = Infinity;
    if (this.#closed) return;
    try {
      this.#begin(false);
      const now = this.#now();
      this.#pruneHistory.run(now - this.#historyRetentionMs);
      const rows = this.#expireDue.all(now) as unknown as Row[];
      // One pending entry per client, so a failed commit restores each version.
      const expiredBy = new Map<string, Lease[]>();
      for (const row of rows) {
        const list = expiredBy.get(row[0]) ?? [];
        list.push(toLease(row));
        expiredBy.set(row[0], list);
      }
      for (const [clientId, expired] of expiredBy) {
        const previousVersion = this.#versions.get(clientId) ?? 0;
        this.#versions.set(clientId, previousVersion + 1);
        this.#pending.push({
          resolve: () => {},
          reject: () => {},
          clientId,
          previousVersion,
          expired,
        });
      }
    } catch {
      this.#armExpiry(1000);
      return;
    }
    this.flush().catch(() => {/* flush re-arms the timer to try again */});
  }
}
