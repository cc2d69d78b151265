/**
 * The client's life with one lease identity, as one event loop over a
 * single poll(2): its own abstract socket (server replies, and questions
 * from other clients for the same identity), netlink notifications, timers
 * and a wake-up for signals.
 *
 * - {@link ClientSession.acquire}: request, retransmit every 2 s, give up
 *   after 5 unanswered tries.
 * - {@link ClientSession.hold}: install the rules, refresh at half the
 *   remaining lease, follow a table change, keep everything while the
 *   server is unreachable, and end (rules deleted, lease released) when
 *   the address or link goes away, on a signal, or on `-r`.
 *
 * @module
 */

import { clockSeconds, ErrnoError, ifNameToIndex } from "../../ffi/libc.ts";
import type { Logger } from "../log/logger.ts";
import { AddrFamily } from "../net/family.ts";
import type { NetlinkSocket } from "../netlink/connection.ts";
import { decodeLinkEvent, type LinkEvent } from "../netlink/link.ts";
import {
  Command,
  decodeReply,
  decodeRequest,
  encodeReply,
  encodeRequest,
  type Identity,
  ProtocolError,
  type Reply,
} from "../protocol/v1.ts";
import {
  type AbstractDatagramSocket,
  type Datagram,
  paddedAbstractAddress,
} from "../unix/abstract_socket.ts";
import { hasAddress } from "./addresses.ts";
import { type ClientOptions, identityName } from "./options.ts";
import type { Poller } from "./poller.ts";
import { describeRule, leaseRules, type RuleFailure, type RuleKeeper } from "./rules.ts";

/** Retransmission interval of requests, as in the original. */
export const RETRANSMIT_MS = 2000;
/** Unanswered requests before the client prints 0. */
export const MAX_TRIES = 5;
/** Interval of retries for rules the kernel refused. */
export const RULE_RETRY_MS = 1000;
/** How long a release waits for the server's acknowledgement. */
export const RELEASE_WAIT_MS = 1000;

/** A lease as the server granted it. */
export interface Lease {
  table: number;
  /** Absolute seconds on this host's CLOCK_MONOTONIC_RAW. */
  leaseExpires: number;
}

/** How {@link ClientSession.acquire} ended. */
export type AcquireResult =
  | { kind: "lease"; lease: Lease }
  | { kind: "none"; reason: string }
  | { kind: "error"; code: string; message: string }
  | { kind: "stopped"; reason: string };

/**
 * Milliseconds until the refresh of a lease: half the remaining time, as
 * the original, but at least one second so that a lease already (nearly)
 * expired does not make the client spin.
 */
export function refreshDelayMs(leaseExpires: number, nowSeconds: number): number {
  const remaining = leaseExpires - nowSeconds;
  return Math.min(Math.max(1000, (remaining / 2) * 1000), 2 ** 31 - 1);
}

/** Whether a netlink notification means this identity's address or link is gone. */
export function isDeparture(
  event: LinkEvent,
  watch: { ifindex: number; family: number; address: Uint8Array | null },
): boolean {
  if (event.kind === "link-deleted") return event.index === watch.ifindex;
  if (event.kind !== "address-deleted" || watch.address === null) return false;
  return event.index === watch.ifindex && event.family === watch.family &&
    event.address.byteLength === watch.address.byteLength &&
    event.address.every((b, i) => b === watch.address![i]);
}

const sameBytes = (a: Uint8Array, b: Uint8Array) =>
  a.byteLength === b.byteLength && a.every((x, i) => x === b[i]);

/** Everything a session works with; the caller opens and closes it. */
export interface SessionParts {
  options: ClientOptions;
  ifindex: number;
  logger: Logger;
  /** Bound to the identity name, with SO_PASSCRED. */
  socket: AbstractDatagramSocket;
  /** Subscribed to link and address notifications. */
  events: NetlinkSocket;
  /** Rule upkeep; null for family 0, which manages no rules. */
  rules: RuleKeeper | null;
  poller: Poller;
}

/** One identity's request, lease and rules. */
export class ClientSession {
  #p: SessionParts;
  #identity: Identity;
  #name: string;
  #server: Uint8Array<ArrayBuffer>;
  #lease: Lease | null = null;
  #stopReason: string | null = null;
  #releaseRequester: Uint8Array<ArrayBuffer> | null = null;
  #leftoversClaimed = false;

  /** A session over opened parts. */
  constructor(parts: SessionParts) {
    this.#p = parts;
    const { family, ifname, address } = parts.options;
    this.#identity = { family, ifname, address };
    this.#name = identityName(parts.options);
    this.#server = paddedAbstractAddress(parts.options.destination);
  }

