/**
 * rtnetlink messages in pure TypeScript: routing rules (RTM_NEWRULE,
 * RTM_DELRULE, RTM_GETRULE with `struct fib_rule_hdr` and FRA_*
 * attributes), kernel answers (NLMSG_ERROR, NLMSG_DONE) and the link and
 * address notifications the client watches. Bytes in, typed values out;
 * no I/O, so everything here is tested without root.
 *
 * Layouts follow `<linux/netlink.h>`, `<linux/rtnetlink.h>`,
 * `<linux/fib_rules.h>`, `<linux/if_addr.h>` and `<linux/if_link.h>`:
 * host byte order for integers, network order for addresses, every header
 * and attribute aligned to 4 bytes.
 *
 * @module
 */

/** `struct nlmsghdr` size. */
export const NLMSG_HDRLEN = 16;
/** `struct nlattr` header size. */
const NLA_HDRLEN = 4;
/** `struct fib_rule_hdr` size. */
export const FIB_RULE_HDRLEN = 12;
/** `struct ifaddrmsg` size. */
const IFADDRMSG_LEN = 8;
/** `struct ifinfomsg` size. */
const IFINFOMSG_LEN = 16;

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
export const RtnlGroup = { LINK: 1, IPV4_IFADDR: 5, IPV6_IFADDR: 9 } as const;

/** The `mnl_socket_bind` group bit mask for a list of `RTNLGRP_*` numbers. */
export function groupMask(groups: readonly number[]): number {
  return groups.reduce((mask, group) => (mask | (1 << (group - 1))) >>> 0, 0);
}

/** FRA_* attribute types of a routing rule. */
export const Fra = { DST: 1, SRC: 2, IIFNAME: 3, PRIORITY: 6, TABLE: 15 } as const;
/** `FR_ACT_TO_TBL`: the rule's action is "lookup table". */
export const FR_ACT_TO_TBL = 1;
/** Tables above this do not fit the 8-bit `fib_rule_hdr.table` and travel in FRA_TABLE only. */
const RT_TABLE_MAX_U8 = 255;

/** IFA_* attribute types of an address message. */
const Ifa = { ADDRESS: 1, LOCAL: 2 } as const;
/** IFLA_IFNAME attribute of a link message. */
const IFLA_IFNAME = 3;

const align = (n: number) => (n + 3) & ~3;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One attribute: type and raw payload. */
export interface Attribute {
  type: number;
  payload: Uint8Array;
}

/** A routing rule as the client manages it: one selector, a priority, a table. */
export interface Rule {
  /** 2 (AF_INET) or 10 (AF_INET6). */
  family: number;
  priority: number;
  table: number;
  /** `from ADDRESS/LEN`, when set. */
  src?: { address: Uint8Array; prefix: number };
  /** `to NETWORK/LEN`, when set. */
  dst?: { address: Uint8Array; prefix: number };
  /** `iif NAME`, when set. */
  iifname?: string;
}

/** Options of {@link encodeRuleMessage}. */
export interface EncodeOptions {
  /** Sequence number, echoed in the kernel's answer. */
  seq: number;
  /** Port id of the sending socket (0 lets the kernel fill it in). */
  portid?: number;
}

function putAttribute(out: number[], type: number, payload: Uint8Array): void {
  const length = NLA_HDRLEN + payload.byteLength;
  out.push(length & 0xff, length >> 8, type & 0xff, type >> 8, ...payload);
  while (out.length % 4 !== 0) out.push(0);
}

function u32(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value >>> 0, true);
  return bytes;
}

