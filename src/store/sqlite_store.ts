/**
 * The embedded {@link LeaseStore}: one SQLite file through `node:sqlite`
 * (SQLite is compiled into Deno: no native library to ship).
 *
 * - WAL journal; a commit is durable before anything it holds is
 *   acknowledged. SQLite commits with `synchronous=NORMAL` (the WAL frames
 *   are written, not waited for) and the store itself fdatasyncs the WAL
 *   (`wal_sync.ts`): the same bytes reach the disk as with
 *   `synchronous=FULL`, one sync per commit at most, and the caller may
 *   wait for the disk off the main thread ({@link FlushOptions}).
 * - Group commit: updates run at once inside an open transaction; one
 *   COMMIT and one sync make every update issued since durable, and only
 *   then do their promises resolve.
 * - A commit that holds no table (releases, expiry) is not synced: the
 *   next synced commit makes it durable with itself, because the WAL is
 *   written in order. A crash in between brings the removed leases back,
 *   to expire as usual; a table can never be leased twice, since the
 *   commit that gives it to someone else is synced. Releases are
 *   best-effort in the protocol anyway (the client exits after 1 s).
 * - An update writes only what changed: a refresh or a release is one
 *   UPDATE of the client's row (the lookup's rows travel with the token),
 *   so it touches the row's page and the indexes of the columns it
 *   changes, nothing else.
 * - Checkpoints are the store's, off the commit path: SQLite's automatic
 *   checkpoint (which runs inside a COMMIT, before its reply) only guards
 *   the WAL's size; the store checkpoints from a timer
 *   {@link CHECKPOINT_DELAY_MS} after the first commit that follows a
 *   checkpoint, between passes. The WAL then starts over and is
 *   overwritten in place: a sync that does not grow the file has no size
 *   to record, which makes it cheaper.
 * - One writer: the process holds an exclusive lock on `<db>-lock` for as
 *   long as the store is open. A second server gets a clear error at start
 *   instead of silently diverging, and tokens can be checked against
 *   per-client versions held in memory. Other processes may still read
 *   the file (WAL readers never block the writer).
 * - Expiry is the store's: a timer on the earliest `expires_at` deletes
 *   leases the moment they expire and tells the expiry listeners. A commit
 *   moves the timer only when it wrote an earlier expiry; a timer left on
 *   a lease that was refreshed meanwhile finds nothing due and moves on.
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
import type { AddrFamily } from "../net/family.ts";
import { type CImportOptions, importCDatabase, lastWrittenMs } from "./c_database_import.ts";
import {
  ConcurrencyError,
  type ExpiryListener,
  type FlushOptions,
  holdsTable,
  type Lease,
  type LeasePage,
  type LeaseStore,
  type LeaseToken,
  type ListOptions,
  type LookupResult,
  StoreLostError,
  type TableRun,
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
  runsOf,
  stateFilter,
  type StoreToken,
} from "./core.ts";
import { ExpiryNotifier, ExpiryTimer } from "./expiry.ts";
import {
  ensureSchema,
  PAGE_SIZE,
  prepareStatements,
  SCHEMA_VERSION,
  type Statements,
  WAL_AUTOCHECKPOINT_PAGES,
} from "./sqlite_schema.ts";
import { Versions } from "./versions.ts";
import { WalSync } from "./wal_sync.ts";
import { errorMessage } from "../util/errors.ts";
import { dirname } from "../util/paths.ts";
import { FileIdentity, PathLock } from "./file_guard.ts";

/** How often an idle store checks that its database file is still its own. */
export const FILE_CHECK_INTERVAL_MS = 250;

export { DEFAULT_HISTORY_RETENTION_MS } from "./core.ts";
export { SCHEMA_VERSION } from "./sqlite_schema.ts";

/** How long after the first commit since the last checkpoint the store checkpoints. */
export const CHECKPOINT_DELAY_MS = 200;
/** Rows the history sweep looks at in one go. */
export const SWEEP_CHUNK = 500;

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

