/**
 * The embedded {@link LeaseStore}: one SQLite file through `node:sqlite`
 * (SQLite is compiled into Deno: no native library to ship).
 *
 * - Expiry is the store's: a timer on the earliest `expires_at` deletes
 *   leases the moment they expire and tells the expiry listeners. A commit
 *   moves the timer only when it wrote an earlier expiry; a timer left on
 *   a lease that was refreshed meanwhile finds nothing due and moves on.
 *
 * Its other jobs have modules of their own: opening the file, one writer
 * and the proof that it takes writes (`sqlite_open.ts`); the group commit
 * and its durability (`sqlite_commit.ts`); what an update writes
 * (`sqlite_write.ts`); the bound tables read at start
 * (`sqlite_bound.ts`); the checkpoints, the history sweep and the check
 * that the file is still its own (`sqlite_upkeep.ts`).
 *
 * @module
 */

import type { DatabaseSync } from "node:sqlite";
import type { AddrFamily } from "../net/family.ts";
import type { CImportOptions } from "./c_database_import.ts";
import {
  ConcurrencyError,
  type ExpiryListener,
  type FlushOptions,
  type Lease,
  type LeasePage,
  type LeaseStore,
  type LeaseToken,
  type ListOptions,
  type LookupResult,
  type StoreLostError,
  type TableRun,
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
  type StoreToken,
} from "./core.ts";
import { ExpiryNotifier, ExpiryTimer } from "./expiry.ts";
import { prepareStatements, type Statements } from "./sqlite_schema.ts";
import { Versions } from "./versions.ts";
import type { WalSync } from "./wal_sync.ts";
import { errorMessage } from "../util/errors.ts";
import { wrap } from "./sqlite_errors.ts";
import { GroupCommit } from "./sqlite_commit.ts";
import { openDatabase, type OpenedDatabase } from "./sqlite_open.ts";
import { writeLeaseRows } from "./sqlite_write.ts";
import { readBoundTables, writeBoundRuns } from "./sqlite_bound.ts";
import { SqliteUpkeep } from "./sqlite_upkeep.ts";
import { RowCache } from "./row_cache.ts";

export { DEFAULT_HISTORY_RETENTION_MS } from "./core.ts";
export { SCHEMA_VERSION } from "./sqlite_schema.ts";
export { CHECKPOINT_DELAY_MS, FILE_CHECK_INTERVAL_MS, SWEEP_CHUNK } from "./sqlite_upkeep.ts";

/** Options of {@link SqliteLeaseStore.open}. */
export interface SqliteStoreOptions {
  /** Wall clock in ms (tests may pass their own). */
  now?: () => number;
  /** How long `released` and `expired` leases are kept (default 7 days). */
  historyRetentionMs?: number;
  /** Import the original C server's leases when the file holds them (see c_database_import.ts). */
  cImport?: CImportOptions;
}

/** What the store knows of its WAL, for tests and the benchmark. */
export interface WalStats {
  /** fdatasync calls on the WAL. */
  syncs: number;
  /** Checkpoints the store ran. */
  checkpoints: number;
}

/** A {@link LeaseStore} in one SQLite file, owned by one process. */
export class SqliteLeaseStore implements LeaseStore {
  #db: DatabaseSync;
  #now: () => number;
  /** Versions of the clients in flight, for the tokens (see `versions.ts`). */
  #versions = new Versions();
  /** The open transaction and the updates waiting for its commit. */
  #commits: GroupCommit;
  #expiry: ExpiryTimer;
  #listeners = new ExpiryNotifier();
  #closed = false;
  /** Every statement, prepared once. */
  #q: Statements;
  #lock: Deno.FsFile | undefined;
  /** Checkpoints, history sweep, file check (and the loss it finds). */
  #upkeep: SqliteUpkeep;
  /** The WAL's fdatasync; none for an in-memory database. */
  #wal: WalSync | undefined;
  /** The rows of the clients written last, so that their next lookup needs no SELECT. */
  #rowCache = new RowCache();
  /** `PRAGMA data_version` when the last transaction began: another connection's commit moves it. */
  #dataVersion = -1;
  /** The database file. */
  readonly path: string;

