/**
 * The configured pools of every family: which pool serves a request (by
 * family, tag and interface name) and which pool a table belongs to.
 * Pure: no clock, no I/O.
 *
 * @module
 */

import { globToRegExp, type PoolConfig } from "../../config/pools.ts";
import type { AddrFamily } from "../net/family.ts";
import { PoolExhaustedError, TablePool } from "./table_pool.ts";

/** One pool: named ranges of one family, with the requests it serves. */
export class Pool {
  /** The pool's name from the config (`default` for the shorthand). */
  readonly name: string;
  readonly family: AddrFamily;
  /** The ranges, lowest first; tables are handed out lowest first across them. */
  readonly ranges: readonly TablePool[];
  readonly tags: readonly string[];
  readonly ifnames: readonly string[];
  #patterns: RegExp[];

  /** Builds an empty pool (every table free) from its config. */
  constructor(config: PoolConfig) {
    this.name = config.name;
    this.family = config.family;
    this.ranges = config.ranges.map((r) => new TablePool(r.first, r.last - r.first + 1));
    this.tags = config.tags;
    this.ifnames = config.ifnames;
    this.#patterns = config.ifnames.map(globToRegExp);
  }

  /** Whether the pool serves a request: every selector it has must match. */
  serves(ifname: string, tag: string | undefined): boolean {
    if (this.tags.length > 0 && (tag === undefined || !this.tags.includes(tag))) return false;
    return this.#patterns.length === 0 || this.#patterns.some((p) => p.test(ifname));
  }

  /** Tables in the pool. */
  get size(): number {
    return this.ranges.reduce((n, r) => n + r.size, 0);
  }

  /** Tables taken (leased or reserved). */
  get used(): number {
    return this.ranges.reduce((n, r) => n + r.used, 0);
  }

  /** Tables free. */
  get free(): number {
    return this.size - this.used;
  }

  /** Whether `table` is in one of the ranges. */
  contains(table: number): boolean {
    return this.ranges.some((r) => r.contains(table));
  }

  /** Whether `table` is in the pool and free. */
  isFree(table: number): boolean {
    return this.ranges.some((r) => r.isFree(table));
  }

  /** The lowest free table across the ranges, without taking it; undefined when full. */
  lowestFree(): number | undefined {
    return this.ranges.find((r) => r.free > 0)?.lowestFree();
  }

  /** Takes the lowest free table. Throws {@link PoolExhaustedError} when none is left. */
  allocate(): number {
    const range = this.ranges.find((r) => r.free > 0);
    if (!range) throw new PoolExhaustedError(this.ranges[0].first, this.size);
    return range.allocate();
  }

  /** Marks a table taken; false when outside the pool or already taken. */
  take(table: number): boolean {
    return this.ranges.find((r) => r.contains(table))?.take(table) ?? false;
  }

  /** Frees a taken table; false when outside the pool or already free. */
  release(table: number): boolean {
    const range = this.ranges.find((r) => r.contains(table));
    if (!range || range.isFree(table)) return false;
    range.release(table);
    return true;
  }

  /** `first-last` of each range, for logs. */
  describe(): string {
    return this.ranges.map((r) => `${r.first}-${r.first + r.size - 1}`).join(",");
  }
}

/** Every pool, in config order. */
export class PoolSet {
  readonly pools: readonly Pool[];

  /** Builds the pools of a config, every table free. */
  constructor(configs: readonly PoolConfig[]) {
    this.pools = configs.map((c) => new Pool(c));
  }

  /** The first pool of the family that serves this interface and tag. */
  select(family: AddrFamily, ifname: string, tag: string | undefined): Pool | undefined {
    return this.pools.find((p) => p.family === family && p.serves(ifname, tag));
  }

  /** The pool a table of a family belongs to. */
  poolOf(family: AddrFamily, table: number): Pool | undefined {
    return this.pools.find((p) => p.family === family && p.contains(table));
  }

  /** The range (of any pool of the family) a table belongs to. */
  rangeOf(family: AddrFamily, table: number): TablePool | undefined {
    for (const pool of this.pools) {
      if (pool.family !== family) continue;
      for (const range of pool.ranges) if (range.contains(table)) return range;
    }
    return undefined;
  }

  /** Whether the family has any pool. */
  hasFamily(family: AddrFamily): boolean {
    return this.pools.some((p) => p.family === family);
  }

  /** Marks a table taken; false when no pool holds it or it was taken already. */
  take(family: AddrFamily, table: number): boolean {
    return this.poolOf(family, table)?.take(table) ?? false;
  }

  /** Frees a table; false when no pool holds it or it was free already. */
  release(family: AddrFamily, table: number): boolean {
    return this.poolOf(family, table)?.release(table) ?? false;
  }
}

export { PoolExhaustedError };
