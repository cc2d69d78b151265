import { assertEquals } from "../../tests/helpers/assert.ts";
import { parseIPv4, parseIPv6 } from "../net/ip.ts";
import type { Rule } from "../netlink/rule.ts";
import { describeRule, leaseRules, rulesOfAddress } from "./lease_rules.ts";

const v4 = (s: string) => parseIPv4(s)!;
const v6 = (s: string) => parseIPv6(s)!;

Deno.test("leaseRules() gives from ADDRESS/32, to the masked NETWORK/PREFIX and iif lo", () => {
  const rules = leaseRules(2, v4("192.0.2.77"), 24, 10003);
  assertEquals(rules.map(describeRule), [
    "10000: from 192.0.2.77/32 lookup 10003",
    "20000: to 192.0.2.0/24 lookup 10003",
    "91000: iif lo lookup 10003",
  ]);
});

Deno.test("leaseRules() gives /128 and the masked IPv6 network", () => {
  const rules = leaseRules(10, v6("2001:db8:1:2:aaaa::10"), 56, 7);
  assertEquals(rules.map(describeRule), [
    "10000: from 2001:db8:1:2:aaaa::10/128 lookup 7",
    "20000: to 2001:db8:1::/56 lookup 7",
    "91000: iif lo lookup 7",
  ]);
  assertEquals(rules.every((r) => r.family === 10), true);
});

Deno.test("rulesOfAddress() finds the lease's rules by the table of its from-rule only", () => {
  const ours = leaseRules(2, v4("192.0.2.10"), 24, 10001);
  const other = leaseRules(2, v4("192.0.2.11"), 24, 10002);
  const dump: Rule[] = [
    { family: 2, priority: 0, table: 255 },
    ...other,
    ...ours,
    { family: 2, priority: 32766, table: 254 },
  ];
  assertEquals(rulesOfAddress(dump, 2, v4("192.0.2.10")), ours);
  assertEquals(rulesOfAddress(dump, 2, v4("192.0.2.12")), []);
  assertEquals(rulesOfAddress(dump, 10, v4("192.0.2.10")), []);
});

Deno.test("rulesOfAddress() leaves the shared rules of a table leased again to another address", () => {
  // A killed client left its rules on 10001; 10001 now belongs to 192.0.2.11.
  const leftover = leaseRules(2, v4("192.0.2.10"), 24, 10001);
  const current = leaseRules(2, v4("192.0.2.11"), 24, 10001);
  const dump: Rule[] = [leftover[0], ...current];
  assertEquals(rulesOfAddress(dump, 2, v4("192.0.2.10")), [leftover[0]]);
  assertEquals(rulesOfAddress(dump, 2, v4("192.0.2.11")), [current[0]]);
});
