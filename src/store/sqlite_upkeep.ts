/**
 * The SQLite store's upkeep, off the commit path: the WAL checkpoints, the
 * history sweep and the check that the database file is still the one
 * opened. The store owns one {@link SqliteUpkeep}.
 *
 * - Checkpoints are the store's, off the commit path: SQLite's automatic
 *   checkpoint (which runs inside a COMMIT, before its reply) only guards
 *   the WAL's size; the store checkpoints from a timer
 *   {@link CHECKPOINT_DELAY_MS} after the first commit that follows a
 *   checkpoint, between passes. The WAL then starts over and is
 *   overwritten in place: a sync that does not grow the file has no size
 *   to record, which makes it cheaper.
 * - Lost when its file is: SQLite would go on committing into a file that
 *   was deleted or replaced, which nobody will open again. The store
 *   checks that its path still leads to the file it opened before every
 *   commit and every 250 ms (`file_guard.ts`); when it does not, every
 *   call fails with a StoreLostError and the fatal listeners are told. A
 *   path lock that outlives the path keeps a second server off meanwhile.
 *
 * @module
 */

import type { DatabaseSync } from "node:sqlite";
import { StoreLostError } from "./lease_store.ts";
import type { Statements } from "./sqlite_schema.ts";
import type { FileIdentity, PathLock } from "./file_guard.ts";
import { after, every, type Timer } from "../util/timer.ts";

/** How often an idle store checks that its database file is still its own. */
export const FILE_CHECK_INTERVAL_MS = 250;
/** How long after the first commit since the last checkpoint the store checkpoints. */
export const CHECKPOINT_DELAY_MS = 200;
/** Rows the history sweep looks at in one go. */
export const SWEEP_CHUNK = 500;

/** The file a store guards: what its path led to at open, and the lock on the path. */
export interface StoreGuard {
  identity: FileIdentity;
  pathLock: PathLock;
}

/** What the upkeep works with: the store's connection and a view of its state. */
export interface SqliteUpkeepOptions {
  db: DatabaseSync;
  q: Statements;
  /** Wall clock in ms. */
  now: () => number;
  /** How long `released` and `expired` leases are kept. */
  historyRetentionMs: number;
  /** Whether the store has a transaction open: its updates wait for their flush, due first. */
  inTransaction: () => boolean;
  /** The WAL's sync failure, if any: nothing is written after one. */
  walFailure: () => Error | undefined;
  /** The file to watch; none for an in-memory database. */
  guard: StoreGuard | undefined;
  /** After the history sweep removed rows. */
  pruned: () => void;
}

/** The timers of one `SqliteLeaseStore`: checkpoint, history sweep, file check. */
export class SqliteUpkeep {
  #o: SqliteUpkeepOptions;
  #checkpointTimer: Timer | undefined;
  #checkpoints = 0;
  #sweepTimer: Timer | undefined;
  #sweepEveryMs: number;
  /** Where the history sweep goes on: after this key; undefined: from the start. */
  #sweptTo: [string, number] | undefined;
  #guard: (StoreGuard & { timer: Timer }) | undefined;
  /** Set once the database file is gone: every call of the store fails with it. */
  #lost: StoreLostError | undefined;
  #fatalListeners = new Set<(error: StoreLostError) => void>();
  #closed = false;

  /** Starts the file check (when there is a file) and the history sweep. */
  constructor(options: SqliteUpkeepOptions) {
    this.#o = options;
    if (options.guard) {
      const timer = every(FILE_CHECK_INTERVAL_MS, () => this.checkFile());
      this.#guard = { ...options.guard, timer };
    }
    // A full sweep takes at most about a hundredth of the retention (or 10 s a chunk).
    this.#sweepEveryMs = Math.min(10_000, Math.max(20, options.historyRetentionMs / 100));
    this.#sweepTimer = after(this.#sweepEveryMs, () => this.#sweep());
  }

  /** Checkpoints the store ran. */
  get checkpoints(): number {
    return this.#checkpoints;
  }

  /** The loss of the database file, once noticed. */
  get lost(): StoreLostError | undefined {
    return this.#lost;
  }

  /** Registers a listener told once when the file is lost; returns its removal. */
  onFatal(listener: (error: StoreLostError) => void): () => void {
    this.#fatalListeners.add(listener);
    return () => this.#fatalListeners.delete(listener);
  }

  /** After a commit: a checkpoint {@link CHECKPOINT_DELAY_MS} later, unless one is due already. */
  scheduleCheckpoint(): void {
    this.#checkpointTimer ??= after(CHECKPOINT_DELAY_MS, () => this.#checkpoint());
  }

  /**
   * Checks that the path still leads to the file opened; the first time it
   * does not, the store is lost and the fatal listeners are told. Returns
   * the loss, if any.
   */
  checkFile(): StoreLostError | undefined {
    if (this.#lost || !this.#guard || this.#closed) return this.#lost;
    const problem = this.#guard.identity.check();
    if (problem === undefined) return undefined;
    this.#lost = new StoreLostError(
      `${problem}: nothing can be made durable any more (the server must restart)`,
    );
    this.#guard.timer.cancel();
    for (const listener of this.#fatalListeners) {
      try {
        listener(this.#lost);
      } catch { /* one listener's failure must not keep the others from hearing */ }
    }
    return this.#lost;
  }

  /** Stops every timer: the store calls it before it closes its database. */
  stop(): void {
    this.#closed = true;
    this.#checkpointTimer?.cancel();
    this.#sweepTimer?.cancel();
    this.#guard?.timer.cancel();
  }

  /** Stops every timer and lets go of the path lock: the store calls it last. */
  close(): void {
    this.stop();
    this.#guard?.pathLock.close();
  }

  /**
   * Copies the WAL back into the database file (PASSIVE: never waits for
   * readers), so the WAL starts over and stays small. Runs from a timer,
   * between the daemon's passes, instead of inside a commit.
   */
  #checkpoint(): void {
    this.#checkpointTimer = undefined;
    if (this.#closed) return;
    if (this.#o.inTransaction()) {
      // Updates wait for their flush (due first): try again after it.
      this.#checkpointTimer = after(0, () => this.#checkpoint());
      return;
    }
    try {
      this.#o.q.checkpoint.run();
      this.#checkpoints++;
    } catch { /* a failed checkpoint leaves the WAL longer; SQLite's own one still bounds it */ }
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
    const { db, q } = this.#o;
    // Updates waiting for their flush come first; the sweep goes on next time.
    if (!this.#o.inTransaction() && !this.#o.walFailure()) {
      try {
        q.beginStatement.run();
        try {
          const [afterClient, afterTable] = this.#sweptTo ?? ["", -1];
          const end = q.sweepChunkEnd.get(afterClient, afterTable, SWEEP_CHUNK - 1) as
            | [string, number]
            | undefined;
          const { changes } = q.pruneChunk.run(
            afterClient,
            afterTable,
            end?.[0] ?? null,
            end?.[1] ?? null,
            this.#o.now() - this.#o.historyRetentionMs,
          );
          q.commitStatement.run();
          if (Number(changes) > 0) {
            this.#o.pruned();
            this.scheduleCheckpoint();
          }
          this.#sweptTo = end ? [end[0], end[1]] : undefined;
        } catch (error) {
          db.exec("ROLLBACK");
          throw error;
        }
      } catch { /* locked by another writer: the next chunk tries again */ }
    }
    this.#sweepTimer = after(this.#sweepEveryMs, () => this.#sweep());
  }
}