/** What the store knows of its WAL, for tests and the benchmark. */
export interface WalStats {
  /** fdatasync calls on the WAL. */
  syncs: number;
  /** Checkpoints the store ran. */
  checkpoints: number;
}

/**
 * Maps a SQLite failure to the API's errors: a constraint failure is a
 * plain Error (bad data); anything else (locked, disk full, I/O error,
 * read-only file) is a TransientError, because nothing was written.
 */
function wrap(action: string, error: unknown): Error {
  if (error instanceof TransientError || error instanceof StoreLostError) return error;
  const message = errorMessage(error);
  if (/constraint failed/i.test(message)) {
    return new Error(`${action}: ${message}`, { cause: error });
  }
  return new TransientError(`${action}: ${message}`, { cause: error });
}

/** Whether a new lease is the same row as a stored one (same key and identity columns). */
function sameRow(row: LeaseRow, lease: Lease): boolean {
  return row[4] === lease.table && row[1] === lease.family && row[2] === lease.ifname &&
    row[3] === lease.address;
}

/** A {@link LeaseStore} in one SQLite file, owned by one process. */
export class SqliteLeaseStore implements LeaseStore {
  #db: DatabaseSync;
  #now: () => number;
  #historyRetentionMs: number;
  /** Versions of the clients in flight, for the tokens (see `versions.ts`). */
  #versions = new Versions();
  #pending: Pending[] = [];
  #inTransaction = false;
  /** The open transaction holds a table: it is synced before its updates resolve. */
  #durable = false;
  /** The earliest expiry of a bound lease written in the open transaction. */
  #earliestWritten = Infinity;
  /** A flush is queued for the updates of the open transaction. */
  #flushQueued = false;
  #checkpointTimer: ReturnType<typeof setTimeout> | undefined;
  #checkpoints = 0;
  #sweepTimer: ReturnType<typeof setTimeout> | undefined;
  #sweepEveryMs: number;
  /** Where the history sweep goes on: after this key; undefined: from the start. */
  #sweptTo: [string, number] | undefined;
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
  /** The WAL's fdatasync; none for an in-memory database. */
  #wal: WalSync | undefined;
  /** The database file. */
  readonly path: string;

  private constructor(
    db: DatabaseSync,
    path: string,
    lock: Deno.FsFile | undefined,
    guard: { identity: FileIdentity; pathLock: PathLock } | undefined,
    wal: WalSync | undefined,
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
    this.#wal = wal;
    this.path = path;
    this.#now = options.now ?? Date.now;
    this.#historyRetentionMs = options.historyRetentionMs ?? DEFAULT_HISTORY_RETENTION_MS;
    this.#expiry = new ExpiryTimer(this.#now, () => this.#expire());
    // A full sweep takes at most about a hundredth of the retention (or 10 s a chunk).
    this.#sweepEveryMs = Math.min(10_000, Math.max(20, this.#historyRetentionMs / 100));
    this.#sweepTimer = setTimeout(() => this.#sweep(), this.#sweepEveryMs);
    this.#q = prepareStatements(db);
    // Leases that expired while the server was down are reclaimed as soon
    // as the caller has had the chance to register its listeners.
    this.#expiry.arm(this.#now());
  }

