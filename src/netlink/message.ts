/**
 * netlink framing in pure TypeScript: the message header (`struct
 * nlmsghdr`), attributes (`struct nlattr`), their 4-byte alignment, and the
 * kernel's answers (NLMSG_ERROR, NLMSG_DONE). The payloads of the messages
 * the project speaks live beside it: routing rules in `rule.ts`, link and
 * address notifications in `link.ts`. Bytes in, typed values out; no I/O,
 * so everything here is tested without root.
 *
 * Layouts follow `<linux/netlink.h>` and `<linux/rtnetlink.h>`: host byte
 * order for integers, every header and attribute aligned to 4 bytes.
 * Lengths that do not fit their buffer throw a {@link NetlinkParseError}.
 *
 * @module
 */

/** `struct nlmsghdr` size. */
export const NLMSG_HDRLEN = 16;
/** `struct nlattr` header size. */
export const NLA_HDRLEN = 4;

/** Message types. */
export const MsgType = {
  NOOP: 1,
  ERROR: 2,
  DONE: 3,
  OVERRUN: 4,
  RTM_NEWLINK: 16,
  RTM_DELLINK: 17,
  RTM_NEWADDR: 20,
  RTM_DELADDR: 21,
  RTM_GETADDR: 22,
  RTM_NEWRULE: 32,
  RTM_DELRULE: 33,
  RTM_GETRULE: 34,
} as const;

/** `nlmsg_flags` bits. */
export const NlmFlags = {
  REQUEST: 0x1,
  MULTI: 0x2,
  ACK: 0x4,
  DUMP: 0x300,
  EXCL: 0x200,
  CREATE: 0x400,
} as const;

/** Multicast groups (`RTNLGRP_*`), as numbers; {@link groupMask} turns them into bind bits. */
export const RtnlGroup = {
  LINK: 1,
  IPV4_IFADDR: 5,
  IPV4_RULE: 8,
  IPV6_IFADDR: 9,
  IPV6_RULE: 19,
} as const;

/** The `mnl_socket_bind` group bit mask for a list of `RTNLGRP_*` numbers. */
export function groupMask(groups: readonly number[]): number {
  return groups.reduce((mask, group) => (mask | (1 << (group - 1))) >>> 0, 0);
}

/**
 * A netlink buffer whose lengths do not add up: a header or attribute
 * claiming more bytes than are left, or a payload shorter than its fixed
 * header. A RangeError, since the bytes are out of range of their own
 * lengths.
 */
export class NetlinkParseError extends RangeError {
  /** Builds the error; `message` says what was short and by how much. */
  constructor(message: string) {
    super(message);
    this.name = "NetlinkParseError";
  }
}

/** Rounds a length up to netlink's 4-byte alignment (`NLMSG_ALIGN`, `NLA_ALIGN`). */
export const align = (n: number): number => (n + 3) & ~3;

/** One attribute: type and raw payload. */
export interface Attribute {
  type: number;
  payload: Uint8Array;
}

/** Options of the encoders: the header fields a request sets. */
export interface EncodeOptions {
  /** Sequence number, echoed in the kernel's answer. */
  seq: number;
  /** Port id of the sending socket (0 lets the kernel fill it in). */
  portid?: number;
}

/** Appends one attribute (header, payload, padding to 4 bytes) to a message body. */
export function putAttribute(out: number[], type: number, payload: Uint8Array): void {
  const length = NLA_HDRLEN + payload.byteLength;
  out.push(length & 0xff, length >> 8, type & 0xff, type >> 8, ...payload);
  while (out.length % 4 !== 0) out.push(0);
}

/** A u32 in host (little-endian) byte order, as attributes carry it. */
export function u32(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value >>> 0, true);
  return bytes;
}

/** Reads the u32 an attribute payload starts with (host byte order). */
export function readU32(bytes: Uint8Array): number {
  if (bytes.byteLength < 4) {
    throw new NetlinkParseError(`a u32 attribute needs 4 bytes, got ${bytes.byteLength}`);
  }
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0, true);
}

/** Reads a NUL-terminated string attribute (trailing NULs removed). */
export function readCString(bytes: Uint8Array): string {
  return decoder.decode(bytes).replace(/\0+$/, "");
}

