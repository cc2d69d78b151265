import { assert, assertEquals } from "../../tests/helpers/assert.ts";
import { parseIPv4, parseIPv6 } from "../net/ip.ts";
import { NetlinkError } from "../netlink/connection.ts";
import { type Message, MsgType, parseMessages } from "../netlink/message.ts";
import { decodeRule, encodeRuleMessage, type Rule } from "../netlink/rule.ts";
import { describeRule, leaseRules } from "../protocol/lease_rules.ts";
import { RuleKeeper } from "./rules.ts";

const v4 = (s: string) => parseIPv4(s)!;
const v6 = (s: string) => parseIPv6(s)!;

/**
 * A message-level fake of the kernel's rule table: answers each request
 * like the kernel (EEXIST for a duplicate, ENOENT for a missing rule), or
 * with `failNext` errnos first.
 */
class FakeKernel {
  rules: Rule[] = [];
  log: string[] = [];
  failNext: number[] = [];
  /** Requests wait for this: a kernel that has not answered yet. */
  gate: Promise<void> = Promise.resolve();
  portid = 1;
  #seq = 0;
  nextSeq() {
    return ++this.#seq;
  }
  close() {}
  async request(_what: string, message: Uint8Array<ArrayBuffer>): Promise<void> {
    await this.gate;
    const [msg] = parseMessages(message);
    const rule = decodeRule(msg)!;
    const adding = msg.type === MsgType.RTM_NEWRULE;
    this.log.push(`${adding ? "add" : "del"} ${describeRule(rule)}`);
    const fail = this.failNext.shift();
    if (fail) return Promise.reject(new NetlinkError("fake", fail));
    const at = this.rules.findIndex((r) => describeRule(r) === describeRule(rule));
    if (adding) {
      if (at >= 0) return Promise.reject(new NetlinkError("fake", 17));
      this.rules.push(rule);
    } else {
      if (at < 0) return Promise.reject(new NetlinkError("fake", 2));
      this.rules.splice(at, 1);
    }
    return Promise.resolve();
  }
  dump(): Promise<Message[]> {
    return Promise.resolve(
      this.rules.flatMap((rule) =>
        parseMessages(encodeRuleMessage(MsgType.RTM_NEWRULE, rule, { seq: 0, portid: 0 }))
      ),
    );
  }
}

Deno.test("RuleKeeper counts an identical existing rule as installed", async () => {
  const kernel = new FakeKernel();
  const rules = leaseRules(2, v4("192.0.2.10"), 24, 10001);
  kernel.rules.push(rules[0]);
  const keeper = new RuleKeeper(kernel);
  keeper.want("a", rules);
  assertEquals(await keeper.sync(), []);
  assertEquals(keeper.settled("a"), true);
  assertEquals(kernel.rules.map(describeRule), rules.map(describeRule));
});

Deno.test("RuleKeeper keeps a refused rule for the next sync and then installs it", async () => {
  const kernel = new FakeKernel();
  kernel.failNext = [0, 1]; // the second rule: EPERM once
  const keeper = new RuleKeeper(kernel);
  const rules = leaseRules(2, v4("192.0.2.10"), 24, 10001);
  keeper.want("a", rules);
  const failures = await keeper.sync();
  assertEquals(failures.map((f) => [f.action, describeRule(f.rule), f.owners]), [[
    "add",
    describeRule(rules[1]),
    ["a"],
  ]]);
  assertEquals(keeper.settled("a"), false);
  assertEquals(await keeper.sync(), []);
  assertEquals(keeper.settled("a"), true);
  assertEquals(
    kernel.log.filter((l) => l.startsWith("add")).length,
    4,
    "only the refused rule again",
  );
});

