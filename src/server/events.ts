/**
 * What the daemon tells the world: lease events (`granted`, `refreshed`,
 * `moved`, `released`, `expired`) once each change is durable, and the
 * error replies it sends, through one small observer interface. The log
 * is one observer ({@link LogObserver}); outputs that follow leases (an
 * `rt_tables` file, commands per event, metrics, an event log) are others.
 *
 * @module
 */

import type { Logger } from "../log/logger.ts";
import { IsoTimes } from "../log/iso_time.ts";
import { LimitedLog } from "../log/rate_limit.ts";
import { familyName } from "../net/family.ts";
import type { ErrorCode, Request } from "../protocol/v1.ts";
import type { Lease } from "../store/lease_store.ts";
import { type Credentials, describeAddress } from "../unix/abstract_socket.ts";

import type { LeaseEventKind } from "../../config/operations.ts";

/** The kinds of lease event (the config's `events` of a command output name them). */
export type { LeaseEventKind } from "../../config/operations.ts";

/** A client's datagram: its request, where it came from, and who sent it (kernel-verified). */
export interface ClientOrigin {
  kind: "client";
  request: Request;
  /** The sender's address bytes, as received. */
  sender: Uint8Array;
  credentials: Credentials | undefined;
}

/** What caused an event. */
export type Origin =
  | ClientOrigin
  /** An administrator's control request, by the sender's uid. */
  | { kind: "control"; uid: number }
  /** The store reclaimed an expired lease. */
  | { kind: "expiry" };

/** A lease changed, and the change is durable. */
export interface LeaseEvent {
  kind: LeaseEventKind;
  /**
   * The lease as it stands now: bound after `granted`, `refreshed` and
   * `moved`, the history row after `released` and `expired`. Undefined
   * only for a release from an identity that held no lease.
   */
  lease: Lease | undefined;
  /** `moved`: the table the identity held before. */
  previousTable?: number | undefined;
  /** `granted` from a pool: the pool's name. */
  pool?: string | undefined;
  /** The table is the identity's reservation (granted or moved to it). */
  reserved?: boolean | undefined;
  /** The table was held for the identity (after an admin release, or at start). */
  held?: boolean | undefined;
  origin: Origin;
}

/** An error reply was sent. */
export interface ErrorReplyEvent {
  code: ErrorCode;
  message: string;
  /** The request, when the datagram decoded as one. */
  request: Request | undefined;
  /** The sender's address bytes. */
  sender: Uint8Array;
  credentials: Credentials | undefined;
}

/** Hears of lease events and error replies; calls must not throw or block. */
export interface LeaseObserver {
  /** A lease changed; called once the change is durable. */
  onLease(event: LeaseEvent): void;
  /** An error reply is being sent. */
  onErrorReply(event: ErrorReplyEvent): void;
}

/** Passes every call to each observer; one that throws does not keep the others from hearing. */
export function fanOut(observers: readonly LeaseObserver[]): LeaseObserver {
  const each = (call: (o: LeaseObserver) => void) => {
    for (const observer of observers) {
      try {
        call(observer);
      } catch { /* an output's failure must not stop the daemon or the other outputs */ }
    }
  };
  return {
    onLease: (event) => each((o) => o.onLease(event)),
    onErrorReply: (event) => each((o) => o.onErrorReply(event)),
  };
}

type Fields = Record<string, string | number>;

/** The identity fields of a log line, as the request gave them. */
function requestFields(request: Request): Fields {
  const { ifname, address } = request.identity;
  const family = familyName(request.identity.family);
  return request.tag === undefined
    ? { family, ifname, address }
    : { family, ifname, address, tag: request.tag };
}

/** The identity and table of a lease, as log lines show them (the family by name). */
export function leaseFields(lease: Lease): Fields {
  return {
    family: familyName(lease.family),
    ifname: lease.ifname,
    address: lease.address,
    table: lease.table,
  };
}

function senderFields(sender: Uint8Array, credentials: Credentials | undefined): Fields {
  return {
    from: describeAddress(sender),
    ...(credentials ? { pid: credentials.pid, uid: credentials.uid, gid: credentials.gid } : {}),
  };
}

/**
 * Who sent a datagram, for rate limits: its kernel-verified uid, which a
 * sender cannot vary the way it can vary its address.
 */
export function senderKey(credentials: Credentials | undefined): string {
  return `uid=${credentials?.uid ?? "unknown"}`;
}

/**
 * Writes each event as one log line: the event's name, the identity, the
 * table, then where it came from, e.g. `granted family=inet ifname=eth1
 * address=192.0.2.10 table=10000 pool=default expires=… from=@… pid=812
 * uid=0 gid=0`; an error reply as `rejected error=CODE reason=…`.
 * Families are named as `ctl` names them (`inet`, `inet6`, `unspec`).
 *
 * So that one sender cannot flood the log, error replies are rate-limited
 * per code and sender uid, and so are the lease events of non-root uids
 * (`src/log/rate_limit.ts`); root's lease events are always written.
 */
export class LogObserver implements LeaseObserver {
  #log: Logger;
  #limited: LimitedLog;
  /** The grants of one pass share their expiry. */
  #times = new IsoTimes();
  /** Whether lease events are logged (the `eventlog` output); error replies always are. */
  readonly leases: boolean;

  /**
   * An observer writing to `log`; `leases: false` logs error replies only;
   * repeated lines go through `limited`.
   */
  constructor(log: Logger, options: { leases?: boolean; limited?: LimitedLog } = {}) {
    this.#log = log;
    this.leases = options.leases ?? true;
    this.#limited = options.limited ?? new LimitedLog(log);
  }

  onLease(event: LeaseEvent): void {
    if (!this.leases) return;
    const { lease, origin } = event;
    if (origin.kind === "expiry") {
      if (!lease) return;
      this.#log.info(event.kind, {
        ...leaseFields(lease),
        expired: this.#times.of(lease.expiresAt),
      });
      return;
    }
    if (origin.kind === "control") {
      if (lease) {
        this.#log.info(event.kind, { ...leaseFields(lease), by: "control", uid: origin.uid });
      }
      return;
    }
    const from = senderFields(origin.sender, origin.credentials);
    if (!lease) {
      // A release of nothing is routine (a client releasing twice): debug only.
      this.#log.debug(event.kind, {
        ...requestFields(origin.request),
        table: 0,
        note: "no lease held",
        ...from,
      });
      return;
    }
    const fields: Fields = { ...requestFields(origin.request), table: lease.table };
    if (event.kind !== "released") {
      if (event.previousTable !== undefined) fields.previous_table = event.previousTable;
      if (event.pool !== undefined) fields.pool = event.pool;
      if (event.reserved) fields.reserved = "yes";
      if (event.held) fields.held = "yes";
      fields.expires = this.#times.of(lease.expiresAt);
    }
    if (origin.credentials?.uid === 0) this.#log.info(event.kind, { ...fields, ...from });
    else {
      this.#limited.log("info", event.kind, senderKey(origin.credentials), event.kind, {
        ...fields,
        ...from,
      });
    }
  }

  onErrorReply(event: ErrorReplyEvent): void {
    this.#limited.warn(`rejected ${event.code}`, senderKey(event.credentials), "rejected", {
      error: event.code,
      reason: event.message,
      ...(event.request ? requestFields(event.request) : {}),
      ...senderFields(event.sender, event.credentials),
    });
  }
}