  /** Log fields naming this identity (and its table, when there is one). */
  get fields(): { identity: string; table?: number } {
    return this.#lease
      ? { identity: this.#name, table: this.#lease.table }
      : { identity: this.#name };
  }

  /** Ends the session at the next turn of its loop (signal handlers call this). */
  stop(reason: string): void {
    this.#stopReason ??= reason;
    this.#p.poller.wake();
  }

  /**
   * Requests a lease: sends at once and every 2 s, and gives up after
   * {@link MAX_TRIES} unanswered tries. An error reply ends it at once.
   */
  async acquire(): Promise<AcquireResult> {
    let tries = 0;
    let nextSend = performance.now();
    for (;;) {
      if (this.#stopReason !== null) return { kind: "stopped", reason: this.#stopReason };
      const now = performance.now();
      if (now >= nextSend) {
        if (tries === MAX_TRIES) {
          return {
            kind: "none",
            reason: `no answer from @${this.#p.options.destination} after ${MAX_TRIES} tries`,
          };
        }
        tries++;
        this.#sendToServer(Command.REQUEST, tries === 1);
        nextSend = now + RETRANSMIT_MS;
      }
      await this.#wait(nextSend);
      const departure = await this.#readEvents();
      if (departure) return { kind: "none", reason: departure };
      for (const reply of this.#readDatagrams()) {
        if (reply.kind === "error") return reply;
        if (reply.table > 0) {
          return { kind: "lease", lease: { table: reply.table, leaseExpires: reply.leaseExpires } };
        }
      }
    }
  }

  /**
   * Holds a lease until the address or link goes away, a signal, or a
   * release request: installs the rules, calls `onReady` (the hand-over
   * to the background waits for it), refreshes, and on the way out deletes
   * the rules and releases the lease. Resolves with the exit status.
   */
  async hold(lease: Lease, onReady?: () => void): Promise<number> {
    const { logger } = this.#p;
    this.#lease = lease;
    logger.info("holding lease", {
      ...this.fields,
      expires_in: Math.round(lease.leaseExpires - clockSeconds()),
    });
    let ruleRetryAt = await this.#syncRules(Infinity);
    onReady?.();
    let refreshAt = performance.now() + refreshDelayMs(lease.leaseExpires, clockSeconds());
    let unanswered = 0;
    while (this.#stopReason === null) {
      const now = performance.now();
      if (now >= ruleRetryAt) ruleRetryAt = await this.#syncRules(ruleRetryAt);
      if (now >= refreshAt) {
        if (unanswered === 1) {
          logger.warn("no answer from the server: keeping the rules, retrying every 2 s", {
            ...this.fields,
            server: this.#p.options.destination,
          });
        }
        unanswered++;
        this.#sendToServer(Command.REQUEST, unanswered === 1);
        refreshAt = now + RETRANSMIT_MS;
      }
      await this.#wait(Math.min(refreshAt, ruleRetryAt));
      const departure = await this.#readEvents();
      if (departure) {
        this.stop(departure);
        break;
      }
      for (const reply of this.#readDatagrams()) {
        if (reply.kind === "error") {
          logger.warn("the server refused the refresh: keeping the rules, retrying every 2 s", {
            ...this.fields,
            error: reply.code,
            reason: reply.message,
          });
          continue;
        }
        if (reply.table === 0) continue;
        if (unanswered > 1) logger.info("the server answers again", this.fields);
        unanswered = 0;
        const previous = this.#lease!.table;
        this.#lease = { table: reply.table, leaseExpires: reply.leaseExpires };
        if (reply.table !== previous) {
          logger.warn("the server moved the lease to another table: moving the rules", {
            identity: this.#name,
            table: reply.table,
            previous_table: previous,
          });
          ruleRetryAt = await this.#syncRules(Infinity);
        } else {
          logger.debug("lease refreshed", {
            ...this.fields,
            expires_in: Math.round(reply.leaseExpires - clockSeconds()),
          });
        }
        refreshAt = performance.now() + refreshDelayMs(reply.leaseExpires, clockSeconds());
      }
    }
    return await this.#shutdown();
  }

  /** Deletes the rules, releases the lease, answers a `-r` that asked for it. */
  async #shutdown(): Promise<number> {
    const { logger, rules } = this.#p;
    logger.info("stopping", { ...this.fields, reason: this.#stopReason ?? undefined });
    if (rules) this.#logRuleFailures(await rules.removeAll(), "error");
    const released = await this.#release();
    if (released) logger.info("lease released", this.fields);
    else {
      logger.warn(`the server did not acknowledge the release within ${RELEASE_WAIT_MS} ms`, {
        ...this.fields,
        server: this.#p.options.destination,
      });
    }
    if (this.#releaseRequester) {
      const answer = released ? encodeReply(0, 0) : new TextEncoder().encode(JSON.stringify({
        version: 1,
        cmd: Command.ERROR,
        error: "release_unacknowledged",
        message: "the server did not acknowledge the release",
      }));
      this.#trySend(answer, this.#releaseRequester);
    }
    this.#lease = null;
    return 0;
  }

  /** Sends a release and waits up to {@link RELEASE_WAIT_MS} for the acknowledgement. */
  async #release(): Promise<boolean> {
    this.#sendToServer(Command.RELEASE, true);
    const deadline = performance.now() + RELEASE_WAIT_MS;
    while (performance.now() < deadline) {
      await this.#wait(deadline);
      // Identity sockets only receive; events after the stop do not matter.
      for (const reply of this.#readDatagrams()) {
        if (reply.kind === "lease" && reply.table === 0) return true;
        if (reply.kind === "error") {
          this.#p.logger.warn("the server refused the release", {
            ...this.fields,
            error: reply.code,
            reason: reply.message,
          });
          return false;
        }
      }
    }
    return false;
  }

  /** Adds missing rules; returns when to retry (Infinity when all are in). */
  async #syncRules(previousRetry: number): Promise<number> {
    const { rules, options } = this.#p;
    if (!rules || !this.#lease || options.addressBytes === null || options.prefix === null) {
      return Infinity;
    }
    rules.want(leaseRules(options.family, options.addressBytes, options.prefix, this.#lease.table));
    if (!this.#leftoversClaimed) {
      await this.#claimLeftovers(rules, options.family, options.addressBytes);
    }
    const failures = await rules.sync();
    if (failures.length === 0) {
      if (previousRetry !== Infinity) {
        this.#p.logger.info("rules installed after retries", this.fields);
      } else this.#p.logger.info("rules installed", this.fields);
      return Infinity;
    }
    // The first failure is an error; the retries every second are debug noise.
    this.#logRuleFailures(failures, previousRetry === Infinity ? "error" : "debug");
    return performance.now() + RULE_RETRY_MS;
  }

  /** Once per session: rules of this address that a killed client left behind go too. */
  async #claimLeftovers(rules: RuleKeeper, family: number, address: Uint8Array): Promise<void> {
    try {
      const leftovers = await rules.claimLeftovers(family, address);
      this.#leftoversClaimed = true;
      for (const rule of leftovers) {
        this.#p.logger.warn("deleting a rule left by an earlier client", {
          ...this.fields,
          rule: describeRule(rule),
        });
      }
    } catch (error) {
      // Retried with the rules; the wanted rules go in regardless.
      this.#p.logger.warn("cannot list the routing rules", {
        ...this.fields,
        reason: (error as Error).message,
      });
    }
  }

  #logRuleFailures(failures: RuleFailure[], level: "error" | "debug"): void {
    for (const { rule, action, error } of failures) {
      this.#p.logger.log(level, `cannot ${action} rule, retrying every second`, {
        ...this.fields,
        rule: describeRule(rule),
        reason: error.message,
      });
    }
  }

  async #wait(deadline: number): Promise<void> {
    if (this.#stopReason !== null) return;
    await this.#p.poller.wait(
      [this.#p.socket.fd, this.#p.events.fd],
      Math.max(0, deadline - performance.now()),
    );
  }

  #sendToServer(cmd: typeof Command.REQUEST | typeof Command.RELEASE, logIt: boolean): void {
    const data = encodeRequest({ cmd, identity: this.#identity, tag: this.#p.options.tag });
    const what = cmd === Command.REQUEST ? "request" : "release";
    try {
      if (!this.#p.socket.send(data, this.#server)) {
        if (logIt) this.#p.logger.warn(`${what} not sent: the server's queue is full`, this.fields);
        return;
      }
      this.#p.logger.debug(`${what} sent`, { ...this.fields, server: this.#p.options.destination });
    } catch (error) {
      // ECONNREFUSED: nobody is bound to the server name (yet); the timer retries.
      if (logIt) {
        this.#p.logger.warn(`${what} not sent`, {
          ...this.fields,
          server: this.#p.options.destination,
          reason: error instanceof ErrnoError ? error.code : (error as Error).message,
        });
      }
    }
  }

  #trySend(data: Uint8Array<ArrayBuffer>, to: Uint8Array<ArrayBuffer>): void {
    try {
      this.#p.socket.send(data, to);
    } catch {
      // The asking process is gone: nothing to tell.
    }
  }

  /** Returns why the session must end, if a notification says so. */
  async #readEvents(): Promise<string | null> {
    const { events, ifindex, options, logger } = this.#p;
    let messages;
    try {
      messages = events.receive();
    } catch (error) {
      // ENOBUFS: notifications were dropped and cannot be replayed, so ask
      // the kernel for the state they would have told: the link, the address.
      logger.warn("netlink notifications were lost; checking the interface and address", {
        ...this.fields,
        reason: (error as Error).message,
      });
      if (ifNameToIndex(options.ifname) !== ifindex) return `interface ${options.ifname} is gone`;
      if (options.family === AddrFamily.UNSPEC || options.addressBytes === null) return null;
      try {
        if (!await hasAddress(options.family, ifindex, options.addressBytes)) {
          return `address ${options.address} is gone from ${options.ifname}`;
        }
      } catch (checkError) {
        logger.warn("cannot list the addresses; keeping the lease", {
          ...this.fields,
          reason: (checkError as Error).message,
        });
      }
      return null;
    }
    const watch = {
      ifindex,
      family: options.family,
      address: options.family === AddrFamily.UNSPEC ? null : options.addressBytes,
    };
    for (const message of messages) {
      const event = decodeLinkEvent(message);
      if (!event) continue;
      if (isDeparture(event, watch)) {
        return event.kind === "link-deleted"
          ? `interface ${options.ifname} was deleted`
          : `address ${options.address} was deleted from ${options.ifname}`;
      }
      if (
        event.kind === "link-changed" && event.index === ifindex && event.name !== undefined &&
        event.name !== options.ifname
      ) {
        logger.warn("the interface was renamed; the lease keeps its name", {
          ...this.fields,
          new_name: event.name,
        });
      }
    }
    return null;
  }

  /**
   * Reads every waiting datagram: server replies are returned; questions
   * from other clients for this identity are answered here.
   */
  #readDatagrams(): Reply[] {
    const replies: Reply[] = [];
    for (let dg = this.#p.socket.receive(); dg !== null; dg = this.#p.socket.receive()) {
      if (sameBytes(dg.sender, this.#server)) {
        try {
          replies.push(decodeReply(dg.data));
        } catch (error) {
          this.#p.logger.warn("ignoring a malformed reply", {
            ...this.fields,
            reason: (error as Error).message,
          });
        }
      } else {
        this.#answerPeer(dg);
      }
    }
    return replies;
  }

  /**
   * Another client for the same identity asks for the table (a second
   * start: `cmd` 0) or for the end of this one (`-r`: `cmd` 1, accepted
   * from root or this process's user only, by kernel-checked credentials).
   */
  #answerPeer(dg: Datagram): void {
    const { logger } = this.#p;
    if (dg.sender.byteLength <= 2) return; // unbound sender: no way to answer
    let request;
    try {
      request = decodeRequest(dg.data, dg.length);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      logger.debug("ignoring a malformed datagram", { ...this.fields, reason: error.message });
      return;
    }
    const id = request.identity;
    if (
      id.family !== this.#identity.family || id.ifname !== this.#identity.ifname ||
      id.address !== this.#identity.address
    ) {
      logger.debug("ignoring a question about another identity", this.fields);
      return;
    }
    if (request.cmd === Command.REQUEST) {
      logger.info("another client asked for the table", {
        ...this.fields,
        pid: dg.credentials?.pid,
      });
      const lease = this.#lease;
      this.#trySend(encodeReply(lease?.table ?? 0, lease?.leaseExpires ?? 0), dg.sender);
      return;
    }
    const uid = dg.credentials?.uid;
    if (uid === undefined || (uid !== 0 && uid !== Deno.uid())) {
      logger.warn("refusing a release request from another user", { ...this.fields, uid });
      this.#trySend(
        new TextEncoder().encode(JSON.stringify({
          version: 1,
          cmd: Command.ERROR,
          error: "not_permitted",
          message: `uid ${uid} may not release a lease of uid ${Deno.uid()}`,
        })),
        dg.sender,
      );
      return;
    }
    this.#releaseRequester = dg.sender;
    this.stop(`release requested by pid ${dg.credentials?.pid}`);
  }

  /** Whether a stop was requested, and why. */
  get stopReason(): string | null {
    return this.#stopReason;
  }

  /** The address of the client that asked for a release during acquire, if any. */
  get releaseRequester(): Uint8Array<ArrayBuffer> | null {
    return this.#releaseRequester;
  }

  /** Answers a `-r` that arrived before there was a lease: nothing to release. */
  acknowledgeReleaseWithoutLease(): void {
    if (this.#releaseRequester) this.#trySend(encodeReply(0, 0), this.#releaseRequester);
  }
}
