/**
 * The host agent's own protocol: what a client sends to the agent's
 * socket (`@table-allocator-agent`, padded) and what the agent answers.
 * One JSON object per datagram, `"version": 1`, an `"op"`. Pure: bytes in,
 * a typed message or an {@link AgentProtocolError} out; the client's hook
 * path loads it, so it imports nothing but the v1 codec.
 *
 * See `docs/protocol.md`, "The host agent".
 *
 * @module
 */

import { AddrFamily } from "../net/family.ts";
import {
  type Identity,
  MAX_ADDRESS_BYTES,
  MAX_IFNAME_BYTES,
  MAX_TAG_BYTES,
  ProtocolError,
  validateIdentity,
} from "../protocol/v1.ts";
import { errorMessage } from "../util/errors.ts";

/** The agent's fixed abstract name (padded, like every name of the protocol). */
export const AGENT_SOCKET_NAME = "table-allocator-agent";
/**
 * Overrides {@link AGENT_SOCKET_NAME}: for tests in a shared network
 * namespace, which must not meet the host's agent.
 */
export const AGENT_SOCKET_ENV = "TABLE_ALLOCATOR_AGENT_SOCKET";

/** The agent's name: {@link AGENT_SOCKET_NAME} unless {@link AGENT_SOCKET_ENV} says otherwise. */
export function agentSocketName(override = Deno.env.get(AGENT_SOCKET_ENV)): string {
  return override || AGENT_SOCKET_NAME;
}
/** Largest message either side sends: a hold carries a log path of up to 4095 bytes. */
export const MAX_AGENT_MESSAGE_BYTES = 8192;
/** Longest server name: `sun_path` less the leading NUL and the original's terminator. */
export const MAX_SERVER_BYTES = 105;
/** Longest `-l` path (PATH_MAX less its NUL). */
export const MAX_LOG_PATH_BYTES = 4095;
/** Most uids one identity may trust besides root. */
export const MAX_SERVER_UIDS = 16;
/** Largest uid (`(uid_t) -1` is "no uid"). */
export const MAX_UID = 0xffff_fffe;

/** Why the agent refused a message; stable strings for scripts. */
export type AgentErrorCode =
  | "bad_json"
  | "bad_request"
  | "bad_version"
  | "oversize"
  | "unknown_op"
  | "not_permitted"
  | "no_interface"
  | "bad_log"
  | "bad_psk"
  | "stopping";

/** A malformed or refused message; the agent answers it with an `error` reply. */
export class AgentProtocolError extends Error {
  /** The stable reason code sent on the wire. */
  readonly code: AgentErrorCode;
  /** Builds the error; the message names the offending value. */
  constructor(code: AgentErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "AgentProtocolError";
    this.code = code;
  }
}

/** Everything the agent needs to hold one identity, as the client's flags give it. */
export interface HoldSpec {
  identity: Identity;
  /** Prefix length of the network (rules need it); null for family 0. */
  prefix: number | null;
  /** The server's abstract name (`-d`). */
  server: string;
  tag: string | undefined;
  /** `-l`: an absolute path, or undefined. */
  logPath: string | undefined;
  /** `-s`. */
  syslog: boolean;
  /** `--server-uid`: uids trusted besides 0; undefined for the default. */
  serverUids: number[] | undefined;
  /** `--psk-file`: an absolute path; requests are signed, replies must be. */
  pskFile: string | undefined;
}

/** One identity in a `status` reply. */
export interface HeldIdentity {
  /** `<ifname>-<address>-<family>`. */
  identity: string;
  state: "acquiring" | "held" | "releasing";
  /** 0 while there is no lease. */
  table: number;
  server: string;
}

/** A request to the agent. */
export type AgentRequest =
  | { op: "hold"; spec: HoldSpec }
  | { op: "release"; identity: Identity }
  | { op: "cancel"; identity: Identity }
  | { op: "status" };

