/**
 * What the server knows of its tables: the pools (which tables are free)
 * and the reservations (which tables are held for whom, and whether their
 * owner holds them now). Pure: built from what the store holds (the store
 * is the source of truth: the server rebuilds this at start, and for a
 * store shared with other servers again from time to time), changed only
 * by the daemon's calls.
 *
 * The daemon's decisions read it through {@link AllocationView} and never
 * change it: a decision names a {@link Choice}, the daemon applies it when
 * it issues the write and undoes it when the write fails.
 *
 * A table may also be held for one identity until a deadline ({@link Hold}:
 * after an admin release, or at start while the kernel's rules still route
 * an address through it): it is taken, nobody else gets it, and that
 * identity's next request does (a `held` choice).
 *
 * @module
 */

import type { PoolConfig } from "../../config/pools.ts";
import { type Pool, PoolSet } from "./pool_set.ts";
import { type AddrFamily, familyName } from "../net/family.ts";
import type { Identity } from "../protocol/v1.ts";
import type { Lease, TableRun } from "../store/lease_store.ts";
import { type Hold, Holds } from "./holds.ts";

export type { Hold, HoldReason } from "./holds.ts";

/** Where a new lease's table comes from: what to take, and to give back if the write fails. */
export type Choice =
  | { kind: "reservation"; table: number; reservation: Lease }
  | { kind: "pool"; table: number; pool: Pool }
  /** The table held for this identity. */
  | { kind: "held"; table: number; hold: Hold };

/** The family of a chosen table. */
export function choiceFamily(choice: Choice): AddrFamily {
  return choice.kind === "reservation"
    ? choice.reservation.family
    : choice.kind === "held"
    ? choice.hold.family
    : choice.pool.family;
}

/** Why no table could be chosen. */
export interface NoTable {
  code: "no_pool" | "pool_exhausted";
  message: string;
}

/** What a decision may read of the allocation. */
export interface AllocationView {
  /** The reservation that names this identity: its address exactly first, then `*`. */
  reservationFor(identity: Identity): Lease | undefined;
  /** Whether a reserved table is bound to an identity now. */
  isReservedBound(family: AddrFamily, table: number): boolean;
  /** The table held for this identity, if any. */
  heldFor(identity: Identity): Hold | undefined;
  /**
   * The table a new lease of this identity would get, without taking it:
   * the one held for it, else its reservation's when not bound (nor held
   * for another), else the lowest free table of the first pool that
   * serves the request.
   */
  propose(identity: Identity, tag: string | undefined): Choice | NoTable;
}

/**
 * One number per (family, table): tables are below 2^32 and families below
 * 16, so this is exact, and cheaper than a string per lookup (a rebuild
 * looks up every stored lease).
 */
const key = (family: AddrFamily, table: number) => table * 16 + family;

/** Pools and reservations, with what is taken. */
export class Allocation implements AllocationView {
  readonly pools: PoolSet;
  /** Reservations by `family/table`. */
  #reserved = new Map<number, Lease>();
  /** `family/table` of reserved tables bound to an identity now. */
  #boundReserved = new Set<number>();
  /** Bound leases whose table is in no pool and not reserved (after a config change). */
  outside = 0;
  /** Tables held for one identity until a deadline. */
  readonly #holds = new Holds();

  private constructor(pools: readonly PoolConfig[]) {
    this.pools = new PoolSet(pools);
  }

  /**
   * Builds the state from what a store holds: every reservation and every
   * table a lease holds (`usedTables()`, where a bound reserved table
   * appears twice) marks its table taken. `onOutside` hears of bound
   * leases that no pool or reservation holds (kept until they end).
   */
  static build(
    pools: readonly PoolConfig[],
    reservations: Iterable<Lease>,
    usedTables: Iterable<readonly [AddrFamily, number]>,
    onOutside: (family: AddrFamily, table: number) => void = () => {},
  ): Allocation {
    const state = new Allocation(pools);
    for (const reservation of reservations) state.#addReservation(reservation);
    state.#markUsed(usedTables, onOutside);
    return state;
  }

