/**
 * The core that holds identities, shared by the host agent (any number of
 * them) and the foreground client `-f` (one): one event loop over one
 * poll(2) on every identity's socket, one netlink socket for link,
 * address and rule notifications of both families, any extra descriptor
 * the host adds (the agent's own socket), and the timers of every
 * holding. Nothing in the loop waits for a server, a caller or the
 * kernel: rule changes run as their own task (one at a time) and wake the
 * loop when they are done.
 *
 * Rules are kept, not only installed: a rule of a live lease that is
 * deleted (a notification, or missing from the dump made every 30 s and
 * after lost notifications) is put back.
 *
 * @module
 */

import { Errno, ErrnoError, ifNameToIndex } from "../../ffi/libc.ts";
import type { Logger } from "../log/logger.ts";
import { AddrFamily } from "../net/family.ts";
import { NetlinkSocket } from "../netlink/connection.ts";
import { groupMask, type Message, MsgType, RtnlGroup } from "../netlink/message.ts";
import { decodeLinkEvent } from "../netlink/link.ts";
import { decodeRule } from "../netlink/rule.ts";
import { includesAddress, type InterfaceAddress, listAddresses } from "./addresses.ts";
import { Holding, type HoldingHost } from "./holding.ts";
import { isDeparture } from "./lease.ts";
import { Poller } from "./poller.ts";
import type { HoldSpec } from "./protocol.ts";
import { RuleKeeper } from "./rules.ts";
import type { Sinks } from "./sinks.ts";
import { errorMessage } from "../util/errors.ts";

/** Interval of retries for rules the kernel refused. */
export const RULE_RETRY_MS = 1000;
/** Interval of the check of every rule against a dump of the kernel's rules. */
export const RULE_CHECK_MS = 30_000;
/** Delay before putting back a rule deleted behind our back (coalesces a burst). */
const RULE_READD_MS = 100;

/** Notification groups of the one event socket: links, addresses and rules, both families. */
export const EVENT_GROUPS = groupMask([
  RtnlGroup.LINK,
  RtnlGroup.IPV4_IFADDR,
  RtnlGroup.IPV6_IFADDR,
  RtnlGroup.IPV4_RULE,
  RtnlGroup.IPV6_RULE,
]);

/** How the host hears about the held set. */
export interface CoreOptions {
  /** The process's own log (the agent's, or the foreground client's). */
  log: Logger;
  sinks: Sinks;
  /** The held leases changed (the agent writes its state file). */
  persist?: (holdings: Holding[]) => void;
  /** A holding ended (the foreground client exits then). */
  onEnded?: (holding: Holding) => void;
}

/** The event loop and the shared parts of every holding. */
export class HoldingCore implements HoldingHost, Disposable {
  /** Every holding's rules, counted by owner. */
  readonly rules: RuleKeeper;
  #options: CoreOptions;
  #events: NetlinkSocket;
  #poller = new Poller();
  #holdings = new Map<string, Holding>();
  /** Interface index -> its holdings: a link or address event looks only at those. */
  #byIfindex = new Map<number, Set<Holding>>();
  #watched = new Map<number, () => void>();
  #stopped = false;
  #ruleSyncAt = Infinity;
  #ruleCheckAt = performance.now() + RULE_CHECK_MS;
  #checking = false;

  private constructor(options: CoreOptions, events: NetlinkSocket, rules: RuleKeeper) {
    this.#options = options;
    this.#events = events;
    this.rules = rules;
  }

  /** Opens the event socket and the request socket of the rules. */
  static open(options: CoreOptions): HoldingCore {
    const events = NetlinkSocket.open(EVENT_GROUPS);
    try {
      return new HoldingCore(options, events, new RuleKeeper(NetlinkSocket.open()));
    } catch (error) {
      events.close();
      throw error;
    }
  }

  /** The holding of an identity name, if any. */
  get(name: string): Holding | undefined {
    return this.#holdings.get(name);
  }

