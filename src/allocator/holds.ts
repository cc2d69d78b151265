/**
 * Tables held back for one identity until a deadline: after an admin
 * release (until the holder confirms with its own release, or its lease's
 * old expiry), and at start for tables the kernel's rules still route
 * through (until the address asks again, or `readiness_delay`). A held
 * table goes to no one else; the identity it is held for gets it back.
 * Pure: no clock, no I/O.
 *
 * @module
 */

import type { AddrFamily } from "../net/family.ts";

/** Why a table is held. */
export type HoldReason = "admin_release" | "readiness";

/** One held table. */
export interface Hold {
  family: AddrFamily;
  table: number;
  /** The address it is held for (canonical text). */
  address: string;
  /** The interface, or undefined when any interface with that address counts (a kernel rule names none). */
  ifname: string | undefined;
  /** Wall-clock end of the hold, in ms. */
  until: number;
  reason: HoldReason;
  /**
   * The uid whose release confirms the hold (an admin release: the
   * released lease's taker; root may too). Undefined: anyone's.
   */
  uid?: number | undefined;
}

/** The identity fields a hold is matched on. */
export interface HoldIdentity {
  family: AddrFamily;
  ifname: string;
  address: string;
}

const tableKey = (family: AddrFamily, table: number) => `${family}/${table}`;
const addressKey = (family: AddrFamily, address: string) => `${family}/${address}`;

/** The held tables, by table and by address. */
export class Holds {
  readonly #byTable = new Map<string, Hold>();
  readonly #byAddress = new Map<string, Set<Hold>>();
  /** The earliest deadline, or null when it must be looked for again. */
  #next: number | null = Infinity;

  /** How many tables are held. */
  get size(): number {
    return this.#byTable.size;
  }

  /** Holds a table; a hold of the same table is replaced. */
  add(hold: Hold): void {
    this.remove(hold.family, hold.table);
    this.#byTable.set(tableKey(hold.family, hold.table), hold);
    if (this.#next !== null) this.#next = Math.min(this.#next, hold.until);
    const key = addressKey(hold.family, hold.address);
    const set = this.#byAddress.get(key) ?? new Set();
    set.add(hold);
    this.#byAddress.set(key, set);
  }

  /** The hold of a table, if any. */
  of(family: AddrFamily, table: number): Hold | undefined {
    return this.#byTable.get(tableKey(family, table));
  }

  /** The hold for this identity (its interface, or any), lowest table first. */
  forIdentity(identity: HoldIdentity): Hold | undefined {
    let best: Hold | undefined;
    for (const hold of this.#byAddress.get(addressKey(identity.family, identity.address)) ?? []) {
      if (hold.ifname !== undefined && hold.ifname !== identity.ifname) continue;
      if (!best || hold.table < best.table) best = hold;
    }
    return best;
  }

  /** Ends the hold of a table; returns it, or undefined when there was none. */
  remove(family: AddrFamily, table: number): Hold | undefined {
    const hold = this.#byTable.get(tableKey(family, table));
    if (!hold) return undefined;
    this.#byTable.delete(tableKey(family, table));
    if (hold.until === this.#next) this.#next = null;
    const key = addressKey(family, hold.address);
    const set = this.#byAddress.get(key)!;
    set.delete(hold);
    if (set.size === 0) this.#byAddress.delete(key);
    return hold;
  }

  /** Ends and returns every hold whose deadline is at or before `now` (cheap when none is). */
  due(now: number): Hold[] {
    if (now < this.next()) return [];
    const ended = [...this.#byTable.values()].filter((h) => h.until <= now);
    for (const hold of ended) this.remove(hold.family, hold.table);
    return ended;
  }

  /** The earliest deadline, or Infinity. */
  next(): number {
    if (this.#next === null) {
      let next = Infinity;
      for (const hold of this.#byTable.values()) next = Math.min(next, hold.until);
      this.#next = next;
    }
    return this.#next;
  }

  /** Every hold, in table order. */
  list(): Hold[] {
    return [...this.#byTable.values()].sort((a, b) => a.table - b.table || a.family - b.family);
  }
}
