/**
 * The `pools` and `reservations` config keys, validated once.
 *
 * ```jsonc
 * "pools": [
 *   { "name": "wan", "family": "inet", "ranges": [{ "first": 10000, "last": 10099 }],
 *     "tags": ["wan"], "ifnames": ["eth*", "wwan?"] },
 *   { "name": "rest", "family": "inet", "ranges": [{ "first": 20000, "last": 20999 }] }
 * ],
 * "reservations": [
 *   { "table": 10050, "ifname": "eth0", "address": "192.0.2.1", "family": "inet" },
 *   { "table": 30000, "ifname": "wg0" }
 * ]
 * ```
 *
 * The original's `table_offset`/`num_tables` are shorthand for one pool per
 * enabled family, named `default`, placed after the configured pools.
 *
 * @module
 */

import { AddrFamily, familyByName, familyName } from "../src/net/family.ts";
import { ProtocolError, validateIdentity } from "../src/protocol/v1.ts";
import { ConfigError } from "./config_error.ts";
import { MAX_NUM_TABLES, MAX_TABLE, RESERVED_TABLES } from "./limits.ts";

/** Inclusive range of tables. */
export interface TableRange {
  /** The first table of the range. */
  first: number;
  /** The last table of the range (included). */
  last: number;
}

/** A validated pool. */
export interface PoolConfig {
  /** The pool's name (`default` for `table_offset`/`num_tables`). */
  name: string;
  /** The family the pool serves. */
  family: AddrFamily;
  /** Sorted by `first`, not overlapping. */
  ranges: TableRange[];
  /** The pool serves requests with one of these tags (empty: any tag or none). */
  tags: string[];
  /** The pool serves interfaces matching one of these glob patterns (empty: any). */
  ifnames: string[];
}

/** A validated reservation. */
export interface ReservationConfig {
  /** The reserved table. */
  table: number;
  /** The interface of the owner. */
  ifname: string;
  /** The address, or `*` for every address of the interface. */
  address: string;
  /** The family, or undefined for every enabled family. */
  family: AddrFamily | undefined;
}

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function object(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ConfigError(`${where} must be an object, got ${show(value)}`, where);
  }
  return value as Record<string, unknown>;
}

function knownKeys(obj: Record<string, unknown>, where: string, keys: readonly string[]): void {
  for (const key of Object.keys(obj)) {
    if (!keys.includes(key)) {
      throw new ConfigError(
        `${where}: "${key}" is not a known key; known keys: ${keys.join(", ")}`,
        `${where}.${key}`,
      );
    }
  }
}

function table(value: unknown, where: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > MAX_TABLE) {
    throw new ConfigError(
      `${where} must be an integer from 1 to ${MAX_TABLE}, got ${show(value)}`,
      where,
    );
  }
  if (RESERVED_TABLES.includes(value)) {
    throw new ConfigError(
      `${where} is ${value}, one of the kernel's reserved tables (0, 253, 254, 255)`,
      where,
    );
  }
  return value;
}

function family(value: unknown, where: string, enabled: readonly AddrFamily[]): AddrFamily {
  const f = typeof value === "string" ? familyByName(value) : undefined;
  if (f === undefined) {
    throw new ConfigError(
      `${where} must be "inet", "inet6" or "unspec", got ${show(value)}`,
      where,
    );
  }
  if (!enabled.includes(f)) {
    throw new ConfigError(`${where} is "${value}", which "addr_families" does not enable`, where);
  }
  return f;
}

function strings(value: unknown, where: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== "string" || v.length === 0)) {
    throw new ConfigError(
      `${where} must be an array of non-empty strings, got ${show(value)}`,
      where,
    );
  }
  return value as string[];
}

/** Turns an interface-name glob (`*`, `?`, `[...]`) into an anchored RegExp. */
export function globToRegExp(pattern: string): RegExp {
  let source = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "*") source += ".*";
    else if (c === "?") source += ".";
    else if (c === "[") {
      const end = pattern.indexOf("]", i + 1);
      if (end < 0) throw new ConfigError(`the pattern "${pattern}" has an unclosed "["`);
      const body = pattern.slice(i + 1, end).replace(/^!/, "^").replace(/\\/g, "\\\\");
      source += `[${body}]`;
      i = end;
    } else source += c.replace(/[.+^${}()|\\]/g, "\\$&");
  }
  return new RegExp(`^${source}$`);
}

/**
 * Validates `pools` (optional) and the shorthand, for the enabled
 * families. Throws a ConfigError naming the pool, the key and the value.
 */