  /**
   * Opens (creating if needed) the database and its directory, takes the
   * exclusive lock and checks the schema. Throws an Error naming the file
   * and the reason: locked by another process, unwritable, newer schema.
   */
  static open(path: string, options: SqliteStoreOptions = {}): SqliteLeaseStore {
    let db: DatabaseSync | undefined;
    let lock: Deno.FsFile | undefined;
    let pathLock: PathLock | undefined;
    let wal: WalSync | undefined;
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
      // Only a new database takes it (an existing one keeps its page size).
      db.exec(`PRAGMA page_size = ${PAGE_SIZE}`);
      db.exec("PRAGMA journal_mode = WAL");
      // Durability is the store's: it syncs the WAL itself (see WalSync).
      db.exec("PRAGMA synchronous = NORMAL");
      db.exec(`PRAGMA wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
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
      // The open's write is made durable now (and proves the disk takes it).
      if (path !== ":memory:") {
        wal = new WalSync(`${path}-wal`);
        wal.syncNow();
      }
      if (imported) options.cImport?.onImported?.(imported);
      const guard = path === ":memory:" ? undefined : {
        identity: FileIdentity.of(path),
        pathLock: pathLock!,
      };
      return new SqliteLeaseStore(db, path, lock, guard, wal, options);
    } catch (error) {
      wal?.close();
      try {
        db?.close();
      } catch { /* closing after a failed open has nothing left to report */ }
      lock?.close();
      pathLock?.close();
      throw new Error(`Cannot open database "${path}": ${errorMessage(error)}`, { cause: error });
    }
  }

  lookup(clientId: string): Promise<LookupResult> {
    try {
      this.#checkUsable();
      const rows = this.#rows(clientId);
      // The token keeps the rows (not the leases the caller may change) for #write.
      const token = issueToken(this, clientId, this.#versions.issue(clientId), rows);
      return Promise.resolve({ leases: rows.map(leaseFromRow), token });
    } catch (error) {
      return Promise.reject(wrap(`cannot look up ${clientId}`, error));
    }
  }

  peek(clientId: string): Promise<Lease[]> {
    try {
      this.#checkUsable();
      return Promise.resolve(this.#read(clientId));
    } catch (error) {
      return Promise.reject(wrap(`cannot look up ${clientId}`, error));
    }
  }

  update(clientId: string, leases: Lease[], leaseToken: LeaseToken): Promise<void> {
    let token;
    try {
      this.#checkUsable();
      token = openToken(leaseToken, this, clientId);
    } catch (error) {
      return Promise.reject(error);
    }
    if (token.used) return Promise.reject(new ConcurrencyError(clientId));
    if (token.version !== this.#versions.current(clientId)) {
      this.#spend(token);
      return Promise.reject(new ConcurrencyError(clientId));
    }
    try {
      this.#begin();
    } catch (error) {
      return Promise.reject(wrap("cannot start a transaction", error));
    }
    try {
      this.#write(clientId, token.rows as LeaseRow[] | undefined, leases);
    } catch (error) {
      this.#spend(token);
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
    this.#spend(token);
    const previousVersion = this.#versions.bump(clientId);
    for (const l of leases) {
      // Only a lease that holds a table must be synced before the reply.
      if (holdsTable(l.state)) this.#durable = true;
      if (l.state === "bound" && l.expiresAt < this.#earliestWritten) {
        this.#earliestWritten = l.expiresAt;
      }
    }
    return new Promise((resolve, reject) => {
      this.#pending.push({ resolve, reject, clientId, previousVersion });
      // Updates issued together (in one run of the caller's code and the
      // promise reactions it sets off) commit together unless flushed first.
      if (!this.#flushQueued) {
        this.#flushQueued = true;
        queueMicrotask(() => {
          if (this.#flushQueued) this.flush().catch(() => {});
        });
      }
    });
  }

  /**
   * Replaces the client's rows `stored` (what the lookup read; the version
   * check vouches that nothing changed since) with `leases`: a lease on a
   * table the client has a row for is an UPDATE of that row's changed
   * columns, the others are inserts, and rows left over are deleted. More
   * than one statement runs inside a savepoint, so a failure undoes all.
   */
  #write(clientId: string, stored: readonly LeaseRow[] | undefined, leases: Lease[]): void {
    const q = this.#q;
    const now = this.#now();
    const old = stored ?? this.#rows(clientId);
    const kept = leases.map((l) => old.find((o) => sameRow(o, l)));
    const dropped = old.filter((o) => !leases.some((l) => sameRow(o, l)));
    const single = leases.length + dropped.length <= 1;
    if (!single) q.savepoint.run();
    try {
      for (const o of dropped) q.deleteRow.run(clientId, o[4]);
      leases.forEach((l, i) => {
        const expiresAt = Math.round(l.expiresAt);
        const tag = l.tag ?? null;
        const was = kept[i];
        // A refresh leaves the state alone, so the indexes filtered on it stay untouched.
        const changes = was === undefined ? 0 : Number(
          (was[8] === l.state && was[9] === l.uid
            ? q.refreshRow.run(expiresAt, tag, l.owner, now, clientId, l.table)
            : q.updateRow.run(expiresAt, tag, l.owner, l.state, l.uid, now, clientId, l.table))
            .changes,
        );
        // No row to update: a new one, or history pruned since the lookup.
        if (changes === 0) {
          q.insert.run(
            clientId,
            l.family,
            l.ifname,
            l.address,
            l.table,
            expiresAt,
            tag,
            l.owner,
            l.state,
            l.uid,
            now,
          );
        }
      });
      if (!single) q.releaseSavepoint.run();
    } catch (error) {
      if (!single) {
        q.rollbackToSavepoint.run();
        q.releaseSavepoint.run();
      }
      throw error;
    }
  }

  releaseToken(leaseToken: LeaseToken): void {
    const token = leaseToken as unknown as StoreToken;
    if (token?.store === this) this.#spend(token);
    else discardToken(leaseToken);
  }

  /** Marks a token used, once: its client's entry may go when nothing else is in flight. */
  #spend(token: StoreToken): void {
    if (token.used) return;
    token.used = true;
    this.#versions.spend(token.clientId);
  }

  /** Clients whose versions are held now: those with a token out or an update uncommitted. */
  get clientsInFlight(): number {
    return this.#versions.size;
  }

  /**
   * Commits the open transaction and, when it holds a table, syncs the WAL;
   * then the updates resolve. With `background`, the sync runs on a worker
   * thread and this resolves when it is done.
   */
  flush(options: FlushOptions = {}): Promise<void> {
    this.#flushQueued = false;
    if (!this.#inTransaction) return Promise.resolve();
    const pending = this.#pending;
    const durable = this.#durable;
    const earliest = this.#earliestWritten;
    this.#pending = [];
    this.#inTransaction = false;
    this.#durable = false;
    this.#earliestWritten = Infinity;
    try {
      // The last moment to notice the file is gone before anything is acknowledged.
      const lost = this.#checkFile();
      if (lost) throw lost;
      this.#q.commitStatement.run();
    } catch (error) {
      try {
        this.#db.exec("ROLLBACK");
      } catch { /* the transaction may already be gone; the versions below are what matters */ }
      return Promise.reject(this.#fail(pending, wrap("cannot commit", error)));
    }
    this.#committed(earliest);
    const wal = this.#wal;
    if (!durable || !wal) return Promise.resolve(this.#settle(pending));
    if (!options.background) {
      try {
        wal.syncNow();
      } catch (error) {
        return Promise.reject(this.#fail(pending, wrap("cannot commit", error)));
      }
      return Promise.resolve(this.#settle(pending));
    }
    return wal.sync().then(
      () => this.#settle(pending),
      (error) => {
        throw this.#fail(pending, wrap("cannot commit", error));
      },
    );
  }

  /** Resolves committed updates and announces what their commit expired. */
  #settle(pending: Pending[]): void {
    for (const p of pending) {
      this.#versions.committed(p.clientId);
      if (p.expired) { for (const lease of p.expired) this.#listeners.announce(lease); }
      p.resolve();
    }
  }

  /**
   * A commit failed: its updates are rejected and their version bumps
   * undone (a TransientError leaves their tokens valid). Returns the error.
   */
  #fail(pending: Pending[], failure: Error): Error {
    for (let i = pending.length - 1; i >= 0; i--) {
      this.#versions.undo(pending[i].clientId, pending[i].previousVersion);
    }
    for (const p of pending) p.reject(failure);
    this.#armBy(this.#now() + 1000);
    return failure;
  }

  /** After a commit: the expiry timer and the next checkpoint. */
  #committed(earliestExpiry: number): void {
    if (earliestExpiry < Infinity) this.#armBy(earliestExpiry);
    this.#checkpointTimer ??= setTimeout(() => this.#checkpoint(), CHECKPOINT_DELAY_MS);
  }

  /**
   * Copies the WAL back into the database file (PASSIVE: never waits for
   * readers), so the WAL starts over and stays small. Runs from a timer,
   * between the daemon's passes, instead of inside a commit.
   */
  #checkpoint(): void {
    this.#checkpointTimer = undefined;
    if (this.#closed) return;
    if (this.#inTransaction) {
      // Updates wait for their flush (due first): try again after it.
      this.#checkpointTimer = setTimeout(() => this.#checkpoint(), 0);
      return;
    }
    try {
      this.#q.checkpoint.run();
      this.#checkpoints++;
    } catch { /* a failed checkpoint leaves the WAL longer; SQLite's own one still bounds it */ }
  }

  /** fdatasync calls and checkpoints so far. */
  get walStats(): WalStats {
    return { syncs: this.#wal?.syncs ?? 0, checkpoints: this.#checkpoints };
  }

  list(options: ListOptions = {}): Promise<LeasePage> {
    let limit, after;
    try {
      limit = pageLimit(options);
      after = parseCursor(options.after);
    } catch (error) {
      return Promise.reject(error);
    }
    try {
      this.#checkUsable();
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
    try {
      this.#checkUsable();
      return Promise.resolve(this.#q.used.all() as unknown as Array<[AddrFamily, number]>);
    } catch (error) {
      return Promise.reject(wrap("cannot read leased tables", error));
    }
  }

  /**
   * The runs written at the last clean close when nothing changed since
   * (see `sqlite_schema.ts`), else every bound table, read in one query.
   */
  boundTables(): Promise<Map<AddrFamily, TableRun[]>> {
    try {
      this.#checkUsable();
      const bound = new Map<AddrFamily, TableRun[]>();
      for (const [family, first, last] of this.#q.boundRuns.all() as unknown as number[][]) {
        const runs = bound.get(family as AddrFamily) ?? [];
        runs.push([first, last]);
        bound.set(family as AddrFamily, runs);
      }
      return Promise.resolve(bound.size > 0 ? bound : this.#scanBound());
    } catch (error) {
      return Promise.reject(wrap("cannot read leased tables", error));
    }
  }

  /** Every bound table, as one JSON array per family built by SQLite (a row each costs more). */
  #scanBound(): Map<AddrFamily, TableRun[]> {
    const rows = this.#q.bound.all() as unknown as Array<[AddrFamily, string]>;
    return new Map(rows.map(([family, tables]) => [family, runsOf(JSON.parse(tables))]));
  }

  /**
   * Writes the bound tables as runs for the next start (`bound_runs`);
   * the triggers empty it at the next change. Best effort: a start without
   * it reads every bound lease instead.
   */
  #writeBoundRuns(): void {
    if (!this.#wal || this.#wal.failure) return;
    try {
      this.#q.beginStatement.run();
      try {
        this.#q.clearBoundRuns.run();
        for (const [family, runs] of this.#scanBound()) {
          for (const [first, last] of runs) this.#q.putBoundRun.run(family, first, last);
        }
        this.#q.commitStatement.run();
      } catch (error) {
        this.#db.exec("ROLLBACK");
        throw error;
      }
    } catch { /* the next start scans the bound leases */ }
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
      this.#writeBoundRuns();
    } finally {
      this.#closed = true;
      this.#expiry.clear();
      clearTimeout(this.#checkpointTimer);
      clearTimeout(this.#sweepTimer);
      this.#wal?.close();
      this.#db.close();
      this.#lock?.close();
      if (this.#guard) {
        clearInterval(this.#guard.timer);
        this.#guard.pathLock.close();
      }
    }
  }

  /** Throws when the store is closed or a WAL sync failed (nothing may be acknowledged then). */
  #checkUsable(): void {
    if (this.#closed) throw closedError();
    if (this.#lost) throw this.#lost;
    const failure = this.#wal?.failure;
    if (failure) throw failure;
  }

  #read(clientId: string): Lease[] {
    return this.#rows(clientId).map(leaseFromRow);
  }

  #rows(clientId: string): LeaseRow[] {
    return this.#q.select.all(clientId) as unknown as LeaseRow[];
  }

  /** Makes sure a transaction is open. */
  #begin(): void {
    if (this.#inTransaction) return;
    this.#q.beginStatement.run();
    this.#inTransaction = true;
  }

  /** Moves the expiry timer to `at` if it is armed later (or not at all). */
  #armBy(at: number): void {
    if (!this.#closed && at < this.#expiry.at) this.#expiry.arm(at);
  }

  /** Arms the expiry timer on the earliest stored expiry. */
  #armFromStore(): void {
    if (this.#closed) return;
    const row = this.#q.nextExpiry.get() as unknown as [number | null];
    this.#expiry.arm(row[0] ?? Infinity);
  }

  /**
   * Forgets the history rows (`released`, `expired`) older than the
   * retention in the next {@link SWEEP_CHUNK} rows of the table, in key
   * order, and schedules the next chunk: no index has to follow history
   * on the hot path. Committed like expiry, without a sync.
   */
  #sweep(): void {
    this.#sweepTimer = undefined;
    if (this.#closed) return;
    // Updates waiting for their flush come first; the sweep goes on next time.
    if (!this.#inTransaction && !this.#wal?.failure) {
      try {
        this.#q.beginStatement.run();
        try {
          const [afterClient, afterTable] = this.#sweptTo ?? ["", -1];
          const end = this.#q.sweepChunkEnd.get(afterClient, afterTable, SWEEP_CHUNK - 1) as
            | [string, number]
            | undefined;
          const { changes } = this.#q.pruneChunk.run(
            afterClient,
            afterTable,
            end?.[0] ?? null,
            end?.[1] ?? null,
            this.#now() - this.#historyRetentionMs,
          );
          this.#q.commitStatement.run();
          if (Number(changes) > 0) this.#committed(Infinity);
          this.#sweptTo = end ? [end[0], end[1]] : undefined;
        } catch (error) {
          this.#db.exec("ROLLBACK");
          throw error;
        }
      } catch { /* locked by another writer: the next chunk tries again */ }
    }
    this.#sweepTimer = setTimeout(() => this.#sweep(), this.#sweepEveryMs);
  }

  /** Marks every expired lease in the current transaction and commits; re-arms on the next. */
  #expire(): void {
    if (this.#closed) return;
    try {
      this.#checkUsable();
      this.#begin();
      const now = this.#now();
      const rows = this.#q.expireDue.all(now) as unknown as LeaseRow[];
      // One pending entry per client, so a failed commit restores each version.
      const expiredBy = new Map<string, Lease[]>();
      for (const row of rows) {
        const list = expiredBy.get(row[0]) ?? [];
        list.push(leaseFromRow(row));
        expiredBy.set(row[0], list);
      }
      for (const [clientId, expired] of expiredBy) {
        const previousVersion = this.#versions.bump(clientId);
        this.#pending.push({
          resolve: () => {},
          reject: () => {},
          clientId,
          previousVersion,
          expired,
        });
      }
    } catch {
      this.#expiry.arm(this.#now() + 1000);
      return;
    }
    this.flush().then(
      () => this.#armFromStore(),
      () => {/* the failed commit re-armed the timer to try again */},
    );
  }
}
