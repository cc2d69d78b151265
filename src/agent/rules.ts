/**
 * The routing rules a lease needs, and their upkeep in the kernel.
 *
 * The rules themselves are in `src/protocol/lease_rules.ts`.
 * {@link RuleKeeper} keeps the
 * rules of every identity a process holds: each rule is counted by the
 * owners that want it (two identities on one table share `iif lo lookup
 * T`), installed with ACK-checked netlink requests (an identical existing
 * rule counts as success) and deleted only when no owner wants it any
 * more. What failed is kept for a retry; a rule that someone else deleted
 * is put back.
 *
 * @module
 */

import { MsgType } from "../netlink/message.ts";
import { decodeRule, encodeRuleDump, encodeRuleMessage, type Rule } from "../netlink/rule.ts";
import { NetlinkError, type NetlinkSocket } from "../netlink/connection.ts";
import {
  ADDRESS_RULE_PRIORITY,
  describeRule,
  LOOPBACK_RULE_PRIORITY,
  NETWORK_RULE_PRIORITY,
  rulesOfAddress,
} from "../protocol/lease_rules.ts";

const EEXIST = 17;
const ENOENT = 2;

/** What a rule operation did, for the caller's log. */
export interface RuleFailure {
  rule: Rule;
  action: "add" | "delete";
  error: Error;
  /** The owners the rule was (add) or had been (delete) wanted by. */
  owners: string[];
}

/** What the keeper needs of a netlink socket (a fake in unit tests). */
export type RuleChannel = Pick<NetlinkSocket, "request" | "dump" | "nextSeq" | "portid" | "close">;

const OUR_PRIORITIES: ReadonlySet<number> = new Set([
  ADDRESS_RULE_PRIORITY,
  NETWORK_RULE_PRIORITY,
  LOOPBACK_RULE_PRIORITY,
]);

/** A rule as a map key: every field the kernel compares. */
export function ruleKey(rule: Rule): string {
  const bytes = (a?: { address: Uint8Array; prefix: number }) =>
    a ? `${a.address.join(".")}/${a.prefix}` : "";
  return `${rule.family} ${rule.priority} ${rule.table} ${bytes(rule.src)} ${bytes(rule.dst)} ${
    rule.iifname ?? ""
  }`;
}

interface Wanted {
  rule: Rule;
  owners: Set<string>;
  installed: boolean;
}

interface Stale {
  rule: Rule;
  /** Who wanted it before: it goes only once their new rules are in. */
  formerOwners: Set<string>;
}

/**
 * Keeps the rules of many owners (identities) in the kernel. `want()` sets
 * one owner's rules; `sync()` adds what is missing and deletes what nobody
 * wants any more, and returns what failed, to be retried. Syncs never
 * overlap: a call during a sync is served by one more sync right after.
 */
export class RuleKeeper implements Disposable {
  #netlink: RuleChannel;
  #wanted = new Map<string, Wanted>();
  #stale = new Map<string, Stale>();
  #lock: Promise<unknown> = Promise.resolve();
  #next: Promise<RuleFailure[]> | null = null;
  /**
   * The kernel's rules at our three priorities, per family, as the last
   * dump and the notifications since say; a family is absent until dumped
   * (and after lost notifications). Spares every new lease a dump of all
   * rules (which grows with the number of leases) to find leftovers.
   */
  #kernel = new Map<number, Map<string, Rule>>();

  /** A keeper that talks to the kernel through `netlink`, which it owns from now on. */
  constructor(netlink: RuleChannel) {
    this.#netlink = netlink;
  }

  /** Closes the netlink socket; the rules stay as they are. */
  [Symbol.dispose](): void {
    this.#netlink.close();
  }