  /**
   * Builds the state from the reservations and the runs of tables the
   * bound leases hold (`boundTables()`): a bound table that is reserved
   * marks its reservation bound. `onOutside` hears of bound tables no pool
   * or reservation holds (kept until they end). A run is marked in one
   * sweep, so 100,000 leases take a millisecond or two.
   */
  static fromBound(
    pools: readonly PoolConfig[],
    reservations: Iterable<Lease>,
    bound: ReadonlyMap<AddrFamily, readonly TableRun[]>,
    onOutside: (family: AddrFamily, table: number) => void = () => {},
  ): Allocation {
    const state = new Allocation(pools);
    for (const reservation of reservations) state.#addReservation(reservation);
    for (const [family, runs] of bound) {
      const taken = (table: number) => {
        state.outside++;
        onOutside(family, table);
      };
      for (const [first, last] of runs) {
        for (let table = first; table <= last;) {
          const k = key(family, table);
          if (state.#reserved.has(k)) {
            state.#boundReserved.add(k);
            table++;
            continue;
          }
          const range = state.pools.rangeOf(family, table);
          if (!range) {
            taken(table++);
            continue;
          }
          // Up to the run's end, the range's, or the next reserved table, whichever is first.
          let end = Math.min(last, range.first + range.size - 1);
          for (const r of state.#reserved.values()) {
            if (r.family === family && r.table > table && r.table <= end) end = r.table - 1;
          }
          range.takeRange(table, end, taken);
          table = end + 1;
        }
      }
    }
    return state;
  }

  /**
   * A bound lease of the store, read after {@link build}: its table is
   * taken (a reserved one bound to its owner). `onOutside` hears of a table
   * no pool or reservation holds.
   */
  markBound(
    family: AddrFamily,
    table: number,
    onOutside: (family: AddrFamily, table: number) => void = () => {},
  ): void {
    const k = key(family, table);
    if (this.#reserved.has(k)) this.#boundReserved.add(k);
    else if (!this.pools.take(family, table)) {
      this.outside++;
      onOutside(family, table);
    }
  }

  /** Marks the tables of `usedTables()` taken (a bound reserved table is listed twice). */
  #markUsed(
    usedTables: Iterable<readonly [AddrFamily, number]>,
    onOutside: (family: AddrFamily, table: number) => void = () => {},
  ): void {
    const seen = new Set<number>();
    for (const [family, table] of usedTables) {
      const k = key(family, table);
      if (this.#reserved.has(k)) {
        // A reserved table is listed once for its reservation and once more when bound.
        if (seen.has(k)) this.#boundReserved.add(k);
        seen.add(k);
      } else if (!this.pools.take(family, table)) {
        this.outside++;
        onOutside(family, table);
      }
    }
  }

