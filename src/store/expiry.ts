/**
 * Expiry, as both stores run it: the listeners that hear of reclaimed
 * leases, and one timer on the earliest expiry.
 *
 * @module
 */

import type { ExpiryListener, Lease } from "./lease_store.ts";

/** setTimeout's limit is 2^31-1 ms; a later expiry fires early and is re-armed. */
const MAX_TIMER_MS = 2 ** 30;

/** The expiry listeners of a store. */
export class ExpiryNotifier {
  #listeners = new Set<ExpiryListener>();

  /** Registers a listener; returns the unregister function (`onExpire()`). */
  listen(listener: ExpiryListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Tells every listener of a reclaimed lease. */
  announce(lease: Lease): void {
    for (const listener of this.#listeners) {
      try {
        listener(lease);
      } catch { /* a failing listener must not stop expiry for the others */ }
    }
  }
}

/**
 * One timer on a wall-clock time. Arming it again replaces the time; a
 * time past setTimeout's range fires early, and the callback (which looks
 * for due leases and re-arms on the next one) simply finds none due.
 */
export class ExpiryTimer {
  #now: () => number;
  #fire: () => void;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #at = Infinity;

  /** A timer that calls `fire` at the armed time of the clock `now` (ms). */
  constructor(now: () => number, fire: () => void) {
    this.#now = now;
    this.#fire = fire;
  }

  /** The armed time in ms since the epoch; Infinity when not armed. */
  get at(): number {
    return this.#at;
  }

  /** Whether the timer will fire. */
  get armed(): boolean {
    return this.#timer !== undefined;
  }

  /** Fires at `at` (ms since the epoch; Infinity disarms) instead of the time armed before. */
  arm(at: number): void {
    if (at === this.#at && this.armed) return;
    this.clear();
    this.#at = at;
    if (at === Infinity) return;
    const delay = Math.min(Math.max(0, at - this.#now()), MAX_TIMER_MS);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#at = Infinity;
      this.#fire();
    }, delay);
  }

  /** Disarms the timer. */
  clear(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#at = Infinity;
  }
}
