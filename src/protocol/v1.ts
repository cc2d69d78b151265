/**
 * The table_allocator v1 wire protocol: one JSON object per datagram.
 * Pure functions only: bytes in, a typed message or a typed error out.
 *
 * Our additions stay invisible to C clients: an error reply keeps
 * `version: 1` and uses `cmd: 3`, which the original client treats like
 * silence (it retries). See `docs/protocol.md`.
 *
 * @module
 */

import { MAX_TABLE, RESERVED_TABLES } from "../../config/limits.ts";
import { formatIP, parseIP } from "../net/ip.ts";
import { AddrFamily, isAddrFamily } from "../net/family.ts";
import { errorMessage } from "../util/errors.ts";
import { decodeUtf8, encodeUtf8, utf8Length } from "../util/utf8.ts";

/** The only protocol version. */
export const PROTOCOL_VERSION = 1;

/** Command numbers on the wire. */
export const Command = {
  /** Ask for (or refresh) a lease. */
  REQUEST: 0,
  /** Give a lease back. */
  RELEASE: 1,
  /** The server's answer with a table. */
  REPLY: 2,
  /** Our addition: the server's answer when it cannot serve a request. */
  ERROR: 3,
  /**
   * Our addition: a notice from the server to a holder, sent to the
   * identity's name (an admin released its lease). C clients read any
   * `cmd` other than 2 as "retry later", so they ignore it.
   */
  NOTICE: 4,
} as const;

/**
 * Largest request the server accepts. The original read 512 bytes; we
 * allow 1024 so that longer tags and future signed messages fit, and answer
 * longer datagrams with an `oversize` error instead of dropping them.
 */
export const MAX_REQUEST_BYTES = 1024;
/** The original client's receive buffer: every reply must fit. */
export const MAX_REPLY_BYTES = 254;
/** Linux interface names are shorter than IFNAMSIZ (16). */
export const MAX_IFNAME_BYTES = 15;
/** Tags are shorter than 128 bytes, as in the original. */
export const MAX_TAG_BYTES = 127;
/** Identifiers of family 0 (and IPv6 text) fit in this many bytes. */
export const MAX_ADDRESS_BYTES = 64;

/** Why a request could not be served; stable strings for scripts. */
export type ErrorCode =
  | "bad_json"
  | "bad_request"
  | "unknown_cmd"
  | "bad_version"
  | "oversize"
  | "family_disabled"
  | "pool_exhausted"
  | "store_failure"
  | "not_permitted"
  | "unauthenticated"
  | "no_pool"
  | "not_found"
  | "conflict"
  | "release_unacknowledged"
  | "bad_config";

/** A lease identity: the key of a lease. */
export interface Identity {
  /** The address family: 2 (inet), 10 (inet6) or 0 (unspec). */
  family: AddrFamily;
  /** The interface name, at most 15 bytes. */
  ifname: string;
  /** Canonical text (IPv6 compressed and lower case); any identifier for family 0. */
  address: string;
}

/** A decoded, validated client request. */
export interface Request {
  /** A request for a table (0) or a release (1). */
  cmd: typeof Command.REQUEST | typeof Command.RELEASE;
  /** Whose lease. */
  identity: Identity;
  /** The client's `-t` tag, which selects a pool; undefined when none was sent. */
  tag: string | undefined;
}

