/**
 * What the server shows of its tables: one view per pool (for `ctl pools`
 * and `status`), the status line systemd shows, and the snapshot the
 * metrics read. Pure: built from the allocation.
 *
 * @module
 */

import type { Allocation } from "../allocator/allocation.ts";
import type { PoolView } from "../control/protocol.ts";
import type { MetricsSnapshot } from "../metrics/server_metrics.ts";
import { VERSION } from "../version.ts";

/**
 * One view per pool: its tables bound to an identity, held by a
 * reservation and not bound, held back for an identity, and free. A held
 * table that is also reserved counts as held.
 */
export function poolViews(allocation: Allocation): PoolView[] {
  return allocation.pools.pools.map((pool) => {
    const reservedFree = allocation.reservations.filter((r) =>
      r.family === pool.family && pool.contains(r.table) &&
      !allocation.isReservedBound(r.family, r.table)
    ).length;
    const holds = allocation.holds.filter((h) =>
      h.family === pool.family && pool.contains(h.table)
    );
    const heldReserved = holds.filter((h) =>
      allocation.reservationOf(h.family, h.table)
    ).length;
    // Taken in the pool: bound tables, unbound reservations, and held tables that are not reserved.
    const bound = pool.used - reservedFree - (holds.length - heldReserved);
    return {
      name: pool.name,
      family: pool.family,
      ranges: pool.ranges.map((r) => ({ first: r.first, last: r.first + r.size - 1 })),
      tags: [...pool.tags],
      ifnames: [...pool.ifnames],
      size: pool.size,
      bound,
      reserved: reservedFree - heldReserved,
      held: holds.length,
      free: pool.free,
    };
  });
}

/** The status line systemd shows: `3 bound, 76 free, 1 held of 80 tables`. */
export function statusLine(allocation: Allocation): string {
  const pools = poolViews(allocation);
  const sum = (key: "bound" | "free" | "held" | "size") => pools.reduce((n, p) => n + p[key], 0);
  return `${sum("bound") + allocation.outside} bound, ${sum("free")} free, ${sum("held")} held of ${
    sum("size")
  } tables`;
}

/** What the metrics read of the allocation, with the server's uptime. */
export function metricsSnapshot(
  allocation: Allocation,
  uptimeSeconds: number,
  socketQueue: MetricsSnapshot["socketQueue"],
): MetricsSnapshot {
  return {
    pools: poolViews(allocation).map((p) => ({
      name: p.name,
      family: p.family,
      size: p.size,
      free: p.free,
      bound: p.bound,
      reserved: p.reserved,
      held: p.held,
    })),
    outside: allocation.outside,
    uptimeSeconds,
    version: VERSION,
    socketQueue,
  };
}
