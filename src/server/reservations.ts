/**
 * Reservations as the config file states them: at start, the stored
 * reservations of owner `config` are made what the config says, so a
 * config change takes effect without touching live leases. Also the
 * helpers the control handler's reservations share with it.
 *
 * @module
 */

import { enabledFamilies, type ServerConfig } from "../../config/config.ts";
import type { Logger } from "../log/logger.ts";
import type { AddrFamily } from "../net/family.ts";
import { leaseFields } from "./events.ts";
import {
  commitChange,
  type Lease,
  type LeaseStore,
  listAll,
  reservationIdOf,
} from "../store/lease_store.ts";
import { errorMessage } from "../util/errors.ts";

/** The owner written on reservations from the config file. */
export const CONFIG_OWNER = "config";

/** A request's family, or every enabled family when it names none. */
export function familiesOf(config: ServerConfig, family: AddrFamily | undefined): AddrFamily[] {
  return family === undefined ? enabledFamilies(config.addrFamilies) : [family];
}

/** Whether a bound lease is held by an identity the reservation names. */
export function heldByOwner(
  reservation: { ifname: string; address: string },
  lease: Lease,
): boolean {
  return lease.ifname === reservation.ifname &&
    (reservation.address === "*" || lease.address === reservation.address);
}

/**
 * Makes the reservations of the config file the stored ones of owner
 * `config`: adds missing ones, removes those no longer configured. Never
 * throws for a conflict: it is logged and the reservation skipped, so a
 * config change cannot keep the server from starting.
 */
export async function syncConfigReservations(
  config: ServerConfig,
  store: LeaseStore,
  log: Logger,
): Promise<void> {
  const wanted = new Map<string, Lease>();
  for (const r of config.reservations) {
    for (const family of familiesOf(config, r.family)) {
      const lease: Lease = {
        family,
        ifname: r.ifname,
        address: r.address,
        table: r.table,
        expiresAt: 0,
        tag: undefined,
        owner: CONFIG_OWNER,
        uid: 0,
        state: "reserved",
      };
      wanted.set(reservationIdOf(lease), lease);
    }
  }
  const write = (clientId: string, leases: Lease[]) => commitChange(store, clientId, () => leases);
  const stored = new Map<string, Lease>();
  for await (const l of listAll(store, { state: "reserved" })) stored.set(reservationIdOf(l), l);
  for (const [id, lease] of stored) {
    const want = wanted.get(id);
    if (lease.owner === CONFIG_OWNER && (!want || want.table !== lease.table)) {
      await write(id, []);
      log.info("config reservation removed", leaseFields(lease));
      stored.delete(id);
    }
  }
  for (const [id, lease] of wanted) {
    if (stored.get(id)?.table === lease.table) continue;
    try {
      await write(id, [lease]);
      log.info("config reservation added", leaseFields(lease));
    } catch (error) {
      log.error("config reservation skipped: its table is reserved for another identity", {
        ...leaseFields(lease),
        reason: errorMessage(error),
      });
      continue;
    }
    const holder =
      (await store.list({ family: lease.family, table: lease.table, state: "bound" })).leases[0];
    if (holder && !heldByOwner(lease, holder)) {
      log.warn(
        "reserved table is leased to another identity; the reservation takes effect when that lease ends",
        {
          ...leaseFields(lease),
          holder: `${holder.ifname} ${holder.address}`,
        },
      );
    }
  }
}