/** A typed protocol failure, answered with an error reply. */
export class ProtocolError extends Error {
  /** The stable reason code sent on the wire. */
  readonly code: ErrorCode;
  /** Builds the error; the message names the offending value. */
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

function quote(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

function requireInt(obj: Record<string, unknown>, key: string): number {
  const value = obj[key];
  if (value === undefined) {
    throw new ProtocolError("bad_request", `"${key}" is missing (an integer)`);
  }
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new ProtocolError("bad_request", `"${key}" must be an integer, got ${quote(value)}`);
  }
  return value;
}

function requireString(obj: Record<string, unknown>, key: string, maxBytes: number): string {
  const value = obj[key];
  if (value === undefined) throw new ProtocolError("bad_request", `"${key}" is missing (a string)`);
  if (typeof value !== "string") {
    throw new ProtocolError("bad_request", `"${key}" must be a string, got ${quote(value)}`);
  }
  if (!value.isWellFormed()) {
    throw new ProtocolError(
      "bad_request",
      `"${key}" must be well-formed Unicode, got ${quote(value)} (a lone surrogate)`,
    );
  }
  if (value.length === 0 || utf8Length(value) > maxBytes) {
    throw new ProtocolError(
      "bad_request",
      `"${key}" must be 1 to ${maxBytes} bytes, got ${quote(value)}`,
    );
  }
  return value;
}

/** Control characters: C0, DEL and C1 (Unicode category Cc). */
const CONTROL = /\p{Cc}/u;
/** White space of any kind (Unicode White_Space), `/` and `:`, as the kernel refuses them. */
const IFNAME_FORBIDDEN = /[\s/:]/u;
/** Bytes the kernel's isspace() matches: its ctype table counts 0xa0 (Latin-1 NBSP) too. */
const KERNEL_SPACE_BYTES = [0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0xa0];

/**
 * Why `ifname` cannot be a Linux interface name, or undefined when it can.
 * The kernel (`dev_valid_name()`) refuses `.`, `..`, names of 16 bytes or
 * more, `/`, `:` and bytes its isspace() matches (which include 0xa0, so a
 * UTF-8 character with that byte, like `à`, is refused too); we refuse
 * Unicode white space and control characters as well, so a name prints
 * and logs as itself.
 */
export function ifnameProblem(ifname: string): string | undefined {
  if (ifname.length === 0) return "it is empty";
  if (ifname === "." || ifname === "..") return "it is . or ..";
  if (!ifname.isWellFormed()) return "it is not well-formed Unicode";
  const length = utf8Length(ifname);
  if (length > MAX_IFNAME_BYTES) {
    return `it is ${length} bytes, at most ${MAX_IFNAME_BYTES} are allowed`;
  }
  if (CONTROL.test(ifname)) return "it has control characters";
  if (IFNAME_FORBIDDEN.test(ifname)) return "it has white space, / or :";
  // Only a name with characters beyond ASCII can hold byte 0xa0 (the ASCII spaces matched above).
  if (
    length > ifname.length && encoder.encode(ifname).some((b) => KERNEL_SPACE_BYTES.includes(b))
  ) {
    return "it has white space, / or :";
  }
  return undefined;
}

/**
 * The abstract name a client binds for an identity:
 * `<ifname>-<address>-<family>` (e.g. `eth1-192.0.2.10-2`), as the
 * original; the server's replies and notices go to it.
 */
export function identityName(identity: Pick<Identity, "ifname" | "address" | "family">): string {
  return `${identity.ifname}-${identity.address}-${identity.family}`;
}

/**
 * Checks and canonicalises an identity: the family is 0, 2 or 10, the
 * interface name is a possible Linux name, and the address is valid for the
 * family (any identifier without control characters for family 0).
 */
export function validateIdentity(family: unknown, ifname: string, address: string): Identity {
  if (!isAddrFamily(family)) {
    throw new ProtocolError(
      "bad_request",
      `"addr_family" must be 0, 2 or 10, got ${quote(family)}`,
    );
  }
  const invalid = ifnameProblem(ifname);
  if (invalid) {
    throw new ProtocolError(
      "bad_request",
      `"ifname" is not a valid interface name (${invalid}): ${quote(ifname)}`,
    );
  }
  if (family === AddrFamily.UNSPEC) {
    if (CONTROL.test(address)) {
      throw new ProtocolError("bad_request", `"address" has control characters: ${quote(address)}`);
    }
    return { family, ifname, address };
  }
  const bytes = parseIP(family, address);
  if (!bytes) {
    const kind = family === AddrFamily.INET ? "IPv4" : "IPv6";
    throw new ProtocolError(
      "bad_request",
      `"address" is not an ${kind} address: ${quote(address)}`,
    );
  }
  return { family, ifname, address: formatIP(bytes) };
}

/** The first key (or value's key) of a parsed message holding a string that is not well-formed. */
function illFormedString(value: unknown, path = "a key"): string | undefined {
  if (typeof value === "string") return value.isWellFormed() ? undefined : path;
  if (typeof value !== "object" || value === null) return undefined;
  if (Array.isArray(value)) {
    for (const item of value) {
      const bad = illFormedString(item, path);
      if (bad !== undefined) return bad;
    }
    return undefined;
  }
  for (const [key, item] of Object.entries(value)) {
    const where = `"${key.isWellFormed() ? key : key.toWellFormed()}"`;
    if (!key.isWellFormed()) return `the key ${where}`;
    const bad = illFormedString(item, where);
    if (bad !== undefined) return bad;
  }
  return undefined;
}

/**
 * The first step of decoding any datagram: checks its size, decodes UTF-8
 * and JSON, and checks that it is an object of protocol version 1.
 * `length` is the datagram's real length (it may exceed `data` when the
 * receive buffer truncated it). Throws a {@link ProtocolError}.
 */
export function parseDatagram(data: Uint8Array, length = data.byteLength): Record<string, unknown> {
  if (length > MAX_REQUEST_BYTES) {
    throw new ProtocolError("oversize", `datagram of ${length} bytes exceeds ${MAX_REQUEST_BYTES}`);
  }
  let parsed: unknown;
  let text: string;
  try {
    text = decodeUtf8(data);
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ProtocolError("bad_json", `not a JSON object: ${errorMessage(error).slice(0, 80)}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ProtocolError("bad_json", `not a JSON object, got ${quote(parsed)}`);
  }
  const obj = parsed as Record<string, unknown>;
  // A lone surrogate can only come from a \u escape: the UTF-8 decoder
  // refuses encoded ones. Without a backslash-u, skip the walk.
  if (text.includes("\\u")) {
    const bad = illFormedString(obj);
    if (bad !== undefined) {
      throw new ProtocolError(
        "bad_request",
        `strings must be well-formed Unicode; ${bad} has a lone surrogate`,
      );
    }
  }
  const version = requireInt(obj, "version");
  if (version !== PROTOCOL_VERSION) {
    throw new ProtocolError("bad_version", `"version" must be 1, got ${version}`);
  }
  return obj;
}

/** Validates a parsed v1 message as a lease request or release. Throws a {@link ProtocolError}. */
export function decodeRequestObject(obj: Record<string, unknown>): Request {
  const cmd = requireInt(obj, "cmd");
  if (cmd !== Command.REQUEST && cmd !== Command.RELEASE) {
    throw new ProtocolError("unknown_cmd", `"cmd" must be 0 (request) or 1 (release), got ${cmd}`);
  }
  const family = requireInt(obj, "addr_family");
  const ifname = requireString(obj, "ifname", MAX_IFNAME_BYTES);
  const address = requireString(obj, "address", MAX_ADDRESS_BYTES);
  const identity = validateIdentity(family, ifname, address);
  const tag = obj.tag === undefined ? undefined : requireString(obj, "tag", MAX_TAG_BYTES);
  if (tag !== undefined && CONTROL.test(tag)) {
    throw new ProtocolError("bad_request", `"tag" has control characters: ${quote(tag)}`);
  }
  return { cmd, identity, tag };
}

/** Decodes a request datagram: {@link parseDatagram} then {@link decodeRequestObject}. */
export function decodeRequest(data: Uint8Array, length = data.byteLength): Request {
  return decodeRequestObject(parseDatagram(data, length));
}

/**
 * Encodes a request exactly as the C client does (same key order, no
 * spaces, `tag` only when given).
 */
export function encodeRequest(request: Request): Uint8Array<ArrayBuffer> {
  const { identity, tag, cmd } = request;
  const body: Record<string, unknown> = { address: identity.address, ifname: identity.ifname };
  if (tag !== undefined) body.tag = tag;
  body.addr_family = identity.family;
  body.cmd = cmd;
  body.version = PROTOCOL_VERSION;
  return encoder.encode(JSON.stringify(body));
}

/**
 * Encodes a lease reply. `leaseExpires` is an absolute time in seconds on
 * the host's CLOCK_MONOTONIC_RAW, as the C client expects; a release is
 * answered with table 0 and lease_expires 0.
 */
export function encodeReply(table: number, leaseExpires: number): Uint8Array<ArrayBuffer> {
  return encodeUtf8(
    `{"version":1,"cmd":2,"table":${table},"lease_expires":${Math.floor(leaseExpires)}}`,
  );
}

/**
 * Encodes an error reply, shortening the message to fit the C client's
 * buffer, or `maxBytes` (less, to leave room for a signature).
 */
export function encodeError(
  code: ErrorCode,
  message: string,
  maxBytes = MAX_REPLY_BYTES,
): Uint8Array<ArrayBuffer> {
  let text = message;
  for (;;) {
    const bytes = encoder.encode(
      JSON.stringify({ version: PROTOCOL_VERSION, cmd: Command.ERROR, error: code, message: text }),
    );
    if (bytes.byteLength <= maxBytes || text.length === 0) return bytes;
    // Escapes make a character up to 6 bytes: when the excess in bytes
    // exceeds the characters left, halve instead.
    const keep = text.length - Math.max(4, bytes.byteLength - maxBytes) - 3;
    text = keep > 0
      ? `${text.slice(0, keep)}...`
      : text.length > 8
      ? `${text.slice(0, text.length >> 1)}...`
      : "";
  }
}

/** Kinds of notice a server sends; only `revoked` exists in v1. */
export type NoticeKind = "revoked";

/**
 * A notice from the server about one lease: `revoked` says that an admin
 * released it, so the holder must remove the rules of `table` and confirm
 * with a normal release (`cmd` 1), which the server waits for before it
 * gives the table to anyone else.
 */
export interface Notice {
  /** What happened to the lease. */
  notice: NoticeKind;
  /** The table of the lease the notice is about. */
  table: number;
  /** The lease's identity (the notice goes to its name). */
  identity: Identity;
}

/**
 * Encodes a notice:
 * `{"version":1,"cmd":4,"notice":"revoked","table":T,"addr_family":F,"ifname":"...","address":"..."}`.
 */
export function encodeNotice(notice: Notice): Uint8Array<ArrayBuffer> {
  const { identity } = notice;
  return encoder.encode(JSON.stringify({
    version: PROTOCOL_VERSION,
    cmd: Command.NOTICE,
    notice: notice.notice,
    table: notice.table,
    addr_family: identity.family,
    ifname: identity.ifname,
    address: identity.address,
  }));
}

/**
 * Validates a parsed message of `cmd` 4 as a {@link Notice}. Throws a
 * {@link ProtocolError} naming what is wrong (an unknown notice kind is
 * `bad_request`, so a holder logs it and changes nothing).
 */
export function decodeNoticeObject(obj: Record<string, unknown>): Notice {
  if (obj.cmd !== Command.NOTICE) {
    throw new ProtocolError("unknown_cmd", `a notice has "cmd" 4, got ${quote(obj.cmd)}`);
  }
  if (obj.notice !== "revoked") {
    throw new ProtocolError("bad_request", `"notice" must be "revoked", got ${quote(obj.notice)}`);
  }
  const table = requireInt(obj, "table");
  if (table < 1 || table > MAX_TABLE) {
    throw new ProtocolError("bad_request", `"table" must be 1 to ${MAX_TABLE}, got ${table}`);
  }
  const identity = validateIdentity(
    requireInt(obj, "addr_family"),
    requireString(obj, "ifname", MAX_IFNAME_BYTES),
    requireString(obj, "address", MAX_ADDRESS_BYTES),
  );
  return { notice: obj.notice, table, identity };
}

/**
 * Whether a client may install rules for `table`: 1 to 2^32-1 and not one
 * of the kernel's own tables (unspec 0, default 253, main 254, local 255),
 * whoever offers it.
 */
export function isLeasableTable(table: number): boolean {
  return Number.isInteger(table) && table > 0 && table <= MAX_TABLE &&
    !RESERVED_TABLES.includes(table);
}

/** A decoded server reply, as a client sees it. */
export type Reply =
  | { kind: "lease"; table: number; leaseExpires: number }
  | { kind: "error"; code: string; message: string }
  | { kind: "notice"; notice: Notice };

/**
 * Decodes a server reply. Mirrors the C client: `version` other than 1 is
 * an error; `cmd` 4 is a {@link Notice} (throws a {@link ProtocolError}
 * when malformed); any other `cmd` than 2 is an error reply (our server
 * says why, the original never sends one); table 0 means no lease.
 */
export function decodeReply(data: Uint8Array): Reply {
  let obj: Record<string, unknown>;
  try {
    const parsed = JSON.parse(decoder.decode(data));
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw new Error("not an object");
    }
    obj = parsed as Record<string, unknown>;
  } catch {
    throw new ProtocolError(
      "bad_json",
      `reply is not a JSON object: ${quote(decoder.decode(data.slice(0, 60)))}`,
    );
  }
  if (obj.version !== PROTOCOL_VERSION) {
    throw new ProtocolError("bad_version", `reply "version" must be 1, got ${quote(obj.version)}`);
  }
  if (obj.cmd === Command.REPLY) {
    const table = obj.table, expires = obj.lease_expires;
    if (
      typeof table !== "number" || !Number.isInteger(table) || table < 0 ||
      typeof expires !== "number"
    ) {
      throw new ProtocolError(
        "bad_request",
        `reply has no valid "table"/"lease_expires": ${quote(obj)}`,
      );
    }
    return { kind: "lease", table, leaseExpires: expires };
  }
  if (obj.cmd === Command.NOTICE) return { kind: "notice", notice: decodeNoticeObject(obj) };
  return {
    kind: "error",
    code: typeof obj.error === "string" ? obj.error : `cmd ${quote(obj.cmd)}`,
    message: typeof obj.message === "string" ? obj.message : "the server sent no reason",
  };
}
