/**
 * What the server knows of its tables: the pools (which tables are free)
 * and the reservations (which tables are held for whom, and whether their
 * owner holds them now). Rebuilt from the store, which is the source of
 * truth: at start, and for a store shared with other servers, again from
 * time to time.
 *
 * @module
 */

import type { ServerConfig } from "../../config/config.ts";
import { type Pool, PoolSet } from "../allocator/pool_set.ts";
import { type AddrFamily, familyName } from "../net/family.ts";
import type { Identity } from "../protocol/v1.ts";
import type { Lease, LeaseStore } from "../store/lease_store.ts";

/** Where a new lease's table came from, to undo it if the write fails. */
export type Choice =
  | { kind: "reservation"; table: number; reservation: Lease }
  | { kind: "pool"; table: number; pool: Pool };

/** Why no table could be chosen. */
export interface NoTable {
  code: "no_pool" | "pool_exhausted";
  message: string;
}

const key = (family: AddrFamily, table: number) => `${family}/${table}`;

/** Pools and reservations, with what is taken. */
export class Allocation {
  readonly pools: PoolSet;
  /** Reservations by `family/table`. */
  #reserved = new Map<string, Lease>();
  /** `family/table` of reserved tables bound to an identity now. */
  #boundReserved = new Set<string>();
  /** Bound leases whose table is in no pool and not reserved (after a config change). */
  outside = 0;

  private constructor(config: ServerConfig) {
    this.pools = new PoolSet(config.pools);
  }

  /**
   * Builds the state from the store: every reservation and every bound
   * lease marks its table taken. `onOutside` hears of bound leases that no
   * pool or reservation holds (kept until they end).
   */
  static async load(
    config: ServerConfig,
    store: LeaseStore,
    onOutside: (family: AddrFamily, table: number) => void = () => {},
  ): Promise<Allocation> {
    const state = new Allocation(config);
    for await (const reservation of listAll(store, "reserved")) state.#addReservation(reservation);
    const seen = new Set<string>();
    for (const [family, table] of await store.usedTables()) {
      const k = key(family, table);
      if (state.#reserved.has(k)) {
        // A reserved table is listed once for its reservation and once more when bound.
        if (seen.has(k)) state.#boundReserved.add(k);
        seen.add(k);
      } else if (!state.pools.take(family, table)) {
        state.outside++;
        onOutside(family, table);
      }
    }
    return state;
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
   * Chooses the table for a new lease: the identity's reservation when its
   * table is not bound, else the lowest free table of the first pool that
   * serves the request. The table is taken at once; {@link undo} gives it
   * back if the lease is not written.
   */
  choose(identity: Identity, tag: string | undefined): Choice | NoTable {
    const reservation = this.reservationFor(identity);
    if (reservation && this.claimReserved(reservation)) {
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
    if (pool.free === 0) {
      return {
        code: "pool_exhausted",
        message: `all ${pool.size} tables of pool ${pool.name} (${pool.describe()}) are taken`,
      };
    }
    return { kind: "pool", table: pool.allocate(), pool };
  }

  /** Marks a reservation's table bound; false when it already is. */
  claimReserved(reservation: Lease): boolean {
    const k = key(reservation.family, reservation.table);
    if (this.#boundReserved.has(k)) return false;
    this.#boundReserved.add(k);
    return true;
  }

  /** Gives back a table chosen for a lease that was not written. */
  undo(choice: Choice): void {
    if (choice.kind === "reservation") {
      this.#boundReserved.delete(key(choice.reservation.family, choice.table));
    } else choice.pool.release(choice.table);
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
    const k = key(lease.family, lease.table);
    if (this.#reserved.has(k)) {
      this.#boundReserved.delete(k);
      return true;
    }
    if (this.pools.poolOf(lease.family, lease.table)) {
      // Already free here when another server granted it (a shared store).
      this.pools.release(lease.family, lease.table);
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

/** Every lease of a state, page by page. */
export async function* listAll(store: LeaseStore, state: Lease["state"]): AsyncGenerator<Lease> {
  let after: string | undefined;
  do {
    const page = await store.list({ state, after, limit: 1000 });
    yield* page.leases;
    after = page.next;
  } while (after);
}
