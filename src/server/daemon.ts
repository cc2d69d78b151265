/**
 * The server's loop: drain every datagram waiting on the socket, look up
 * their identities, decide (`decide.ts`), write every change in one
 * transaction, commit once, then send the replies. A reply is sent only
 * after the commit that holds its lease; an error reply (cmd 3) says why
 * a request could not be served. Receiving, the pass (lookups, decisions,
 * commit) and sending are separate steps; what happened is told to the
 * observers (`events.ts`), the log among them.
 *
 * Between passes the loop keeps time: held tables whose deadline passed
 * go back to their pools, a reload asked for by SIGHUP runs, and systemd
 * hears the watchdog ping and the status line.
 *
 * @module
 */

import { clockSeconds } from "../../ffi/libc.ts";
import { enabledFamilies, type ServerConfig } from "../../config/config.ts";
import type { Logger } from "../log/logger.ts";
import { familyName } from "../net/family.ts";
import {
  Command,
  decodeRequestObject,
  encodeError,
  encodeReply,
  type ErrorCode,
  parseDatagram,
  ProtocolError,
  type Request,
} from "../protocol/v1.ts";
import { ControlCommand, decodeControlRequest } from "../control/protocol.ts";
import type { Allocation, Hold } from "../allocator/allocation.ts";
import { type ControlContext, ControlHandler } from "./control.ts";
import { syncConfigReservations } from "./reservations.ts";
import {
  admit,
  type Answer,
  decide,
  decideFailure,
  type Decision,
  type DecisionPolicy,
  storeFailure,
} from "./decide.ts";
import { type ClientOrigin, fanOut, type LeaseObserver, LogObserver } from "./events.ts";
import { sendRevokeNotice } from "./notice.ts";
import { holdAtStart } from "./readiness.ts";
import { dumpRoutedTables } from "./kernel_rules.ts";
import { runReload } from "./reload.ts";
import { logHoldEnded, Upkeep } from "./upkeep.ts";
import { rebuildAllocation } from "./rebuild.ts";
import { metricsSnapshot } from "./views.ts";
import type { MetricsSnapshot } from "../metrics/server_metrics.ts";
import type { ReloadView } from "../control/protocol.ts";
import {
  type AbstractDatagramSocket,
  type Datagram,
  describeAddress,
} from "../unix/abstract_socket.ts";
import { clientIdOf, type Lease, type LeaseStore, type LeaseToken } from "../store/lease_store.ts";
import { errorMessage } from "../util/errors.ts";
import { BatchReceiver, type Carried } from "./receiver.ts";
import { type DaemonOptions, type DaemonStats, RESYNC_INTERVAL_MS } from "./daemon_options.ts";

export { type DaemonOptions, type DaemonStats, RESYNC_INTERVAL_MS } from "./daemon_options.ts";

/** A lease request or release of this pass. */
interface Job extends Carried {
  origin: ClientOrigin;
  clientId: string;
}

/** A write issued in this pass, waiting for the commit. */
interface Write {
  job: Job;
  decision: Extract<Decision, { kind: "write" }>;
  done: Promise<void>;
}

/** A reply to send at the end of the pass. */
type Outgoing = [Uint8Array<ArrayBuffer>, Datagram];

/** The allocation daemon. */
export class Daemon {
  #config: ServerConfig;
  #store: LeaseStore;
  #socket: AbstractDatagramSocket;
  #log: Logger;
  #observer: LeaseObserver;
  #now: () => number;
  #monotonic: () => number;
  #policy: DecisionPolicy;
  #allocation!: Allocation;
  #resyncAt = Infinity;
  #resyncDue = false;
  #control: ControlHandler;
  #controlContext: ControlContext;
  #receiver: BatchReceiver;
  #stopping = false;
  #unsubscribe: () => void = () => {};
  #counts = { batches: 0, errors: 0 };
  #options: DaemonOptions;
  #startedAt: number;
  /** A reload asked for by a signal, run by the loop. */
  #reloadDue = false;
  /** The reload running (or done), so that reloads run one after the other. */
  #reloading: Promise<unknown> = Promise.resolve();
  #upkeep: Upkeep;

