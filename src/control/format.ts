/**
 * Human-readable output of `table-allocator-ctl`: aligned tables and short
 * sentences built from control results. Pure functions: the current time
 * is a parameter, so every output is a unit test.
 *
 * @module
 */

import { familyName } from "../net/family.ts";
import type { ControlResults, LeaseView, PoolView, StatusView } from "./protocol.ts";

/**
 * A duration as days, hours, minutes and seconds, leaving out zero parts:
 * `59m 3s`, `1h 3s`, `2d 4h`, `0s`. Rounds down to whole seconds.
 */
export function formatDuration(ms: number): string {
  let seconds = Math.max(0, Math.floor(ms / 1000));
  const parts: string[] = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]] as const) {
    const count = Math.floor(seconds / size);
    seconds -= count * size;
    if (count > 0) parts.push(`${count}${unit}`);
  }
  if (seconds > 0 || parts.length === 0) parts.push(`${seconds}s`);
  return parts.join(" ");
}

/** Wall-clock time in ms as ISO 8601 in UTC, to the second: `2024-11-21T19:59:03Z`. */
export function formatTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/**
 * A lease's expiry: the ISO time and how far off it is,
 * `2024-11-21T19:59:03Z (in 59m 3s)` or `... (expired)`; `never` for a
 * reservation (no expiry).
 */
export function formatExpiry(expiresAt: number | null, now: number): string {
  if (expiresAt === null) return "never";
  const left = expiresAt - now;
  return `${formatTime(expiresAt)} (${left > 0 ? `in ${formatDuration(left)}` : "expired"})`;
}

/**
 * Rows as text columns separated by two spaces, each as wide as its widest
 * cell; no line ends in spaces.
 */
export function formatColumns(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => widths[i] = Math.max(widths[i] ?? 0, cell.length));
  }
  return rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd()).join(
    "\n",
  ) + "\n";
}

/** The table ranges of a pool: `10000-10039,20000`. */
export function formatRanges(ranges: PoolView["ranges"]): string {
  return ranges.map(({ first, last }) => first === last ? `${first}` : `${first}-${last}`)
    .join(",");
}

/** Which requests a pool serves: `tag=wan,lte ifname=eth*`, or `any`. */
export function formatSelectors(pool: Pick<PoolView, "tags" | "ifnames">): string {
  const parts: string[] = [];
  if (pool.tags.length > 0) parts.push(`tag=${pool.tags.join(",")}`);
  if (pool.ifnames.length > 0) parts.push(`ifname=${pool.ifnames.join(",")}`);
  return parts.length > 0 ? parts.join(" ") : "any";
}

/** One row per pool, with a header; `no pools` when there are none. */
export function formatPools(pools: readonly PoolView[]): string {
  if (pools.length === 0) return "no pools\n";
  return formatColumns([
    ["POOL", "FAMILY", "RANGES", "SELECTORS", "SIZE", "BOUND", "RESERVED", "HELD", "FREE"],
    ...pools.map((p) => [
      p.name,
      familyName(p.family),
      formatRanges(p.ranges),
      formatSelectors(p),
      String(p.size),
      String(p.bound),
      String(p.reserved),
      String(p.held),
      String(p.free),
    ]),
  ]);
}

/** Server facts as `key  value` lines, then the pools. */
export function formatStatus(status: StatusView): string {
  const socket = status.socket.startsWith("@") ? status.socket : `@${status.socket}`;
  const { bound, reserved, outside_pools, held } = status.leases;
  return formatColumns([
    ["version", status.version],
    ["pid", String(status.pid)],
    ["uptime", formatDuration(status.uptime_s * 1000)],
    ["socket", socket],
    ["store", status.store],
    ["families", status.families.map(familyName).join(", ") || "none"],
    [
      "leases",
      `${bound} bound, ${reserved} reserved, ${held} held, ${outside_pools} outside the pools`,
    ],
  ]) + "\n" + formatPools(status.pools);
}

/**
 * One row per lease, with a header; `empty` is printed when there are
 * none. EXPIRES is {@link formatExpiry}; for a released lease, when it was
 * released (a history row's `expires_at` is when the lease ended). UID is
 * the uid that took the lease: who else may end it is decided by it.
 */
