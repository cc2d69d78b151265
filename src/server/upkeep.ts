/**
 * The daemon's timers between passes: held tables whose deadline passed go
 * back to their pools (logged), and systemd hears the watchdog ping and the
 * status line. The loop asks {@link Upkeep.idleTimeout} how long it may
 * sleep, so none of this needs a timer of its own, and a loop that hangs
 * stops the watchdog pings, as it should.
 *
 * @module
 */

import type { Allocation, Hold } from "../allocator/allocation.ts";
import type { Logger } from "../log/logger.ts";
import { familyName } from "../net/family.ts";
import type { SystemdNotifier } from "./notify.ts";
import { statusLine } from "./views.ts";

/** Why a hold ended. */
export type HoldEnd = "confirmed" | "expired" | "superseded" | "leased_meanwhile" | "outside_pools";

/** Logs the end of a hold: which table, for whom, and why. */
export function logHoldEnded(log: Logger, hold: Hold, reason: HoldEnd): void {
  log.info("hold ended", {
    family: familyName(hold.family),
    ifname: hold.ifname,
    address: hold.address,
    table: hold.table,
    reason,
    held_for: hold.reason,
  });
}

/** What the upkeep works with. */
export interface UpkeepContext {
  /** The daemon's allocation now (replaced when it is rebuilt). */
  allocation: () => Allocation;
  /** Wall clock, ms. */
  now: () => number;
  log: Logger;
  notifier?: SystemdNotifier | undefined;
}

/** The timers of the daemon's loop. */
export class Upkeep {
  readonly #c: UpkeepContext;
  /** When the notifier wants to run again (`performance.now()` time). */
  #notifyAt = 0;

  /** Upkeep over the daemon's parts. */
  constructor(context: UpkeepContext) {
    this.#c = context;
  }

  /** How long the loop may sleep for lack of datagrams: until the next timer (-1: none). */
  idleTimeout(): number {
    const holdEnd = this.#c.allocation().nextHoldEnd() - this.#c.now();
    const notify = this.#c.notifier?.enabled ? this.#notifyAt - performance.now() : Infinity;
    const wait = Math.min(holdEnd, notify);
    return wait === Infinity ? -1 : Math.max(0, Math.ceil(wait));
  }

  /** Ends the holds that are due, then pings and updates systemd when it is time. */
  tick(): void {
    const allocation = this.#c.allocation();
    for (const hold of allocation.endDueHolds(this.#c.now())) {
      logHoldEnded(this.#c.log, hold, "expired");
    }
    const notifier = this.#c.notifier;
    if (notifier?.enabled && performance.now() >= this.#notifyAt) {
      this.#notifyAt = performance.now() + notifier.tick(() => statusLine(this.#c.allocation()));
    }
  }
}
