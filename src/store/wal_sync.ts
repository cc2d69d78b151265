/**
 * Durability of the SQLite store's commits, done by the store rather than
 * inside SQLite's COMMIT: the connection runs with `synchronous=NORMAL`
 * (a commit writes its WAL frames without waiting for the disk) and the
 * store then calls fdatasync(2) on the WAL file before it acknowledges
 * anything. The frames reach the disk exactly as with `synchronous=FULL`
 * (SQLite's FULL is one sync of the WAL per commit, and the WAL is
 * appended in order, so one fdatasync covers every commit before it), but
 * the wait can happen off the main thread: the server keeps receiving
 * while the disk works, and one sync covers every commit made while the
 * previous one was in flight.
 *
 * A failed sync is final: after a failed fdatasync Linux may have dropped
 * the dirty pages, so nothing written since the last good sync is known to
 * be on disk. Every later call fails with the same {@link TransientError}.
 *
 * @module
 */

import { errorMessage } from "../util/errors.ts";
import { TransientError } from "./lease_store.ts";

interface Waiter {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: Error) => void;
}

function waiter(): Waiter {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** fdatasync(2) of one WAL file, on the calling thread or on a worker thread. */
export class WalSync {
  #file: Deno.FsFile;
  #path: string;
  /** The sync running on a worker thread. */
  #inFlight: Promise<void> | undefined;
  /** Commits made while one was in flight: one more sync, started when it ends. */
  #next: Waiter | undefined;
  #failure: Error | undefined;
  /** Syncs issued (for tests and the benchmark). */
  syncs = 0;

  /** Opens the WAL file of an open WAL-mode database (`<db>-wal`), read only. */
  constructor(walPath: string) {
    this.#path = walPath;
    // fdatasync needs no write access; the file is SQLite's, we only flush it.
    this.#file = Deno.openSync(walPath, { read: true });
  }

  /** The failure of an earlier sync, if any: nothing may be acknowledged after it. */
  get failure(): Error | undefined {
    return this.#failure;
  }

  /** Makes every commit so far durable before returning (blocks this thread). */
  syncNow(): void {
    if (this.#failure) throw this.#failure;
    this.syncs++;
    try {
      this.#file.syncDataSync();
    } catch (error) {
      throw this.#fail(error);
    }
  }

  /**
   * Makes every commit so far durable on a worker thread; resolves once it
   * is. A call while a sync runs is served by one more sync after it,
   * shared with every other call made meanwhile.
   */
  sync(): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (!this.#inFlight) return this.#start();
    this.#next ??= waiter();
    return this.#next.promise;
  }

  #start(): Promise<void> {
    this.syncs++;
    const run = this.#file.syncData().then(
      () => {},
      (error) => {
        throw this.#fail(error);
      },
    );
    this.#inFlight = run;
    run.then(() => this.#chain(), () => this.#chain());
    return run;
  }

  /** Starts the sync that callers queued while the last one was in flight. */
  #chain(): void {
    this.#inFlight = undefined;
    const next = this.#next;
    this.#next = undefined;
    if (!next) return;
    if (this.#failure) next.reject(this.#failure);
    else this.#start().then(next.resolve, next.reject);
  }

  #fail(error: unknown): Error {
    this.#failure ??= new TransientError(
      `cannot make the WAL durable (fdatasync of ${this.#path} failed: ${errorMessage(error)}); ` +
        "nothing written since the last good sync is known to be on disk: restart the server",
      { cause: error },
    );
    return this.#failure;
  }

  /** Closes the file (after the caller's last sync). */
  close(): void {
    try {
      this.#file.close();
    } catch { /* already closed */ }
  }
}
