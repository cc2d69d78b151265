/**
 * One identity held by a process (the agent, or a foreground client): its
 * own socket, bound to the padded `<ifname>-<address>-<family>`, from
 * which it talks to that identity's server, exactly as the C client does,
 * and the life of its lease:
 *
 * - acquiring: a request at once and every 2 s; after 5 unanswered tries
 *   no lease; an error reply ends it at once;
 * - held: the three rules in, a refresh at half the remaining lease, the
 *   rules moved when the table changes and kept while the server is away;
 * - releasing: rules out (reference counts respected), a release, up to
 *   1 s for the acknowledgement; then the name is unbound.
 *
 * A reply counts only from the server's name and a trusted uid, and never
 * for a kernel table. The holding is driven by its host's event loop
 * ({@link HoldingHost}): timers through {@link Holding.deadline}, datagrams
 * through {@link Holding.onReadable}; it never blocks.
 *
 * @module
 */

import { clockSeconds, ErrnoError } from "../../ffi/libc.ts";
import { parseIP } from "../net/ip.ts";
import { AddrFamily } from "../net/family.ts";
import type { LinkEvent } from "../netlink/link.ts";
import type { Rule } from "../netlink/rule.ts";
import {
  Command,
  decodeReply,
  decodeRequest,
  encodeReply,
  encodeRequest,
  identityName,
  isLeasableTable,
  type Notice,
  ProtocolError,
} from "../protocol/v1.ts";
import {
  AbstractDatagramSocket,
  type Datagram,
  paddedAbstractAddress,
} from "../unix/abstract_socket.ts";
import type { HeldIdentity, HoldSpec } from "./protocol.ts";
import { describeRule, leaseRules, type RuleFailure, type RuleKeeper, ruleKey } from "./rules.ts";
import type { IdentityLog } from "./sinks.ts";
import { trustedServerUids } from "./trust.ts";
import { sameBytes } from "../util/bytes.ts";
import { errorMessage } from "../util/errors.ts";

/** Retransmission interval of requests, as in the original. */
export const RETRANSMIT_MS = 2000;
/** Unanswered requests before there is no lease. */
export const MAX_TRIES = 5;
/** How long a release waits for the server's acknowledgement. */
export const RELEASE_WAIT_MS = 1000;
/**
 * A send that found the server's queue full (net.unix.max_dgram_qlen, 10
 * by default: many identities refresh at once after a restart) is tried
 * again this soon, and does not count as a try.
 */
export const QUEUE_FULL_RETRY_MS = 20;
/** At most one line per kind of repeated warning and identity in this time. */
export const WARNING_INTERVAL_MS = 10_000;

/** A lease as the server granted it. */
export interface Lease {
  table: number;
  /** Absolute seconds on this host's CLOCK_MONOTONIC_RAW. */
  leaseExpires: number;
}

/** How an acquisition ended, for whoever waits for it. */
export type HoldOutcome =
  | { kind: "lease"; table: number }
  | { kind: "none"; reason: string }
  | { kind: "refused"; error: string; message: string };

/** What a holding needs from the process that drives it. */
export interface HoldingHost {
  readonly rules: RuleKeeper;
  /** Runs a rule sync (its failures come back through {@link Holding.ruleFailures}). */
  syncRules(): Promise<void>;
  /** The set of held leases changed (the agent writes its state file). */
  persist(): void;
  /** The holding has ended: forget it and close its socket. */
  ended(holding: Holding): void;
  /** A deadline changed outside the event loop: recompute the next wake-up. */
  wake(): void;
}

