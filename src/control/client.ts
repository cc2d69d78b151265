/**
 * The control client: sends one control request to the server's socket and
 * waits for its reply, for `table-allocator-ctl` and other programs.
 *
 * ```ts
 * import { ControlClient } from "./mod.ts";
 * const client = new ControlClient({ socket: "tas_socket" });
 * const { leases } = await client.call("show", { family: 2, table: 10000 });
 * ```
 *
 * Each call binds its own autobound abstract socket, so a late reply to an
 * earlier call that timed out can never be taken for the answer to a later
 * one, and calls may run concurrently. The server answers root only (it
 * checks the kernel's `SCM_CREDENTIALS`); others get a {@link ControlError}
 * with code `not_permitted`.
 *
 * @module
 */

import { Errno, ErrnoError } from "../../ffi/libc.ts";
import { AbstractDatagramSocket, paddedAbstractAddress } from "../unix/abstract_socket.ts";
import { ProtocolError } from "../protocol/v1.ts";
import { LEASE_STATES, type LeaseState } from "../store/lease_store.ts";
import type { AddrFamily } from "../net/family.ts";
import {
  type ControlResults,
  decodeControlReply,
  encodeControlRequest,
  type HoldView,
  type LeaseView,
  type PoolView,
  type StatusView,
} from "./protocol.ts";
import { errorMessage } from "../util/errors.ts";
import { sleep } from "../util/timer.ts";
import { sameBytes } from "../util/bytes.ts";

/** The shipped server's socket name (`config/default.json`). */
export const DEFAULT_SOCKET = "tas_socket";
/** How long {@link ControlClient.call} waits for a reply by default. */
export const DEFAULT_TIMEOUT_MS = 2000;
/**
 * Receive buffer for replies: a page of 200 leases is tens of KB, far
 * below this; a longer reply is reported instead of being cut.
 */
export const REPLY_BUFFER_BYTES = 262_144;
/** How often a send is retried while the server's queue is full. */
const SEND_RETRY_MS = 2;

/** The control operations, by wire name. */
export type ControlOp = keyof ControlResults;

/** The keys each operation takes (see `src/control/protocol.ts`). */
export interface ControlArgs {
  /** No arguments. */
  status: Record<string, never>;
  /** No arguments. */
  pools: Record<string, never>;
  /** A page (`after` a cursor, `limit` leases) and filters. */
  list: {
    after?: string;
    limit?: number;
    family?: AddrFamily;
    ifname?: string;
    state?: LeaseState;
  };
  /** A table of a family, or an identity. */
  show:
    | { family: AddrFamily; table: number }
    | { family: AddrFamily; ifname: string; address: string };
  /** A table of a family, or an identity. */
  release:
    | { family: AddrFamily; table: number }
    | { family: AddrFamily; ifname: string; address: string };
  /** The table, its owner (every address without `address`), every family without `family`. */
  reserve: { table: number; ifname: string; address?: string; family?: AddrFamily };
  /** The table, in every family without `family`. */
  unreserve: { table: number; family?: AddrFamily };
  /** Nothing. */
  metrics: Record<string, never>;
  /** Nothing: the server re-reads its own config file. */
  reload: Record<string, never>;
}

/** The server refused the operation: its error reply's code and message. */
export class ControlError extends Error {
  /** The operation that was refused. */
  readonly op: string;
  /** The server's stable reason code (`not_permitted`, `conflict`, ...). */
  readonly code: string;
  /** Builds the error from the server's error reply. */
  constructor(op: string, code: string, message: string) {
    super(message);
    this.name = "ControlError";
    this.op = op;
    this.code = code;
  }
}

/** Nobody is bound to the server's socket name in this network namespace. */
export class NotRunningError extends Error {
  /** The socket name that was tried. */
  readonly socket: string;
  /** Builds the error for `socket`. */
  constructor(socket: string, options?: ErrorOptions) {
    super(
      `the server is not running on @${socket} (no socket bound in this network namespace)`,
      options,
    );
    this.name = "NotRunningError";
    this.socket = socket;
  }
}

/** The server did not answer in time (busy, stopped, or not a table-allocator server). */
export class TimeoutError extends Error {
  /** The operation that was not answered. */
  readonly op: string;
  /** The socket name it was sent to. */
  readonly socket: string;
  /** How long the client waited. */
  readonly timeoutMs: number;
  /** Builds the error. */
  constructor(op: string, socket: string, timeoutMs: number) {
    super(`no reply to ${op} from @${socket} within ${timeoutMs} ms`);
    this.name = "TimeoutError";
    this.op = op;
    this.socket = socket;
    this.timeoutMs = timeoutMs;
  }
}

