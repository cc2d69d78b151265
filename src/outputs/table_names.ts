/**
 * Names of leased tables for iproute2 (`ip route show table eth1-v4`):
 * a template filled from the lease, reduced to characters every iproute2
 * version reads as a name, and made unique. Pure.
 *
 * @module
 */

import type { AddrFamily } from "../net/family.ts";
import type { Lease } from "../store/lease_store.ts";

/** What a name is made of. */
export type NamedLease = Pick<Lease, "family" | "ifname" | "address" | "tag" | "table">;

/** `{family}` in a template: short, as people write them. */
const FAMILY_WORD: Record<AddrFamily, string> = { 2: "v4", 10: "v6", 0: "unspec" };
/** iproute2's own names, which must keep meaning the kernel's tables. */
const BUILTIN_NAMES = new Set(["unspec", "default", "main", "local", "all"]);
/** Longest name before a `-TABLE` suffix, so a full name stays under 64 bytes. */
const MAX_BASE = 52;

/**
 * Fills `template`'s placeholders from a lease and keeps only
 * `A-Z a-z 0-9 _ . -` (anything else becomes `_`). A name iproute2 would
 * read as a number gets a `t` in front; an empty one becomes `table-N`.
 */
export function renderName(template: string, lease: NamedLease): string {
  const values: Record<string, string> = {
    ifname: lease.ifname,
    family: FAMILY_WORD[lease.family],
    address: lease.address,
    table: String(lease.table),
    tag: lease.tag ?? "",
  };
  let name = template.replace(/\{(\w+)\}/g, (_, key: string) => values[key] ?? "")
    .replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, MAX_BASE);
  if (name === "") name = `table-${lease.table}`;
  // iproute2 reads a name as a table number when strtoul() takes all of it.
  if (/^(\d+|0[xX][0-9a-fA-F]*)$/.test(name)) name = `t${name}`;
  return name;
}

/**
 * Assigns names to leases, keeping every name it gave while its lease
 * lives, so a table's name never changes under a running `ip` user. The
 * key of a lease is its identity.
 */
export class TableNames {
  readonly #template: string;
  /** Identity key to [table, name]. */
  readonly #names = new Map<string, { table: number; family: AddrFamily; name: string }>();
  readonly #taken = new Set<string>();
  /** Counts changes, so a caller can tell whether a call changed anything. */
  version = 0;

  /** Names with `template` (see {@link renderName}). */
  constructor(template: string) {
    this.#template = template;
  }

  /**
   * Gives a lease its name, or keeps the one it has when it still renders
   * the same and its table did not change. A name already in use gets
   * `-TABLE`, then `-TABLE-2`, ... appended. Returns the name.
   */
  assign(lease: NamedLease): string {
    const key = identityKey(lease);
    const base = renderName(this.#template, lease);
    const current = this.#names.get(key);
    if (current && current.table === lease.table && nameMatches(current.name, base, lease.table)) {
      return current.name;
    }
    if (current) this.#taken.delete(current.name);
    this.version++;
    let name = base;
    if (this.#taken.has(name) || BUILTIN_NAMES.has(name)) name = `${base}-${lease.table}`;
    for (let n = 2; this.#taken.has(name); n++) name = `${base}-${lease.table}-${n}`;
    this.#taken.add(name);
    this.#names.set(key, { table: lease.table, family: lease.family, name });
    return name;
  }

  /** Forgets a lease's name (it was released or expired). */
  remove(lease: Pick<NamedLease, "family" | "ifname" | "address">): void {
    const key = identityKey(lease);
    const current = this.#names.get(key);
    if (!current) return;
    this.#taken.delete(current.name);
    this.#names.delete(key);
    this.version++;
  }

  /** `TABLE NAME` pairs in table order (then family), as the file lists them. */
  entries(): Array<[number, string]> {
    return [...this.#names.values()]
      .sort((a, b) => a.table - b.table || a.family - b.family)
      .map((e) => [e.table, e.name]);
  }
}

function identityKey(lease: Pick<NamedLease, "family" | "ifname" | "address">): string {
  return `${lease.family}/${lease.ifname}/${lease.address}`;
}

/** Whether `name` is what {@link TableNames.assign} made of `base` for `table`. */
function nameMatches(name: string, base: string, table: number): boolean {
  return name === base || name === `${base}-${table}` || name.startsWith(`${base}-${table}-`);
}

/** The file iproute2 reads: a comment saying who writes it, then one `TABLE NAME` line per lease. */
export function renderRtTables(entries: ReadonlyArray<[number, string]>): string {
  return "# Written by table-allocator-server: one line per bound lease, rewritten on every\n" +
    "# change. Do not edit; see the rt_tables output in docs/config.md.\n" +
    entries.map(([table, name]) => `${table} ${name}\n`).join("");
}
