/**
 * The three policy rules of a lease, as the contract fixes them (the C
 * client installs the same): what they are for an address, which rules of
 * a kernel dump belong to an address's lease, and how logs show a rule.
 * Pure. The host agent installs them; the server reads them back at start
 * to find the tables still routed after a lost database.
 *
 * @module
 */

import { formatIP, maskAddress } from "../net/ip.ts";
import type { Rule } from "../netlink/rule.ts";
import { sameBytes } from "../util/bytes.ts";

/** Priority of `from ADDRESS lookup T`. */
export const ADDRESS_RULE_PRIORITY = 10000;
/** Priority of `to NETWORK/PREFIX lookup T`. */
export const NETWORK_RULE_PRIORITY = 20000;
/** Priority of `iif lo lookup T`. */
export const LOOPBACK_RULE_PRIORITY = 91000;

/**
 * The three rules of a lease: traffic from the address, traffic to its
 * network (the address masked to the prefix), and locally generated
 * traffic (`iif lo`) look up the lease's table.
 */
export function leaseRules(
  family: number,
  address: Uint8Array,
  prefix: number,
  table: number,
): Rule[] {
  const bits = address.byteLength * 8;
  return [
    { family, priority: ADDRESS_RULE_PRIORITY, table, src: { address, prefix: bits } },
    {
      family,
      priority: NETWORK_RULE_PRIORITY,
      table,
      dst: { address: maskAddress(address, prefix), prefix },
    },
    { family, priority: LOOPBACK_RULE_PRIORITY, table, iifname: "lo" },
  ];
}

/**
 * Of the rules in a dump, those that belong to the lease of `address`:
 * the `from ADDRESS` rule at priority 10000 names the table, and every
 * rule of the three priorities that looks up that table with one of our
 * selectors goes with it, unless another address's `from` rule names the
 * same table: then the table has been leased again, and its network and
 * loopback rules are that lease's. Used by `-r` when no running client
 * knows the table, and at start to clean up after a killed client.
 */
export function rulesOfAddress(dump: readonly Rule[], family: number, address: Uint8Array): Rule[] {
  const bits = address.byteLength * 8;
  const fromRules = dump.filter((r) =>
    r.family === family && r.priority === ADDRESS_RULE_PRIORITY && r.src?.prefix === bits
  );
  const tables = new Set(
    fromRules.filter((r) => sameBytes(r.src!.address, address)).map((r) => r.table),
  );
  const sharedTables = new Set(
    fromRules.filter((r) => !sameBytes(r.src!.address, address)).map((r) => r.table),
  );
  return dump.filter((r) =>
    r.family === family && tables.has(r.table) &&
    ((r.priority === ADDRESS_RULE_PRIORITY && sameBytes(r.src?.address, address)) ||
      (!sharedTables.has(r.table) &&
        ((r.priority === NETWORK_RULE_PRIORITY && r.dst !== undefined && r.src === undefined) ||
          (r.priority === LOOPBACK_RULE_PRIORITY && r.iifname === "lo"))))
  );
}

/** A readable form of a rule for logs, in `ip rule` notation. */
export function describeRule(rule: Rule): string {
  const text = (a: { address: Uint8Array; prefix: number }) => `${formatIP(a.address)}/${a.prefix}`;
  const selector = rule.src
    ? `from ${text(rule.src)}`
    : rule.dst
    ? `to ${text(rule.dst)}`
    : `iif ${rule.iifname}`;
  return `${rule.priority}: ${selector} lookup ${rule.table}`;
}