export function parsePools(
  obj: Record<string, unknown>,
  enabled: readonly AddrFamily[],
  shorthand: TableRange | undefined,
): PoolConfig[] {
  const raw = obj.pools;
  const pools: PoolConfig[] = [];
  if (raw !== undefined) {
    if (!Array.isArray(raw)) {
      throw new ConfigError(`"pools" must be an array of pools, got ${show(raw)}`, "pools");
    }
    raw.forEach((item, index) => {
      const where = `pools[${index}]`;
      const pool = object(item, where);
      knownKeys(pool, where, ["name", "family", "ranges", "tags", "ifnames"]);
      const name = pool.name === undefined ? `pool${index}` : pool.name;
      if (typeof name !== "string" || !/^[\w.-]{1,32}$/.test(name)) {
        throw new ConfigError(
          `${where}.name must be 1 to 32 letters, digits, "_", "." or "-", got ${show(name)}`,
          `${where}.name`,
        );
      }
      if (pools.some((p) => p.name === name)) {
        throw new ConfigError(`${where}.name "${name}" is used twice`, `${where}.name`);
      }
      const f = family(pool.family, `${where}.family`, enabled);
      if (!Array.isArray(pool.ranges) || pool.ranges.length === 0) {
        throw new ConfigError(
          `${where}.ranges must be a non-empty array like [{"first": 10000, "last": 10099}], got ${
            show(pool.ranges)
          }`,
          `${where}.ranges`,
        );
      }
      const ranges = pool.ranges.map((r: unknown, i: number) => {
        const at = `${where}.ranges[${i}]`;
        const range = object(r, at);
        knownKeys(range, at, ["first", "last"]);
        const first = table(range.first, `${at}.first`);
        const last = table(range.last, `${at}.last`);
        if (last < first) {
          throw new ConfigError(`${at}: "last" ${last} is below "first" ${first}`, at);
        }
        const kernel = RESERVED_TABLES.filter((t) => t > first && t < last);
        if (kernel.length > 0) {
          throw new ConfigError(
            `${at} ${first}-${last} includes the kernel's reserved table(s) ${kernel.join(", ")}`,
            at,
          );
        }
        return { first, last };
      }).sort((a: TableRange, b: TableRange) => a.first - b.first);
      const ifnames = strings(pool.ifnames, `${where}.ifnames`);
      ifnames.forEach(globToRegExp);
      pools.push({ name, family: f, ranges, tags: strings(pool.tags, `${where}.tags`), ifnames });
    });
  }
  if (shorthand) {
    for (const f of enabled) {
      pools.push({ name: "default", family: f, ranges: [shorthand], tags: [], ifnames: [] });
    }
  }
  if (pools.length === 0) {
    throw new ConfigError(
      `"table_offset" and "num_tables" are required unless "pools" defines the pools`,
      "table_offset",
    );
  }
  checkPools(pools);
  return pools;
}

/** Ranges of one family must not overlap, and a family's pools must fit the allocator. */
function checkPools(pools: PoolConfig[]): void {
  const families = new Set(pools.map((p) => p.family));
  for (const f of families) {
    const ranges = pools.filter((p) => p.family === f).flatMap((p) =>
      p.ranges.map((r) => ({ ...r, pool: p.name }))
    )
      .sort((a, b) => a.first - b.first);
    for (let i = 1; i < ranges.length; i++) {
      if (ranges[i].first <= ranges[i - 1].last) {
        const [a, b] = [ranges[i - 1], ranges[i]];
        throw new ConfigError(
          `pools "${a.pool}" (${a.first}-${a.last}) and "${b.pool}" (${b.first}-${b.last}) of family ${
            familyName(f)
          } overlap`,
          "pools",
        );
      }
    }
    const total = ranges.reduce((n, r) => n + r.last - r.first + 1, 0);
    if (total > MAX_NUM_TABLES) {
      throw new ConfigError(
        `the pools of family ${familyName(f)} hold ${total} tables, more than ${MAX_NUM_TABLES}`,
        "pools",
      );
    }
  }
}

/** Validates `reservations` (optional). Throws a ConfigError naming the entry. */
export function parseReservations(
  obj: Record<string, unknown>,
  enabled: readonly AddrFamily[],
): ReservationConfig[] {
  const raw = obj.reservations;
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) {
    throw new ConfigError(`"reservations" must be an array, got ${show(raw)}`, "reservations");
  }
  const out: ReservationConfig[] = [];
  raw.forEach((item, index) => {
    const where = `reservations[${index}]`;
    const r = object(item, where);
    knownKeys(r, where, ["table", "ifname", "address", "family"]);
    const t = table(r.table, `${where}.table`);
    if (typeof r.ifname !== "string") {
      throw new ConfigError(`${where}.ifname is required (an interface name)`, `${where}.ifname`);
    }
    const f = r.family === undefined ? undefined : family(r.family, `${where}.family`, enabled);
    let address = "*";
    try {
      if (r.address !== undefined) {
        if (f === undefined) {
          throw new ConfigError(`${where}: an "address" needs its "family"`, `${where}.family`);
        }
        if (typeof r.address !== "string") {
          throw new ConfigError(
            `${where}.address must be a string, got ${show(r.address)}`,
            `${where}.address`,
          );
        }
        address = validateIdentity(f, r.ifname, r.address).address;
      } else validateIdentity(AddrFamily.UNSPEC, r.ifname, "*");
    } catch (error) {
      if (error instanceof ProtocolError) {
        throw new ConfigError(`${where}: ${error.message}`, where);
      }
      throw error;
    }
    const reservation = { table: t, ifname: r.ifname, address, family: f };
    const families = (x: ReservationConfig) => x.family === undefined ? enabled : [x.family];
    for (const other of out) {
      const shared = families(other).filter((ff) => families(reservation).includes(ff));
      if (shared.length === 0) continue;
      if (other.table === t) {
        throw new ConfigError(
          `${where}: table ${t} is reserved twice (for ${other.ifname} and ${r.ifname})`,
          where,
        );
      }
      if (other.ifname === reservation.ifname && other.address === reservation.address) {
        throw new ConfigError(
          `${where}: ${r.ifname} ${address} has two reservations (${other.table} and ${t})`,
          where,
        );
      }
    }
    out.push(reservation);
  });
  return out;
}
