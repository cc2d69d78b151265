/**
 * The SQLite store's group commit: the open transaction its updates run
 * in, and the one COMMIT (and sync) that makes them durable before their
 * promises resolve.
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
 *
 * @module
 */

import type { DatabaseSync } from "node:sqlite";
import {
  type FlushOptions,
  holdsTable,
  type Lease,
  type StoreLostError,
  syncInBackground,
} from "./lease_store.ts";
import type { Statements } from "./sqlite_schema.ts";
import type { Versions } from "./versions.ts";
import type { WalSync } from "./wal_sync.ts";
import { type RowCache, rowsOf } from "./row_cache.ts";
import type { LeaseRow } from "./core.ts";
import { wrap } from "./sqlite_errors.ts";
import { after, type Timer } from "../util/timer.ts";

interface Pending {
  /** The update's promise, as add() returned it (none for an expiry). */
  promise?: Promise<void>;
  resolve: () => void;
  reject: (error: Error) => void;
  /** Undo of the in-memory version bump, when the commit fails. */
  clientId: string;
  previousVersion: number;
  /** The client's rows as the update wrote them (the first update's only; none for an expiry). */
  rows?: readonly LeaseRow[];
  /** Leases reclaimed by expiry, announced after the commit. */
  expired?: Lease[];
}

/** What the group commit works with: the store's connection, versions and timers. */
export interface GroupCommitOptions {
  db: DatabaseSync;
  q: Statements;
  /** The WAL's fdatasync; none for an in-memory database (nothing to sync). */
  wal: WalSync | undefined;
  /** The store's client versions: a commit confirms its bumps, a failure undoes them. */
  versions: Versions;
  /** The rows of the clients written last: a commit puts its updates' rows there. */
  rows: RowCache;
  /** Tells the expiry listeners of a lease reclaimed, once its commit is made. */
  announce: (lease: Lease) => void;
  /** The store's last look at its file before a commit: the loss, if any. */
  checkFile: () => StoreLostError | undefined;
  /** After a commit: the earliest bound expiry it wrote (Infinity: none). */
  committed: (earliestExpiry: number) => void;
  /** After a failed commit (its expiries are to be tried again, its writes are undone). */
  failed: () => void;
  /** Right after a transaction began, before anything in it reads. */
  began: () => void;
}

/** The open transaction of a `SqliteLeaseStore` and the updates waiting for its commit. */
export class GroupCommit {
  #o: GroupCommitOptions;
  #pending: Pending[] = [];
  #inTransaction = false;
  /** The open transaction holds a table: it is synced before its updates resolve. */
  #durable = false;
  /** The earliest expiry of a bound lease written in the open transaction. */
  #earliestWritten = Infinity;
  /** A flush is queued for the updates of the open transaction. */
  #flushQueued = false;
  /** Ends a transaction opened by {@link beginRead} that no update joined. */
  #readTimer: Timer | undefined;

  /** A group commit over the store's parts. */
  constructor(options: GroupCommitOptions) {
    this.#o = options;
  }

  /** Whether a transaction is open (its updates wait for their flush). */
  get inTransaction(): boolean {
    return this.#inTransaction;
  }

  /** Makes sure a transaction is open. */
  begin(): void {
    if (this.#inTransaction) return;
    this.#o.q.beginStatement.run();
    this.#inTransaction = true;
    this.#o.began();
  }

  /**
   * Makes sure a transaction is open for a read. A read outside one is a
   * transaction of its own, with its own locks on the WAL index (fcntl(2)
   * calls); a pass's lookups share the transaction its updates then run
   * in. A transaction no update joins is ended when the event loop next
   * turns, so that it holds back no checkpoint.
   */
  beginRead(): void {
    if (this.#inTransaction) return;
    this.begin();
    this.#readTimer ??= after(0, () => {
      this.#readTimer = undefined;
      if (this.#inTransaction && this.#pending.length === 0) this.#endRead();
    });
  }

  /** Ends a transaction that only read: nothing to announce, sync or checkpoint. */
  #endRead(): void {
    this.#inTransaction = false;
    try {
      this.#o.q.commitStatement.run();
    } catch {
      try {
        this.#o.db.exec("ROLLBACK");
      } catch { /* already gone: nothing was written in it */ }
    }
  }

  /** Stops the timer of {@link beginRead} (the store is closing). */
  close(): void {
    this.#readTimer?.cancel();
    this.#readTimer = undefined;
  }