  /** Whether every rule `owner` wants is in and every one it left is gone. */
  settled(owner: string): boolean {
    for (const w of this.#wanted.values()) if (w.owners.has(owner) && !w.installed) return false;
    for (const s of this.#stale.values()) if (s.formerOwners.has(owner)) return false;
    return true;
  }

  /** How many distinct rules are wanted now (each counted once, whatever its owners). */
  get size(): number {
    return this.#wanted.size;
  }

  /**
   * Sets the rules `owner` wants (none: the owner leaves). A rule another
   * owner still wants stays; the others are deleted at the next
   * {@link sync}, only after the owner's new rules are in, so traffic
   * never falls through when a lease moves to another table.
   */
  want(owner: string, rules: readonly Rule[]): void {
    const keys = new Set(rules.map(ruleKey));
    for (const [key, w] of this.#wanted) {
      if (!w.owners.has(owner) || keys.has(key)) continue;
      w.owners.delete(owner);
      if (w.owners.size > 0) continue;
      this.#wanted.delete(key);
      // Also when its add failed: the kernel may have made it anyway; ENOENT counts as deleted.
      this.#markStale(key, w.rule, owner);
    }
    for (const rule of rules) {
      const key = ruleKey(rule);
      const w = this.#wanted.get(key) ?? { rule, owners: new Set<string>(), installed: false };
      w.owners.add(owner);
      this.#wanted.set(key, w);
      this.#stale.delete(key);
    }
  }

  /**
   * Marks the rules of `address` that an earlier holder left in the kernel
   * (one killed before it could clean up) as stale for `owner`, so the next
   * {@link sync} deletes them once the owner's rules are in: an old
   * `from ADDRESS lookup OLD` at the same priority would shadow the new
   * one. Call after {@link want}, so wanted rules are never marked.
   * Returns the rules marked.
   */
  async claimLeftovers(owner: string, family: number, address: Uint8Array): Promise<Rule[]> {
    const known = this.#kernel.get(family);
    const rules = known ? [...known.values()] : await this.dump(family);
    const leftovers = rulesOfAddress(rules, family, address)
      .filter((r) => !this.#wanted.has(ruleKey(r)));
    for (const rule of leftovers) this.#markStale(ruleKey(rule), rule, owner);
    return leftovers;
  }

  /** A notification says `rule` was added to the kernel. */
  noteAdded(rule: Rule): void {
    if (OUR_PRIORITIES.has(rule.priority)) this.#kernel.get(rule.family)?.set(ruleKey(rule), rule);
  }

  /** Notifications were lost: what the kernel has is known again only after a dump. */
  forgetKernel(): void {
    this.#kernel.clear();
  }

  /**
   * A notification says `rule` was deleted. When it is wanted and was in,
   * it is marked missing for the next {@link sync}; returns its owners
   * (empty when the rule is not ours, or our own deletion).
   */
  noteDeleted(rule: Rule): string[] {
    this.#kernel.get(rule.family)?.delete(ruleKey(rule));
    const w = this.#wanted.get(ruleKey(rule));
    if (!w || !w.installed) return [];
    w.installed = false;
    return [...w.owners];
  }

  /**
   * Compares the wanted rules of `family` with a dump of the kernel's
   * rules: those that are not there any more are marked missing for the
   * next {@link sync}. Returns them.
   */
  verify(family: number, dump: readonly Rule[]): Array<{ rule: Rule; owners: string[] }> {
    const present = new Set(dump.map(ruleKey));
    const missing: Array<{ rule: Rule; owners: string[] }> = [];
    for (const [key, w] of this.#wanted) {
      if (w.rule.family !== family || !w.installed || present.has(key)) continue;
      w.installed = false;
      missing.push({ rule: w.rule, owners: [...w.owners] });
    }
    return missing;
  }

  /** Adds missing rules, then deletes stale ones; returns the failures. */
  sync(): Promise<RuleFailure[]> {
    if (this.#next) return this.#next;
    const run = this.#exclusive(() => {
      this.#next = null;
      return this.#syncOnce();
    });
    this.#next = run;
    return run;
  }

  /**
   * Runs one exchange with the kernel at a time: answers on one netlink
   * socket must not be taken by another request's wait.
   */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(fn);
    this.#lock = run.catch(() => {});
    return run;
  }

  async #syncOnce(): Promise<RuleFailure[]> {
    const failures: RuleFailure[] = [];
    const failedOwners = new Set<string>();
    for (const w of [...this.#wanted.values()]) {
      if (w.installed) continue;
      try {
        await this.#apply(MsgType.RTM_NEWRULE, w.rule);
        w.installed = true;
      } catch (error) {
        failures.push({
          rule: w.rule,
          action: "add",
          error: error as Error,
          owners: [...w.owners],
        });
        for (const owner of w.owners) failedOwners.add(owner);
      }
    }
    for (const [key, s] of [...this.#stale]) {
      // Wanted again meanwhile (another owner took the table): it stays.
      if (this.#stale.get(key) !== s) continue;
      // Old rules go only once their owners' new ones are in.
      if ([...s.formerOwners].some((o) => failedOwners.has(o))) continue;
      try {
        await this.#apply(MsgType.RTM_DELRULE, s.rule);
        // Wanted again while the request was out: the next sync adds it back.
        if (this.#stale.get(key) === s) this.#stale.delete(key);
      } catch (error) {
        failures.push({
          rule: s.rule,
          action: "delete",
          error: error as Error,
          owners: [...s.formerOwners],
        });
      }
    }
    return failures;
  }

  /** Deletes the given rules (found in a dump) now; a rule already gone counts as deleted. */
  remove(rules: readonly Rule[]): Promise<RuleFailure[]> {
    return this.#exclusive(async () => {
      const failures: RuleFailure[] = [];
      for (const rule of rules) {
        try {
          await this.#apply(MsgType.RTM_DELRULE, rule);
        } catch (error) {
          failures.push({ rule, action: "delete", error: error as Error, owners: [] });
        }
      }
      return failures;
    });
  }

  /** The rules of one family now in the kernel (also what {@link claimLeftovers} knows of them). */
  dump(family: number): Promise<Rule[]> {
    return this.#exclusive(async () => {
      const seq = this.#netlink.nextSeq();
      const messages = await this.#netlink.dump(
        "dump of the routing rules",
        encodeRuleDump(family, { seq, portid: this.#netlink.portid }),
      );
      const rules = messages.map(decodeRule).filter((r): r is Rule => r !== null);
      const ours = rules.filter((r) => OUR_PRIORITIES.has(r.priority));
      this.#kernel.set(family, new Map(ours.map((r) => [ruleKey(r), r])));
      return rules;
    });
  }

  #markStale(key: string, rule: Rule, owner: string): void {
    const s = this.#stale.get(key) ?? { rule, formerOwners: new Set<string>() };
    s.formerOwners.add(owner);
    this.#stale.set(key, s);
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