/** The server's reply could not be understood (not a control reply, or malformed). */
export class BadReplyError extends Error {
  /** The operation whose reply was bad. */
  readonly op: string;
  /** Builds the error; the message says what is wrong with the reply. */
  constructor(op: string, message: string, options?: ErrorOptions) {
    super(`the server's reply to ${op} is not understood: ${message}`, options);
    this.name = "BadReplyError";
    this.op = op;
  }
}

/** Options of {@link ControlClient}. */
export interface ControlClientOptions {
  /** The server's abstract socket name, without `@` (default {@link DEFAULT_SOCKET}). */
  socket?: string;
  /** How long to wait for each reply, in ms (default {@link DEFAULT_TIMEOUT_MS}). */
  timeoutMs?: number;
}

/** Talks to the server's control interface. */
export class ControlClient {
  /** The server's socket name. */
  readonly socket: string;
  /** How long each call waits for its reply. */
  readonly timeoutMs: number;
  #server: Uint8Array<ArrayBuffer>;

  /** Checks the options; no socket is opened until a call. */
  constructor(options: ControlClientOptions = {}) {
    this.socket = options.socket ?? DEFAULT_SOCKET;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isFinite(this.timeoutMs) || this.timeoutMs <= 0) {
      throw new RangeError(`timeoutMs must be a positive number, got ${this.timeoutMs}`);
    }
    this.#server = paddedAbstractAddress(this.socket);
  }

  /**
   * Sends `op` with `args` and resolves with the server's validated result.
   * Rejects with {@link ControlError} (the server refused),
   * {@link NotRunningError}, {@link TimeoutError} or {@link BadReplyError}.
   */
  async call<K extends ControlOp>(op: K, args: ControlArgs[K]): Promise<ControlResults[K]> {
    const deadline = Date.now() + this.timeoutMs;
    using socket = AbstractDatagramSocket.bind(null, { receiveBufferSize: REPLY_BUFFER_BYTES });
    const request = encodeControlRequest(op, args as Record<string, unknown>);
    for (;;) {
      let sent: boolean;
      try {
        sent = socket.send(request, this.#server);
      } catch (error) {
        if (
          error instanceof ErrnoError &&
          (error.errno === Errno.ECONNREFUSED || error.errno === Errno.ENOENT)
        ) {
          throw new NotRunningError(this.socket, { cause: error });
        }
        throw new Error(`cannot send ${op} to @${this.socket}: ${errorMessage(error)}`, {
          cause: error,
        });
      }
      if (sent) break;
      // The server's queue is full (net.unix.max_dgram_qlen): it is busy, not gone.
      if (Date.now() >= deadline) throw new TimeoutError(op, this.socket, this.timeoutMs);
      await sleep(SEND_RETRY_MS);
    }
    for (;;) {
      const datagram = socket.receive();
      if (datagram === null) {
        const left = deadline - Date.now();
        if (left <= 0) throw new TimeoutError(op, this.socket, this.timeoutMs);
        await socket.readable(left);
        continue;
      }
      // Only the server's answer counts; anything else sent to this name is dropped.
      if (!sameBytes(datagram.sender, this.#server)) continue;
      if (datagram.length > datagram.data.byteLength) {
        throw new BadReplyError(
          op,
          `${datagram.length} bytes exceed the receive buffer of ${REPLY_BUFFER_BYTES}`,
        );
      }
      let reply;
      try {
        reply = decodeControlReply(datagram.data);
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error;
        throw new BadReplyError(op, error.message, { cause: error });
      }
      if (!reply.ok) throw new ControlError(op, reply.code, reply.message);
      if (reply.op !== op) throw new BadReplyError(op, `it answers op ${JSON.stringify(reply.op)}`);
      return validateResult(op, reply.result);
    }
  }
}

// Validation of results: the reply is bytes from another process, checked
// once here so that formatting and callers can trust the types.

class ShapeError extends Error {}

type Check<T> = (value: unknown, path: string) => T;

function describe(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

function expect(ok: boolean, path: string, what: string, value: unknown): void {
  if (!ok) throw new ShapeError(`"${path}" must be ${what}, got ${describe(value)}`);
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

function object(value: unknown, path: string): Record<string, unknown> {
  expect(isObject(value), path, "an object", value);
  return value as Record<string, unknown>;
}

const integer: Check<number> = (value, path) => {
  expect(Number.isSafeInteger(value) && (value as number) >= 0, path, "an integer >= 0", value);
  return value as number;
};

const number: Check<number> = (value, path) => {
  expect(typeof value === "number" && Number.isFinite(value), path, "a number", value);
  return value as number;
};

const string: Check<string> = (value, path) => {
  expect(typeof value === "string", path, "a string", value);
  return value as string;
};

const family: Check<AddrFamily> = (value, path) => {
  expect(value === 0 || value === 2 || value === 10, path, "0, 2 or 10", value);
  return value as AddrFamily;
};

function nullable<T>(check: Check<T>): Check<T | null> {
  return (value, path) => value === null ? null : check(value, path);
}

function array<T>(check: Check<T>): Check<T[]> {
  return (value, path) => {
    expect(Array.isArray(value), path, "an array", value);
    return (value as unknown[]).map((item, i) => check(item, `${path}[${i}]`));
  };
}

function fields<T>(checks: { [K in keyof T]: Check<T[K]> }): Check<T> {
  return (value, path) => {
    const obj = object(value, path);
    const out: Record<string, unknown> = { ...obj };
    for (const [key, check] of Object.entries(checks) as Array<[string, Check<unknown>]>) {
      out[key] = check(obj[key], path ? `${path}.${key}` : key);
    }
    return out as T;
  };
}

const state: Check<LeaseState> = (value, path) => {
  expect(
    (LEASE_STATES as readonly unknown[]).includes(value),
    path,
    `one of ${LEASE_STATES.join(", ")}`,
    value,
  );
  return value as LeaseState;
};

const leaseView = fields<LeaseView>({
  family,
  ifname: string,
  address: string,
  table: integer,
  state,
  expires_at: nullable(number),
  tag: nullable(string),
  owner: string,
  uid: integer,
});

/** A count that an older server leaves out (0 then). */
const count: Check<number> = (value, path) => value === undefined ? 0 : integer(value, path);

const poolView = fields<PoolView>({
  name: string,
  family,
  ranges: array(fields<{ first: number; last: number }>({ first: integer, last: integer })),
  tags: array(string),
  ifnames: array(string),
  size: integer,
  bound: integer,
  reserved: integer,
  held: count,
  free: integer,
});

const holdView = fields<HoldView>({
  family,
  table: integer,
  ifname: nullable(string),
  address: string,
  until: number,
  reason: (value, path) => {
    expect(value === "admin_release" || value === "readiness", path, "a hold reason", value);
    return value as HoldView["reason"];
  },
});

/** An array that an older server may leave out. */
function optionalArray<T>(check: Check<T>): Check<T[]> {
  return (value, path) => value === undefined ? [] : array(check)(value, path);
}

const RESULT_CHECKS: { [K in ControlOp]: Check<ControlResults[K]> } = {
  status: fields<StatusView>({
    version: string,
    pid: integer,
    uptime_s: number,
    socket: string,
    store: string,
    families: array(family),
    pools: array(poolView),
    leases: fields<StatusView["leases"]>({
      bound: integer,
      reserved: integer,
      outside_pools: integer,
      held: count,
    }),
  }),
  pools: fields<ControlResults["pools"]>({ pools: array(poolView) }),
  list: fields<ControlResults["list"]>({ leases: array(leaseView), next: nullable(string) }),
  show: fields<ControlResults["show"]>({ leases: array(leaseView) }),
  release: fields<ControlResults["release"]>({
    released: array(leaseView),
    held: optionalArray(holdView),
  }),
  reserve: fields<ControlResults["reserve"]>({ reserved: array(leaseView) }),
  unreserve: fields<ControlResults["unreserve"]>({ removed: array(leaseView) }),
  metrics: fields<ControlResults["metrics"]>({ text: string }),
  reload: fields<ControlResults["reload"]>({
    config: string,
    pools: integer,
    reservations: integer,
    outputs: integer,
  }),
};

/**
 * Checks a reply's `result` against the shape of `op`'s result; throws a
 * {@link BadReplyError} naming the first key at fault. Unknown keys are
 * kept (a newer server may add some).
 */
export function validateResult<K extends ControlOp>(op: K, result: unknown): ControlResults[K] {
  try {
    return RESULT_CHECKS[op](result, "result");
  } catch (error) {
    if (!(error instanceof ShapeError)) throw error;
    throw new BadReplyError(op, error.message, { cause: error });
  }
}