/**
 * Milliseconds until the refresh of a lease: half the remaining time, as
 * the original, but at least one second so that a lease already (nearly)
 * expired does not make the holder spin.
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
    sameBytes(event.address, watch.address);
}

const encoder = new TextEncoder();

/** One identity's socket, lease and rules. */
export class Holding {
  /** What the client asked for. */
  readonly spec: HoldSpec;
  /** `<ifname>-<address>-<family>`: the bound name and the rules' owner. */
  readonly name: string;
  /** The interface's index when the holding started. */
  readonly ifindex: number;
  /** The address bytes (null for family 0). */
  readonly address: Uint8Array | null;
  /** Bound to {@link name}, with SO_PASSCRED. */
  readonly socket: AbstractDatagramSocket;
  #host: HoldingHost;
  #log: IdentityLog;
  #server: Uint8Array<ArrayBuffer>;
  #trusted: Set<number>;
  #state: HeldIdentity["state"] | "ended" = "acquiring";
  #lease: Lease | null = null;
  #tries = 0;
  #sendAt = Infinity;
  #refreshAt = Infinity;
  #unanswered = 0;
  #releaseAt = Infinity;
  #releaseSendAt = Infinity;
  #releaseAck: ((acknowledged: boolean) => void) | null = null;
  #waiters = new Map<string, (outcome: HoldOutcome) => void>();
  #releaseWaiters: Array<(acknowledged: boolean) => void> = [];
  #peerReleases: Uint8Array<ArrayBuffer>[] = [];
  #granting = false;
  #leftoversClaimed = false;
  #rulesPending = false;
  #loggedRuleErrors = new Set<string>();
  #warned = new Map<string, { at: number; suppressed: number }>();

  private constructor(
    spec: HoldSpec,
    ifindex: number,
    socket: AbstractDatagramSocket,
    host: HoldingHost,
    log: IdentityLog,
  ) {
    this.spec = spec;
    this.name = identityName(spec.identity);
    this.ifindex = ifindex;
    this.address = spec.identity.family === AddrFamily.UNSPEC
      ? null
      : parseIP(spec.identity.family, spec.identity.address);
    this.socket = socket;
    this.#host = host;
    this.#log = log;
    this.#server = paddedAbstractAddress(spec.server);
    this.#trusted = trustedServerUids(spec.serverUids);
  }

  /**
   * Binds the identity's name and makes a holding of it. Throws an
   * {@link ErrnoError} EADDRINUSE when another process holds the name.
   */
  static open(spec: HoldSpec, ifindex: number, host: HoldingHost, log: IdentityLog): Holding {
    const socket = AbstractDatagramSocket.bind(identityName(spec.identity), {
      passCredentials: true,
    });
    return new Holding(spec, ifindex, socket, host, log);
  }

  /** acquiring, held, releasing or ended. */
  get state(): HeldIdentity["state"] | "ended" {
    return this.#state;
  }

  /** Whether the lease is held and its first rule sync is done: a second client gets it at once. */
  get answering(): boolean {
    return this.#state === "held" && !this.#granting;
  }

  /** The leased table, 0 while there is none. */
  get table(): number {
    return this.#lease?.table ?? 0;
  }

