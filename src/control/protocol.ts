/**
 * Control messages on the server socket: inspection and administration of
 * leases, pools and reservations, for `table-allocator-ctl` and other
 * programs. Pure codec: JSON in, a typed request or a ProtocolError out.
 *
 * A control request is a v1 datagram with `cmd` 16 and an `op`:
 *
 *     {"version":1,"cmd":16,"op":"list","state":"bound","limit":50}
 *
 * The reply has `cmd` 17, the same `op` and a `result`:
 *
 *     {"version":1,"cmd":17,"op":"list","result":{"leases":[...],"next":null}}
 *
 * Errors are the usual error reply (`cmd` 3, `error`, `message`). The
 * server answers control requests only to root (uid 0), by the kernel's
 * SCM_CREDENTIALS; see `docs/ctl.md`.
 *
 * @module
 */

import { RESERVED_TABLES } from "../../config/limits.ts";
import { AddrFamily, isAddrFamily } from "../net/family.ts";
import { Command as V1Command, ProtocolError, validateIdentity } from "../protocol/v1.ts";
import { type Lease, LEASE_STATES, type LeaseState } from "../store/lease_store.ts";

/** Command numbers of control messages. */
export const ControlCommand = {
  /** A control request. */
  REQUEST: 16,
  /** The server's answer to a control request. */
  REPLY: 17,
  /** Errors use the v1 error reply. */
  ERROR: V1Command.ERROR,
} as const;

/** Most leases in one page of `list`. */
export const MAX_LIST_LIMIT = 200;
/** Page size of `list` when none is given. */
export const DEFAULT_LIST_LIMIT = 100;

/** Selects leases by table or by identity. */
export type LeaseSelector =
  | { family: AddrFamily; table: number }
  | { family: AddrFamily; ifname: string; address: string };

/** A validated control request. */
export type ControlRequest =
  | { op: "status" }
  | { op: "pools" }
  | {
    op: "list";
    after: string | undefined;
    limit: number;
    family: AddrFamily | undefined;
    ifname: string | undefined;
    state: LeaseState | undefined;
  }
  | { op: "show"; selector: LeaseSelector }
  | { op: "release"; selector: LeaseSelector }
  | {
    op: "reserve";
    table: number;
    ifname: string;
    /** An address, or undefined for every address of the interface. */
    address: string | undefined;
    /** A family, or undefined for every enabled family. */
    family: AddrFamily | undefined;
  }
  | { op: "unreserve"; table: number; family: AddrFamily | undefined }
  | { op: "metrics" }
  | { op: "reload" };

/** The operations, for usage texts and validation. */
export const CONTROL_OPS = [
  "status",
  "pools",
  "list",
  "show",
  "release",
  "reserve",
  "unreserve",
  "metrics",
  "reload",
] as const;

/** A lease as control replies show it (snake case, like the rest of the wire). */
export interface LeaseView {
  /** The address family (2, 10 or 0). */
  family: AddrFamily;
  /** The interface name. */
  ifname: string;
  /** The address; `*` in a reservation of every address of the interface. */
  address: string;
  /** The routing table. */
  table: number;
  /** `bound`, `released`, `expired` or `reserved`. */
  state: LeaseState;
  /** Wall-clock expiry in ms since the epoch; null for reservations. */
  expires_at: number | null;
  /** The tag the client sent; null for none. */
  tag: string | null;
  /** Who wrote the lease (`table-allocator-server`, `config`, `table-allocator-ctl`). */
  owner: string;
  /** The uid that took the lease (0 for root and reservations). */
  uid: number;
}

/** One pool as `pools` and `status` show it. */
export interface PoolView {
  /** The pool's name from the config (`default` for `table_offset`/`num_tables`). */
  name: string;
  /** The family it serves. */
  family: AddrFamily;
  /** Its table ranges, first and last included, lowest first. */
  ranges: Array<{ first: number; last: number }>;
  /** The tags it serves (empty: any tag or none). */
  tags: string[];
  /** The interface-name globs it serves (empty: any interface). */
  ifnames: string[];
  /** Tables in the pool. */
  size: number;
  /** Tables bound to an identity. */
  bound: number;
  /** Tables held by reservations and not bound. */
  reserved: number;
  /** Tables held back for an identity (after an admin release, or at start). */
  held: number;
  /** Tables the next request may get. */
  free: number;
}