Deno.test("RuleKeeper moves rules to a new table: new ones first, then the old ones go", async () => {
  const kernel = new FakeKernel();
  const keeper = new RuleKeeper(kernel);
  keeper.want("a", leaseRules(2, v4("192.0.2.10"), 24, 10001));
  await keeper.sync();
  kernel.log = [];
  keeper.want("a", leaseRules(2, v4("192.0.2.10"), 24, 10002));
  assertEquals(await keeper.sync(), []);
  assertEquals(kernel.log, [
    "add 10000: from 192.0.2.10/32 lookup 10002",
    "add 20000: to 192.0.2.0/24 lookup 10002",
    "add 91000: iif lo lookup 10002",
    "del 10000: from 192.0.2.10/32 lookup 10001",
    "del 20000: to 192.0.2.0/24 lookup 10001",
    "del 91000: iif lo lookup 10001",
  ]);
  assertEquals(kernel.rules.map((r) => r.table), [10002, 10002, 10002]);
});

Deno.test("RuleKeeper.want(owner, []) deletes its rules and counts a missing one as deleted", async () => {
  const kernel = new FakeKernel();
  const keeper = new RuleKeeper(kernel);
  keeper.want("a", leaseRules(10, v6("2001:db8::10"), 64, 7));
  await keeper.sync();
  kernel.rules.splice(1, 1); // someone deleted one by hand
  assertEquals((keeper.want("a", []), await keeper.sync()), []);
  assertEquals(kernel.rules, []);
});

Deno.test("RuleKeeper.claimLeftovers() deletes a killed client's rules once the new ones are in", async () => {
  const kernel = new FakeKernel();
  kernel.rules.push(...leaseRules(2, v4("192.0.2.10"), 24, 10001)); // left by a killed client
  kernel.rules.push(...leaseRules(2, v4("192.0.2.99"), 24, 10005)); // another lease
  const keeper = new RuleKeeper(kernel);
  keeper.want("a", leaseRules(2, v4("192.0.2.10"), 24, 10002));
  const claimed = await keeper.claimLeftovers("a", 2, v4("192.0.2.10"));
  assertEquals(
    claimed.map(describeRule),
    leaseRules(2, v4("192.0.2.10"), 24, 10001).map(describeRule),
  );
  assertEquals(await keeper.sync(), []);
  assertEquals(
    kernel.rules.map(describeRule).toSorted(),
    [...leaseRules(2, v4("192.0.2.10"), 24, 10002), ...leaseRules(2, v4("192.0.2.99"), 24, 10005)]
      .map(describeRule).toSorted(),
  );
});

Deno.test("RuleKeeper.claimLeftovers() never marks a wanted rule", async () => {
  const kernel = new FakeKernel();
  const rules = leaseRules(2, v4("192.0.2.10"), 24, 10001);
  kernel.rules.push(...rules); // a restarted client got the same table
  const keeper = new RuleKeeper(kernel);
  keeper.want("a", rules);
  assertEquals(await keeper.claimLeftovers("a", 2, v4("192.0.2.10")), []);
  assertEquals(await keeper.sync(), []);
  assertEquals(kernel.rules.map(describeRule), rules.map(describeRule));
});

Deno.test("RuleKeeper counts owners: a rule two identities share stays until both leave", async () => {
  const kernel = new FakeKernel();
  const keeper = new RuleKeeper(kernel);
  // Two addresses of one network on one table: the network and loopback rules are shared.
  keeper.want("a", leaseRules(2, v4("192.0.2.10"), 24, 10001));
  keeper.want("b", leaseRules(2, v4("192.0.2.11"), 24, 10001));
  assertEquals(await keeper.sync(), []);
  assertEquals(keeper.size, 4);
  assertEquals(kernel.rules.length, 4);
  keeper.want("a", []);
  assertEquals(await keeper.sync(), []);
  assertEquals(kernel.rules.map(describeRule), [
    "20000: to 192.0.2.0/24 lookup 10001",
    "91000: iif lo lookup 10001",
    "10000: from 192.0.2.11/32 lookup 10001",
  ]);
  keeper.want("b", []);
  assertEquals(await keeper.sync(), []);
  assertEquals(kernel.rules, []);
});

