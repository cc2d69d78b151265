/**
 * The timed outputs: `log` (a summary of pools and leases in the log every
 * `interval` seconds) and `prometheus_textfile` (the metrics written
 * atomically to a `.prom` file for node_exporter's textfile collector, at
 * start and every `interval` seconds). Their timers run until the output
 * stops.
 *
 * @module
 */

import type { Logger } from "../log/logger.ts";
import type { MetricsSnapshot, ServerMetrics } from "../metrics/server_metrics.ts";
import { familyName } from "../net/family.ts";
import { errorMessage } from "../util/errors.ts";
import { writeFileAtomic } from "./atomic_file.ts";
import type { Lease } from "../store/lease_store.ts";
import type { LeaseEvent, Output } from "./lease_event.ts";
import { every, type Timer } from "../util/timer.ts";

/** The `log` output. */
export class SummaryLogOutput implements Output {
  name: string;
  readonly needsLeases = false;
  readonly #interval: number;
  readonly #log: Logger;
  readonly #snapshot: () => MetricsSnapshot;
  #timer: Timer | undefined;

  /** An output named `name` logging `snapshot()` every `interval` seconds. */
  constructor(name: string, interval: number, log: Logger, snapshot: () => MetricsSnapshot) {
    this.name = name;
    this.#interval = interval;
    this.#log = log;
    this.#snapshot = snapshot;
  }

  /** Starts the timer (the first summary comes after one interval). */
  start(_bound: readonly Lease[]): void {
    this.#timer?.cancel();
    this.#timer = every(this.#interval * 1000, () => this.summary());
  }

  /** Events are summed up, not logged one by one. */
  onLease(_event: LeaseEvent): void {}

  /** Logs the summary now: a total line, then one line per pool. */
  summary(): void {
    const { pools, outside } = this.#snapshot();
    const sum = (key: "size" | "bound" | "reserved" | "held" | "free") =>
      pools.reduce((n, p) => n + p[key], 0);
    this.#log.info("summary", {
      pools: pools.length,
      tables: sum("size"),
      bound: sum("bound") + outside,
      reserved: sum("reserved"),
      held: sum("held"),
      free: sum("free"),
      outside_pools: outside,
    });
    for (const p of pools) {
      this.#log.info("summary of pool", {
        pool: p.name,
        family: familyName(p.family),
        size: p.size,
        bound: p.bound,
        reserved: p.reserved,
        held: p.held,
        free: p.free,
      });
    }
  }

  /** Stops the timer. */
  stop(_deadline: number, _removed: boolean): Promise<void> {
    this.#timer?.cancel();
    return Promise.resolve();
  }
}

/** The `prometheus_textfile` output. */
export class PrometheusTextfileOutput implements Output {
  name: string;
  readonly needsLeases = false;
  readonly #path: string;
  readonly #interval: number;
  readonly #log: Logger;
  readonly #metrics: ServerMetrics;
  readonly #snapshot: () => MetricsSnapshot;
  #timer: Timer | undefined;
  #writing: Promise<void> | null = null;
  #failing = false;

  /** An output named `name` writing the metrics to `path` every `interval` seconds. */
  constructor(
    name: string,
    options: { path: string; interval: number },
    log: Logger,
    metrics: ServerMetrics,
    snapshot: () => MetricsSnapshot,
  ) {
    this.name = name;
    this.#path = options.path;
    this.#interval = options.interval;
    this.#log = log;
    this.#metrics = metrics;
    this.#snapshot = snapshot;
  }

  /** Writes the file now, then every interval. */
  start(_bound: readonly Lease[]): void {
    this.#timer?.cancel();
    this.write();
    this.#timer = every(this.#interval * 1000, () => this.write());
  }

  /** Events show in the counters at the next write. */
  onLease(_event: LeaseEvent): void {}

  /** Writes the file unless a write is still running; resolves when done (for tests). */
  write(): Promise<void> {
    this.#writing ??= this.#write().finally(() => (this.#writing = null));
    return this.#writing;
  }

  async #write(): Promise<void> {
    try {
      await writeFileAtomic(this.#path, this.#metrics.render(this.#snapshot()));
      if (this.#failing) this.#log.info("metrics file written again", { output: this.name });
      this.#failing = false;
    } catch (error) {
      this.#metrics.outputFailure(this.name);
      if (!this.#failing) {
        this.#log.error("cannot write the metrics file", {
          output: this.name,
          error: errorMessage(error),
        });
      }
      this.#failing = true;
    }
  }

  /** Stops the timer; a removed output deletes its file (stale metrics would mislead). */
  async stop(_deadline: number, removed: boolean): Promise<void> {
    this.#timer?.cancel();
    await this.#writing;
    if (removed) await Deno.remove(this.#path).catch(() => {});
  }
}
