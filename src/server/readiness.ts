/**
 * The readiness delay, applied to tables: at start, every table of the
 * pools that a kernel rule of the clients' shape still points to, and that
 * no stored lease holds, is held for that rule's address for
 * `readiness_delay` seconds. A lost, corrupted or replaced database (or
 * rows a shared store lost) then never hands a table that a client still
 * routes through to another identity: the client gets it back at its next
 * refresh.
 *
 * @module
 */

import type { Allocation, Hold } from "../allocator/allocation.ts";
import type { Logger } from "../log/logger.ts";
import { familyName } from "../net/family.ts";
import type { LeaseStore } from "../store/lease_store.ts";
import { errorMessage } from "../util/errors.ts";
import { dumpRoutedTables, type RoutedTable } from "./kernel_rules.ts";

/** Lines logged one by one before the rest are only counted. */
const LOGGED = 20;

/** What {@link holdRoutedTables} works with. */
export interface ReadinessInput {
  allocation: Allocation;
  store: LeaseStore;
  /** The tables the kernel's rules route addresses through (`dumpRoutedTables()`). */
  routed: readonly RoutedTable[];
  /** Wall clock, ms. */
  now: number;
  /** How long to hold, ms. */
  delayMs: number;
  log: Logger;
}

/**
 * Holds each routed table that is free here for its address; reports
 * rules that point at a table another identity holds. Returns the holds.
 */
export async function holdRoutedTables(input: ReadinessInput): Promise<Hold[]> {
  const { allocation, store, log } = input;
  const held: Hold[] = [];
  const until = input.now + input.delayMs;
  let conflicts = 0;
  for (const { family, address, table } of input.routed) {
    const inPool = allocation.pools.poolOf(family, table) !== undefined;
    if (!inPool && !allocation.reservationOf(family, table)) continue; // not ours to give
    const hold: Hold = { family, table, address, ifname: undefined, until, reason: "readiness" };
    if (allocation.holdFree(hold)) {
      held.push(hold);
      if (held.length <= LOGGED) {
        log.info("held for the address its kernel rule routes", {
          family: familyName(family),
          address,
          table,
          until: new Date(until).toISOString(),
        });
      }
      continue;
    }
    if (allocation.heldFor({ family, ifname: "", address })?.table === table) continue;
    // Taken: by this address's own lease (a normal restart), or by another identity.
    const [holder] = (await store.list({ family, table, state: "bound", limit: 1 })).leases;
    if (holder && holder.address !== address && conflicts++ < LOGGED) {
      log.warn("a kernel rule routes an address through a table leased to another identity", {
        family: familyName(family),
        address,
        table,
        holder: `${holder.ifname} ${holder.address}`,
      });
    }
  }
  if (held.length > LOGGED) {
    log.info("more tables held for the addresses their kernel rules route", {
      count: held.length - LOGGED,
    });
  }
  if (held.length > 0) {
    log.info("tables held back after the start, until their addresses ask or the delay passes", {
      count: held.length,
      until: new Date(until).toISOString(),
    });
  }
  return held;
}

/**
 * The readiness delay at start: holds what {@link holdRoutedTables} finds
 * in the kernel's rules. `routed` is the dump, started early so that it
 * runs while the store loads (`dumpRoutedTables()` by default). A dump
 * that fails (no netlink in a sandbox) is logged and holds nothing: the
 * server starts anyway.
 */
export async function holdAtStart(
  input: Omit<ReadinessInput, "routed">,
  routed: Promise<RoutedTable[]> = dumpRoutedTables(),
): Promise<Hold[]> {
  let tables: RoutedTable[];
  try {
    tables = await routed;
  } catch (error) {
    input.log.warn("cannot read the kernel's policy rules: no table is held back at start", {
      error: errorMessage(error),
    });
    return [];
  }
  return await holdRoutedTables({ ...input, routed: tables });
}