/** The agent's answer. */
export type AgentReply =
  | { op: "hold"; result: "lease"; table: number }
  | { op: "hold"; result: "none"; reason: string }
  | { op: "hold"; result: "refused"; error: string; message: string }
  | { op: "release"; result: "released" | "unacknowledged" | "not_held" }
  | { op: "cancel"; result: "cancelled" | "not_waiting" }
  | {
    op: "status";
    pid: number;
    /** Resident and V8 heap memory of the agent, in bytes. */
    rss: number;
    heap_used: number;
    identities: HeldIdentity[];
  }
  | { op: "error"; error: AgentErrorCode; message: string };

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const byteLength = (s: string) => encoder.encode(s).byteLength;

function quote(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

function bad(message: string): never {
  throw new AgentProtocolError("bad_request", message);
}

function integer(obj: Record<string, unknown>, key: string, min: number, max: number): number {
  const value = obj[key];
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    bad(`"${key}" must be an integer from ${min} to ${max}, got ${quote(value)}`);
  }
  return value;
}

function text(obj: Record<string, unknown>, key: string, maxBytes: number): string {
  const value = obj[key];
  if (typeof value !== "string" || value.length === 0 || byteLength(value) > maxBytes) {
    bad(`"${key}" must be a string of 1 to ${maxBytes} bytes, got ${quote(value)}`);
  }
  return value;
}

function optionalText(obj: Record<string, unknown>, key: string, maxBytes: number) {
  return obj[key] === undefined || obj[key] === null ? undefined : text(obj, key, maxBytes);
}