Deno.test("RuleKeeper puts back a rule deleted behind its back, once noted or found missing", async () => {
  const kernel = new FakeKernel();
  const keeper = new RuleKeeper(kernel);
  const rules = leaseRules(2, v4("192.0.2.10"), 24, 10001);
  keeper.want("a", rules);
  await keeper.sync();
  kernel.rules.splice(2, 1); // `ip rule del iif lo lookup 10001`
  assertEquals(keeper.noteDeleted(rules[2]), ["a"]);
  assertEquals(keeper.noteDeleted(rules[2]), [], "already noted");
  assertEquals(keeper.settled("a"), false);
  await keeper.sync();
  assertEquals(kernel.rules.map(describeRule), rules.map(describeRule));
  // Without a notification (lost, ENOBUFS): the periodic dump finds it.
  kernel.rules.splice(0, 1);
  const missing = keeper.verify(2, await keeper.dump(2));
  assertEquals(missing.map((m) => [describeRule(m.rule), m.owners]), [[
    describeRule(rules[0]),
    ["a"],
  ]]);
  assertEquals(keeper.verify(10, []), [], "another family is not compared");
  await keeper.sync();
  assertEquals(kernel.rules.length, 3);
  // A rule nobody wants is not ours to put back.
  assertEquals(keeper.noteDeleted(leaseRules(2, v4("192.0.2.99"), 24, 7)[0]), []);
});

Deno.test("RuleKeeper keeps a rule that another owner wants again while its deletion is queued", async () => {
  const kernel = new FakeKernel();
  const keeper = new RuleKeeper(kernel);
  keeper.want("a", leaseRules(2, v4("192.0.2.10"), 24, 10001));
  await keeper.sync();
  keeper.want("a", []);
  keeper.want("b", leaseRules(2, v4("192.0.2.11"), 24, 10001)); // takes the table at once
  await keeper.sync();
  assertEquals(kernel.rules.map(describeRule).toSorted(), [
    "10000: from 192.0.2.11/32 lookup 10001",
    "20000: to 192.0.2.0/24 lookup 10001",
    "91000: iif lo lookup 10001",
  ]);
});

Deno.test("RuleKeeper runs one sync at a time and serves calls made meanwhile with one more", async () => {
  const kernel = new FakeKernel();
  const keeper = new RuleKeeper(kernel);
  let answer!: () => void;
  kernel.gate = new Promise((resolve) => answer = resolve);
  keeper.want("a", leaseRules(2, v4("192.0.2.10"), 24, 10001));
  const first = keeper.sync();
  await new Promise((resolve) => setTimeout(resolve, 0)); // the first sync waits for the kernel
  assertEquals(kernel.log, [], "nothing answered yet");
  keeper.want("b", leaseRules(2, v4("192.0.2.11"), 24, 10002));
  const second = keeper.sync();
  assert(second !== first, "a call during a sync gets a sync of its own");
  assertEquals(keeper.sync(), second, "calls during a sync share the next one");
  answer();
  await Promise.all([first, second]);
  assertEquals(kernel.rules.length, 6);
  assertEquals(kernel.log.length, 6, "no rule was added twice");
});

Deno.test("RuleKeeper.claimLeftovers() dumps once, then follows the kernel's notifications", async () => {
  const kernel = new FakeKernel();
  const keeper = new RuleKeeper(kernel);
  let dumps = 0;
  const dump = kernel.dump.bind(kernel);
  kernel.dump = () => (dumps++, dump());
  assertEquals(await keeper.claimLeftovers("a", 2, v4("192.0.2.10")), []);
  // A foreground holder killed later left these; the agent heard them being added.
  const leftover = leaseRules(2, v4("192.0.2.11"), 24, 10003);
  kernel.rules.push(...leftover);
  for (const rule of leftover) keeper.noteAdded(rule);
  keeper.want("b", leaseRules(2, v4("192.0.2.11"), 24, 10004));
  assertEquals(
    (await keeper.claimLeftovers("b", 2, v4("192.0.2.11"))).map(describeRule),
    leftover.map(describeRule),
  );
  assertEquals(dumps, 1, "no dump per new lease");
  await keeper.sync();
  assertEquals(kernel.rules.map((r) => r.table), [10004, 10004, 10004]);
  keeper.forgetKernel();
  await keeper.claimLeftovers("c", 2, v4("192.0.2.12"));
  assertEquals(dumps, 2, "after lost notifications the kernel is asked again");
});
