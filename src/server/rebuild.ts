/**
 * Building the allocation from the store, the source of truth: at start,
 * after a reload, and for a store shared with other servers from time to
 * time. Every reservation and every stored lease marks its table taken; a
 * lease whose table no pool holds any more is kept and reported; tables
 * held for an identity stay held unless the store has leased them
 * meanwhile.
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
  const allocation = Allocation.build(
    config.pools,
    reservations,
    await store.usedTables(),
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
  for (const hold of input.holds) {
    if (allocation.holdFree(hold)) continue;
    const ours = allocation.pools.poolOf(hold.family, hold.table) ||
      allocation.reservationOf(hold.family, hold.table);
    logHoldEnded(log, hold, ours ? "leased_meanwhile" : "outside_pools");
  }
  return allocation;
}