export function formatLeases(
  leases: readonly LeaseView[],
  now: number,
  empty = "no leases\n",
): string {
  if (leases.length === 0) return empty;
  return formatColumns([
    ["FAMILY", "IFNAME", "ADDRESS", "TABLE", "STATE", "EXPIRES", "TAG", "OWNER", "UID"],
    ...leases.map((l) => [
      familyName(l.family),
      l.ifname,
      l.address,
      String(l.table),
      l.state,
      // A released lease keeps the expiry it had; it no longer means anything.
      l.state === "released" && l.expires_at !== null
        ? `${formatTime(l.expires_at)} (released)`
        : formatExpiry(l.expires_at, now),
      l.tag ?? "-",
      l.owner,
      String(l.uid),
    ]),
  ]);
}

/** Quotes a word for a POSIX shell when it needs it. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/** A `list` page; says how to get the next one when there is one. */
export function formatList(result: ControlResults["list"], now: number): string {
  const text = formatLeases(result.leases, now);
  if (result.next === null) return text;
  return `${text}more leases follow: add --after ${shellQuote(result.next)}, or --all\n`;
}

/** `inet eth1 192.0.2.10`, or `inet eth0 (every address)` for a reservation of `*`. */
function identity(lease: LeaseView): string {
  const address = lease.address === "*" ? "(every address)" : lease.address;
  return `${familyName(lease.family)} ${lease.ifname} ${address}`;
}

/**
 * What a `release` did: one line per released lease, then one per table
 * held back until its holder confirms.
 */
export function formatReleased(result: ControlResults["release"]): string {
  if (result.released.length === 0) return "nothing released: no bound lease matches\n";
  return result.released.map((l) => `released table ${l.table} of ${identity(l)}\n`).join("") +
    result.held.map((h) =>
      `table ${h.table} of ${familyName(h.family)} stays held for ${
        h.ifname ?? "*"
      } ${h.address} ` +
      `until it confirms, at the latest ${formatTime(h.until)}\n`
    ).join("");
}

/** What a `reload` did. */
export function formatReloaded(result: ControlResults["reload"]): string {
  const n = (count: number, word: string) => `${count} ${word}${count === 1 ? "" : "s"}`;
  return `reloaded ${result.config}: ${n(result.pools, "pool")}, ${
    n(result.reservations, "reservation")
  }, ${n(result.outputs, "output")}\n`;
}

/** What a `reserve` did, one line per reservation. */
export function formatReserved(result: ControlResults["reserve"]): string {
  if (result.reserved.length === 0) return "nothing reserved\n";
  return result.reserved.map((l) => `reserved table ${l.table} for ${identity(l)}\n`).join("");
}

/** What an `unreserve` did, one line per removed reservation. */
export function formatUnreserved(result: ControlResults["unreserve"]): string {
  if (result.removed.length === 0) return "no reservation removed: none matches\n";
  return result.removed.map((l) =>
    `removed the reservation of table ${l.table} for ${identity(l)}\n`
  )
    .join("");
}

/** The human-readable output for any operation's result, at wall-clock time `now` (ms). */
export function formatResult<K extends keyof ControlResults>(
  op: K,
  result: ControlResults[K],
  now: number,
): string {
  // The casts are safe: `op` and `result` come as a pair from ControlResults.
  switch (op) {
    case "status":
      return formatStatus(result as StatusView);
    case "pools":
      return formatPools((result as ControlResults["pools"]).pools);
    case "list":
      return formatList(result as ControlResults["list"], now);
    case "show":
      return formatLeases(
        (result as ControlResults["show"]).leases,
        now,
        "no lease matches\n",
      );
    case "release":
      return formatReleased(result as ControlResults["release"]);
    case "reserve":
      return formatReserved(result as ControlResults["reserve"]);
    case "unreserve":
      return formatUnreserved(result as ControlResults["unreserve"]);
    case "metrics":
      return (result as ControlResults["metrics"]).text;
    case "reload":
      return formatReloaded(result as ControlResults["reload"]);
    default:
      return `${JSON.stringify(result)}\n`;
  }
}
