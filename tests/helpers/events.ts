/**
 * Lease events as the daemon reports them, for tests of what observes
 * them (outputs, metrics).
 *
 * @module
 */

import type { LeaseEvent, Origin } from "../../src/server/events.ts";
import type { Lease } from "../../src/store/lease_store.ts";

/** What a test may set on an event's lease, and the event's own extras. */
export interface EventParts extends Partial<Pick<Lease, "family" | "ifname" | "address" | "tag">> {
  previousTable?: number;
  origin?: Origin;
}

/** A durable lease event of `kind` on `table` (defaults: inet, eth1, 192.0.2.10, no tag). */
export function leaseEvent(
  kind: LeaseEvent["kind"],
  table: number,
  parts: EventParts = {},
): LeaseEvent {
  const { previousTable, origin, ...identity } = parts;
  return {
    kind,
    lease: {
      family: 2,
      ifname: "eth1",
      address: "192.0.2.10",
      tag: undefined,
      ...identity,
      table,
      expiresAt: 0,
      owner: "table-allocator-server",
      uid: 0,
      state: kind === "released" ? "released" : kind === "expired" ? "expired" : "bound",
    },
    previousTable,
    origin: origin ?? { kind: "expiry" },
  };
}
