/**
 * The server's loop: drain every datagram waiting on the socket, look up
 * their identities, decide (`decide.ts`), write every change in one
 * transaction, commit once, then send the replies. A reply is sent only
 * after the commit that holds its lease; an error reply (cmd 3) says why
 * a request could not be served. Receiving (`receiver.ts`), sorting the
 * batch (`intake.ts`: decoding, authentication, one job per identity), the
 * pass (lookups, decisions), carrying out its decisions and the commit
 * (`pass_writes.ts`), the replies (`replies.ts`) and the control requests
 * (`control_desk.ts`) are separate steps; what happened is told to the
 * observers (`events.ts`), the log among them. With a shared store the
 * allocation is rebuilt in the background (`rebuild.ts`).
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
import { Command } from "../protocol/v1.ts";
import type { Allocation } from "../allocator/allocation.ts";
import { LimitedLog } from "../log/rate_limit.ts";
import { ControlDesk } from "./control_desk.ts";
import { syncConfigReservations } from "./reservations.ts";
import { decide, type DecisionPolicy, storeFailure } from "./decide.ts";
import { fanOut, type LeaseEvent, type LeaseObserver, LogObserver } from "./events.ts";
import { holdAtStart } from "./readiness.ts";
import { dumpRoutedTables } from "./kernel_rules.ts";
import { runReload } from "./reload.ts";
import { Upkeep } from "./upkeep.ts";
import { loadAllocationInPages, rebuildAllocation, Resync } from "./rebuild.ts";
import { metricsSnapshot } from "./views.ts";
import type { MetricsSnapshot } from "../metrics/server_metrics.ts";
import type { ReloadView } from "../control/protocol.ts";
import type { AbstractDatagramSocket } from "../unix/abstract_socket.ts";
import type { Lease, LeaseStore } from "../store/lease_store.ts";
import { BatchReceiver, type Carried } from "./receiver.ts";
import { Replies } from "./replies.ts";
import { type Intake, type Job, sortBatch } from "./intake.ts";
import { type Outgoing, PassWrites, type Write } from "./pass_writes.ts";
import type { DaemonOptions, DaemonStats } from "./daemon_options.ts";

export { type DaemonOptions, type DaemonStats, RESYNC_INTERVAL_MS } from "./daemon_options.ts";

/**
 * While a pass works, the socket is drained after every this many
 * requests and replies: the kernel queues only `net.unix.max_dgram_qlen`
 * datagrams (10 by default) and refuses further senders (EAGAIN).
 */
const PUMP_EVERY = 4;

/** The allocation daemon. */
export class Daemon {
  #config: ServerConfig;
  #store: LeaseStore;
  #socket: AbstractDatagramSocket;
  #log: Logger;
  #observer: LeaseObserver;
  #now: () => number;
  #policy: DecisionPolicy;
  #allocation!: Allocation;
  /** Rebuilds of the allocation while serving (a shared store). */
  #resync: Resync;
  /** Answers `table-allocator-ctl`. */
  #control: ControlDesk;
  #receiver: BatchReceiver;
  #stopping = false;
  #unsubscribe: () => void = () => {};
  #batches = 0;
  /** Repeated lines per kind and sender, limited (`src/log/rate_limit.ts`). */
  #limited: LimitedLog;
  #replies: Replies;
  /** What the observers hear of the current pass, once its replies are sent. */
  #told: Array<() => void> = [];
  #options: DaemonOptions;
  #startedAt: number;
  /** A reload asked for by a signal, run by the loop. */
  #reloadDue = false;
  /** The reload running (or done), so that reloads run one after the other. */
  #reloading: Promise<unknown> = Promise.resolve();
  #upkeep: Upkeep;
  /** Carries out the decisions of the passes. */
  #writes: PassWrites;

