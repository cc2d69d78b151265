/**
 * The server side of control messages (`cmd` 16): status, pools, lease
 * listing and inspection, release by an administrator, reservations. Only
 * root may use them: the daemon checks the kernel-verified uid before it
 * calls {@link ControlHandler.handle}.
 *
 * @module
 */

import { enabledFamilies, type ServerConfig } from "../../config/config.ts";
import type { Logger } from "../log/logger.ts";
import { familyName } from "../net/family.ts";
import { encodeError, ProtocolError } from "../protocol/v1.ts";
import {
  BadCursorError,
  clientIdOf,
  commitChange,
  ConcurrencyError,
  type Lease,
  type LeaseStore,
  releasedAt,
  reservationIdOf,
} from "../store/lease_store.ts";
import {
  type ControlRequest,
  encodeControlReply,
  type HoldView,
  type LeaseSelector,
  leaseView,
  type PoolView,
  type ReloadView,
  type StatusView,
} from "../control/protocol.ts";
import type { Allocation, Hold } from "../allocator/allocation.ts";
import { leaseFields, type LeaseObserver } from "./events.ts";
import { familiesOf, heldByOwner } from "./reservations.ts";
import { VERSION } from "../version.ts";
import { poolViews } from "./views.ts";
import { errorMessage } from "../util/errors.ts";

/** The owner written on reservations made with control commands. */
export const CONTROL_OWNER = "table-allocator-ctl";

/** What the handler works with. */
export interface ControlContext {
  config: ServerConfig;
  store: LeaseStore;
  /** The daemon's current state (replaced when it is rebuilt). */
  allocation: () => Allocation;
  log: Logger;
  /** Hears of the leases an administrator releases. */
  observer: LeaseObserver;
  startedAt: number;
  /** How the store is described in `status` (path or "postgres"). */
  storeDescription: string;
  now: () => number;
  /** The metrics as Prometheus text. */
  metrics?: () => string;
  /** Re-reads the config file; a refusal rejects with a {@link ProtocolError} (`bad_config`). */
  reload?: () => Promise<ReloadView>;
  /** Tells the holder of a lease an administrator ended (the revoke notice). */
  revoke?: (lease: Lease) => void;
}

/** A refusal of a control request, answered as an error reply. */
class Refusal extends Error {
  constructor(readonly code: "not_found" | "conflict", message: string) {
    super(message);
  }
}

/** Handles control requests. */
export class ControlHandler {
  #c: ControlContext;

  /** A handler over the daemon's parts. */
  constructor(context: ControlContext) {
    this.#c = context;
  }

