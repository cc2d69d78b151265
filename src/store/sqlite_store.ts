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
 * - Proven writable at open: a durable write before the store is handed
 *   out, so a read-only file or a full disk fails at start, not at the
 *   first request.
 * - Lost when its file is: SQLite would go on committing into a file that
 *   was deleted or replaced, which nobody will open again. The store
 *   checks that its path still leads to the file it opened before every
 *   commit and every 250 ms (`file_guard.ts`); when it does not, every
 *   call fails with a StoreLostError and the fatal listeners are told. A
 *   path lock that outlives the path keeps a second server off meanwhile.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { dirname } from "node:path";
import type { AddrFamily } from "../net/family.ts";
import { type CImportOptions, importCDatabase, lastWrittenMs } from "./c_database_import.ts";
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
  StoreLostError,
  TransientError,
} from "./lease_store.ts";
import {
  closedError,
  DEFAULT_HISTORY_RETENTION_MS,
  discardToken,
  issueToken,
  leaseFromRow,
  type LeaseRow,
  openToken,
  pageLimit,
  pageOf,
  parseCursor,
  stateFilter,
} from "./core.ts";
import { ExpiryNotifier, ExpiryTimer } from "./expiry.ts";
import {
  ensureSchema,
  prepareStatements,
  SCHEMA_VERSION,
  type Statements,
} from "./sqlite_schema.ts";
import { errorMessage } from "../util/errors.ts";
import { FileIdentity, PathLock } from "./file_guard.ts";

/** How often an idle store checks that its database file is still its own. */
export const FILE_CHECK_INTERVAL_MS = 250;

export { DEFAULT_HISTORY_RETENTION_MS } from "./core.ts";
export { SCHEMA_VERSION } from "./sqlite_schema.ts";