const decoder = new TextDecoder();

/** Prepends a `struct nlmsghdr` to `body`: one complete message. */
export function encodeMessage(
  type: number,
  flags: number,
  options: EncodeOptions,
  body: ArrayLike<number>,
): Uint8Array<ArrayBuffer> {
  const message = new Uint8Array(NLMSG_HDRLEN + body.length);
  const view = new DataView(message.buffer);
  view.setUint32(0, message.byteLength, true);
  view.setUint16(4, type, true);
  view.setUint16(6, flags, true);
  view.setUint32(8, options.seq >>> 0, true);
  view.setUint32(12, (options.portid ?? 0) >>> 0, true);
  message.set(body, NLMSG_HDRLEN);
  return message;
}

/** One netlink message split out of a received buffer. */
export interface Message {
  type: number;
  flags: number;
  seq: number;
  portid: number;
  /** The bytes after the 16-byte header. */
  payload: Uint8Array;
}

/**
 * Splits a buffer of one or more netlink messages. Throws a
 * {@link NetlinkParseError} for a header whose length does not fit the
 * buffer (a truncated read).
 */
export function parseMessages(buffer: Uint8Array): Message[] {
  const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  const out: Message[] = [];
  let offset = 0;
  while (offset + NLMSG_HDRLEN <= buffer.byteLength) {
    const length = view.getUint32(offset, true);
    if (length < NLMSG_HDRLEN || offset + length > buffer.byteLength) {
      throw new NetlinkParseError(
        `netlink message at offset ${offset} claims ${length} bytes, ${
          buffer.byteLength - offset
        } left`,
      );
    }
    out.push({
      type: view.getUint16(offset + 4, true),
      flags: view.getUint16(offset + 6, true),
      seq: view.getUint32(offset + 8, true),
      portid: view.getUint32(offset + 12, true),
      payload: buffer.subarray(offset + NLMSG_HDRLEN, offset + length),
    });
    offset += align(length);
  }
  return out;
}

/**
 * Splits the attributes that start `offset` bytes into a payload. Throws a
 * {@link NetlinkParseError}, as {@link parseMessages} does, for an
 * attribute whose length does not fit what is left of the payload.
 */
export function parseAttributes(payload: Uint8Array, offset: number): Attribute[] {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const out: Attribute[] = [];
  while (offset + NLA_HDRLEN <= payload.byteLength) {
    const length = view.getUint16(offset, true);
    if (length < NLA_HDRLEN || offset + length > payload.byteLength) {
      throw new NetlinkParseError(
        `netlink attribute at offset ${offset} claims ${length} bytes, ${
          payload.byteLength - offset
        } left`,
      );
    }
    // The top bits are NLA_F_NESTED and NLA_F_NET_BYTEORDER.
    const type = view.getUint16(offset + 2, true) & 0x3fff;
    out.push({ type, payload: payload.subarray(offset + NLA_HDRLEN, offset + length) });
    offset += align(length);
  }
  return out;
}

/**
 * Checks that a payload holds at least its fixed header (`struct
 * fib_rule_hdr`, `ifaddrmsg`, ...); throws a {@link NetlinkParseError}
 * naming `what` otherwise.
 */
export function requireLength(payload: Uint8Array, length: number, what: string): void {
  if (payload.byteLength < length) {
    throw new NetlinkParseError(
      `${what} of ${payload.byteLength} bytes is shorter than its ${length}-byte header`,
    );
  }
}

/**
 * The errno of an NLMSG_ERROR message: 0 for an ACK, a positive errno
 * (EEXIST = 17, ENOENT = 2, EPERM = 1, ...) for a refusal; null when the
 * message is not an NLMSG_ERROR.
 */
export function ackErrno(message: Message): number | null {
  if (message.type !== MsgType.ERROR) return null;
  if (message.payload.byteLength < 4) {
    throw new NetlinkParseError(
      `NLMSG_ERROR of ${message.payload.byteLength} bytes has no error code`,
    );
  }
  const error = new DataView(message.payload.buffer, message.payload.byteOffset).getInt32(0, true);
  return -error;
}