  /** Answers one request (already validated, from root). Never throws. */
  async handle(request: ControlRequest, uid: number): Promise<Uint8Array<ArrayBuffer>> {
    try {
      switch (request.op) {
        case "status":
          return encodeControlReply("status", this.#status());
        case "pools":
          return encodeControlReply("pools", { pools: this.#pools() });
        case "list": {
          const page = await this.#c.store.list(request);
          return encodeControlReply("list", {
            leases: page.leases.map(leaseView),
            next: page.next ?? null,
          });
        }
        case "show":
          return encodeControlReply("show", {
            leases: (await this.#find(request.selector, false)).map(leaseView),
          });
        case "release": {
          const { released, held } = await this.#release(request.selector, uid);
          return encodeControlReply("release", {
            released: released.map(leaseView),
            held: held.map(holdView),
          });
        }
        case "reserve":
          return encodeControlReply("reserve", {
            reserved: (await this.#reserve(request, uid)).map(leaseView),
          });
        case "unreserve":
          return encodeControlReply("unreserve", {
            removed: (await this.#unreserve(request, uid)).map(leaseView),
          });
        case "metrics":
          if (!this.#c.metrics) break;
          return encodeControlReply("metrics", { text: this.#c.metrics() });
        case "reload":
          if (!this.#c.reload) break;
          return encodeControlReply("reload", await this.#c.reload());
      }
      return encodeError("unknown_cmd", `this server does not serve "op" ${request.op}`);
    } catch (error) {
      if (error instanceof Refusal) return encodeError(error.code, error.message);
      if (error instanceof ProtocolError) return encodeError(error.code, error.message);
      // The cursor came from the administrator (`--after`): a bad request, not a store failure.
      if (error instanceof BadCursorError) return encodeError("bad_request", error.message);
      const message = `lease store failure: ${errorMessage(error)}`;
      this.#c.log.error("control request failed", { op: request.op, error: message });
      return encodeError("store_failure", message);
    }
  }

  #pools(): PoolView[] {
    return poolViews(this.#c.allocation());
  }

  #status(): StatusView {
    const allocation = this.#c.allocation();
    const pools = this.#pools();
    const reservations = allocation.reservations;
    // Bound tables: in pools, plus reserved tables outside every pool, plus leases left outside.
    const boundReservedOutside =
      reservations.filter((r) =>
        !allocation.pools.poolOf(r.family, r.table) && allocation.isReservedBound(r.family, r.table)
      ).length;
    return {
      version: VERSION,
      pid: Deno.pid,
      uptime_s: Math.floor((this.#c.now() - this.#c.startedAt) / 1000),
      socket: `@${this.#c.config.socketPath}`,
      store: this.#c.storeDescription,
      families: enabledFamilies(this.#c.config.addrFamilies),
      pools,
      leases: {
        bound: pools.reduce((n, p) => n + p.bound, 0) + boundReservedOutside + allocation.outside,
        reserved: reservations.length,
        outside_pools: allocation.outside,
        held: allocation.holds.length,
      },
    };
  }

  /** The leases a selector names: an identity's (every state), or a table's bound and reserved ones. */
  async #find(selector: LeaseSelector, boundOnly: boolean): Promise<Lease[]> {
    if ("table" in selector) {
      const page = await this.#c.store.list({
        family: selector.family,
        table: selector.table,
        state: boundOnly ? "bound" : ["bound", "reserved"],
      });
      return page.leases;
    }
    const leases = await this.#c.store.peek(clientIdOf(selector));
    return boundOnly ? leases.filter((l) => l.state === "bound") : leases;
  }

  /**
   * Ends bound leases now. Each table stays held for its identity until the
   * holder confirms with its own release or the lease's old expiry passes,
   * and the holder is told (a revoke notice): its rules may still route
   * through the table, so nobody else may get it meanwhile.
   */
  async #release(
    selector: LeaseSelector,
    uid: number,
  ): Promise<{ released: Lease[]; held: Hold[] }> {
    const found = await this.#find(selector, true);
    if (found.length === 0) throw new Refusal("not_found", `no bound lease ${describe(selector)}`);
    const released: Lease[] = [];
    const held: Hold[] = [];
    for (const lease of found) {
      const endedAt = this.#c.now();
      const before = await commitChange(
        this.#c.store,
        clientIdOf(lease),
        (leases) => leases.map((l) => l.state === "bound" ? releasedAt(l, endedAt) : l),
      );
      for (const l of before.filter((b) => b.state === "bound")) {
        const hold: Hold = {
          family: l.family,
          table: l.table,
          address: l.address,
          ifname: l.ifname,
          until: l.expiresAt,
          reason: "admin_release",
          // Only the holder (or root) confirms that its rules are gone.
          uid: l.uid,
        };
        const holding = l.expiresAt > endedAt && this.#c.allocation().endedHeld(l, hold);
        if (!holding) this.#c.allocation().ended(l);
        const history = releasedAt(l, endedAt);
        this.#c.observer.onLease({
          kind: "released",
          lease: history,
          origin: { kind: "control", uid },
        });
        released.push(history);
        if (holding) {
          held.push(hold);
          this.#c.revoke?.(l);
        }
      }
    }
    return { released, held };
  }

  async #reserve(
    request: Extract<ControlRequest, { op: "reserve" }>,
    uid: number,
  ): Promise<Lease[]> {
    const allocation = this.#c.allocation();
    const families = familiesOf(this.#c.config, request.family);
    const address = request.address ?? "*";
    const rows: Array<{ reservation: Lease; bound: boolean }> = [];
    // Check every family first, so a refusal writes nothing.
    for (const family of families) {
      const reservation: Lease = {
        family,
        ifname: request.ifname,
        address,
        table: request.table,
        expiresAt: 0,
        tag: undefined,
        owner: CONTROL_OWNER,
        uid: 0,
        state: "reserved",
      };
      const existing = allocation.reservationOf(family, request.table);
      if (existing) {
        if (existing.ifname === request.ifname && existing.address === address) continue;
        throw new Refusal(
          "conflict",
          `table ${request.table} of family ${
            familyName(family)
          } is already reserved for ${existing.ifname} ${existing.address}`,
        );
      }
      const same = allocation.reservations.find((r) =>
        r.family === family && r.ifname === request.ifname && r.address === address
      );
      if (same) {
        throw new Refusal(
          "conflict",
          `${request.ifname} ${address} (family ${
            familyName(family)
          }) already has table ${same.table} reserved`,
        );
      }
      const [holder] = await this.#find({ family, table: request.table }, true);
      if (holder && !heldByOwner({ ifname: request.ifname, address }, holder)) {
        throw new Refusal(
          "conflict",
          `table ${request.table} of family ${
            familyName(family)
          } is leased to ${holder.ifname} ${holder.address} until ${
            new Date(holder.expiresAt).toISOString()
          }; release it first`,
        );
      }
      rows.push({ reservation, bound: holder !== undefined });
    }
    for (const { reservation, bound } of rows) {
      await this.#write(reservationIdOf(reservation), [reservation]);
      allocation.reserved(reservation, bound);
      this.#c.log.info("reserved", { ...leaseFields(reservation), by: "control", uid });
    }
    return rows.map((r) => r.reservation);
  }

  async #unreserve(
    request: Extract<ControlRequest, { op: "unreserve" }>,
    uid: number,
  ): Promise<Lease[]> {
    const allocation = this.#c.allocation();
    const families = familiesOf(this.#c.config, request.family);
    const removed = families.map((f) => allocation.reservationOf(f, request.table)).filter((
      r,
    ): r is Lease => r !== undefined);
    if (removed.length === 0) {
      throw new Refusal(
        "not_found",
        `table ${request.table} is not reserved${
          request.family === undefined ? "" : ` in family ${familyName(request.family)}`
        }`,
      );
    }
    for (const reservation of removed) {
      await this.#write(reservationIdOf(reservation), []);
      allocation.unreserved(reservation);
      this.#c.log.info("unreserved", { ...leaseFields(reservation), by: "control", uid });
    }
    return removed;
  }

  /** Writes a client's leases now; a lost race is a conflict for the asker. */
  async #write(clientId: string, leases: Lease[]): Promise<void> {
    try {
      await commitChange(this.#c.store, clientId, () => leases);
    } catch (error) {
      if (error instanceof ConcurrencyError) throw new Refusal("conflict", error.message);
      throw error;
    }
  }
}

function describe(selector: LeaseSelector): string {
  return "table" in selector
    ? `on table ${selector.table} of family ${familyName(selector.family)}`
    : `for ${selector.ifname} ${selector.address} of family ${familyName(selector.family)}`;
}

/** A hold as control replies show it. */
export function holdView(hold: Hold): HoldView {
  return {
    family: hold.family,
    table: hold.table,
    ifname: hold.ifname ?? null,
    address: hold.address,
    until: hold.until,
    reason: hold.reason,
  };
}