  /** Every holding, in the order they started. */
  get holdings(): Holding[] {
    return [...this.#holdings.values()];
  }

  /**
   * Binds the identity's name and starts holding it (the caller then
   * calls `acquire()` or `adopt()`). Throws an {@link ErrnoError}
   * EADDRINUSE when another process holds the name, and an Error when the
   * identity's log file cannot be opened.
   */
  add(spec: HoldSpec, ifindex: number): Holding {
    const log = this.#options.sinks.open(spec);
    let holding;
    try {
      holding = new Holding(spec, ifindex, this, log);
    } catch (error) {
      log.close();
      throw error;
    }
    this.#holdings.set(holding.name, holding);
    const onLink = this.#byIfindex.get(ifindex) ?? new Set<Holding>();
    this.#byIfindex.set(ifindex, onLink.add(holding));
    this.#watched.set(holding.socket.fd, () => holding.onReadable());
    this.wake();
    return holding;
  }

  /** Adds a descriptor to the loop's poll; `onReadable` runs when it is readable. */
  watch(fd: number, onReadable: () => void): void {
    this.#watched.set(fd, onReadable);
    this.wake();
  }

  /** {@inheritDoc HoldingHost.syncRules} */
  async syncRules(): Promise<void> {
    const failures = await this.rules.sync();
    for (const failure of failures) {
      for (const owner of failure.owners) this.#holdings.get(owner)?.ruleFailures([failure]);
    }
    if (failures.length > 0) {
      this.#ruleSyncAt = Math.min(this.#ruleSyncAt, performance.now() + RULE_RETRY_MS);
    }
    for (const holding of this.#holdings.values()) holding.rulesSynced();
    this.wake();
  }

  /** {@inheritDoc HoldingHost.persist} */
  persist(): void {
    this.#options.persist?.(this.holdings);
  }

  /** {@inheritDoc HoldingHost.ended} */
  ended(holding: Holding): void {
    if (this.#holdings.get(holding.name) !== holding) return;
    this.#holdings.delete(holding.name);
    const onLink = this.#byIfindex.get(holding.ifindex);
    onLink?.delete(holding);
    if (onLink?.size === 0) this.#byIfindex.delete(holding.ifindex);
    this.#watched.delete(holding.socket.fd);
    holding.close();
    this.#options.onEnded?.(holding);
    this.wake();
  }

  /** {@inheritDoc HoldingHost.wake} */
  wake(): void {
    this.#poller.wake();
  }

  /** Makes {@link run} return at its next turn. */
  stop(): void {
    this.#stopped = true;
    this.wake();
  }

  /**
   * Ends every holding (rules out, release, acknowledgement) while the
   * loop keeps running; resolves when all have ended.
   */
  async releaseAll(reason: string): Promise<void> {
    await Promise.all(this.holdings.map((holding) => holding.release(reason)));
  }

  /** The event loop; returns after {@link stop}. */
  async run(): Promise<void> {
    while (!this.#stopped) {
      const now = performance.now();
      let deadline = Math.min(this.#ruleSyncAt, this.#ruleCheckAt);
      for (const holding of this.holdings) {
        if (holding.deadline() <= now) holding.onTimer(now);
        deadline = Math.min(deadline, holding.deadline());
      }
      if (now >= this.#ruleSyncAt) {
        this.#ruleSyncAt = Infinity;
        void this.syncRules();
      }
      if (now >= this.#ruleCheckAt) {
        this.#ruleCheckAt = now + RULE_CHECK_MS;
        void this.checkRules();
      }
      const ready = await this.#poller.wait(
        [this.#events.fd, ...this.#watched.keys()],
        deadline - performance.now(),
      );
      if (ready.has(this.#events.fd)) this.#readEvents();
      for (const fd of ready) this.#dispatch(fd);
    }
  }

  /**
   * Runs the handler of a readable descriptor. A handler that throws is a
   * bug or a failure of that one socket: it is logged, and the loop goes on
   * holding every other identity.
   */
  #dispatch(fd: number): void {
    try {
      this.#watched.get(fd)?.();
    } catch (error) {
      this.#options.log.error("a socket's handler failed; the agent goes on", {
        fd,
        reason: errorMessage(error),
      });
    }
  }

  /**
   * Compares every wanted rule with a dump of the kernel's rules and puts
   * back the missing ones (every 30 s, and after lost notifications).
   */
  async checkRules(): Promise<void> {
    if (this.#checking || this.rules.size === 0) return;
    this.#checking = true;
    try {
      let missing = 0;
      for (const family of [AddrFamily.INET, AddrFamily.INET6]) {
        const gone = this.rules.verify(family, await this.rules.dump(family));
        for (const { rule, owners } of gone) {
          for (const owner of owners) {
            this.#holdings.get(owner)?.ruleGone(rule, "is missing from the kernel's rules");
          }
        }
        missing += gone.length;
      }
      if (missing > 0) await this.syncRules();
    } catch (error) {
      this.#options.log.warn("cannot check the routing rules", {
        reason: errorMessage(error),
      });
    } finally {
      this.#checking = false;
    }
  }

  /** Reads and dispatches every waiting notification. */
  #readEvents(): void {
    let messages: Message[];
    try {
      messages = this.#events.receive();
    } catch (error) {
      // Notifications were dropped (ENOBUFS) or could not be read, and cannot
      // be replayed: ask the kernel for the state they would have told.
      const lost = error instanceof ErrnoError && error.errno === Errno.ENOBUFS;
      this.#options.log.warn(
        `${
          lost ? "netlink notifications were lost" : "cannot read netlink notifications"
        }; checking the interfaces, addresses and rules`,
        { reason: errorMessage(error) },
      );
      this.rules.forgetKernel();
      void this.#resynchronise();
      return;
    }
    let rulesGone = false;
    for (const message of messages) {
      if (message.type === MsgType.RTM_NEWRULE) {
        const rule = decodeRule(message);
        if (rule) this.rules.noteAdded(rule);
        continue;
      }
      if (message.type === MsgType.RTM_DELRULE) {
        const rule = decodeRule(message);
        if (!rule) continue;
        for (const owner of this.rules.noteDeleted(rule)) {
          this.#holdings.get(owner)?.ruleGone(rule, "was deleted");
          rulesGone = true;
        }
        continue;
      }
      const event = decodeLinkEvent(message);
      if (!event || event.kind === "address-added") continue;
      for (const holding of [...this.#byIfindex.get(event.index) ?? []]) {
        if (event.kind === "link-changed") {
          if (event.name !== undefined) holding.renamed(event.name);
          continue;
        }
        const { family, ifname, address } = holding.spec.identity;
        if (!isDeparture(event, { ifindex: holding.ifindex, family, address: holding.address })) {
          continue;
        }
        holding.depart(
          event.kind === "link-deleted"
            ? `interface ${ifname} was deleted`
            : `address ${address} was deleted from ${ifname}`,
        );
      }
    }
    if (rulesGone) {
      this.#ruleSyncAt = Math.min(this.#ruleSyncAt, performance.now() + RULE_READD_MS);
    }
  }

  /** After ENOBUFS: links, addresses and rules as the kernel has them now. */
  async #resynchronise(): Promise<void> {
    const lists = new Map<number, InterfaceAddress[]>();
    for (const holding of this.holdings) {
      const { family, ifname, address } = holding.spec.identity;
      if (ifNameToIndex(ifname) !== holding.ifindex) {
        holding.depart(`interface ${ifname} is gone`);
        continue;
      }
      if (family === AddrFamily.UNSPEC || !holding.address) continue;
      try {
        if (!lists.has(family)) lists.set(family, await listAddresses(family));
        if (!includesAddress(lists.get(family)!, holding.ifindex, holding.address)) {
          holding.depart(`address ${address} is gone from ${ifname}`);
        }
      } catch (error) {
        holding.log.log("warn", "cannot list the addresses; keeping the lease", {
          ...holding.fields,
          reason: errorMessage(error),
        });
      }
    }
    await this.checkRules();
  }

  /** Closes the sockets and the poller; the rules stay as they are. */
  [Symbol.dispose](): void {
    for (const holding of this.holdings) holding.close();
    this.#holdings.clear();
    this.#byIfindex.clear();
    this.#events.close();
    this.rules[Symbol.dispose]();
    this.#poller.close();
  }
}