  /**
   * Queues an update written in the open transaction (its version bumped
   * from `previousVersion`): resolves once the commit that holds it is
   * durable, rejects when that commit fails. Updates issued together (in
   * one run of the caller's code and the promise reactions it sets off)
   * commit together unless flushed first.
   */
  add(clientId: string, previousVersion: number, leases: Lease[]): Promise<void> {
    for (const l of leases) {
      // Only a lease that holds a table must be synced before the reply.
      if (holdsTable(l.state)) this.#durable = true;
      if (l.state === "bound" && l.expiresAt < this.#earliestWritten) {
        this.#earliestWritten = l.expiresAt;
      }
    }
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    // The rows as written now (the caller may change its lease objects later), and only for the
    // transaction's first update: the row cache takes a lone update's rows, never a crowd's.
    const rows = this.#pending.length === 0 ? rowsOf(clientId, leases) : undefined;
    this.#pending.push({ promise, resolve, reject, clientId, previousVersion, rows });
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => {
        if (this.#flushQueued) this.flush().catch(() => {});
      });
    }
    return promise;
  }

  /** Queues the leases of one client that expiry reclaimed, announced after the commit. */
  addExpired(clientId: string, previousVersion: number, expired: Lease[]): void {
    this.#pending.push({ resolve: () => {}, reject: () => {}, clientId, previousVersion, expired });
  }

  /**
   * Commits the open transaction and, when it holds a table, syncs the WAL;
   * then the updates resolve. With `background`, the sync runs on a worker
   * thread and this resolves when it is done.
   */
  flush(options: FlushOptions = {}): Promise<void> {
    this.#flushQueued = false;
    if (!this.#inTransaction) return Promise.resolve();
    if (this.#pending.length === 0) {
      this.#endRead();
      return Promise.resolve();
    }
    const pending = this.#pending;
    const durable = this.#durable;
    const earliest = this.#earliestWritten;
    this.#pending = [];
    this.#inTransaction = false;
    this.#durable = false;
    this.#earliestWritten = Infinity;
    try {
      // The last moment to notice the file is gone before anything is acknowledged.
      const lost = this.#o.checkFile();
      if (lost) throw lost;
      this.#o.q.commitStatement.run();
    } catch (error) {
      try {
        this.#o.db.exec("ROLLBACK");
      } catch { /* the transaction may already be gone; the versions below are what matters */ }
      return Promise.reject(this.#fail(pending, wrap("cannot commit", error)));
    }
    // Committed: the file holds these rows now (a failed sync later is final). Only a lone
    // update's: a crowd's lookups find SQLite's pages warm, and its rows kept a while are
    // promoted by V8 (row_cache.ts).
    if (pending.length === 1 && pending[0].rows) {
      this.#o.rows.committed(pending[0].clientId, pending[0].rows);
    }
    this.#o.committed(earliest);
    const wal = this.#o.wal;
    if (!durable || !wal) return this.#madeDurable(pending, options);
    if (!syncInBackground(options)) {
      try {
        wal.syncNow();
      } catch (error) {
        return Promise.reject(this.#fail(pending, wrap("cannot commit", error)));
      }
      return this.#madeDurable(pending, options);
    }
    return wal.sync().then(
      () => this.#madeDurable(pending, options),
      (error) => {
        throw this.#fail(pending, wrap("cannot commit", error));
      },
    );
  }

  /**
   * The commit is durable: its updates resolve, and the caller hears
   * which they are before any reaction to them runs.
   */
  #madeDurable(pending: Pending[], options: FlushOptions): Promise<void> {
    this.#settle(pending);
    if (options.durable) {
      const updates = new Set<Promise<void>>();
      for (const p of pending) if (p.promise) updates.add(p.promise);
      options.durable(updates);
    }
    return Promise.resolve();
  }

  /** Resolves committed updates and announces what their commit expired. */
  #settle(pending: Pending[]): void {
    for (const p of pending) {
      this.#o.versions.committed(p.clientId);
      if (p.expired) { for (const lease of p.expired) this.#o.announce(lease); }
      p.resolve();
    }
  }

  /**
   * A commit failed: its updates are rejected and their version bumps
   * undone (a TransientError leaves their tokens valid). Returns the error.
   */
  #fail(pending: Pending[], failure: Error): Error {
    for (let i = pending.length - 1; i >= 0; i--) {
      this.#o.versions.undo(pending[i].clientId, pending[i].previousVersion);
    }
    for (const p of pending) p.reject(failure);
    this.#o.failed();
    return failure;
  }
}