  private constructor(opened: OpenedDatabase, path: string, options: SqliteStoreOptions) {
    const { db, wal } = opened;
    this.#db = db;
    this.#lock = opened.lock;
    this.#wal = wal;
    this.path = path;
    this.#now = options.now ?? Date.now;
    this.#expiry = new ExpiryTimer(this.#now, () => this.#expire());
    this.#q = prepareStatements(db);
    this.#commits = new GroupCommit({
      db,
      q: this.#q,
      wal,
      versions: this.#versions,
      announce: (lease) => this.#listeners.announce(lease),
      checkFile: () => this.#upkeep.checkFile(),
      committed: (earliest) => this.#committed(earliest),
      failed: () => this.#armBy(this.#now() + 1000),
      rows: this.#rowCache,
      began: () => this.#checkDataVersion(),
    });
    this.#upkeep = new SqliteUpkeep({
      db,
      q: this.#q,
      now: this.#now,
      historyRetentionMs: options.historyRetentionMs ?? DEFAULT_HISTORY_RETENTION_MS,
      inTransaction: () => this.#commits.inTransaction,
      walFailure: () => wal?.failure,
      pruned: () => this.#rowCache.clear(),
      guard: opened.guard,
    });
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
    return openDatabase(path, options, (opened) => new SqliteLeaseStore(opened, path, options));
  }

  /** The WAL is appended and synced in order (`wal_sync.ts`); the COMMIT runs inside flush(). */
  readonly commitsInOrder = true;

  lookup(clientId: string): Promise<LookupResult> {
    try {
      this.#checkUsable();
      this.#commits.beginRead();
      const rows = this.#rows(clientId);
      // The token keeps the rows (not the leases the caller may change) for writeLeaseRows.
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
      this.#commits.begin();
    } catch (error) {
      return Promise.reject(wrap("cannot start a transaction", error));
    }
    try {
      const now = this.#now();
      const stored = token.rows as LeaseRow[] | undefined;
      writeLeaseRows(this.#q, clientId, stored ?? this.#rows(clientId), leases, now);
      // Until its commit, a lookup reads the uncommitted rows from the transaction.
      this.#rowCache.forget(clientId);
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
    return this.#commits.add(clientId, previousVersion, leases);
  }

  /**
   * Opens the transaction the next pass's lookups and updates will share
   * (`GroupCommit.beginRead`), so that its BEGIN IMMEDIATE, about a tenth
   * of a lone request's time in the server, is paid before the request
   * comes. Unused, it ends when the event loop next turns, as after a
   * lookup: the daemon's wait on the main thread lasts at most a few
   * milliseconds before the loop parks.
   */
  expectLookup(): void {
    try {
      this.#checkUsable();
      this.#commits.beginRead();
    } catch { /* the next lookup fails with the reason */ }
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

  /** Clients whose rows the row cache holds (for tests). */
  get cachedClients(): number {
    return this.#rowCache.size;
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
    return this.#commits.flush(options);
  }

  /** After a commit: the expiry timer and the next checkpoint. */
  #committed(earliestExpiry: number): void {
    if (earliestExpiry < Infinity) this.#armBy(earliestExpiry);
    this.#upkeep.scheduleCheckpoint();
  }

  /** fdatasync calls and checkpoints so far. */
  get walStats(): WalStats {
    return { syncs: this.#wal?.syncs ?? 0, checkpoints: this.#upkeep.checkpoints };
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
      return Promise.resolve(readBoundTables(this.#q));
    } catch (error) {
      return Promise.reject(wrap("cannot read leased tables", error));
    }
  }

  boundCount(uid: number): Promise<number> {
    const lost = this.#upkeep.lost;
    if (lost) return Promise.reject(lost);
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
    return this.#upkeep.onFatal(listener);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.flush();
      // Best effort, and never after a failed sync (nothing may be written then).
      if (this.#wal && !this.#wal.failure) writeBoundRuns(this.#db, this.#q);
    } finally {
      this.#closed = true;
      this.#commits.close();
      this.#expiry.clear();
      this.#upkeep.stop();
      this.#wal?.close();
      this.#db.close();
      this.#lock?.close();
      this.#upkeep.close();
    }
  }

  /** Throws when the store is closed or a WAL sync failed (nothing may be acknowledged then). */
  #checkUsable(): void {
    if (this.#closed) throw closedError();
    const lost = this.#upkeep.lost;
    if (lost) throw lost;
    const failure = this.#wal?.failure;
    if (failure) throw failure;
  }

  /**
   * The client's leases from the file. Not from the row cache: a read
   * outside a transaction has had no look at `PRAGMA data_version`, and
   * peek() serves ctl, not the hot path.
   */
  #read(clientId: string): Lease[] {
    return this.#select(clientId).map(leaseFromRow);
  }

  /** The client's rows, inside a transaction (whose start checked the row cache). */
  #rows(clientId: string): readonly LeaseRow[] {
    return this.#rowCache.get(clientId) ?? this.#select(clientId);
  }

  #select(clientId: string): LeaseRow[] {
    return this.#q.select.all(clientId) as unknown as LeaseRow[];
  }

  /** Forgets the cached rows when another connection committed since the last transaction. */
  #checkDataVersion(): void {
    const [version] = this.#q.dataVersion.get() as unknown as [number];
    if (version !== this.#dataVersion) {
      this.#dataVersion = version;
      this.#rowCache.clear();
    }
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

  /** Marks every expired lease in the current transaction and commits; re-arms on the next. */
  #expire(): void {
    if (this.#closed) return;
    try {
      this.#checkUsable();
      this.#commits.begin();
      const now = this.#now();
      const rows = this.#q.expireDue.all(now) as unknown as LeaseRow[];
      // One pending entry per client, so a failed commit restores each version.
      const expiredBy = new Map<string, Lease[]>();
      for (const row of rows) {
        this.#rowCache.forget(row[0]);
        const list = expiredBy.get(row[0]) ?? [];
        list.push(leaseFromRow(row));
        expiredBy.set(row[0], list);
      }
      for (const [clientId, expired] of expiredBy) {
        this.#commits.addExpired(clientId, this.#versions.bump(clientId), expired);
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