/** Options of {@link SqliteLeaseStore.open}. */
export interface SqliteStoreOptions {
  /** Wall clock in ms (tests may pass their own). */
  now?: () => number;
  /** How long `released` and `expired` leases are kept (default 7 days). */
  historyRetentionMs?: number;
  /** Import the original C server's leases when the file holds them (see c_database_import.ts). */
  cImport?: CImportOptions;
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

/**
 * Maps a SQLite failure to the API's errors: a constraint failure is a
 * plain Error (bad data); anything else (locked, disk full, I/O error,
 * read-only file) is a TransientError, because nothing was written.
 */
function wrap(action: string, error: unknown): Error {
  const message = errorMessage(error);
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
  #expiry: ExpiryTimer;
  #listeners = new ExpiryNotifier();
  #closed = false;
  /** Every statement, prepared once. */
  #q: Statements;
  #lock: Deno.FsFile | undefined;
  #guard:
    | { identity: FileIdentity; pathLock: PathLock; timer: ReturnType<typeof setInterval> }
    | undefined;
  /** Set once the database file is gone: every call fails with it. */
  #lost: StoreLostError | undefined;
  #fatalListeners = new Set<(error: StoreLostError) => void>();
  /** The database file. */
  readonly path: string;

  private constructor(
    db: DatabaseSync,
    path: string,
    lock: Deno.FsFile | undefined,
    guard: { identity: FileIdentity; pathLock: PathLock } | undefined,
    options: SqliteStoreOptions,
  ) {
    this.#db = db;
    this.#lock = lock;
    if (guard) {
      const timer = setInterval(() => this.#checkFile(), FILE_CHECK_INTERVAL_MS);
      // The check alone must not keep a process alive.
      Deno.unrefTimer(timer);
      this.#guard = { ...guard, timer };
    }
    this.path = path;
    this.#now = options.now ?? Date.now;
    this.#historyRetentionMs = options.historyRetentionMs ?? DEFAULT_HISTORY_RETENTION_MS;
    this.#expiry = new ExpiryTimer(this.#now, () => this.#expire());
    this.#q = prepareStatements(db);
    // Leases that expired while the server was down are reclaimed as soon
    // as the caller has had the chance to register its listeners.
    this.#armExpiry(0);
  }

  /**
   * Opens (creating if needed) the database and its directory, takes the
   * exclusive locks, checks the schema and proves with a durable write
   * that the file can be written. Throws an Error naming the file and the
   * reason: locked by another process, read-only, disk full, newer schema.
   */
  static open(path: string, options: SqliteStoreOptions = {}): SqliteLeaseStore {
    let db: DatabaseSync | undefined;
    let lock: Deno.FsFile | undefined;
    let pathLock: PathLock | undefined;
    try {
      if (path !== ":memory:") {
        Deno.mkdirSync(dirname(path), { recursive: true });
        lock = Deno.openSync(`${path}-lock`, { create: true, write: true });
        if (!lock.tryLockSync(true)) {
          throw new Error(
            `it is locked by another process (${path}-lock): is another server using it?`,
          );
        }
        // The lock file goes with a deleted directory; this lock does not.
        pathLock = PathLock.take(path);
      }
      // Read before opening: switching to WAL writes the file.
      const writtenAt = options.cImport ? lastWrittenMs(path) : 0;
      db = new DatabaseSync(path);
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA synchronous = FULL");
      // Waiting for a lock would block the event loop: fail at once with a
      // TransientError instead (only outside writers can hold the lock).
      db.exec("PRAGMA busy_timeout = 0");
      db.exec("BEGIN IMMEDIATE");
      ensureSchema(db);
      const imported = options.cImport &&
        importCDatabase(db, writtenAt, (options.now ?? Date.now)(), options.cImport);
      // A read-only file opens (SQLite falls back to reading), and a
      // transaction that changes nothing commits on a full disk: write.
      db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
      db.exec("COMMIT");
      if (imported) options.cImport?.onImported?.(imported);
      const guard = path === ":memory:" ? undefined : {
        identity: FileIdentity.of(path),
        pathLock: pathLock!,
      };
      return new SqliteLeaseStore(db, path, lock, guard, options);
    } catch (error) {
      try {
        db?.close();
      } catch { /* closing after a failed open has nothing left to report */ }
      lock?.close();
      pathLock?.close();
      throw new Error(`Cannot open database "${path}": ${errorMessage(error)}`, { cause: error });
    }
  }

  lookup(clientId: string): Promise<LookupResult> {
    if (this.#lost) return Promise.reject(this.#lost);
    try {
      const leases = this.#read(clientId);
      const token = issueToken(this, clientId, this.#versions.get(clientId) ?? 0);
      return Promise.resolve({ leases, token });
    } catch (error) {
      return Promise.reject(wrap(`cannot look up ${clientId}`, error));
    }
  }

  peek(clientId: string): Promise<Lease[]> {
    if (this.#lost) return Promise.reject(this.#lost);
    try {
      return Promise.resolve(this.#read(clientId));
    } catch (error) {
      return Promise.reject(wrap(`cannot look up ${clientId}`, error));
    }
  }

  update(clientId: string, leases: Lease[], leaseToken: LeaseToken): Promise<void> {
    if (this.#closed) return Promise.reject(closedError());
    if (this.#lost) return Promise.reject(this.#lost);
    let token;
    try {
      token = openToken(leaseToken, this, clientId);
    } catch (error) {
      return Promise.reject(error);
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
      this.#q.savepoint.run();
      try {
        this.#q.delete.run(clientId);
        const now = this.#now();
        for (const l of leases) {
          this.#q.insert.run(
            clientId,
            l.family,
            l.ifname,
            l.address,
            l.table,
            Math.round(l.expiresAt),
            l.tag ?? null,
            l.owner,
            l.state,
            l.uid,
            now,
          );
        }
        this.#q.releaseSavepoint.run();
      } catch (error) {
        this.#q.rollbackToSavepoint.run();
        this.#q.releaseSavepoint.run();
        throw error;
      }
    } catch (error) {
      token.used = true;
      if (/UNIQUE constraint failed/.test(errorMessage(error))) {
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
    discardToken(leaseToken);
  }

  flush(): Promise<void> {
    if (this.#flushTimer !== undefined) clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    const failure = this.#inTransaction ? this.#commit() : undefined;
    // Removals committed earlier (see #begin) settle now, after their durable successors.
    const committed = this.#committed;
    this.#committed = [];
    for (const p of committed) {
      if (p.expired) { for (const lease of p.expired) this.#listeners.announce(lease); }
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
      // The last moment to notice the file is gone before anything is acknowledged.
      const lost = this.#checkFile();
      if (lost) throw lost;
      this.#q.commitStatement.run();
    } catch (error) {
      try {
        this.#db.exec("ROLLBACK");
      } catch { /* the transaction may already be gone; the versions below are what matters */ }
      for (let i = pending.length - 1; i >= 0; i--) {
        this.#versions.set(pending[i].clientId, pending[i].previousVersion);
      }
      const failure = error instanceof StoreLostError ? error : wrap("cannot commit", error);
      for (const p of pending) p.reject(failure);
      return failure;
    }
    this.#committed.push(...pending);
    return undefined;
  }

  list(options: ListOptions = {}): Promise<LeasePage> {
    if (this.#lost) return Promise.reject(this.#lost);
    let limit, after;
    try {
      limit = pageLimit(options);
      after = parseCursor(options.after);
    } catch (error) {
      return Promise.reject(error);
    }
    try {
      const states = stateFilter(options.state);
      const filters = {
        afterClient: after.clientId,
        afterTable: after.table,
        family: options.family ?? null,
        ifname: options.ifname ?? null,
        table: options.table ?? null,
        owner: options.owner ?? null,
        uid: options.uid ?? null,
        limit,
      };
      const rows = (states === ",reserved,"
        ? this.#q.pageReserved.all(filters)
        : this.#q.page.all({ ...filters, states })) as unknown as LeaseRow[];
      return Promise.resolve(pageOf(rows, limit));
    } catch (error) {
      return Promise.reject(wrap("cannot list leases", error));
    }
  }

  usedTables(): Promise<Array<[AddrFamily, number]>> {
    if (this.#lost) return Promise.reject(this.#lost);
    try {
      return Promise.resolve(this.#q.used.all() as unknown as Array<[AddrFamily, number]>);
    } catch (error) {
      return Promise.reject(wrap("cannot read leased tables", error));
    }
  }

  boundCount(uid: number): Promise<number> {
    if (this.#lost) return Promise.reject(this.#lost);
    if (uid === 0) return this.#countRoot();
    try {
      return Promise.resolve((this.#q.boundCount.get(uid) as unknown as [number])[0]);
    } catch (error) {
      return Promise.reject(wrap("cannot count leases", error));
    }
  }

  /** Root's leases are not in the uid index: a scan, which the server never needs (no cap). */
  #countRoot(): Promise<number> {
    try {
      const row = this.#db.prepare(
        "SELECT count(*) AS n FROM leases WHERE state = 'bound' AND uid = 0",
      ).get() as { n: number };
      return Promise.resolve(row.n);
    } catch (error) {
      return Promise.reject(wrap("cannot count leases", error));
    }
  }

  onExpire(listener: ExpiryListener): () => void {
    return this.#listeners.listen(listener);
  }

  onFatal(listener: (error: StoreLostError) => void): () => void {
    this.#fatalListeners.add(listener);
    return () => this.#fatalListeners.delete(listener);
  }

  /**
   * Checks that the path still leads to the file opened; the first time it
   * does not, the store is lost and the fatal listeners are told. Returns
   * the loss, if any.
   */
  #checkFile(): StoreLostError | undefined {
    if (this.#lost || !this.#guard || this.#closed) return this.#lost;
    const problem = this.#guard.identity.check();
    if (problem === undefined) return undefined;
    this.#lost = new StoreLostError(
      `${problem}: nothing can be made durable any more (the server must restart)`,
    );
    clearInterval(this.#guard.timer);
    for (const listener of this.#fatalListeners) {
      try {
        listener(this.#lost);
      } catch { /* one listener's failure must not keep the others from hearing */ }
    }
    return this.#lost;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.flush();
    } finally {
      this.#closed = true;
      this.#expiry.clear();
      clearTimeout(this.#flushTimer);
      this.#db.close();
      this.#lock?.close();
      if (this.#guard) {
        clearInterval(this.#guard.timer);
        this.#guard.pathLock.close();
      }
    }
  }

  #read(clientId: string): Lease[] {
    return (this.#q.select.all(clientId) as unknown as LeaseRow[]).map(leaseFromRow);
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
      (durable ? this.#q.syncFull : this.#q.syncNormal).run();
      this.#syncDurable = durable;
    }
    this.#q.beginStatement.run();
    this.#inTransaction = true;
    this.#transactionDurable = durable;
  }

  /** Sets the expiry timer on the earliest expiry (or after `delayMs`). */
  #armExpiry(delayMs?: number): void {
    if (this.#closed) return;
    if (delayMs !== undefined) this.#expiry.arm(this.#now() + delayMs);
    else {
      const row = this.#q.nextExpiry.get() as unknown as [number | null];
      this.#expiry.arm(row[0] ?? Infinity);
    }
  }

  /** Deletes every expired lease in the current transaction and commits. */
  #expire(): void {
    if (this.#closed) return;
    try {
      this.#begin(false);
      const now = this.#now();
      this.#q.pruneHistory.run(now - this.#historyRetentionMs);
      const rows = this.#q.expireDue.all(now) as unknown as LeaseRow[];
      // One pending entry per client, so a failed commit restores each version.
      const expiredBy = new Map<string, Lease[]>();
      for (const row of rows) {
        const list = expiredBy.get(row[0]) ?? [];
        list.push(leaseFromRow(row));
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