  private constructor(options: DaemonOptions) {
    this.#options = options;
    this.#config = options.config;
    this.#store = options.store;
    this.#socket = options.socket;
    this.#log = options.logger;
    this.#receiver = new BatchReceiver(options.socket, options.logger);
    this.#observer = fanOut([
      new LogObserver(options.logger, { leases: options.logLeaseEvents ?? true }),
      ...(options.observers ?? []),
    ]);
    this.#now = options.now ?? Date.now;
    this.#startedAt = this.#now();
    this.#monotonic = options.monotonicSeconds ?? (() => clockSeconds());
    this.#policy = this.#policyOf(options.config);
    this.#controlContext = {
      config: options.config,
      store: options.store,
      allocation: () => this.#allocation,
      log: options.logger,
      observer: this.#observer,
      startedAt: this.#startedAt,
      storeDescription: options.storeDescription ?? "sqlite",
      now: this.#now,
      metrics: options.metrics && (() => options.metrics!.render(this.snapshot())),
      reload: () => this.reload(),
      revoke: (lease) => sendRevokeNotice(this.#socket, lease, this.#log),
    };
    this.#control = new ControlHandler(this.#controlContext);
    this.#upkeep = new Upkeep({
      allocation: () => this.#allocation,
      now: this.#now,
      log: this.#log,
      notifier: options.notifier,
    });
  }

  #policyOf(config: ServerConfig): DecisionPolicy {
    return {
      leaseMs: config.tableTimeout * 1000,
      families: enabledFamilies(config.addrFamilies),
      sharedStore: this.#options.sharedStore ?? false,
    };
  }

  /**
   * Builds a daemon whose state is rebuilt from the store: the config's
   * reservations are written, and every stored lease and reservation marks
   * its table taken. Leases outside the configured pools (after a config
   * change) are kept and reported, never dropped.
   */
  static async create(options: DaemonOptions): Promise<Daemon> {
    const daemon = new Daemon(options);
    daemon.#unsubscribe = options.store.onExpire((lease) => daemon.#expired(lease));
    // The kernel's rules are read while the store loads.
    const routed = options.config.readinessDelay > 0
      ? (options.routedTables ?? dumpRoutedTables)()
      : undefined;
    routed?.catch(() => {/* reported by holdAtStart */});
    await syncConfigReservations(options.config, options.store, options.logger);
    await daemon.#load(true);
    if (routed) {
      await holdAtStart({
        allocation: daemon.#allocation,
        store: options.store,
        now: daemon.#now(),
        delayMs: options.config.readinessDelay * 1000,
        log: options.logger,
      }, routed);
    }
    await options.onConfig?.(options.config);
    return daemon;
  }

  /**
   * Rebuilds the allocation from the store; `report` logs leases outside
   * the pools. Held tables stay held, unless the store has leased them
   * meanwhile (another server of a shared store).
   */
  async #load(report: boolean, config = this.#config): Promise<void> {
    this.#allocation = await rebuildAllocation({
      config,
      store: this.#store,
      log: this.#log,
      report,
      holds: this.#allocation?.holds ?? [],
    });
    if (this.#policy.sharedStore) this.#resyncAt = this.#now() + RESYNC_INTERVAL_MS;
    this.#resyncDue = false;
  }

  /** Work counters. */
  get stats(): DaemonStats {
    const { batches, errors } = this.#counts;
    return { batches, requests: this.#receiver.received, errors };
  }

  /** The pools and reservations, for status and tests. */
  get allocation(): Allocation {
    return this.#allocation;
  }

  /** Serves until {@link stop} is called; in-flight work is committed before it returns. */
  async run(): Promise<void> {
    while (!this.#stopping) {
      const batch = await this.#receiver.next(this.#upkeep.idleTimeout());
      this.#upkeep.tick();
      if (this.#reloadDue) {
        this.#reloadDue = false;
        await this.reload().catch(() => {/* refused: logged */});
      }
      if (batch.length === 0) continue;
      if (this.#resyncDue || this.#now() >= this.#resyncAt) {
        await this.#load(false).catch((error) =>
          this.#log.error("cannot rebuild the allocation from the store", {
            error: errorMessage(error),
          })
        );
      }
      await this.#pass(batch);
      this.#receiver.served();
    }
    this.#unsubscribe();
  }

  /** Stops receiving; {@link run} returns after the current pass is committed and answered. */
  stop(): void {
    this.#stopping = true;
    this.#socket.wake();
  }

  /** Asks the loop to reload the config (SIGHUP) between two passes. */
  requestReload(): void {
    this.#reloadDue = true;
    this.#socket.wake();
  }

  /** The pools and counts the metrics read. */
  snapshot(): MetricsSnapshot {
    return metricsSnapshot(this.#allocation, Math.floor((this.#now() - this.#startedAt) / 1000));
  }

  /**
   * Reads the config file again and applies it: pools, reservations,
   * families, lease time, outputs, log settings. Live leases never move. A
   * file that cannot be applied is refused (a ProtocolError `bad_config`
   * with the reason) and the running config kept. Reloads run one at a time.
   */
  reload(): Promise<ReloadView> {
    const { readConfig } = this.#options;
    const run = this.#reloading.then(() =>
      runReload({
        current: this.#config,
        read: readConfig ??
          (() => Promise.reject(new Error("this server was started without a config file"))),
        reconfigureLog: this.#options.reconfigureLog,
        rebuild: async (c) => {
          await syncConfigReservations(c, this.#store, this.#log);
          await this.#load(true, c);
        },
        adopt: async (c) => {
          this.#config = c;
          this.#policy = this.#policyOf(c);
          this.#controlContext.config = c;
          await this.#options.onConfig?.(c);
        },
      }, { ...this.#options, log: this.#log })
    );
    this.#reloading = run.catch(() => {});
    return run;
  }

  /** One pass: sort the batch, look up, decide, commit, send. */
  async #pass(batch: Carried[]): Promise<void> {
    this.#counts.batches++;
    this.#options.metrics?.pass(batch.length);
    const out: Outgoing[] = [];
    const { jobs, controls } = this.#sort(batch, out);
    const lookups = await Promise.allSettled(jobs.map((job) => this.#store.lookup(job.clientId)));
    const writes: Write[] = [];
    lookups.forEach((lookup, i) => {
      const job = jobs[i];
      if (lookup.status === "rejected") {
        out.push([this.#answer(storeFailure(lookup.reason), job), job.datagram]);
        return;
      }
      const { leases, token } = lookup.value;
      const decision = decide({
        origin: job.origin,
        leases,
        allocation: this.#allocation,
        now: this.#now(),
        attempt: job.attempt,
        collisions: job.collisions,
      }, this.#policy);
      const write = this.#enact(job, decision, token, out);
      if (write) writes.push(write);
    });
    if (writes.length > 0) await this.#commit(writes, out);
    for (const [data, datagram] of out) this.#send(data, datagram);
    // Control requests are rare and not on the hot path: one at a time, after the leases.
    for (const { datagram, message } of controls) {
      this.#send(await this.#controlReply(datagram, message), datagram);
    }
  }

  /**
   * Decodes the batch: malformed datagrams and refused families are
   * answered at once, control requests set aside, and a second message for
   * an identity carried to the next pass, so it sees this one's committed
   * result instead of racing it.
   */
  #sort(batch: Carried[], out: Outgoing[]): {
    jobs: Job[];
    controls: Array<{ datagram: Datagram; message: Record<string, unknown> }>;
  } {
    const jobs: Job[] = [];
    const controls: Array<{ datagram: Datagram; message: Record<string, unknown> }> = [];
    const seen = new Set<string>();
    for (const carried of batch) {
      const { datagram } = carried;
      let request: Request;
      try {
        const message = parseDatagram(datagram.data, datagram.length);
        if (message.cmd === ControlCommand.REQUEST) {
          controls.push({ datagram, message });
          continue;
        }
        request = decodeRequestObject(message);
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error;
        out.push([this.#reject(error.code, error.message, datagram), datagram]);
        continue;
      }
      const origin: ClientOrigin = {
        kind: "client",
        request,
        sender: datagram.sender,
        credentials: datagram.credentials,
      };
      const refused = admit(request, this.#policy);
      if (refused) {
        out.push([this.#answer(refused, { datagram, origin }), datagram]);
        continue;
      }
      const clientId = clientIdOf(request.identity);
      if (seen.has(clientId)) {
        this.#receiver.carry(carried);
        continue;
      }
      seen.add(clientId);
      jobs.push({ ...carried, origin, clientId });
    }
    return { jobs, controls };
  }

  /** Carries out a decision up to its write, which it returns. */
  #enact(job: Job, decision: Decision, token: LeaseToken, out: Outgoing[]): Write | undefined {
    if (decision.kind !== "write") {
      this.#store.releaseToken(token);
      if (decision.kind === "retry") {
        if (decision.rebuild) this.#resyncDue = true;
        this.#receiver.carry({ datagram: job.datagram, ...decision.races });
        return undefined;
      }
      for (const event of decision.events) this.#observer.onLease(event);
      this.#endHolds(decision.endHolds, job);
      out.push([this.#answer(decision.answer, job), job.datagram]);
      return undefined;
    }
    if (decision.claim) this.#allocation.apply(decision.claim);
    return { job, decision, done: this.#store.update(job.clientId, decision.leases, token) };
  }

  /**
   * Commits the pass's writes at once, then settles each: a durable write
   * frees its ended tables, is told to the observers and answered; a
   * failed one gives its table back and is retried or answered.
   */
  async #commit(writes: Write[], out: Outgoing[]): Promise<void> {
    const started = performance.now();
    await this.#store.flush().catch(() => {/* each write's promise carries the failure */});
    const results = await Promise.allSettled(writes.map((w) => w.done));
    this.#options.metrics?.commitSeconds((performance.now() - started) / 1000);
    results.forEach((result, i) => {
      const { job, decision } = writes[i];
      if (result.status === "fulfilled") {
        for (const lease of decision.ended) this.#free(lease);
        for (const event of decision.events) this.#observer.onLease(event);
        this.#endHolds(decision.endHolds, job);
        out.push([this.#answer(decision.answer, job), job.datagram]);
        return;
      }
      const { claim } = decision;
      const failure = decideFailure(result.reason, job, claim, this.#policy.sharedStore);
      if (claim) {
        this.#allocation.undo(claim);
        if (failure.markTaken) {
          this.#allocation.markTaken(job.origin.request.identity.family, claim.table);
        }
      }
      if (failure.rebuild) this.#resyncDue = true;
      if (failure.kind === "retry") {
        this.#receiver.carry({ datagram: job.datagram, ...failure.races });
      } else out.push([this.#answer(failure.answer, job), job.datagram]);
    });
  }

  async #controlReply(
    datagram: Datagram,
    message: Record<string, unknown>,
  ): Promise<Uint8Array<ArrayBuffer>> {
    const uid = datagram.credentials?.uid;
    if (uid !== 0) {
      return this.#reject(
        "not_permitted",
        `control requests are answered only to root (uid 0), got uid ${uid ?? "unknown"}`,
        datagram,
      );
    }
    try {
      return await this.#control.handle(decodeControlRequest(message), uid);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      return this.#reject(error.code, error.message, datagram);
    }
  }

  /** Ends the holds a decision names: a release confirms; a request needs them no more. */
  #endHolds(holds: Hold[] | undefined, job: Job): void {
    for (const hold of holds ?? []) {
      if (this.#allocation.endHold(hold.family, hold.table)) {
        logHoldEnded(
          this.#log,
          hold,
          job.origin.request.cmd === Command.RELEASE ? "confirmed" : "superseded",
        );
      }
    }
  }

  #expired(lease: Lease): void {
    this.#free(lease);
    this.#observer.onLease({ kind: "expired", lease, origin: { kind: "expiry" } });
  }

  /** Returns a lease's table to its reservation or pool; a table outside every pool is just logged. */
  #free(lease: Lease): void {
    if (!this.#allocation.ended(lease)) {
      this.#log.info("lease outside the configured pools ended", {
        family: familyName(lease.family),
        table: lease.table,
      });
    }
  }

  /** Encodes an answer to a job (an error answer is counted and told to the observers). */
  #answer(
    answer: Answer,
    job: { datagram: Datagram; origin: ClientOrigin },
  ): Uint8Array<ArrayBuffer> {
    switch (answer.kind) {
      case "lease":
        // The C client reads the expiry on its CLOCK_MONOTONIC_RAW.
        return encodeReply(
          answer.table,
          this.#monotonic() + (answer.expiresAt - this.#now()) / 1000,
        );
      case "released":
        return encodeReply(0, 0);
      case "error":
        return this.#reject(answer.code, answer.message, job.datagram, job.origin.request);
    }
  }

  #reject(
    code: ErrorCode,
    message: string,
    datagram: Datagram,
    request?: Request,
  ): Uint8Array<ArrayBuffer> {
    this.#counts.errors++;
    this.#observer.onErrorReply({
      code,
      message,
      request,
      sender: datagram.sender,
      credentials: datagram.credentials,
    });
    return encodeError(code, message);
  }

  #send(data: Uint8Array<ArrayBuffer>, datagram: Datagram): void {
    try {
      if (!this.#socket.send(data, datagram.sender)) {
        this.#log.warn("reply dropped: the client's queue is full", {
          to: describeAddress(datagram.sender),
        });
      }
    } catch (error) {
      // The client may have gone; its lease stays correct and reclaimable.
      this.#log.debug("reply not delivered", {
        to: describeAddress(datagram.sender),
        error: errorMessage(error),
      });
    }
  }
}