/** The `status` result. */
export interface StatusView {
  /** The server's version. */
  version: string;
  /** The server's process id. */
  pid: number;
  /** Seconds since the server started. */
  uptime_s: number;
  /** The socket it serves, `@name`. */
  socket: string;
  /** The store: `sqlite:PATH` or `postgres`. */
  store: string;
  /** The families it serves. */
  families: AddrFamily[];
  /** Every pool. */
  pools: PoolView[];
  /**
   * Bound leases, reservations, bound leases outside every pool (after a
   * config change), and tables held back for an identity.
   */
  leases: { bound: number; reserved: number; outside_pools: number; held: number };
}

/**
 * A table held back for an identity: after an admin release until the
 * holder confirms (or its lease's old expiry), or at start while the
 * kernel's rules still route an address through it.
 */
export interface HoldView {
  /** The family of the table. */
  family: AddrFamily;
  /** The held table. */
  table: number;
  /** The interface, or null when any interface with the address counts. */
  ifname: string | null;
  /** The address it is held for. */
  address: string;
  /** Wall-clock end of the hold, in ms since the epoch. */
  until: number;
  /** After an admin release, or at start for a table the kernel's rules still use. */
  reason: "admin_release" | "readiness";
}

/** The `reload` result: what the server runs with now. */
export interface ReloadView {
  /** The config file that was read. */
  config: string;
  /** Pools configured now. */
  pools: number;
  /** Reservations in the config now. */
  reservations: number;
  /** Outputs running now. */
  outputs: number;
}

/** Results by operation. */
export interface ControlResults {
  /** The server's facts and its pools. */
  status: StatusView;
  /** Every pool. */
  pools: { pools: PoolView[] };
  /** One page of leases; `next` is the cursor of the next page, null on the last. */
  list: { leases: LeaseView[]; next: string | null };
  /** The leases the selector names. */
  show: { leases: LeaseView[] };
  /**
   * The leases that were released (as history rows), and their tables,
   * held for their holders until they confirm.
   */
  release: { released: LeaseView[]; held: HoldView[] };
  /** The reservations written (one per family). */
  reserve: { reserved: LeaseView[] };
  /** The reservations removed. */
  unreserve: { removed: LeaseView[] };
  /** The metrics as Prometheus text exposition. */
  metrics: { text: string };
  /** What the server runs with after a reload. */
  reload: ReloadView;
}

const encoder = new TextEncoder();

function fail(message: string): never {
  throw new ProtocolError("bad_request", message);
}

