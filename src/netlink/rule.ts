/**
 * Routing rule messages (RTM_NEWRULE, RTM_DELRULE, RTM_GETRULE): `struct
 * fib_rule_hdr` and the FRA_* attributes the client manages, after
 * `<linux/fib_rules.h>`. Addresses travel in network byte order. Pure.
 *
 * @module
 */

import {
  encodeMessage,
  type EncodeOptions,
  type Message,
  MsgType,
  NlmFlags,
  parseAttributes,
  putAttribute,
  readCString,
  readU32,
  requireLength,
  u32,
} from "./message.ts";

/** `struct fib_rule_hdr` size. */
export const FIB_RULE_HDRLEN = 12;

/** FRA_* attribute types of a routing rule. */
export const Fra = { DST: 1, SRC: 2, IIFNAME: 3, PRIORITY: 6, TABLE: 15 } as const;
/** `FR_ACT_TO_TBL`: the rule's action is "lookup table". */
export const FR_ACT_TO_TBL = 1;
/** Tables above this do not fit the 8-bit `fib_rule_hdr.table` and travel in FRA_TABLE only. */
const RT_TABLE_MAX_U8 = 255;

const encoder = new TextEncoder();

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
  return encodeMessage(type, flags, options, body);
}

/** Encodes an RTM_GETRULE dump request for one address family. */
export function encodeRuleDump(family: number, options: EncodeOptions): Uint8Array<ArrayBuffer> {
  const body = new Uint8Array(FIB_RULE_HDRLEN);
  body[0] = family;
  return encodeMessage(MsgType.RTM_GETRULE, NlmFlags.REQUEST | NlmFlags.DUMP, options, body);
}

/**
 * Decodes an RTM_NEWRULE message (a dump entry or a notification) into a
 * {@link Rule}. Only the fields the client manages are read; null for
 * another message type. Throws a NetlinkParseError for a payload shorter
 * than `fib_rule_hdr` or attributes that do not fit it.
 */
export function decodeRule(message: Message): Rule | null {
  if (message.type !== MsgType.RTM_NEWRULE && message.type !== MsgType.RTM_DELRULE) return null;
  const p = message.payload;
  requireLength(p, FIB_RULE_HDRLEN, "rule message");
  const rule: Rule = { family: p[0], priority: 0, table: p[4] };
  for (const attr of parseAttributes(p, FIB_RULE_HDRLEN)) {
    if (attr.type === Fra.PRIORITY) rule.priority = readU32(attr.payload);
    else if (attr.type === Fra.TABLE) rule.table = readU32(attr.payload);
    else if (attr.type === Fra.SRC) rule.src = { address: attr.payload.slice(), prefix: p[2] };
    else if (attr.type === Fra.DST) rule.dst = { address: attr.payload.slice(), prefix: p[1] };
    else if (attr.type === Fra.IIFNAME) rule.iifname = readCString(attr.payload);
  }
  return rule;
}
