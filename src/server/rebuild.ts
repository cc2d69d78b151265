/**
 * Building the allocation from the store, the source of truth: at start,
 * after a reload, and for a store shared with other servers from time to
 * time. Every reservation and every stored lease marks its table taken; a
 * lease whose table no pool holds any more is kept and reported; tables
 * held for an identity stay held unless the store has leased them
 * meanwhile.
 *
 * The periodic rebuild of a shared store runs in the background
 * ({@link BackgroundRebuild}): the bound leases are read page by page while
 * the daemon keeps serving from the old allocation, and the tables it
 * takes and frees meanwhile are recorded and applied to the new one before
 * it replaces the old, so none is lost. With 335,000 leases, reading and
 * marking them takes about a second: awaited in the loop, that was a
 * second without answers every 5 s; now no answer waits for it.
 *
 * @module
 */

import type { ServerConfig } from "../../config/config.ts";
import { enabledFamilies } from "../../config/config.ts";
import { Allocation, type Hold } from "../allocator/allocation.ts";
import type { Logger } from "../log/logger.ts";
import { familyName } from "../net/family.ts";
import { type Lease, type LeaseStore, listAll } from "../store/lease_store.ts";
import { logHoldEnded } from "./upkeep.ts";
import type { Carried } from "./receiver.ts";
import { RESYNC_INTERVAL_MS } from "./daemon_options.ts";
import { errorMessage } from "../util/errors.ts";

/** Leases outside the pools logged one by one before the rest are counted. */
const LOGGED = 10;

/** What a rebuild reads. */
export interface RebuildInput {
  config: ServerConfig;
  store: LeaseStore;
  log: Logger;
  /** Log the leases left outside the pools (at start and after a reload). */
  report: boolean;
  /** The holds of the allocation being replaced. */
  holds: readonly Hold[];
}

/** A new allocation from the store's leases and reservations, with the holds carried over. */
export async function rebuildAllocation(input: RebuildInput): Promise<Allocation> {
  const { config, store, log } = input;
  const reservations: Lease[] = [];
  for await (const r of listAll(store, { state: "reserved" })) reservations.push(r);
  const families = enabledFamilies(config.addrFamilies);
  let outside = 0;
  const allocation = Allocation.fromBound(
    config.pools,
    reservations,
    await store.boundTables(),
    (family, table) => {
      if (!input.report || outside++ >= LOGGED) return;
      log.warn(
        "stored lease outside the configured pools is kept until it expires or is released",
        {
          family: familyName(family),
          table,
          reason: families.includes(family) ? "table in no pool" : "family disabled",
        },
      );
    },
  );
  if (outside > LOGGED) {
    log.warn("more stored leases outside the configured pools are kept", {
      count: outside - LOGGED,
    });
  }
  carryHolds(allocation, input.holds, log);
  return allocation;
}

/**
 * Holds the tables of the allocation being replaced in the new one, unless
 * the store has leased them meanwhile (logged as the hold's end).
 */
export function carryHolds(allocation: Allocation, holds: readonly Hold[], log: Logger): void {
  for (const hold of holds) {
    if (allocation.holdFree(hold)) continue;
    const ours = allocation.pools.poolOf(hold.family, hold.table) ||
      allocation.reservationOf(hold.family, hold.table);
    logHoldEnded(log, hold, ours ? "leased_meanwhile" : "outside_pools");
  }
}

/**
 * Bound leases read per page by a background rebuild: each page is a small
 * query and a small parse, so the daemon's passes run between pages.
 */
export const REBUILD_PAGE = 2000;

/**
 * Builds the allocation from the store page by page ({@link REBUILD_PAGE}
 * bound leases at a time), for a rebuild while the daemon serves; no held
 * tables (the caller carries them over with {@link carryHolds}). The pages
 * are not one snapshot: with a store shared by other servers the
 * allocation is a hint anyway, and the store's unique indexes decide.
 */
export async function loadAllocationInPages(
  config: ServerConfig,
  store: LeaseStore,
): Promise<Allocation> {
  const reservations: Lease[] = [];
  for await (const r of listAll(store, { state: "reserved" })) reservations.push(r);
  const allocation = Allocation.build(config.pools, reservations, []);
  let after: string | undefined;
  do {
    const page = await store.list({ state: "bound", after, limit: REBUILD_PAGE });
    for (const lease of page.leases) allocation.markBound(lease.family, lease.table);
    after = page.next;
  } while (after);
  return allocation;
}

/** One rebuild in the background, and the changes to apply to its result. */
export class BackgroundRebuild {
  #journal: Array<(allocation: Allocation) => void> = [];
  #result: Allocation | Error | undefined;