function finish(type: number, flags: number, options: EncodeOptions, body: number[]) {
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

/**
 * Encodes RTM_NEWRULE or RTM_DELRULE for a rule, always asking for an ACK.
 * A new rule carries NLM_F_CREATE | NLM_F_EXCL, so an identical rule is
 * answered with EEXIST instead of being added twice. A deletion carries
 * neither: newer kernels read NLM_F_EXCL on RTM_DELRULE as a bulk delete
 * and refuse it (the original client's bug).
 */
export function encodeRuleMessage(
  type: typeof MsgType.RTM_NEWRULE | typeof MsgType.RTM_DELRULE,
  rule: Rule,
  options: EncodeOptions,
): Uint8Array<ArrayBuffer> {
  const body: number[] = [
    rule.family,
    rule.dst?.prefix ?? 0,
    rule.src?.prefix ?? 0,
    0, // tos
    rule.table <= RT_TABLE_MAX_U8 ? rule.table : 0, // RT_TABLE_UNSPEC: see FRA_TABLE
    0,
    0,
    FR_ACT_TO_TBL,
    0,
    0,
    0,
    0, // flags
  ];
  putAttribute(body, Fra.PRIORITY, u32(rule.priority));
  putAttribute(body, Fra.TABLE, u32(rule.table));
  if (rule.src) putAttribute(body, Fra.SRC, rule.src.address);
  if (rule.dst) putAttribute(body, Fra.DST, rule.dst.address);
  if (rule.iifname !== undefined) {
    putAttribute(body, Fra.IIFNAME, encoder.encode(`${rule.iifname}\0`));
  }
  const flags = NlmFlags.REQUEST | NlmFlags.ACK |
    (type === MsgType.RTM_NEWRULE ? NlmFlags.CREATE | NlmFlags.EXCL : 0);
  return finish(type, flags, options, body);
}

/** Encodes an RTM_GETRULE dump request for one address family. */
export function encodeRuleDump(family: number, options: EncodeOptions): Uint8Array<ArrayBuffer> {
  const body = [family, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
  return finish(MsgType.RTM_GETRULE, NlmFlags.REQUEST | NlmFlags.DUMP, options, body);
}

/** Encodes an RTM_GETADDR dump request (struct ifaddrmsg) for one address family. */
export function encodeAddressDump(family: number, options: EncodeOptions): Uint8Array<ArrayBuffer> {
  const body = [family, 0, 0, 0, 0, 0, 0, 0];
  return finish(MsgType.RTM_GETADDR, NlmFlags.REQUEST | NlmFlags.DUMP, options, body);
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
 * Splits a buffer of one or more netlink messages. Throws a RangeError for
 * a header whose length does not fit the buffer (a truncated read).
 */
export function parseMessages(buffer: Uint8Array): Message[] {
  const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  const out: Message[] = [];
  let offset = 0;
  while (offset + NLMSG_HDRLEN <= buffer.byteLength) {
    const length = view.getUint32(offset, true);
    if (length < NLMSG_HDRLEN || offset + length > buffer.byteLength) {
      throw new RangeError(
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

/** Splits attributes that start `offset` bytes into a payload. */
export function parseAttributes(payload: Uint8Array, offset: number): Attribute[] {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const out: Attribute[] = [];
  while (offset + NLA_HDRLEN <= payload.byteLength) {
    const length = view.getUint16(offset, true);
    if (length < NLA_HDRLEN || offset + length > payload.byteLength) break;
    // The top bits are NLA_F_NESTED and NLA_F_NET_BYTEORDER.
    const type = view.getUint16(offset + 2, true) & 0x3fff;
    out.push({ type, payload: payload.subarray(offset + NLA_HDRLEN, offset + length) });
    offset += align(length);
  }
  return out;
}

/**
 * The errno of an NLMSG_ERROR message: 0 for an ACK, a positive errno
 * (EEXIST = 17, ENOENT = 2, EPERM = 1, ...) for a refusal; null when the
 * message is not an NLMSG_ERROR.
 */
export function ackErrno(message: Message): number | null {
  if (message.type !== MsgType.ERROR) return null;
  if (message.payload.byteLength < 4) {
    throw new RangeError(`NLMSG_ERROR of ${message.payload.byteLength} bytes has no error code`);
  }
  const error = new DataView(message.payload.buffer, message.payload.byteOffset).getInt32(0, true);
  return -error;
}

const u32At = (bytes: Uint8Array) =>
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0, true);

/**
 * Decodes an RTM_NEWRULE message (a dump entry or a notification) into a
 * {@link Rule}. Only the fields the client manages are read; null for
 * another message type.
 */
export function decodeRule(message: Message): Rule | null {
  if (message.type !== MsgType.RTM_NEWRULE && message.type !== MsgType.RTM_DELRULE) return null;
  const p = message.payload;
  if (p.byteLength < FIB_RULE_HDRLEN) {
    throw new RangeError(`rule message of ${p.byteLength} bytes is shorter than fib_rule_hdr`);
  }
  const rule: Rule = { family: p[0], priority: 0, table: p[4] };
  for (const attr of parseAttributes(p, FIB_RULE_HDRLEN)) {
    if (attr.type === Fra.PRIORITY) rule.priority = u32At(attr.payload);
    else if (attr.type === Fra.TABLE) rule.table = u32At(attr.payload);
    else if (attr.type === Fra.SRC) rule.src = { address: attr.payload.slice(), prefix: p[2] };
    else if (attr.type === Fra.DST) rule.dst = { address: attr.payload.slice(), prefix: p[1] };
    else if (attr.type === Fra.IIFNAME) {
      rule.iifname = decoder.decode(attr.payload).replace(/\0+$/, "");
    }
  }
  return rule;
}

/** A link or address notification the client reacts to. */
export type LinkEvent =
  | { kind: "link-deleted"; index: number; name: string | undefined }
  | { kind: "link-changed"; index: number; name: string | undefined }
  | {
    kind: "address-deleted" | "address-added";
    index: number;
    family: number;
    prefix: number;
    address: Uint8Array;
  };

/**
 * Decodes RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR and RTM_DELADDR
 * notifications; null for any other message. The address of an IPv4
 * entry is IFA_LOCAL (the interface's own address; IFA_ADDRESS is the peer
 * on point-to-point links), of an IPv6 entry IFA_ADDRESS.
 */
export function decodeLinkEvent(message: Message): LinkEvent | null {
  const p = message.payload;
  const view = new DataView(p.buffer, p.byteOffset, p.byteLength);
  if (message.type === MsgType.RTM_NEWLINK || message.type === MsgType.RTM_DELLINK) {
    if (p.byteLength < IFINFOMSG_LEN) return null;
    const index = view.getInt32(4, true);
    const nameAttr = parseAttributes(p, IFINFOMSG_LEN).find((a) => a.type === IFLA_IFNAME);
    const name = nameAttr ? decoder.decode(nameAttr.payload).replace(/\0+$/, "") : undefined;
    return {
      kind: message.type === MsgType.RTM_DELLINK ? "link-deleted" : "link-changed",
      index,
      name,
    };
  }
  if (message.type === MsgType.RTM_NEWADDR || message.type === MsgType.RTM_DELADDR) {
    if (p.byteLength < IFADDRMSG_LEN) return null;
    const family = p[0];
    const attrs = parseAttributes(p, IFADDRMSG_LEN);
    const local = attrs.find((a) => a.type === Ifa.LOCAL);
    const address = attrs.find((a) => a.type === Ifa.ADDRESS);
    const chosen = family === 2 ? (local ?? address) : (address ?? local);
    if (!chosen) return null;
    return {
      kind: message.type === MsgType.RTM_DELADDR ? "address-deleted" : "address-added",
      index: view.getUint32(4, true),
      family,
      prefix: p[1],
      address: chosen.payload.slice(),
    };
  }
  return null;
}

/**
 * Builds a notification as the kernel sends it; for the tests of code that
 * consumes events (and documentation of the layout).
 */
export function encodeLinkEvent(event: LinkEvent, seq = 0): Uint8Array<ArrayBuffer> {
  const body: number[] = [];
  if (event.kind === "link-deleted" || event.kind === "link-changed") {
    const header = new Uint8Array(IFINFOMSG_LEN);
    new DataView(header.buffer).setInt32(4, event.index, true);
    body.push(...header);
    if (event.name !== undefined) {
      putAttribute(body, IFLA_IFNAME, encoder.encode(`${event.name}\0`));
    }
    const type = event.kind === "link-deleted" ? MsgType.RTM_DELLINK : MsgType.RTM_NEWLINK;
    return finish(type, 0, { seq }, body);
  }
  const header = new Uint8Array(IFADDRMSG_LEN);
  header[0] = event.family;
  header[1] = event.prefix;
  new DataView(header.buffer).setUint32(4, event.index, true);
  body.push(...header);
  putAttribute(body, Ifa.ADDRESS, event.address);
  if (event.family === 2) putAttribute(body, Ifa.LOCAL, event.address);
  const type = event.kind === "address-deleted" ? MsgType.RTM_DELADDR : MsgType.RTM_NEWADDR;
  return finish(type, 0, { seq }, body);
}

/** Builds an NLMSG_ERROR answer (errno 0 is an ACK) to a request; for tests. */
export function encodeAck(request: Uint8Array, errnoValue: number): Uint8Array<ArrayBuffer> {
  const original = parseMessages(request)[0];
  const body: number[] = [...u32(-errnoValue >>> 0), ...request.subarray(0, NLMSG_HDRLEN)];
  return finish(MsgType.ERROR, 0, { seq: original.seq, portid: original.portid }, body);
}