  /** Log fields naming this identity (and its table, when there is one). */
  get fields(): { identity: string; table?: number } {
    return this.#lease
      ? { identity: this.name, table: this.#lease.table }
      : { identity: this.name };
  }

  /** This identity's log (its own sink and the process's log). */
  get log(): IdentityLog {
    return this.#log;
  }

  /** The earliest time (performance.now() ms) at which {@link onTimer} has work. */
  deadline(): number {
    return Math.min(this.#sendAt, this.#refreshAt, this.#releaseAt, this.#releaseSendAt);
  }

  /** Starts asking for a lease: at once, then every 2 s. */
  acquire(): void {
    this.#log.log("info", "requesting a lease", { identity: this.name, server: this.spec.server });
    this.#sendAt = performance.now();
  }

  /**
   * Takes back a lease from the state file of an agent that crashed: the
   * rules are checked and the lease refreshed at once.
   */
  async adopt(table: number): Promise<void> {
    this.#state = "held";
    this.#lease = { table, leaseExpires: clockSeconds() };
    this.#refreshAt = performance.now();
    this.#unanswered = 0;
    this.#log.log("info", "holding lease again after a restart of the agent", this.fields);
    await this.#installRules();
  }

  /**
   * Ends a lease from the state file of an agent that crashed whose
   * address is gone: the rules of the address are deleted from the kernel
   * and the lease released.
   */
  releaseRecovered(table: number, reason: string): Promise<boolean> {
    this.#state = "held";
    this.#lease = { table, leaseExpires: clockSeconds() };
    return this.release(reason);
  }

  /**
   * Registers someone waiting for the outcome of the acquisition, under
   * `key` (a client's address). False when that key already waits.
   */
  addWaiter(key: string, resolve: (outcome: HoldOutcome) => void): boolean {
    if (this.#waiters.has(key)) return false;
    this.#waiters.set(key, resolve);
    return true;
  }

  /** How many wait for the outcome of the acquisition. */
  get waiters(): number {
    return this.#waiters.size;
  }

  /** Forgets a waiter; when none is left while acquiring, the acquisition stops. */
  cancelWaiter(key: string): boolean {
    if (!this.#waiters.delete(key)) return false;
    if (this.#state === "acquiring" && this.#waiters.size === 0) {
      this.#end("stopped before a lease was granted", "every client waiting for it has gone");
    }
    return true;
  }

  /** Does what the timers say is due. */
  onTimer(now: number): void {
    if (now >= this.#sendAt && this.#state === "acquiring") {
      if (this.#tries === MAX_TRIES) {
        this.#noLease(`no answer from @${this.spec.server} after ${MAX_TRIES} tries`);
        return;
      }
      if (this.#send(Command.REQUEST, this.#tries === 0)) {
        this.#tries++;
        this.#sendAt = now + RETRANSMIT_MS;
      } else this.#sendAt = now + QUEUE_FULL_RETRY_MS;
    }
    if (now >= this.#refreshAt && this.#state === "held") {
      if (this.#unanswered === 1) {
        this.#log.log("warn", "no answer from the server: keeping the rules, retrying every 2 s", {
          ...this.fields,
          server: this.spec.server,
        });
      }
      if (this.#send(Command.REQUEST, this.#unanswered === 0)) {
        this.#unanswered++;
        this.#refreshAt = now + RETRANSMIT_MS;
      } else this.#refreshAt = now + QUEUE_FULL_RETRY_MS;
    }
    if (now >= this.#releaseSendAt) this.#sendRelease(now);
    if (now >= this.#releaseAt) this.#acknowledged(false);
  }

  /** Reads every datagram waiting on the identity's socket. */
  onReadable(): void {
    for (let dg = this.#receive(); dg !== null; dg = this.#receive()) {
      if (sameBytes(dg.sender, this.#server)) this.#fromServer(dg);
      else this.#answerPeer(dg);
    }
  }

  /** The address or the link is gone: no lease, or the lease ends. */
  depart(reason: string): void {
    if (this.#state === "acquiring") this.#noLease(reason);
    else if (this.#state === "held") void this.release(reason);
  }

  /** The interface got another name (the lease keeps its own). */
  renamed(newName: string): void {
    if (newName === this.spec.identity.ifname) return;
    this.#log.log("warn", "the interface was renamed; the lease keeps its name", {
      ...this.fields,
      new_name: newName,
    });
  }

  /**
   * Ends the holding: rules out, release, acknowledgement (or 1 s). Before
   * a lease, it just stops. Resolves with whether the server acknowledged
   * (true when there was nothing to release).
   */
  release(reason: string): Promise<boolean> {
    if (this.#state === "ended") return Promise.resolve(true);
    const done = new Promise<boolean>((resolve) => this.#releaseWaiters.push(resolve));
    if (this.#state === "acquiring") this.#end("stopped before a lease was granted", reason);
    else if (this.#state === "held") void this.#releaseLease(reason);
    return done;
  }

  /** Rule operations of this identity failed (the host retries every second). */
  ruleFailures(failures: readonly RuleFailure[]): void {
    for (const { rule, action, error } of failures) {
      const key = `${action} ${ruleKey(rule)}`;
      // The first failure is an error; the retries every second are debug noise.
      const level = this.#loggedRuleErrors.has(key) ? "debug" : "error";
      this.#loggedRuleErrors.add(key);
      this.#log.log(level, `cannot ${action} rule, retrying every second`, {
        ...this.fields,
        rule: describeRule(rule),
        reason: error.message,
      });
    }
    this.#rulesPending = true;
  }

  /** A sync ended: says so once the rules that had failed are in. */
  rulesSynced(): void {
    if (!this.#rulesPending || !this.#host.rules.settled(this.name)) return;
    this.#rulesPending = false;
    this.#loggedRuleErrors.clear();
    if (this.#state === "held") this.#log.log("info", "rules installed after retries", this.fields);
  }

  /** One of this lease's rules disappeared (deleted by hand, by another program). */
  ruleGone(rule: Rule, how: string): void {
    this.#warn("rule-gone", `a rule of this lease ${how}; putting it back`, {
      ...this.fields,
      rule: describeRule(rule),
    });
  }

  /** Logs a repeated warning at most once per {@link WARNING_INTERVAL_MS}, counting the rest. */
  #warn(kind: string, message: string, fields: Record<string, string | number | undefined>): void {
    const now = performance.now();
    const last = this.#warned.get(kind);
    if (last && now - last.at < WARNING_INTERVAL_MS) {
      last.suppressed++;
      return;
    }
    this.#log.log("warn", message, {
      ...fields,
      suppressed: last?.suppressed ? last.suppressed : undefined,
    });
    this.#warned.set(kind, { at: now, suppressed: 0 });
  }

  #receive(): Datagram | null {
    try {
      return this.socket.receive();
    } catch (error) {
      this.#log.log("warn", "cannot read the identity's socket", {
        ...this.fields,
        reason: errorMessage(error),
      });
      return null;
    }
  }

  /** A datagram from the server's name: believed only from a trusted uid. */
  #fromServer(dg: Datagram): void {
    const uid = dg.credentials?.uid;
    if (uid === undefined || !this.#trusted.has(uid)) {
      this.#warn(
        "untrusted",
        "ignoring a datagram from the server's name: its uid is not trusted",
        {
          ...this.fields,
          server: this.spec.server,
          uid,
          pid: dg.credentials?.pid,
          trusted: [...this.#trusted].join(","),
        },
      );
      return;
    }
    let reply;
    try {
      reply = decodeReply(dg.data);
    } catch (error) {
      this.#warn("malformed", "ignoring a malformed reply", {
        ...this.fields,
        reason: errorMessage(error),
      });
      return;
    }
    if (reply.kind === "notice") return this.#onNotice(reply.notice);
    if (this.#state === "releasing") {
      if (reply.kind === "lease" && reply.table === 0) this.#acknowledged(true);
      else if (reply.kind === "error") {
        this.#log.log("warn", "the server refused the release", {
          ...this.fields,
          error: reply.code,
          reason: reply.message,
        });
        this.#acknowledged(false);
      }
      return;
    }
    if (reply.kind === "error") {
      if (this.#state === "acquiring") {
        this.#log.log("error", "the server refused the lease", {
          ...this.fields,
          error: reply.code,
          reason: reply.message,
        });
        this.#finish({ kind: "refused", error: reply.code, message: reply.message });
      } else if (this.#state === "held") {
        this.#log.log(
          "warn",
          "the server refused the refresh: keeping the rules, retrying every 2 s",
          {
            ...this.fields,
            error: reply.code,
            reason: reply.message,
          },
        );
      }
      return;
    }
    // Table 0 means no lease: like silence, as the C client reads it.
    if (reply.table === 0) return;
    if (!isLeasableTable(reply.table)) {
      this.#warn("kernel-table", "not accepting a lease on a kernel table: treated as no lease", {
        ...this.fields,
        offered_table: reply.table,
      });
      return;
    }
    if (this.#state === "acquiring") void this.#granted(reply.table, reply.leaseExpires);
    else if (this.#state === "held") void this.#refreshed(reply.table, reply.leaseExpires);
  }

  async #granted(table: number, leaseExpires: number): Promise<void> {
    this.#state = "held";
    this.#granting = true;
    this.#sendAt = Infinity;
    this.#lease = { table, leaseExpires };
    this.#refreshAt = performance.now() + refreshDelayMs(leaseExpires, clockSeconds());
    this.#log.log("info", "lease granted", this.fields);
    this.#log.log("info", "holding lease", {
      ...this.fields,
      expires_in: Math.round(leaseExpires - clockSeconds()),
    });
    await this.#installRules();
    this.#granting = false;
    if (this.#state !== "held") {
      this.#finish({ kind: "none", reason: "the lease ended before its rules were in" });
      return;
    }
    this.#host.persist();
    this.#finish({ kind: "lease", table: this.#lease!.table });
  }

  async #refreshed(table: number, leaseExpires: number): Promise<void> {
    if (this.#unanswered > 1) this.#log.log("info", "the server answers again", this.fields);
    this.#unanswered = 0;
    const previous = this.#lease!.table;
    this.#lease = { table, leaseExpires };
    this.#refreshAt = performance.now() + refreshDelayMs(leaseExpires, clockSeconds());
    if (table === previous) {
      this.#log.log("debug", "lease refreshed", {
        ...this.fields,
        expires_in: Math.round(leaseExpires - clockSeconds()),
      });
      return;
    }
    this.#log.log("warn", "the server moved the lease to another table: moving the rules", {
      identity: this.name,
      table,
      previous_table: previous,
    });
    this.#host.persist();
    await this.#installRules();
  }

  /** A notice from the trusted server: an admin released this lease. */
  #onNotice(notice: Notice): void {
    const { identity } = notice;
    const ours = identity.family === this.spec.identity.family &&
      identity.ifname === this.spec.identity.ifname &&
      identity.address === this.spec.identity.address;
    if (!ours || this.#state !== "held" || notice.table !== this.#lease!.table) {
      this.#log.log("warn", "ignoring a notice that is not about this lease", {
        ...this.fields,
        notice: notice.notice,
        notice_identity: identityName(identity),
        notice_table: notice.table,
        state: this.#state,
      });
      return;
    }
    this.#log.log("warn", "the server revoked the lease: removing the rules and confirming", {
      ...this.fields,
      notice: notice.notice,
    });
    void this.release("the server revoked the lease (admin release)");
  }

  /** Sets this lease's rules and waits for one sync; logs the outcome. */
  async #installRules(): Promise<void> {
    const { family } = this.spec.identity;
    if (family === AddrFamily.UNSPEC || !this.address || this.spec.prefix === null) return;
    const { rules } = this.#host;
    rules.want(this.name, leaseRules(family, this.address, this.spec.prefix, this.#lease!.table));
    await this.#claimLeftovers();
    await this.#host.syncRules();
    if (this.#state === "held" && rules.settled(this.name)) {
      this.#rulesPending = false;
      this.#log.log("info", "rules installed", this.fields);
    }
  }

  /**
   * Once per holding: the rules of this address that an earlier holder left
   * (one killed before it could clean up) go too, once ours are in.
   */
  async #claimLeftovers(): Promise<void> {
    const { family } = this.spec.identity;
    if (this.#leftoversClaimed || !this.address || family === AddrFamily.UNSPEC) return;
    try {
      for (const rule of await this.#host.rules.claimLeftovers(this.name, family, this.address)) {
        this.#log.log("warn", "deleting a rule left by an earlier client", {
          ...this.fields,
          rule: describeRule(rule),
        });
      }
      this.#leftoversClaimed = true;
    } catch (error) {
      // Tried again with the next table change; the wanted rules go in regardless.
      this.#log.log("warn", "cannot list the routing rules", {
        ...this.fields,
        reason: errorMessage(error),
      });
    }
  }

  async #releaseLease(reason: string): Promise<void> {
    this.#state = "releasing";
    this.#refreshAt = Infinity;
    this.#log.log("info", "stopping", { ...this.fields, reason });
    this.#host.persist();
    this.#host.rules.want(this.name, []);
    await this.#claimLeftovers();
    await this.#host.syncRules();
    const acknowledged = await new Promise<boolean>((resolve) => {
      this.#releaseAck = resolve;
      const now = performance.now();
      this.#releaseAt = now + RELEASE_WAIT_MS;
      this.#sendRelease(now);
      this.#host.wake();
    });
    if (acknowledged) this.#log.log("info", "lease released", this.fields);
    else {
      this.#log.log(
        "warn",
        `the server did not acknowledge the release within ${RELEASE_WAIT_MS} ms`,
        { ...this.fields, server: this.spec.server },
      );
    }
    this.#end(null, null, acknowledged);
  }

  /** Sends the release; again soon while the server's queue is full. */
  #sendRelease(now: number): void {
    const first = this.#releaseSendAt === Infinity;
    this.#releaseSendAt = this.#send(Command.RELEASE, first) ? Infinity : now + QUEUE_FULL_RETRY_MS;
  }

  #acknowledged(acknowledged: boolean): void {
    const ack = this.#releaseAck;
    this.#releaseAck = null;
    this.#releaseAt = this.#releaseSendAt = Infinity;
    ack?.(acknowledged);
  }

  #noLease(reason: string): void {
    this.#log.log("warn", "no lease", { ...this.fields, reason });
    this.#finish({ kind: "none", reason });
  }

  /** Tells every waiter how the acquisition ended; without a lease the holding ends. */
  #finish(outcome: HoldOutcome): void {
    const waiters = [...this.#waiters.values()];
    this.#waiters.clear();
    for (const resolve of waiters) resolve(outcome);
    if (outcome.kind !== "lease" && this.#state === "acquiring") this.#end(null, null);
  }

  /** Stops for good: no more timers, the host forgets it. */
  #end(message: string | null, reason: string | null, acknowledged = true): void {
    if (this.#state === "ended") return;
    if (message) this.#log.log("info", message, { ...this.fields, reason: reason ?? undefined });
    const wasAcquiring = this.#state === "acquiring";
    this.#state = "ended";
    this.#sendAt =
      this.#refreshAt =
      this.#releaseAt =
      this.#releaseSendAt =
        Infinity;
    if (wasAcquiring) this.#finish({ kind: "none", reason: reason ?? "stopped" });
    this.#lease = null;
    const answer = acknowledged ? encodeReply(0, 0) : encoder.encode(JSON.stringify({
      version: 1,
      cmd: Command.ERROR,
      error: "release_unacknowledged",
      message: "the server did not acknowledge the release",
    }));
    for (const requester of this.#peerReleases.splice(0)) this.#trySend(answer, requester);
    for (const resolve of this.#releaseWaiters.splice(0)) resolve(acknowledged);
    this.#host.ended(this);
  }

  /**
   * Sends a request or release to the server. False only when the server's
   * queue is full (try again soon); a send nobody receives (ECONNREFUSED:
   * no server bound yet) counts as sent, and the retransmission timer
   * tries again.
   */
  #send(cmd: typeof Command.REQUEST | typeof Command.RELEASE, logIt: boolean): boolean {
    const data = encodeRequest({ cmd, identity: this.spec.identity, tag: this.spec.tag });
    const what = cmd === Command.REQUEST ? "request" : "release";
    try {
      if (!this.socket.send(data, this.#server)) {
        this.#log.log("debug", `${what} not sent yet: the server's queue is full`, this.fields);
        return false;
      }
      this.#log.log("debug", `${what} sent`, { ...this.fields, server: this.spec.server });
    } catch (error) {
      // ECONNREFUSED: nobody is bound to the server name (yet); the timer retries.
      if (logIt) {
        this.#log.log("warn", `${what} not sent`, {
          ...this.fields,
          server: this.spec.server,
          reason: error instanceof ErrnoError ? error.code : errorMessage(error),
        });
      }
    }
    return true;
  }

  #trySend(data: Uint8Array<ArrayBuffer>, to: Uint8Array<ArrayBuffer>): void {
    try {
      this.socket.send(data, to);
    } catch {
      // The asking process is gone: nothing to tell.
    }
  }

  /**
   * Another process asks about this identity on its name: the table (a
   * second client, `cmd` 0), or the end of the lease (`-r`, `cmd` 1: from
   * root or this process's own user only, by kernel-checked credentials).
   */
  #answerPeer(dg: Datagram): void {
    if (dg.sender.byteLength <= 2) return; // unbound sender: no way to answer
    let request;
    try {
      request = decodeRequest(dg.data, dg.length);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      this.#warn("peer-malformed", "ignoring a malformed datagram", {
        ...this.fields,
        reason: error.message,
      });
      return;
    }
    const id = request.identity;
    if (identityName(id) !== this.name) {
      this.#warn("peer-other", "ignoring a question about another identity", this.fields);
      return;
    }
    if (request.cmd === Command.REQUEST) {
      this.#log.log("info", "another client asked for the table", {
        ...this.fields,
        pid: dg.credentials?.pid,
      });
      this.#trySend(encodeReply(this.table, this.#lease?.leaseExpires ?? 0), dg.sender);
      return;
    }
    const uid = dg.credentials?.uid;
    if (uid === undefined || (uid !== 0 && uid !== Deno.uid())) {
      this.#warn("peer-refused", "refusing a release request from another user", {
        ...this.fields,
        uid,
      });
      this.#trySend(
        encoder.encode(JSON.stringify({
          version: 1,
          cmd: Command.ERROR,
          error: "not_permitted",
          message: `uid ${uid} may not release a lease of uid ${Deno.uid()}`,
        })),
        dg.sender,
      );
      return;
    }
    // Answered from this socket (the name `-r` asked) when the holding ends.
    this.#peerReleases.push(dg.sender);
    void this.release(`release requested by pid ${dg.credentials?.pid}`);
  }

  /** Summary for a `status` reply. */
  status(): HeldIdentity {
    return {
      identity: this.name,
      state: this.#state === "ended" ? "releasing" : this.#state,
      table: this.table,
      server: this.spec.server,
    };
  }
}
