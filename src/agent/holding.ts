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

import { clockSeconds } from "../../ffi/libc.ts";
import type { Fields } from "../log/logger.ts";
import { parseIP } from "../net/ip.ts";
import { AddrFamily } from "../net/family.ts";
import type { Rule } from "../netlink/rule.ts";
import {
  Command,
  encodeError,
  encodeReply,
  identityName,
  type Notice,
  type Reply,
} from "../protocol/v1.ts";
import type { AbstractDatagramSocket } from "../unix/abstract_socket.ts";
import { IdentitySocket } from "./identity_socket.ts";
import {
  type HoldOutcome,
  type Lease,
  MAX_TRIES,
  QUEUE_FULL_RETRY_MS,
  refreshDelayMs,
  RELEASE_WAIT_MS,
  RETRANSMIT_MS,
} from "./lease.ts";
import { LeaseRules } from "./lease_rules.ts";
import { answerPeer } from "./peer_questions.ts";
import type { HeldIdentity, HoldSpec } from "./protocol.ts";
import type { RuleFailure, RuleKeeper } from "./rules.ts";
import type { IdentityLog } from "./sinks.ts";
import { LimitedLog } from "../log/rate_limit.ts";

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
  /** This identity's log (its own sink and the process's log). */
  readonly log: IdentityLog;
  #host: HoldingHost;
  #io: IdentitySocket;
  #rules: LeaseRules;
  #warnings: LimitedLog;
  #state: HeldIdentity["state"] | "ended" = "acquiring";
  #lease: Lease | null = null;
  #granting = false;
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

  /**
   * Binds the identity's name and makes a holding of it. Throws an
   * ErrnoError EADDRINUSE when another process holds the name.
   */
  constructor(spec: HoldSpec, ifindex: number, host: HoldingHost, log: IdentityLog) {
    this.spec = spec;
    this.name = identityName(spec.identity);
    this.ifindex = ifindex;
    this.address = spec.identity.family === AddrFamily.UNSPEC
      ? null
      : parseIP(spec.identity.family, spec.identity.address);
    this.log = log;
    this.#host = host;
    // One line per kind and sender every 10 s: a squatter or a rule fight cannot fill the log.
    this.#warnings = new LimitedLog(log, { burst: 1 });
    this.#io = IdentitySocket.bind(spec, log, this.#warnings, () => this.fields);
    this.#rules = new LeaseRules({
      owner: this.name,
      spec,
      address: this.address,
      keeper: host.rules,
      sync: () => host.syncRules(),
      log,
      warnings: this.#warnings,
      fields: () => this.fields,
    });
  }

  /** Bound to {@link name}, with SO_PASSCRED. */
  get socket(): AbstractDatagramSocket {
    return this.#io.socket;
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

  /** How many wait for the outcome of the acquisition. */
  get waiters(): number {
    return this.#waiters.size;
  }

  /** The earliest time (performance.now() ms) at which {@link onTimer} has work. */
  deadline(): number {
    return Math.min(this.#sendAt, this.#refreshAt, this.#releaseAt, this.#releaseSendAt);
  }

  /** Starts asking for a lease: at once, then every 2 s. */
  acquire(): void {
    this.log.log("info", "requesting a lease", { identity: this.name, server: this.spec.server });
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
    this.log.log("info", "holding lease again after a restart of the agent", this.fields);
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
        return this.#noLease(`no answer from @${this.spec.server} after ${MAX_TRIES} tries`);
      }
      if (this.#io.sendToServer(Command.REQUEST, this.#tries === 0)) {
        this.#tries++;
        this.#sendAt = now + RETRANSMIT_MS;
      } else this.#sendAt = now + QUEUE_FULL_RETRY_MS;
    }
    if (now >= this.#refreshAt && this.#state === "held") {
      if (this.#unanswered === 1) {
        this.log.log("warn", "no answer from the server: keeping the rules, retrying every 2 s", {
          ...this.fields,
          server: this.spec.server,
        });
      }
      if (this.#io.sendToServer(Command.REQUEST, this.#unanswered === 0)) {
        this.#unanswered++;
        this.#refreshAt = now + RETRANSMIT_MS;
      } else this.#refreshAt = now + QUEUE_FULL_RETRY_MS;
    }
    if (now >= this.#releaseSendAt) this.#sendRelease(now);
    if (now >= this.#releaseAt) this.#acknowledged(false);
  }

  /** Reads every datagram waiting on the identity's socket. */
  onReadable(): void {
    this.#io.read((reply) => this.#fromServer(reply), (dg) =>
      answerPeer(dg, {
        name: this.name,
        table: this.table,
        leaseExpires: this.#lease?.leaseExpires ?? 0,
        fields: this.fields,
        info: (message, fields) => this.log.log("info", message, fields),
        warnings: this.#warnings,
        reply: (data, to) => this.#io.trySend(data, to),
        release: (reason, requester) => {
          // Answered from this socket (the name `-r` asked) when the holding ends.
          this.#peerReleases.push(requester);
          void this.release(reason);
        },
      }));
  }

  /** The address or the link is gone: no lease, or the lease ends. */
  depart(reason: string): void {
    if (this.#state === "acquiring") this.#noLease(reason);
    else if (this.#state === "held") void this.release(reason);
  }

  /** The interface got another name (the lease keeps its own). */
  renamed(newName: string): void {
    if (newName === this.spec.identity.ifname) return;
    this.log.log("warn", "the interface was renamed; the lease keeps its name", {
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
    this.#rules.failed(failures);
  }

  /** A sync ended: says so once the rules that had failed are in. */
  rulesSynced(): void {
    if (this.#rules.recovered() && this.#state === "held") {
      this.log.log("info", "rules installed after retries", this.fields);
    }
  }

  /** One of this lease's rules disappeared (deleted by hand, by another program). */
  ruleGone(rule: Rule, how: string): void {
    this.#rules.gone(rule, how);
  }

  /** Closes the identity's socket (its name is free again) and gives its log sink back. */
  close(): void {
    this.#warnings.close();
    this.#io[Symbol.dispose]();
    this.log.close();
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

  /** What the trusted server says (a kernel table was already refused). */
  #fromServer(reply: Reply): void {
    if (reply.kind === "notice") return this.#onNotice(reply.notice);
    const refusal: Fields = reply.kind === "error"
      ? { ...this.fields, error: reply.code, reason: reply.message }
      : {};
    if (this.#state === "releasing") {
      if (reply.kind === "lease" && reply.table === 0) this.#acknowledged(true);
      else if (reply.kind === "error") {
        this.log.log("warn", "the server refused the release", refusal);
        this.#acknowledged(false);
      }
      return;
    }
    if (reply.kind === "error") {
      if (this.#state === "held") {
        const what = "the server refused the refresh: keeping the rules, retrying every 2 s";
        return this.log.log("warn", what, refusal);
      }
      if (this.#state !== "acquiring") return;
      this.log.log("error", "the server refused the lease", refusal);
      return this.#finish({ kind: "refused", error: reply.code, message: reply.message });
    }
    // Table 0 means no lease: like silence, as the C client reads it.
    if (reply.table === 0) return;
    if (this.#state === "acquiring") void this.#granted(reply.table, reply.leaseExpires);
    else if (this.#state === "held") void this.#refreshed(reply.table, reply.leaseExpires);
  }

  async #granted(table: number, leaseExpires: number): Promise<void> {
    this.#state = "held";
    this.#granting = true;
    this.#sendAt = Infinity;
    this.#lease = { table, leaseExpires };
    this.#refreshAt = performance.now() + refreshDelayMs(leaseExpires, clockSeconds());
    this.log.log("info", "lease granted", this.fields);
    this.log.log("info", "holding lease", {
      ...this.fields,
      expires_in: Math.round(leaseExpires - clockSeconds()),
    });
    await this.#installRules();
    this.#granting = false;
    if (this.#state !== "held") {
      return this.#finish({ kind: "none", reason: "the lease ended before its rules were in" });
    }
    this.#host.persist();
    this.#finish({ kind: "lease", table: this.#lease!.table });
  }

  async #refreshed(table: number, leaseExpires: number): Promise<void> {
    if (this.#unanswered > 1) this.log.log("info", "the server answers again", this.fields);
    this.#unanswered = 0;
    const previous = this.#lease!.table;
    this.#lease = { table, leaseExpires };
    this.#refreshAt = performance.now() + refreshDelayMs(leaseExpires, clockSeconds());
    if (table === previous) {
      return this.log.log("debug", "lease refreshed", {
        ...this.fields,
        expires_in: Math.round(leaseExpires - clockSeconds()),
      });
    }
    this.log.log("warn", "the server moved the lease to another table: moving the rules", {
      identity: this.name,
      table,
      previous_table: previous,
    });
    this.#host.persist();
    await this.#installRules();
  }

  /** A notice from the trusted server: an admin released this lease. */
  #onNotice(notice: Notice): void {
    if (
      identityName(notice.identity) !== this.name || this.#state !== "held" ||
      notice.table !== this.#lease!.table
    ) {
      return this.log.log("warn", "ignoring a notice that is not about this lease", {
        ...this.fields,
        notice: notice.notice,
        notice_identity: identityName(notice.identity),
        notice_table: notice.table,
        state: this.#state,
      });
    }
    this.log.log("warn", "the server revoked the lease: removing the rules and confirming", {
      ...this.fields,
      notice: notice.notice,
    });
    void this.release("the server revoked the lease (admin release)");
  }

  /** Sets this lease's rules and waits for one sync; logs when they are in. */
  async #installRules(): Promise<void> {
    if (!this.#rules.apply) return;
    const settled = await this.#rules.install(this.#lease!.table);
    if (settled && this.#state === "held") this.log.log("info", "rules installed", this.fields);
  }

  async #releaseLease(reason: string): Promise<void> {
    this.#state = "releasing";
    this.#refreshAt = Infinity;
    this.log.log("info", "stopping", { ...this.fields, reason });
    this.#host.persist();
    await this.#rules.remove();
    const acknowledged = await new Promise<boolean>((resolve) => {
      this.#releaseAck = resolve;
      const now = performance.now();
      this.#releaseAt = now + RELEASE_WAIT_MS;
      this.#sendRelease(now);
      this.#host.wake();
    });
    if (acknowledged) this.log.log("info", "lease released", this.fields);
    else {
      this.log.log(
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
    this.#releaseSendAt = this.#io.sendToServer(Command.RELEASE, first)
      ? Infinity
      : now + QUEUE_FULL_RETRY_MS;
  }

  #acknowledged(acknowledged: boolean): void {
    const ack = this.#releaseAck;
    this.#releaseAck = null;
    this.#releaseAt = this.#releaseSendAt = Infinity;
    ack?.(acknowledged);
  }

  #noLease(reason: string): void {
    this.log.log("warn", "no lease", { ...this.fields, reason });
    this.#finish({ kind: "none", reason });
  }

  /** Tells every waiter how the acquisition ended; without a lease the holding ends. */
  #finish(outcome: HoldOutcome): void {
    const waiters = [...this.#waiters.values()];
    this.#waiters.clear();
    for (const resolve of waiters) resolve(outcome);
    if (outcome.kind !== "lease" && this.#state === "acquiring") this.#end(null, null);
  }

  /** Stops for good: no more timers, the askers answered, the host forgets it. */
  #end(message: string | null, reason: string | null, acknowledged = true): void {
    if (this.#state === "ended") return;
    if (message) this.log.log("info", message, { ...this.fields, reason: reason ?? undefined });
    const wasAcquiring = this.#state === "acquiring";
    this.#state = "ended";
    this.#sendAt =
      this.#refreshAt =
      this.#releaseAt =
      this.#releaseSendAt =
        Infinity;
    if (wasAcquiring) this.#finish({ kind: "none", reason: reason ?? "stopped" });
    this.#lease = null;
    const answer = acknowledged
      ? encodeReply(0, 0)
      : encodeError("release_unacknowledged", "the server did not acknowledge the release");
    for (const requester of this.#peerReleases.splice(0)) this.#io.trySend(answer, requester);
    for (const resolve of this.#releaseWaiters.splice(0)) resolve(acknowledged);
    this.#host.ended(this);
  }
}
