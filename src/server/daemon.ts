/**
 * The server's loop: drain every datagram waiting on the socket, look up
 * their identities, decide (`decide.ts`), write every change in one
 * transaction, commit once, then send the replies. A reply is sent only
 * after the commit that holds its lease; an error reply (cmd 3) says why
 * a request could not be served. Receiving (`receiver.ts`), sorting the
 * batch (`intake.ts`: decoding, authentication, one job per identity), the
 * pass up to its commit (`pass.ts`: lookups, decisions), carrying out its
 * decisions and the commit (`pass_writes.ts`), the replies (`replies.ts`)
 * and the control requests (`control_desk.ts`) are separate steps; what
 * happened is told to the observers (`events.ts`), the log among them.
 * With a shared store the allocation is rebuilt in the background
 * (`rebuild.ts`).
 *
 * Passes overlap by one (see {@link Daemon.run}): while a pass waits for
 * its commit's sync off the main thread, the next one is prepared and
 * committed, and its sync is chained after the first. Replies still go
 * out only once their own sync has ended, and in order.
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
import type { Allocation } from "../allocator/allocation.ts";
import { LimitedLog } from "../log/rate_limit.ts";
import { ControlDesk } from "./control_desk.ts";
import { syncConfigReservations } from "./reservations.ts";
import type { DecisionPolicy } from "./decide.ts";
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
import { PassWrites } from "./pass_writes.ts";
import { emptyPass, type Pass, type PassContext, preparePass } from "./pass.ts";
import type { DaemonOptions, DaemonStats } from "./daemon_options.ts";

export { type DaemonOptions, type DaemonStats, RESYNC_INTERVAL_MS } from "./daemon_options.ts";

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
  /**
   * The pass being worked on: what its observers are to hear goes to it,
   * told once its replies are sent.
   */
  #current: Pass = emptyPass();
  #options: DaemonOptions;
  #startedAt: number;
  /** A reload asked for by a signal, run by the loop. */
  #reloadDue = false;
  /** The reload running (or done), so that reloads run one after the other. */
  #reloading: Promise<unknown> = Promise.resolve();
  #upkeep: Upkeep;
  /** Carries out the decisions of the passes. */
  #writes: PassWrites;
  /** What each pass works with (`pass.ts`). */
  #passContext: PassContext;

  private constructor(options: DaemonOptions) {
    this.#options = options;
    this.#config = options.config;
    this.#store = options.store;
    this.#socket = options.socket;
    this.#log = options.logger;
    this.#receiver = new BatchReceiver(
      options.socket,
      options.logger,
      () => this.#store.expectLookup?.(),
      options.kernelQueue,
    );
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
        onErrorReply: (event) => this.#current.told.push(() => this.#observer.onErrorReply(event)),
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
    this.#passContext = {
      store: options.store,
      receiver: this.#receiver,
      replies: this.#replies,
      writes: this.#writes,
      allocation: () => this.#allocation,
      policy: () => this.#policy,
      auth: options.auth,
      now: this.#now,
    };
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

  /**
   * Serves until {@link stop} is called; in-flight work is committed and
   * answered before it returns.
   *
   * Pipelined, depth 1: while one pass waits for its sync off the main
   * thread, the next runs up to its commit, whose sync the store chains
   * after the first (`commitsInOrder`); the first pass's replies go out
   * when its sync ends, then the second's when its own does. Reloads,
   * control requests and rebuilds see no pass in flight.
   */
  async run(): Promise<void> {
    /** The pass waiting for its sync while the loop goes on. */
    let flight: Pass | undefined;
    try {
      while (!this.#stopping) {
        let batch: Carried[];
        if (flight) {
          // Wait for its sync, or for a request to work on meanwhile.
          const synced = await this.#receiver.receiveWhile(flight.synced, true);
          if (synced || this.#stopping || this.#reloadDue) {
            await this.#finish(flight);
            flight = undefined;
            continue;
          }
          batch = await this.#receiver.next(); // a request waits: at once
        } else {
          const rebuilt = this.#resync.take(this.#allocation);
          if (rebuilt) {
            if (rebuilt.allocation) this.#allocation = rebuilt.allocation;
            for (const carried of rebuilt.waiting) this.#receiver.carry(carried);
          }
          batch = await this.#receiver.next(this.#upkeep.idleTimeout());
        }
        this.#upkeep.tick();
        if (this.#reloadDue && !flight) {
          this.#reloadDue = false;
          await this.reload().catch(() => {/* refused: logged */});
        }
        if (batch.length === 0) continue;
        this.#resync.maybeStart();
        const pass = await this.#begin(batch, flight !== undefined);
        if (flight) await this.#finish(flight);
        flight = undefined;
        if (this.#mayOverlap(pass)) flight = pass;
        else await this.#finish(pass);
      }
    } finally {
      if (flight) await this.#finish(flight);
      this.#receiver.close();
      this.#unsubscribe();
      this.#limited.close();
    }
  }

  /**
   * Whether the next pass may run while this one waits for its sync: its
   * sync runs off the main thread, the store keeps commits in order, and
   * it has no control requests (they expect every pass before them done).
   * A shared store's flush is its COMMIT, and its rebuilds swap the
   * allocation between passes: it stays sequential.
   */
  #mayOverlap(pass: Pass): boolean {
    return pass.background && pass.controls.length === 0 &&
      this.#store.commitsInOrder === true && !this.#options.sharedStore;
  }

  /** Stops receiving; {@link run} returns once the passes in flight are committed and answered. */
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
    return metricsSnapshot(this.#allocation, Math.floor((this.#now() - this.#startedAt) / 1000), {
      limit: this.#receiver.kernelQueue,
      full: this.#receiver.queueFull,
    });
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
   * A pass up to its commit: sort the batch, look up, decide, write,
   * commit. Its sync may still run when this returns ({@link finish}).
   * `overlapping`: an earlier pass waits for its sync meanwhile.
   */
  async #begin(batch: Carried[], overlapping: boolean): Promise<Pass> {
    this.#batches++;
    this.#options.metrics?.pass(batch.length);
    const pass = emptyPass();
    this.#current = pass;
    this.#replies.startPass();
    try {
      await preparePass(this.#passContext, batch, pass, overlapping);
    } catch (error) {
      this.#tellPass(pass);
      throw error;
    }
    return pass;
  }

  /**
   * The rest of a pass: once its sync ends, settle its writes, send its
   * replies and answer its control requests; then tell the observers (the
   * log among them), so no reply waits for a log line.
   */
  async #finish(pass: Pass): Promise<void> {
    try {
      if (pass.background) await this.#receiver.receiveWhile(pass.synced);
      else await pass.synced;
      this.#current = pass;
      // Its replies go out now: they read the clocks anew.
      this.#replies.startPass();
      if (pass.writes.length > 0) await this.#writes.settle(pass.writes, pass.out);
      // Each reply brings its client's next request: keep the kernel's queue empty meanwhile.
      pass.out.forEach(([data, datagram], i) => {
        this.#replies.sendWithTwins(data, datagram, pass.twins.get(datagram) ?? []);
        this.#receiver.pumpAfter(i + 1);
      });
      // Control requests are rare and not on the hot path: one at a time, after the leases.
      for (const { datagram, message } of pass.controls) {
        this.#replies.send(await this.#control.reply(datagram, message), datagram);
        // A reservation or an admin release changed the allocation in a way
        // the running rebuild may not have read: read the store once more.
        if (this.#resync.running) this.#resync.ask();
      }
    } finally {
      this.#tellPass(pass);
      let answered = pass.out.length;
      for (const write of pass.writes) if (write.answered) answered++;
      this.#receiver.served(answered);
    }
  }

  /**
   * Tells the observers what they are to hear of a pass, draining the
   * socket as among its replies: each client just answered sends its next
   * request meanwhile.
   */
  #tellPass(pass: Pass): void {
    const told = pass.told;
    pass.told = [];
    this.#log.hold();
    try {
      told.forEach((tell, i) => {
        tell();
        this.#receiver.pumpAfter(i + 1);
      });
    } finally {
      this.#log.release();
    }
  }

  /** Tells the observers of lease events once the pass's replies are sent. */
  #tell(events: readonly LeaseEvent[]): void {
    if (events.length > 0) {
      this.#current.told.push(() => {
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
