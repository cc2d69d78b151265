/**
 * The routing rules a lease needs, and their upkeep in the kernel.
 *
 * {@link leaseRules} is pure: for an address, its prefix and a table it
 * gives the three rules of the contract. {@link RuleKeeper} installs them
 * with ACK-checked netlink requests, treats an identical existing rule as
 * success, moves them when the table changes, and keeps what failed for a
 * retry (the caller retries every second).
 *
 * @module
 */

import { formatIP, maskAddress } from "../net/ip.ts";
import { MsgType } from "../netlink/message.ts";
import { decodeRule, encodeRuleDump, encodeRuleMessage, type Rule } from "../netlink/rule.ts";
import { NetlinkError, type NetlinkSocket } from "../netlink/connection.ts";

/** Priority of `from ADDRESS lookup T`. */
export const ADDRESS_RULE_PRIORITY = 10000;
/** Priority of `to NETWORK/PREFIX lookup T`. */
export const NETWORK_RULE_PRIORITY = 20000;
/** Priority of `iif lo lookup T`. */
export const LOOPBACK_RULE_PRIORITY = 91000;

const EEXIST = 17;
const ENOENT = 2;

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

const sameBytes = (a: Uint8Array | undefined, b: Uint8Array | undefined) =>
  a === b || (a !== undefined && b !== undefined && a.byteLength === b.byteLength &&
    a.every((x, i) => x === b[i]));

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

/** What a rule operation did, for the caller's log. */
export interface RuleFailure {
  rule: Rule;
  action: "add" | "delete";
  error: Error;
}

/** What the keeper needs of a netlink socket (a fake in unit tests). */
export type RuleChannel = Pick<NetlinkSocket, "request" | "dump" | "nextSeq" | "portid" | "close">;

/**
 * Keeps a lease's rules in the kernel. `want()` sets the rules that must
 * exist (or none); `sync()` adds what is missing and deletes what is no
 * longer wanted, and returns what failed, to be retried.
 */
export class RuleKeeper implements Disposable {
  #netlink: RuleChannel;
  #wanted: Rule[] = [];
  #installed: Rule[] = [];
  #stale: Rule[] = [];

  /** A keeper that talks to the kernel through `netlink`, which it owns from now on. */
  constructor(netlink: RuleChannel) {
    this.#netlink = netlink;
  }

  /** Closes the netlink socket; the rules stay as they are. */
  [Symbol.dispose](): void {
    this.#netlink.close();
  }

  /** Whether every wanted rule is in and every unwanted one is gone. */
  get settled(): boolean {
    return this.#stale.length === 0 && this.#wanted.every((r) => this.#installed.includes(r));
  }

  /**
   * Sets the rules that must exist. Rules of an earlier table are deleted
   * only after the new ones are in, so traffic never falls through.
   */
  want(rules: Rule[]): void {
    const keep = (r: Rule) => rules.some((w) => sameRule(w, r));
    this.#stale.push(...this.#installed.filter((r) => !keep(r)));
    this.#installed = this.#installed.filter(keep).map((r) => rules.find((w) => sameRule(w, r))!);
    this.#wanted = rules;
  }

  /**
   * Marks the rules of `address` that an earlier client left in the kernel
   * (one killed before it could clean up) as stale, so the next
   * {@link sync} deletes them once the wanted rules are in: an old
   * `from ADDRESS lookup OLD` at the same priority would shadow the new
   * one. Call after {@link want}, so wanted rules are never marked.
   * Returns the rules marked.
   */
  async claimLeftovers(family: number, address: Uint8Array): Promise<Rule[]> {
    const leftovers = rulesOfAddress(await this.dump(family), family, address)
      .filter((r) => !this.#wanted.some((w) => sameRule(w, r)));
    this.#stale.push(...leftovers);
    return leftovers;
  }

  /** Adds missing rules, then deletes stale ones; returns the failures. */
  async sync(): Promise<RuleFailure[]> {
    const failures: RuleFailure[] = [];
    for (const rule of this.#wanted) {
      if (this.#installed.includes(rule)) continue;
      try {
        await this.#apply(MsgType.RTM_NEWRULE, rule);
        this.#installed.push(rule);
      } catch (error) {
        failures.push({ rule, action: "add", error: error as Error });
      }
    }
    // Old rules go only once the new ones are in.
    if (failures.length > 0) return failures;
    const still: Rule[] = [];
    for (const rule of this.#stale) {
      try {
        await this.#apply(MsgType.RTM_DELRULE, rule);
      } catch (error) {
        still.push(rule);
        failures.push({ rule, action: "delete", error: error as Error });
      }
    }
    this.#stale = still;
    return failures;
  }

  /** Deletes every rule this keeper added or still has to delete; returns the failures. */
  async removeAll(): Promise<RuleFailure[]> {
    this.want([]);
    return await this.sync();
  }

  /** Deletes the given rules (found in a dump); a rule already gone counts as deleted. */
  async remove(rules: readonly Rule[]): Promise<RuleFailure[]> {
    const failures: RuleFailure[] = [];
    for (const rule of rules) {
      try {
        await this.#apply(MsgType.RTM_DELRULE, rule);
      } catch (error) {
        failures.push({ rule, action: "delete", error: error as Error });
      }
    }
    return failures;
  }

  /** The rules of one family now in the kernel. */
  async dump(family: number): Promise<Rule[]> {
    const seq = this.#netlink.nextSeq();
    const messages = await this.#netlink.dump(
      "dump of the routing rules",
      encodeRuleDump(family, { seq, portid: this.#netlink.portid }),
    );
    return messages.map(decodeRule).filter((r): r is Rule => r !== null);
  }

  async #apply(type: typeof MsgType.RTM_NEWRULE | typeof MsgType.RTM_DELRULE, rule: Rule) {
    const seq = this.#netlink.nextSeq();
    const adding = type === MsgType.RTM_NEWRULE;
    const message = encodeRuleMessage(type, rule, { seq, portid: this.#netlink.portid });
    try {
      await this.#netlink.request(
        `${adding ? "adding" : "deleting"} rule ${describeRule(rule)}`,
        message,
      );
    } catch (error) {
      // An identical rule counts as added; a missing one as deleted.
      if (error instanceof NetlinkError && error.errno === (adding ? EEXIST : ENOENT)) return;
      throw error;
    }
  }
}

function sameRule(a: Rule, b: Rule): boolean {
  return a.family === b.family && a.priority === b.priority && a.table === b.table &&
    a.iifname === b.iifname && a.src?.prefix === b.src?.prefix &&
    a.dst?.prefix === b.dst?.prefix && sameBytes(a.src?.address, b.src?.address) &&
    sameBytes(a.dst?.address, b.dst?.address);
}