function optionalInt(
  obj: Record<string, unknown>,
  key: string,
  min: number,
  max: number,
): number | undefined {
  const value = obj[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    fail(`"${key}" must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function optionalString(obj: Record<string, unknown>, key: string): string | undefined {
  const value = obj[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string" || value.length === 0 || value.length > 256) {
    fail(`"${key}" must be a non-empty string, got ${JSON.stringify(value)}`);
  }
  return value;
}

function optionalFamily(obj: Record<string, unknown>): AddrFamily | undefined {
  const value = obj.family;
  if (value === undefined || value === null) return undefined;
  if (!isAddrFamily(value)) {
    fail(`"family" must be 0, 2 or 10, got ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * Why `table` cannot be reserved: the kernel's own tables are refused like
 * the config refuses them in a pool.
 */
export function kernelTableMessage(table: number): string {
  return `table ${table} is one of the kernel's tables (0 unspec, 253 default, 254 main, 255 local) and cannot be reserved`;
}

function requiredTable(obj: Record<string, unknown>): number {
  const table = optionalInt(obj, "table", 1, 0xffff_ffff);
  if (table === undefined) fail(`"table" is required (an integer from 1 to 4294967295)`);
  return table;
}

function selector(obj: Record<string, unknown>): LeaseSelector {
  const family = optionalFamily(obj);
  if (family === undefined) fail(`"family" is required (0, 2 or 10)`);
  const table = optionalInt(obj, "table", 1, 0xffff_ffff);
  if (table !== undefined) return { family, table };
  const ifname = optionalString(obj, "ifname");
  const address = optionalString(obj, "address");
  if (ifname === undefined || address === undefined) {
    fail(`give "table", or "ifname" and "address", to select a lease`);
  }
  return validateIdentity(family, ifname, address);
}

/**
 * Validates a parsed control message (one whose `cmd` is 16). Throws a
 * ProtocolError naming the key and value at fault.
 */
export function decodeControlRequest(obj: Record<string, unknown>): ControlRequest {
  const op = obj.op;
  switch (op) {
    case "status":
    case "pools":
    case "metrics":
    case "reload":
      return { op };
    case "list": {
      const state = optionalString(obj, "state");
      if (state !== undefined && !(LEASE_STATES as readonly string[]).includes(state)) {
        fail(`"state" must be one of ${LEASE_STATES.join(", ")}, got ${JSON.stringify(state)}`);
      }
      return {
        op,
        after: optionalString(obj, "after"),
        limit: optionalInt(obj, "limit", 1, MAX_LIST_LIMIT) ?? DEFAULT_LIST_LIMIT,
        family: optionalFamily(obj),
        ifname: optionalString(obj, "ifname"),
        state: state as LeaseState | undefined,
      };
    }
    case "show":
    case "release":
      return { op, selector: selector(obj) };
    case "reserve": {
      const table = requiredTable(obj);
      if (RESERVED_TABLES.includes(table)) fail(kernelTableMessage(table));
      const family = optionalFamily(obj);
      const ifname = optionalString(obj, "ifname");
      if (ifname === undefined) fail(`"ifname" is required for a reservation`);
      let address = optionalString(obj, "address");
      if (address !== undefined) {
        if (family === undefined) fail(`a reservation with an "address" needs its "family"`);
        address = validateIdentity(family, ifname, address).address;
      } else validateIdentity(AddrFamily.UNSPEC, ifname, "*");
      return { op, table, ifname, address, family };
    }
    case "unreserve":
      return { op, table: requiredTable(obj), family: optionalFamily(obj) };
    default:
      throw new ProtocolError(
        "unknown_cmd",
        `"op" must be one of ${CONTROL_OPS.join(", ")}, got ${JSON.stringify(op)}`,
      );
  }
}

/** Encodes a control request (for ctl and tests): `args` are the op's keys. */
export function encodeControlRequest(
  op: string,
  args: Record<string, unknown> = {},
): Uint8Array<ArrayBuffer> {
  return encoder.encode(JSON.stringify({ version: 1, cmd: ControlCommand.REQUEST, op, ...args }));
}

/** Encodes a control reply. */
export function encodeControlReply<K extends keyof ControlResults>(
  op: K,
  result: ControlResults[K],
): Uint8Array<ArrayBuffer> {
  return encoder.encode(JSON.stringify({ version: 1, cmd: ControlCommand.REPLY, op, result }));
}

/** A lease as control replies show it. */
export function leaseView(lease: Lease): LeaseView {
  return {
    family: lease.family,
    ifname: lease.ifname,
    address: lease.address,
    table: lease.table,
    state: lease.state,
    expires_at: lease.state === "reserved" ? null : lease.expiresAt,
    tag: lease.tag ?? null,
    owner: lease.owner,
    uid: lease.uid,
  };
}

/** A decoded control reply, as ctl sees it. */
export type ControlReply =
  | { ok: true; op: string; result: unknown }
  | { ok: false; code: string; message: string };

/** Decodes a control reply (or error reply); throws a ProtocolError when it is neither. */
export function decodeControlReply(data: Uint8Array): ControlReply {
  let obj: Record<string, unknown>;
  try {
    const parsed = JSON.parse(new TextDecoder().decode(data));
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error();
    obj = parsed;
  } catch {
    throw new ProtocolError("bad_json", "the server's reply is not a JSON object");
  }
  if (obj.cmd === ControlCommand.REPLY && typeof obj.op === "string") {
    return { ok: true, op: obj.op, result: obj.result };
  }
  if (obj.cmd === ControlCommand.ERROR) {
    return {
      ok: false,
      code: typeof obj.error === "string" ? obj.error : "error",
      message: typeof obj.message === "string" ? obj.message : "the server gave no reason",
    };
  }
  throw new ProtocolError("bad_request", `unexpected reply: ${JSON.stringify(obj).slice(0, 80)}`);
}
