/**
 * Which tables the kernel's policy rules still route through, read at the
 * server's start: the rules of the clients' shape (`pref 10000 from
 * ADDRESS lookup TABLE`, a full-length source and nothing else, as our
 * client and the C client install them), from an RTM_GETRULE dump of both
 * families in the server's own network namespace. Dumps need no
 * privilege.
 *
 * After a lost or replaced database, such a table must not go to another
 * identity while the holder's traffic still uses it: the server holds it
 * for the address (the readiness delay).
 *
 * @module
 */

import { AddrFamily } from "../net/family.ts";
import { formatIP } from "../net/ip.ts";
import { NetlinkSocket } from "../netlink/connection.ts";
import { decodeRule, encodeRuleDump, type Rule } from "../netlink/rule.ts";
import { ADDRESS_RULE_PRIORITY } from "../protocol/lease_rules.ts";

/** A table an address's traffic is routed through. */
export interface RoutedTable {
  family: typeof AddrFamily.INET | typeof AddrFamily.INET6;
  /** Canonical text. */
  address: string;
  table: number;
}

/** The rules of the clients' shape, as (family, address, table); pure. */
export function routedTables(rules: readonly Rule[]): RoutedTable[] {
  const out: RoutedTable[] = [];
  for (const rule of rules) {
    if (rule.family !== AddrFamily.INET && rule.family !== AddrFamily.INET6) continue;
    const bits = rule.family === AddrFamily.INET ? 32 : 128;
    if (
      rule.priority !== ADDRESS_RULE_PRIORITY || !rule.src || rule.src.prefix !== bits ||
      rule.src.address.byteLength * 8 !== bits || rule.dst || rule.iifname !== undefined
    ) {
      continue;
    }
    out.push({ family: rule.family, address: formatIP(rule.src.address), table: rule.table });
  }
  return out;
}

/** Dumps the rules of both families in this network namespace; throws when netlink fails. */
export async function dumpRoutedTables(timeoutMs = 2000): Promise<RoutedTable[]> {
  using socket = NetlinkSocket.open(0);
  const rules: Rule[] = [];
  for (const family of [AddrFamily.INET, AddrFamily.INET6]) {
    const what = `dump of the ${family === AddrFamily.INET ? "IPv4" : "IPv6"} rules`;
    const messages = await socket.dump(
      what,
      encodeRuleDump(family, { seq: socket.nextSeq() }),
      timeoutMs,
    );
    for (const message of messages) {
      const rule = decodeRule(message);
      if (rule) rules.push(rule);
    }
  }
  return routedTables(rules);
}
