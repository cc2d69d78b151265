/**
 * One holding's part of the shared rule keeper: its three rules in the
 * kernel for its table, the rules an earlier holder of the address left
 * behind (claimed once), and the log lines about them, which go to the
 * identity's own log (an error the first time a rule fails, debug on the
 * retries every second, a rate-limited warning when one is put back).
 *
 * @module
 */

import type { Fields } from "../log/logger.ts";
import { AddrFamily } from "../net/family.ts";
import type { Rule } from "../netlink/rule.ts";
import { errorMessage } from "../util/errors.ts";
import type { HoldSpec } from "./protocol.ts";
import { describeRule, leaseRules } from "../protocol/lease_rules.ts";
import { type RuleFailure, type RuleKeeper, ruleKey } from "./rules.ts";
import type { IdentityLog } from "./sinks.ts";
import type { LimitedLog } from "../log/rate_limit.ts";

/** What a holding's rules need from the holding. */
export interface LeaseRulesParts {
  /** The rules' owner in the keeper: the identity's name. */
  owner: string;
  spec: HoldSpec;
  /** The address bytes (null for family 0, which has no rules). */
  address: Uint8Array | null;
  keeper: RuleKeeper;
  /** Runs a sync of the keeper (the host routes its failures back here). */
  sync(): Promise<void>;
  log: IdentityLog;
  warnings: LimitedLog;
  /** The identity's log fields now (its table changes). */
  fields(): Fields;
}

/** The rules of one holding. */
export class LeaseRules {
  #p: LeaseRulesParts;
  #leftoversClaimed = false;
  #pending = false;
  #loggedErrors = new Set<string>();

  /** The rules of the holding that `parts` describe. */
  constructor(parts: LeaseRulesParts) {
    this.#p = parts;
  }

  /** Whether this identity has rules at all (family 0 has none). */
  get apply(): boolean {
    const { spec, address } = this.#p;
    return spec.identity.family !== AddrFamily.UNSPEC && address !== null && spec.prefix !== null;
  }

  /**
   * Wants the three rules of `table` (the old table's go once they are in)
   * and waits for one sync. True when every rule is in.
   */
  async install(table: number): Promise<boolean> {
    if (!this.apply) return true;
    const { keeper, owner, spec, address } = this.#p;
    keeper.want(owner, leaseRules(spec.identity.family, address!, spec.prefix!, table));
    await this.#claimLeftovers();
    await this.#p.sync();
    const settled = keeper.settled(owner);
    if (settled) this.#pending = false;
    return settled;
  }

  /** Wants no rule any more (what another identity still wants stays) and waits for one sync. */
  async remove(): Promise<void> {
    this.#p.keeper.want(this.#p.owner, []);
    await this.#claimLeftovers();
    await this.#p.sync();
  }

  /** Rule operations failed (the host retries every second). */
  failed(failures: readonly RuleFailure[]): void {
    for (const { rule, action, error } of failures) {
      const key = `${action} ${ruleKey(rule)}`;
      // The first failure is an error; the retries every second are debug noise.
      const level = this.#loggedErrors.has(key) ? "debug" : "error";
      this.#loggedErrors.add(key);
      this.#p.log.log(level, `cannot ${action} rule, retrying every second`, {
        ...this.#p.fields(),
        rule: describeRule(rule),
        reason: error.message,
      });
    }
    this.#pending = true;
  }

  /** After a sync: true once, when rules that had failed are all in. */
  recovered(): boolean {
    if (!this.#pending || !this.#p.keeper.settled(this.#p.owner)) return false;
    this.#pending = false;
    this.#loggedErrors.clear();
    return true;
  }

  /** One of the rules disappeared (deleted by hand, by another program); the keeper puts it back. */
  gone(rule: Rule, how: string): void {
    this.#p.warnings.warn("rule-gone", "kernel", `a rule of this lease ${how}; putting it back`, {
      ...this.#p.fields(),
      rule: describeRule(rule),
    });
  }

  /**
   * Once per holding: the rules of this address that an earlier holder left
   * (one killed before it could clean up) go too, once ours are in.
   */
  async #claimLeftovers(): Promise<void> {
    if (this.#leftoversClaimed || !this.apply) return;
    const { keeper, owner, spec, address, log } = this.#p;
    try {
      for (const rule of await keeper.claimLeftovers(owner, spec.identity.family, address!)) {
        log.log("warn", "deleting a rule left by an earlier client", {
          ...this.#p.fields(),
          rule: describeRule(rule),
        });
      }
      this.#leftoversClaimed = true;
    } catch (error) {
      // Tried again with the next table change; the wanted rules go in regardless.
      log.log("warn", "cannot list the routing rules", {
        ...this.#p.fields(),
        reason: errorMessage(error),
      });
    }
  }
}