  /** Every reservation. */
  get reservations(): Lease[] {
    return [...this.#reserved.values()];
  }

  /** The reservation of a table, if any. */
  reservationOf(family: AddrFamily, table: number): Lease | undefined {
    return this.#reserved.get(key(family, table));
  }

  /** Whether a reserved table is bound to an identity now. */
  isReservedBound(family: AddrFamily, table: number): boolean {
    return this.#boundReserved.has(key(family, table));
  }

  /** The reservation that names this identity: its address exactly first, then `*`. */
  reservationFor(identity: Identity): Lease | undefined {
    let any: Lease | undefined;
    for (const r of this.#reserved.values()) {
      if (r.family !== identity.family || r.ifname !== identity.ifname) continue;
      if (r.address === identity.address) return r;
      if (r.address === "*") any = r;
    }
    return any;
  }

  /**
   * The table for a new lease, not yet taken: the identity's reservation
   * when its table is not bound, else the lowest free table of the first
   * pool that serves the request. {@link apply} takes it.
   */
  propose(identity: Identity, tag: string | undefined): Choice | NoTable {
    const hold = this.#holds.forIdentity(identity);
    if (hold) return { kind: "held", table: hold.table, hold };
    const reservation = this.reservationFor(identity);
    if (
      reservation && !this.isReservedBound(reservation.family, reservation.table) &&
      !this.#holds.of(reservation.family, reservation.table)
    ) {
      return { kind: "reservation", table: reservation.table, reservation };
    }
    const pool = this.pools.select(identity.family, identity.ifname, tag);
    if (!pool) {
      return {
        code: "no_pool",
        message: `no pool of family ${
          familyName(identity.family)
        } serves ifname ${identity.ifname}${
          tag === undefined ? " without a tag" : ` with tag ${tag}`
        }`,
      };
    }
    const table = pool.lowestFree();
    if (table === undefined) {
      return {
        code: "pool_exhausted",
        message: `all ${pool.size} tables of pool ${pool.name} (${pool.describe()}) are taken`,
      };
    }
    return { kind: "pool", table, pool };
  }

  /** Takes a chosen table; {@link undo} gives it back if the lease is not written. */
  apply(choice: Choice): void {
    if (choice.kind === "reservation") {
      this.#boundReserved.add(key(choice.reservation.family, choice.table));
    } else if (choice.kind === "pool") choice.pool.take(choice.table);
    else {
      // The held table stays taken: from now on by the lease.
      this.#holds.remove(choice.hold.family, choice.table);
      if (this.#reserved.has(key(choice.hold.family, choice.table))) {
        this.#boundReserved.add(key(choice.hold.family, choice.table));
      }
    }
  }

  /** Gives back a table chosen for a lease that was not written. */
  undo(choice: Choice): void {
    if (choice.kind === "reservation") {
      this.#boundReserved.delete(key(choice.reservation.family, choice.table));
    } else if (choice.kind === "pool") choice.pool.release(choice.table);
    else {
      this.#boundReserved.delete(key(choice.hold.family, choice.table));
      this.#holds.add(choice.hold);
    }
  }

  /** The table held for this identity, if any. */
  heldFor(identity: Identity): Hold | undefined {
    return this.#holds.forIdentity(identity);
  }

  /** Every held table, in table order. */
  get holds(): Hold[] {
    return this.#holds.list();
  }

  /** The earliest end of a hold (ms), or Infinity. */
  nextHoldEnd(): number {
    return this.#holds.next();
  }

  /** How many of a pool's tables are held. */
  heldIn(pool: Pool): number {
    return this.#holds.list().filter((h) => h.family === pool.family && pool.contains(h.table))
      .length;
  }

  /**
   * Holds a free table for an identity (at start, for a table the kernel's
   * rules still use). False, and nothing held, when the table is taken,
   * bound, or in no pool and not reserved.
   */
  holdFree(hold: Hold): boolean {
    const k = key(hold.family, hold.table);
    if (this.#holds.of(hold.family, hold.table)) return false;
    if (this.#reserved.has(k)) {
      if (this.#boundReserved.has(k)) return false;
    } else if (!this.pools.take(hold.family, hold.table)) return false;
    this.#holds.add(hold);
    return true;
  }

  /**
   * A bound lease ended by an administrator: its table, instead of going
   * back, is held for its identity ({@link Hold}). False, and nothing
   * changed, for a table no pool or reservation holds (nobody could get
   * that one anyway): the caller ends it with {@link ended}.
   */
  endedHeld(lease: Lease, hold: Hold): boolean {
    const k = key(lease.family, lease.table);
    if (!this.#reserved.has(k) && !this.pools.poolOf(lease.family, lease.table)) return false;
    this.#boundReserved.delete(k);
    // Taken already by the lease (a shared store's other server may have freed it here: take it).
    if (!this.#reserved.has(k)) this.pools.take(lease.family, lease.table);
    this.#holds.add(hold);
    return true;
  }

  /** Ends the hold of a table: it goes back to its pool (or reservation). Returns the hold. */
  endHold(family: AddrFamily, table: number): Hold | undefined {
    const hold = this.#holds.remove(family, table);
    if (hold && !this.#reserved.has(key(family, table))) this.pools.release(family, table);
    return hold;
  }

  /** Ends and returns the holds whose deadline is at or before `now`. */
  endDueHolds(now: number): Hold[] {
    const due = this.#holds.due(now);
    for (const hold of due) {
      if (!this.#reserved.has(key(hold.family, hold.table))) {
        this.pools.release(hold.family, hold.table);
      }
    }
    return due;
  }

  /**
   * Another writer holds this table (a store shared with other servers):
   * mark it taken here until the next rebuild.
   */
  markTaken(family: AddrFamily, table: number): void {
    const k = key(family, table);
    if (this.#reserved.has(k)) this.#boundReserved.add(k);
    else this.pools.take(family, table);
  }

  /**
   * A bound lease ended (released, expired, moved): its table goes back to
   * its reservation or its pool. Returns false for a table no pool or
   * reservation holds (a lease left outside by a config change).
   */
  ended(lease: Lease): boolean {
    return this.free(lease.family, lease.table);
  }

  /**
   * A table is free again (its lease ended, or a claim on it was given
   * back): to its reservation or its pool. False for a table that no pool
   * or reservation holds. Freeing a free table changes nothing.
   */
  free(family: AddrFamily, table: number): boolean {
    const k = key(family, table);
    if (this.#reserved.has(k)) {
      this.#boundReserved.delete(k);
      return true;
    }
    if (this.pools.poolOf(family, table)) {
      // Already free here when another server granted it (a shared store).
      this.pools.release(family, table);
      return true;
    }
    if (this.outside > 0) this.outside--;
    return false;
  }

  /** A reservation was written: its table is held from now on. `bound`: its owner holds it. */
  reserved(reservation: Lease, bound: boolean): void {
    this.#addReservation(reservation);
    if (bound) this.#boundReserved.add(key(reservation.family, reservation.table));
  }

  /** A reservation was removed: an unbound table goes back to its pool. */
  unreserved(reservation: Lease): void {
    const k = key(reservation.family, reservation.table);
    this.#reserved.delete(k);
    // A bound table stays taken by its lease; the pool gets it when that lease ends.
    if (!this.#boundReserved.delete(k)) this.pools.release(reservation.family, reservation.table);
  }

  #addReservation(reservation: Lease): void {
    this.#reserved.set(key(reservation.family, reservation.table), reservation);
    this.pools.take(reservation.family, reservation.table);
  }
}