  /** Starts `load`; `onDone` is told when it settled (to wake the daemon's loop). */
  constructor(load: () => Promise<Allocation>, onDone: () => void) {
    load().then(
      (allocation) => this.#result = allocation,
      (error) => this.#result = error instanceof Error ? error : new Error(String(error)),
    ).finally(onDone);
  }

  /** Whether the rebuild has settled. */
  get done(): boolean {
    return this.#result !== undefined;
  }

  /** Records a change made to the current allocation, to be made to the new one too. */
  record(change: (allocation: Allocation) => void): void {
    this.#journal.push(change);
  }

  /**
   * The new allocation with the recorded changes applied (once {@link done}),
   * or the error that ended the rebuild.
   */
  result(): Allocation | Error {
    const result = this.#result;
    if (result === undefined) throw new Error("the rebuild is still running");
    if (result instanceof Allocation) { for (const change of this.#journal) change(result); }
    this.#journal = [];
    return result;
  }
}

/** What {@link Resync} works with. */
export interface ResyncOptions {
  /** Other servers write to the store: rebuild every {@link RESYNC_INTERVAL_MS}. */
  shared: boolean;
  now: () => number;
  /** Reads the store into a new allocation (without holds). */
  load: () => Promise<Allocation>;
  /** Wakes the daemon's loop (parked in poll(2)) when a rebuild is in. */
  wake: () => void;
  log: Logger;
}

/**
 * When and how the daemon rebuilds its allocation while serving: every
 * {@link RESYNC_INTERVAL_MS} with a shared store, and when asked (a
 * collision, a pool that looked full); one {@link BackgroundRebuild} at a
 * time, the changes made meanwhile recorded, and the requests that wait
 * for it let on when it is in.
 */
export class Resync {
  #o: ResyncOptions;
  #at = Infinity;
  #due = false;
  #running: BackgroundRebuild | undefined;
  /** Requests let on when the running rebuild is in. */
  #waiting: Carried[] = [];
  /**
   * Requests that asked while a rebuild ran: that one may have read the
   * store before the change they need (another server's release), so they
   * wait for the next, started as soon as the running one is in.
   */
  #waitingNext: Carried[] = [];

  /** A resync for a daemon. */
  constructor(options: ResyncOptions) {
    this.#o = options;
  }

  /** The allocation was just built from the store: the next rebuild is an interval away. */
  loaded(): void {
    if (this.#o.shared) this.#at = this.#o.now() + RESYNC_INTERVAL_MS;
    this.#due = false;
  }

  /** Asks for a rebuild before the next pass (after the running one, if any). */
  ask(): void {
    this.#due = true;
  }

  /** Whether a rebuild is running. */
  get running(): boolean {
    return this.#running !== undefined;
  }

  /** Starts a rebuild when one is due and none runs (before a pass). */
  maybeStart(): void {
    if (!this.#running && (this.#due || this.#o.now() >= this.#at)) this.#start();
  }

  /** Records a change made to the current allocation, for the one being rebuilt. */
  record(change: (allocation: Allocation) => void): void {
    this.#running?.record(change);
  }

  /**
   * Requests that look again once the store is read anew, by a rebuild
   * that starts after they asked: now if none runs, else right after the
   * running one.
   */
  wait(carried: readonly Carried[]): void {
    if (this.#running) {
      this.#waitingNext.push(...carried);
      return;
    }
    this.#waiting.push(...carried);
    this.#start();
  }

  /**
   * Once a rebuild is in: the new allocation, with the held tables of
   * `current` carried over (undefined when the rebuild failed, which is
   * logged), and the requests that waited for it. Undefined while none is in.
   */
  take(
    current: Allocation,
  ): { allocation: Allocation | undefined; waiting: Carried[] } | undefined {
    const running = this.#running;
    if (!running?.done) return undefined;
    this.#running = undefined;
    const result = running.result();
    let allocation: Allocation | undefined;
    if (result instanceof Error) {
      this.#o.log.error("cannot rebuild the allocation from the store", {
        error: errorMessage(result),
      });
    } else {
      carryHolds(result, current.holds, this.#o.log);
      allocation = result;
    }
    this.#at = this.#o.now() + RESYNC_INTERVAL_MS;
    const waiting = this.#waiting;
    this.#waiting = this.#waitingNext;
    this.#waitingNext = [];
    if (this.#waiting.length > 0) this.#start();
    return { allocation, waiting };
  }

  #start(): void {
    this.#due = false;
    this.#running = new BackgroundRebuild(this.#o.load, this.#o.wake);
  }
}
