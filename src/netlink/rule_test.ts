import { assertEquals, assertMatch, assertThrowsType } from "../../tests/helpers/assert.ts";
import { MsgType, NetlinkParseError, NlmFlags, parseAttributes, parseMessages } from "./message.ts";
import { decodeRule, encodeRuleDump, encodeRuleMessage, Fra, type Rule } from "./rule.ts";

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

Deno.test("decodeRule() ignores other messages and names a payload too short for what it claims", async (t) => {
  const [message] = parseMessages(encodeRuleMessage(MsgType.RTM_NEWRULE, FROM_RULE, { seq: 1 }));
  assertEquals(decodeRule({ ...message, type: MsgType.RTM_NEWLINK }), null);
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ["a short fib_rule_hdr", message.payload.subarray(0, 11), /rule message of 11 bytes/],
    [
      "a cut attribute",
      message.payload.subarray(0, 34),
      /attribute at offset 28 claims 8 bytes, 6 left/,
    ],
  ];
  for (const [what, payload, text] of cases) {
    await t.step(what, () => {
      const error = assertThrowsType(() => decodeRule({ ...message, payload }), NetlinkParseError);
      assertMatch(error.message, text);
    });
  }
});

Deno.test("encodeRuleDump() asks for a dump of one family", () => {
  const [message] = parseMessages(encodeRuleDump(10, { seq: 5 }));
  assertEquals(message.type, MsgType.RTM_GETRULE);
  assertEquals(message.flags, NlmFlags.REQUEST | NlmFlags.DUMP);
  assertEquals(message.payload[0], 10);
  assertEquals(message.payload.byteLength, 12);
});
