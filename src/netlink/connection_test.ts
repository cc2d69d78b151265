import { assert, assertEquals, assertInstanceOf } from "../../tests/helpers/assert.ts";
import { NetlinkError, NetlinkSocket } from "./connection.ts";
import { MsgType } from "./message.ts";
import { encodeRuleDump, encodeRuleMessage } from "./rule.ts";

const IS_ROOT = Deno.uid() === 0;

Deno.test("NetlinkSocket dumps the rules of the current namespace without blocking", async () => {
  using nl = NetlinkSocket.open();
  const seq = nl.nextSeq();
  const answers = await nl.dump("rule dump", encodeRuleDump(2, { seq, portid: nl.portid }));
  // Every namespace has the local, main and default rules.
  assert(answers.length >= 3, `expected at least 3 rules, got ${answers.length}`);
  assert(answers.every((m) => m.type === MsgType.RTM_NEWRULE));
});

Deno.test({
  name: "NetlinkSocket reports a refused request with the kernel's errno",
  // As root the delete of a missing rule gives ENOENT; otherwise EPERM. Either way an errno.
  fn: async () => {
    using nl = NetlinkSocket.open();
    const rule = { family: 2, priority: 4242, table: 4242, iifname: "no-such-if0" };
    const message = encodeRuleMessage(MsgType.RTM_DELRULE, rule, {
      seq: nl.nextSeq(),
      portid: nl.portid,
    });
    const error = await nl.request("delete", message).then(() => null, (e) => e);
    assertInstanceOf(error, NetlinkError);
    assertEquals(error.errno, IS_ROOT ? 2 : 1);
  },
});

Deno.test("NetlinkSocket.receive() returns nothing when no notification waits", () => {
  using nl = NetlinkSocket.open(1);
  assertEquals(nl.receive(), []);
});
