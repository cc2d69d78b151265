/**
 * Expiry, as both stores run it: the listeners that hear of reclaimed
 * leases, and one timer on the earliest expiry.
 *
 * @module
 */

import type { ExpiryListener, Lease } from "./lease_store.ts";
import { after, type Timer } from "../util/timer.ts";

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
 * One timer on a wall-clock time. Arming it again replaces the time. A
 * replaced timer lingers until its own time (`timer.ts`), so the stores
 * arm it again only for an earlier time or after it fired; a timer that
 * fires early after a change of the wall clock finds no lease due, and
 * the callback arms it on the next one.
 */
export class ExpiryTimer {
  #now: () => number;
  #fire: () => void;
  #timer: Timer | undefined;
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
    this.#timer = after(at - this.#now(), () => {
      this.#timer = undefined;
      this.#at = Infinity;
      this.#fire();
    });
  }

  /** Disarms the timer. */
  clear(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#at = Infinity;
  }
}
