import { assert, assertEquals, assertThrows } from "../../tests/helpers/assert.ts";
import {
  ackErrno,
  decodeLinkEvent,
  decodeRule,
  encodeAck,
  encodeLinkEvent,
  encodeRuleDump,
  encodeRuleMessage,
  Fra,
  groupMask,
  MsgType,
  NlmFlags,
  parseAttributes,
  parseMessages,
  RtnlGroup,
  type Rule,
} from "./message.ts";

const v4 = (s: string) => new Uint8Array(s.split(".").map(Number));

const FROM_RULE: Rule = {
  family: 2,
  priority: 10000,
  table: 10000,
  src: { address: v4("192.0.2.10"), prefix: 32 },
};

Deno.test("encodeRuleMessage() builds RTM_NEWRULE with fib_rule_hdr and FRA attributes", () => {
  const bytes = encodeRuleMessage(MsgType.RTM_NEWRULE, FROM_RULE, { seq: 7, portid: 99 });
  const view = new DataView(bytes.buffer);
  // nlmsghdr(16) + fib_rule_hdr(12) + PRIORITY(8) + TABLE(8) + SRC(8)
  assertEquals(bytes.byteLength, 52);
  assertEquals(view.getUint32(0, true), 52);
  assertEquals(view.getUint16(4, true), MsgType.RTM_NEWRULE);
  assertEquals(
    view.getUint16(6, true),
    NlmFlags.REQUEST | NlmFlags.ACK | NlmFlags.CREATE | NlmFlags.EXCL,
  );
  assertEquals(view.getUint32(8, true), 7);
  assertEquals(view.getUint32(12, true), 99);
  // family, dst_len, src_len, tos, table (0: above 255), res1, res2, action FR_ACT_TO_TBL, flags
  assertEquals([...bytes.subarray(16, 28)], [2, 0, 32, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
  const attrs = parseAttributes(bytes.subarray(16), 12);
  assertEquals(attrs.map((a) => a.type), [Fra.PRIORITY, Fra.TABLE, Fra.SRC]);
  assertEquals([...attrs[2].payload], [192, 0, 2, 10]);
});

Deno.test("encodeRuleMessage() deletes without NLM_F_CREATE and NLM_F_EXCL", () => {
  const bytes = encodeRuleMessage(MsgType.RTM_DELRULE, FROM_RULE, { seq: 1 });
  const flags = new DataView(bytes.buffer).getUint16(6, true);
  assertEquals(flags, NlmFlags.REQUEST | NlmFlags.ACK);
});

Deno.test("encodeRuleMessage() puts small tables in the header too and pads iif names", () => {
  const rule: Rule = { family: 10, priority: 91000, table: 100, iifname: "lo" };
  const bytes = encodeRuleMessage(MsgType.RTM_NEWRULE, rule, { seq: 1 });
  assertEquals(bytes[16 + 4], 100);
  assertEquals(bytes.byteLength % 4, 0);
  const [message] = parseMessages(bytes);
  assertEquals(decodeRule(message), rule);
});

Deno.test("decodeRule() reads back every rule encodeRuleMessage() writes, IPv4 and IPv6", () => {
  const v6 = new Uint8Array(16);
  v6.set([0x20, 0x01, 0x0d, 0xb8], 0);
  const rules: Rule[] = [
    FROM_RULE,
    { family: 2, priority: 20000, table: 10001, dst: { address: v4("192.0.2.0"), prefix: 24 } },
    { family: 10, priority: 10000, table: 7, src: { address: v6, prefix: 128 } },
    { family: 10, priority: 20000, table: 4000000000, dst: { address: v6, prefix: 64 } },
  ];
  for (const rule of rules) {
    const [message] = parseMessages(encodeRuleMessage(MsgType.RTM_NEWRULE, rule, { seq: 3 }));
    assertEquals(decodeRule(message), rule);
  }
});

Deno.test("encodeRuleDump() asks for a dump of one family", () => {
  const [message] = parseMessages(encodeRuleDump(10, { seq: 5 }));
  assertEquals(message.type, MsgType.RTM_GETRULE);
  assertEquals(message.flags, NlmFlags.REQUEST | NlmFlags.DUMP);
  assertEquals(message.payload[0], 10);
  assertEquals(message.payload.byteLength, 12);
});

Deno.test("ackErrno() gives 0 for an ACK and the errno of a refusal", () => {
  const request = encodeRuleMessage(MsgType.RTM_NEWRULE, FROM_RULE, { seq: 42, portid: 5 });
  const [ack] = parseMessages(encodeAck(request, 0));
  assertEquals(ack.type, MsgType.ERROR);
  assertEquals(ack.seq, 42);
  assertEquals(ackErrno(ack), 0);
  const [refusal] = parseMessages(encodeAck(request, 17));
  assertEquals(ackErrno(refusal), 17);
  const [notAnAck] = parseMessages(request);
  assertEquals(ackErrno(notAnAck), null);
});

Deno.test("parseMessages() splits a buffer of several messages and rejects a truncated one", () => {
  const a = encodeRuleMessage(MsgType.RTM_NEWRULE, FROM_RULE, { seq: 1 });
  const b = encodeRuleMessage(MsgType.RTM_DELRULE, FROM_RULE, { seq: 2 });
  const both = new Uint8Array([...a, ...b]);
  assertEquals(parseMessages(both).map((m) => [m.type, m.seq]), [[32, 1], [33, 2]]);
  assertThrows(() => parseMessages(both.subarray(0, a.byteLength + 20)), RangeError);
});

Deno.test("decodeLinkEvent() reads RTM_DELADDR with IFA_LOCAL for IPv4 and IFA_ADDRESS for IPv6", () => {
  const v6 = new Uint8Array(16).fill(0xab);
  for (
    const event of [
      {
        kind: "address-deleted" as const,
        index: 4,
        family: 2,
        prefix: 24,
        address: v4("192.0.2.10"),
      },
      { kind: "address-deleted" as const, index: 4, family: 10, prefix: 64, address: v6 },
      { kind: "address-added" as const, index: 9, family: 2, prefix: 32, address: v4("10.0.0.1") },
    ]
  ) {
    const [message] = parseMessages(encodeLinkEvent(event));
    assertEquals(decodeLinkEvent(message), event);
  }
});

Deno.test("decodeLinkEvent() prefers IFA_LOCAL over the peer's IFA_ADDRESS on IPv4 point-to-point", () => {
  // ifaddrmsg + IFA_ADDRESS(peer 10.0.0.2) + IFA_LOCAL(10.0.0.1), as the kernel sends it.
  const body = [
    2,
    32,
    0,
    0,
    3,
    0,
    0,
    0,
    8,
    0,
    1,
    0,
    10,
    0,
    0,
    2,
    8,
    0,
    2,
    0,
    10,
    0,
    0,
    1,
  ];
  const message = {
    type: MsgType.RTM_DELADDR,
    flags: 0,
    seq: 0,
    portid: 0,
    payload: new Uint8Array(body),
  };
  const event = decodeLinkEvent(message);
  assert(event?.kind === "address-deleted");
  assertEquals([...event.address], [10, 0, 0, 1]);
  assertEquals(event.index, 3);
});

Deno.test("decodeLinkEvent() reads RTM_DELLINK and RTM_NEWLINK with index and name", () => {
  const deleted =
    parseMessages(encodeLinkEvent({ kind: "link-deleted", index: 12, name: "veth0" }))[0];
  assertEquals(decodeLinkEvent(deleted), { kind: "link-deleted", index: 12, name: "veth0" });
  const changed =
    parseMessages(encodeLinkEvent({ kind: "link-changed", index: 3, name: "eth9" }))[0];
  assertEquals(decodeLinkEvent(changed), { kind: "link-changed", index: 3, name: "eth9" });
  const rule = parseMessages(encodeRuleMessage(MsgType.RTM_NEWRULE, FROM_RULE, { seq: 1 }))[0];
  assertEquals(decodeLinkEvent(rule), null);
});

Deno.test("groupMask() turns RTNLGRP numbers into bind bits", () => {
  assertEquals(groupMask([RtnlGroup.LINK]), 0x1);
  assertEquals(groupMask([RtnlGroup.LINK, RtnlGroup.IPV4_IFADDR]), 0x11);
  assertEquals(groupMask([RtnlGroup.LINK, RtnlGroup.IPV6_IFADDR]), 0x101);
});