  private constructor(options: DaemonOptions) {
    this.#options = options;
    this.#config = options.config;
    this.#store = options.store;
    this.#socket = options.socket;
    this.#log = options.logger;
    this.#receiver = new BatchReceiver(options.socket, options.logger);
    this.#limited = new LimitedLog(options.logger);
    this.#observer = fanOut([
      new LogObserver(options.logger, {
        leases: options.logLeaseEvents ?? true,
        limited: this.#limited,
      }),
      ...(options.observers ?? []),
    ]);
    this.#now = options.now ?? Date.now;
    this.#startedAt = this.#now();
    this.#replies = new Replies({
      socket: options.socket,
      log: options.logger,
      limited: this.#limited,
      // Error replies are told with the pass's lease events, once the replies are sent.
      observer: {
        onLease: (event) => this.#tell([event]),
        onErrorReply: (event) => this.#told.push(() => this.#observer.onErrorReply(event)),
      },
      auth: options.auth,
      now: this.#now,
      monotonic: options.monotonicSeconds ?? (() => clockSeconds()),
    });
    this.#policy = this.#policyOf(options.config);
    this.#control = new ControlDesk(options, {
      allocation: () => this.#allocation,
      observer: this.#observer,
      replies: this.#replies,
      startedAt: this.#startedAt,
      now: this.#now,
      metrics: options.metrics && (() => options.metrics!.render(this.snapshot())),
      reload: () => this.reload(),
    });
    this.#resync = new Resync({
      shared: options.sharedStore ?? false,
      now: this.#now,
      load: () => loadAllocationInPages(this.#config, this.#store),
      wake: () => this.#socket.wake(),
      log: this.#log,
    });
    this.#upkeep = new Upkeep({
      allocation: () => this.#allocation,
      now: this.#now,
      log: this.#log,
      notifier: options.notifier,
    });
    this.#writes = new PassWrites({
      store: options.store,
      receiver: this.#receiver,
      replies: this.#replies,
      resync: this.#resync,
      log: options.logger,
      allocation: () => this.#allocation,
      policy: () => this.#policy,
      auth: options.auth,
      metrics: options.metrics,
      free: (lease) => this.#free(lease),
      tell: (events) => this.#tell(events),
    });
  }

  #policyOf(config: ServerConfig): DecisionPolicy {
    return {
      leaseMs: config.tableTimeout * 1000,
      families: enabledFamilies(config.addrFamilies),
      sharedStore: this.#options.sharedStore ?? false,
      maxLeasesPerUid: config.trust.maxLeasesPerUid,
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
    this.#resync.loaded();
  }

  /** Work counters. */
  get stats(): DaemonStats {
    return {
      batches: this.#batches,
      requests: this.#receiver.received,
      errors: this.#replies.errors,
    };
  }

  /** The pools and reservations, for status and tests. */
  get allocation(): Allocation {
    return this.#allocation;
  }

  /** Serves until {@link stop} is called; in-flight work is committed before it returns. */
  async run(): Promise<void> {
    while (!this.#stopping) {
      const rebuilt = this.#resync.take(this.#allocation);
      if (rebuilt) {
        if (rebuilt.allocation) this.#allocation = rebuilt.allocation;
        for (const carried of rebuilt.waiting) this.#receiver.carry(carried);
      }
      const batch = await this.#receiver.next(this.#upkeep.idleTimeout());
      this.#upkeep.tick();
      if (this.#reloadDue) {
        this.#reloadDue = false;
        await this.reload().catch(() => {/* refused: logged */});
      }
      if (batch.length === 0) continue;
      this.#resync.maybeStart();
      await this.#pass(batch);
      this.#receiver.served();
    }
    this.#receiver.close();
    this.#unsubscribe();
    this.#limited.close();
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
          this.#control.config = c;
          await this.#options.onConfig?.(c);
        },
      }, { ...this.#options, log: this.#log })
    );
    this.#reloading = run.catch(() => {});
    return run;
  }

  /**
   * One pass: sort the batch, look up, decide, commit, send; then tell the
   * observers (the log among them), so no reply waits for a log line.
   */
  async #pass(batch: Carried[]): Promise<void> {
    this.#batches++;
    this.#options.metrics?.pass(batch.length);
    const out: Outgoing[] = [];
    this.#replies.startPass();
    try {
      await this.#serve(batch, out);
    } finally {
      const told = this.#told;
      this.#told = [];
      this.#log.hold();
      try {
        for (const tell of told) tell();
      } finally {
        this.#log.release();
      }
    }
  }

  async #serve(batch: Carried[], out: Outgoing[]): Promise<void> {
    const { jobs, controls } = this.#sort(batch, out);
    const [lookups, held] = await Promise.all([
      Promise.allSettled(jobs.map((job) => this.#store.lookup(job.clientId))),
      this.#countHeld(jobs),
    ]);
    const writes: Write[] = [];
    lookups.forEach((lookup, i) => {
      const job = jobs[i];
      if (lookup.status === "rejected") {
        out.push([this.#replies.answer(storeFailure(lookup.reason), job), job.datagram]);
        return;
      }
      const { leases, token } = lookup.value;
      const uid = job.origin.credentials?.uid;
      const count = uid === undefined ? undefined : held.get(uid);
      if (count instanceof Error && !leases.some((l) => l.state === "bound")) {
        this.#store.releaseToken(token);
        out.push([this.#replies.answer(storeFailure(count), job), job.datagram]);
        return;
      }
      const decision = decide({
        origin: job.origin,
        leases,
        allocation: this.#allocation,
        now: this.#now(),
        attempt: job.attempt,
        collisions: job.collisions,
        uidLeases: typeof count === "number" ? count : undefined,
      }, this.#policy);
      // The pass's own grants count against the cap of its later requests.
      if (
        typeof count === "number" && decision.kind === "write" &&
        decision.events[0]?.kind === "granted"
      ) held.set(uid!, count + 1);
      const write = this.#writes.enact(job, decision, token, out);
      if (write) writes.push(write);
      if (i % PUMP_EVERY === PUMP_EVERY - 1) this.#receiver.pump();
    });
    if (writes.length > 0) await this.#writes.commit(writes, out);
    const twins = new Map(jobs.filter((j) => j.twins.length > 0).map((j) => [j.datagram, j.twins]));
    // Each reply brings its client's next request: keep the kernel's queue empty meanwhile.
    out.forEach(([data, datagram], i) => {
      this.#replies.send(data, datagram);
      for (const twin of twins.get(datagram) ?? []) this.#replies.send(data, twin.datagram);
      if (i % PUMP_EVERY === PUMP_EVERY - 1) this.#receiver.pump();
    });
    // Control requests are rare and not on the hot path: one at a time, after the leases.
    for (const { datagram, message } of controls) {
      this.#replies.send(await this.#control.reply(datagram, message), datagram);
      // A reservation or an admin release changed the allocation in a way
      // the running rebuild may not have read: read the store once more.
      if (this.#resync.running) this.#resync.ask();
    }
  }

  /**
   * The bound leases of each non-root uid that asks for a lease in this
   * pass (the cap), or the store's failure to count them. Root's requests,
   * nearly all of them, cost nothing here.
   */
  async #countHeld(jobs: Job[]): Promise<Map<number, number | Error>> {
    const uids = new Set<number>();
    for (const job of jobs) {
      const uid = job.origin.credentials?.uid;
      if (
        uid !== undefined && uid !== 0 && job.origin.request.cmd === Command.REQUEST &&
        this.#policy.maxLeasesPerUid > 0
      ) uids.add(uid);
    }
    const held = new Map<number, number | Error>();
    await Promise.all([...uids].map(async (uid) => {
      try {
        held.set(uid, await this.#store.boundCount(uid));
      } catch (error) {
        held.set(uid, error instanceof Error ? error : new Error(String(error)));
      }
    }));
    return held;
  }

  /**
   * Sorts the batch (`intake.ts`): what is refused at once is answered,
   * the messages that wait for the next pass are carried to it.
   */
  #sort(batch: Carried[], out: Outgoing[]): Pick<Intake, "jobs" | "controls"> {
    const intake = sortBatch(batch, this.#policy, this.#options.auth);
    for (const { answer, datagram, request, signed } of intake.refused) {
      out.push([
        this.#replies.reject(answer.code, answer.message, datagram, request, signed),
        datagram,
      ]);
    }
    for (const job of intake.waiting) this.#writes.carry(job, job);
    return intake;
  }

  /** Tells the observers of lease events once the pass's replies are sent. */
  #tell(events: readonly LeaseEvent[]): void {
    if (events.length > 0) {
      this.#told.push(() => {
        for (const event of events) this.#observer.onLease(event);
      });
    }
  }

  #expired(lease: Lease): void {
    this.#free(lease);
    this.#observer.onLease({ kind: "expired", lease, origin: { kind: "expiry" } });
  }

  /** Returns a lease's table to its reservation or pool; a table outside every pool is just logged. */
  #free(lease: Lease): void {
    this.#resync.record((a) => a.ended(lease));
    if (!this.#allocation.ended(lease)) {
      this.#log.info("lease outside the configured pools ended", {
        family: familyName(lease.family),
        table: lease.table,
      });
    }
  }
}