/** Parses the JSON object of a message: size, UTF-8, JSON, `version` 1. */
function parseObject(data: Uint8Array, length: number, what: string): Record<string, unknown> {
  if (length > MAX_AGENT_MESSAGE_BYTES) {
    throw new AgentProtocolError(
      "oversize",
      `${what} of ${length} bytes exceeds ${MAX_AGENT_MESSAGE_BYTES}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(decoder.decode(data));
  } catch (error) {
    throw new AgentProtocolError(
      "bad_json",
      `${what} is not a JSON object: ${errorMessage(error).slice(0, 80)}`,
      { cause: error },
    );
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new AgentProtocolError("bad_json", `${what} is not a JSON object, got ${quote(parsed)}`);
  }
  const obj = parsed as Record<string, unknown>;
  if (obj.version !== 1) {
    throw new AgentProtocolError("bad_version", `"version" must be 1, got ${quote(obj.version)}`);
  }
  return obj;
}

function decodeIdentity(obj: Record<string, unknown>): Identity {
  const family = integer(obj, "addr_family", 0, 10);
  try {
    return validateIdentity(
      family,
      text(obj, "ifname", MAX_IFNAME_BYTES),
      text(obj, "address", MAX_ADDRESS_BYTES),
    );
  } catch (error) {
    if (error instanceof ProtocolError) bad(error.message);
    throw error;
  }
}

function decodeHoldSpec(obj: Record<string, unknown>): HoldSpec {
  const identity = decodeIdentity(obj);
  let prefix: number | null = null;
  if (identity.family !== AddrFamily.UNSPEC) {
    prefix = integer(obj, "prefix", 1, identity.family === AddrFamily.INET ? 32 : 128);
  } else if (obj.prefix !== undefined && obj.prefix !== null) {
    bad(`"prefix" is for families 2 and 10 only, got ${quote(obj.prefix)}`);
  }
  const logPath = optionalText(obj, "log_path", MAX_LOG_PATH_BYTES);
  if (logPath !== undefined && (!logPath.startsWith("/") || logPath.includes("\0"))) {
    bad(`"log_path" must be an absolute path without NUL, got ${quote(logPath)}`);
  }
  const pskFile = optionalText(obj, "psk_file", MAX_LOG_PATH_BYTES);
  if (pskFile !== undefined && (!pskFile.startsWith("/") || pskFile.includes("\0"))) {
    bad(`"psk_file" must be an absolute path without NUL, got ${quote(pskFile)}`);
  }
  const syslog = obj.syslog ?? false;
  if (typeof syslog !== "boolean") bad(`"syslog" must be true or false, got ${quote(syslog)}`);
  let serverUids: number[] | undefined;
  if (obj.server_uids !== undefined && obj.server_uids !== null) {
    const uids = obj.server_uids;
    if (
      !Array.isArray(uids) || uids.length === 0 || uids.length > MAX_SERVER_UIDS ||
      !uids.every((u) => Number.isInteger(u) && u >= 0 && u <= MAX_UID)
    ) {
      bad(`"server_uids" must be 1 to ${MAX_SERVER_UIDS} uids, got ${quote(uids)}`);
    }
    serverUids = uids as number[];
  }
  return {
    identity,
    prefix,
    server: text(obj, "server", MAX_SERVER_BYTES),
    tag: optionalText(obj, "tag", MAX_TAG_BYTES),
    logPath,
    syslog,
    serverUids,
    pskFile,
  };
}

/**
 * Decodes a request to the agent. `length` is the datagram's real length
 * (it exceeds `data` when the receive buffer truncated it). Throws an
 * {@link AgentProtocolError} naming what is wrong.
 */
export function decodeAgentRequest(data: Uint8Array, length = data.byteLength): AgentRequest {
  const obj = parseObject(data, length, "message");
  switch (obj.op) {
    case "hold":
      return { op: "hold", spec: decodeHoldSpec(obj) };
    case "release":
    case "cancel":
      return { op: obj.op, identity: decodeIdentity(obj) };
    case "status":
      return { op: "status" };
    default:
      throw new AgentProtocolError(
        "unknown_op",
        `"op" must be "hold", "release", "cancel" or "status", got ${quote(obj.op)}`,
      );
  }
}

function identityFields(identity: Identity) {
  return { addr_family: identity.family, ifname: identity.ifname, address: identity.address };
}

/** Encodes a request to the agent. */
export function encodeAgentRequest(request: AgentRequest): Uint8Array<ArrayBuffer> {
  const head = { version: 1, op: request.op };
  if (request.op === "status") return encoder.encode(JSON.stringify(head));
  if (request.op !== "hold") {
    return encoder.encode(JSON.stringify({ ...head, ...identityFields(request.identity) }));
  }
  const { spec } = request;
  return encoder.encode(JSON.stringify({
    ...head,
    ...identityFields(spec.identity),
    prefix: spec.prefix ?? undefined,
    server: spec.server,
    tag: spec.tag,
    log_path: spec.logPath,
    syslog: spec.syslog || undefined,
    server_uids: spec.serverUids,
    psk_file: spec.pskFile,
  }));
}

/** Encodes the agent's answer. */
export function encodeAgentReply(reply: AgentReply): Uint8Array<ArrayBuffer> {
  return encoder.encode(JSON.stringify({ version: 1, ...reply }));
}

/**
 * Decodes the agent's answer, as the client reads it. Throws an
 * {@link AgentProtocolError} for anything but a well-formed reply.
 */
export function decodeAgentReply(data: Uint8Array, length = data.byteLength): AgentReply {
  const obj = parseObject(data, length, "reply");
  const str = (key: string) => {
    if (typeof obj[key] !== "string") {
      bad(`reply "${key}" must be a string, got ${quote(obj[key])}`);
    }
    return obj[key] as string;
  };
  switch (obj.op) {
    case "hold":
      if (obj.result === "lease") {
        return { op: "hold", result: "lease", table: integer(obj, "table", 1, 0xffff_ffff) };
      }
      if (obj.result === "none") return { op: "hold", result: "none", reason: str("reason") };
      if (obj.result === "refused") {
        return { op: "hold", result: "refused", error: str("error"), message: str("message") };
      }
      break;
    case "release":
      if (
        obj.result === "released" || obj.result === "unacknowledged" || obj.result === "not_held"
      ) {
        return { op: "release", result: obj.result };
      }
      break;
    case "cancel":
      if (obj.result === "cancelled" || obj.result === "not_waiting") {
        return { op: "cancel", result: obj.result };
      }
      break;
    case "status":
      if (Array.isArray(obj.identities)) {
        return {
          op: "status",
          pid: integer(obj, "pid", 1, 2 ** 31),
          rss: integer(obj, "rss", 0, Number.MAX_SAFE_INTEGER),
          heap_used: integer(obj, "heap_used", 0, Number.MAX_SAFE_INTEGER),
          identities: obj.identities as HeldIdentity[],
        };
      }
      break;
    case "error":
      return { op: "error", error: str("error") as AgentErrorCode, message: str("message") };
  }
  bad(`not a reply of the agent: ${quote(obj)}`);
}
