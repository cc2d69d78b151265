/**
 * The server's outputs, built from the config's `outputs` list: the lease
 * observer the daemon reports to, fanned out to every output. A reload
 * keeps the outputs whose options did not change (a command's queue, the
 * names of the rt_tables file), starts the new ones and retires the rest.
 *
 * @module
 */

import type { OutputConfig } from "../../config/operations.ts";
import type { Logger } from "../log/logger.ts";
import type { MetricsSnapshot, ServerMetrics } from "../metrics/server_metrics.ts";
import { errorMessage } from "../util/errors.ts";
import { CommandOutput } from "./command.ts";
import { EventLogOutput } from "./eventlog.ts";
import type { ErrorReplyEvent, LeaseObserver } from "../server/events.ts";
import type { Lease } from "../store/lease_store.ts";
import type { LeaseEvent, Output } from "./lease_event.ts";
import { PrometheusTextfileOutput, SummaryLogOutput } from "./periodic.ts";
import { RtTablesOutput } from "./rt_tables.ts";

/**
 * How long a stopping server lets commands deliver what is queued: well
 * within the unit's `TimeoutStopSec=10s`, so systemd never has to kill it.
 */
export const STOP_GRACE_MS = 5000;
/** How long a command removed by a reload may go on delivering its queue. */
export const RETIRE_GRACE_MS = 60_000;

/** What outputs read from the server. */
export interface OutputsContext {
  log: Logger;
  metrics: ServerMetrics;
  /** The pools and counts now (for `log` and `prometheus_textfile`). */
  snapshot: () => MetricsSnapshot;
}

interface Entry {
  /** The config it was built from, as JSON, to recognise it after a reload. */
  key: string;
  /** The file it maintains, if any. */
  path: string | undefined;
  output: Output;
}

/** Builds one output. */
function buildOutput(config: OutputConfig, name: string, context: OutputsContext): Output {
  const { log, metrics, snapshot } = context;
  switch (config.kind) {
    case "eventlog":
      return new EventLogOutput(name, log);
    case "rt_tables":
      return new RtTablesOutput(name, config, log, metrics);
    case "command":
      return new CommandOutput(name, config, log, metrics);
    case "log":
      return new SummaryLogOutput(name, config.interval, log, snapshot);
    case "prometheus_textfile":
      return new PrometheusTextfileOutput(name, config, log, metrics, snapshot);
  }
}

/** Every configured output, as one observer. */
export class Outputs implements LeaseObserver {
  readonly #context: OutputsContext;
  #entries: Entry[] = [];
  /** Outputs retired by reloads, still delivering their queues, and their stop. */
  readonly #retiring = new Map<Output, Promise<void>>();

  /** No outputs until {@link apply}. */
  constructor(context: OutputsContext) {
    this.#context = context;
  }

  /** The outputs running now (for tests). */
  get outputs(): readonly Output[] {
    return this.#entries.map((e) => e.output);
  }

  /**
   * Makes `configs` the running outputs: unchanged ones keep running
   * (renamed to their new place), new ones start from `bound()` (the
   * store's bound leases, read only when a new output needs them), removed
   * ones stop in the background and remove what they maintained.
   */
  async apply(
    configs: readonly OutputConfig[],
    bound: () => Promise<readonly Lease[]>,
  ): Promise<void> {
    const old = [...this.#entries];
    const next: Entry[] = [];
    const started: Output[] = [];
    configs.forEach((config, i) => {
      const key = JSON.stringify(config);
      const name = `outputs[${i}]`;
      const kept = old.findIndex((e) => e.key === key);
      if (kept >= 0) {
        const [entry] = old.splice(kept, 1);
        entry.output.name = name;
        next.push(entry);
        return;
      }
      const output = buildOutput(config, name, this.#context);
      started.push(output);
      next.push({ key, path: "path" in config ? config.path : undefined, output });
    });
    this.#entries = next;
    let leases: readonly Lease[] = [];
    if (started.some((o) => o.needsLeases)) {
      try {
        leases = await bound();
      } catch (error) {
        this.#context.log.error("cannot read the bound leases for the outputs", {
          error: errorMessage(error),
        });
      }
    }
    for (const output of started) {
      try {
        output.start(leases);
      } catch (error) {
        this.#context.log.error("output cannot start", {
          output: output.name,
          error: errorMessage(error),
        });
      }
    }
    for (const { output, path } of old) {
      // A new output may have taken over its file: remove only what nobody keeps.
      const kept = path !== undefined && next.some((e) => e.path === path);
      const retire = output.stop(performance.now() + RETIRE_GRACE_MS, !kept).catch((error) =>
        this.#context.log.error("output did not stop cleanly", {
          output: output.name,
          error: errorMessage(error),
        })
      ).finally(() => this.#retiring.delete(output));
      this.#retiring.set(output, retire);
    }
  }

  /** Hands the event to every output; one that throws is logged, never the daemon's problem. */
  onLease(event: LeaseEvent): void {
    for (const { output } of this.#entries) {
      try {
        output.onLease(event);
      } catch (error) {
        this.#context.log.error("output failed on a lease event", {
          output: output.name,
          error: errorMessage(error),
        });
      }
    }
  }

  /** Error replies are counted by the metrics, not by outputs. */
  onErrorReply(_event: ErrorReplyEvent): void {}

  /** Stops every output, letting commands deliver their queues for up to `graceMs`. */
  async stop(graceMs = STOP_GRACE_MS): Promise<void> {
    const deadline = performance.now() + graceMs;
    const entries = this.#entries;
    this.#entries = [];
    await Promise.all([
      ...entries.map(({ output }) => output.stop(deadline, false)),
      // Retired outputs get the same deadline: a shutdown does not wait for their long grace.
      ...[...this.#retiring.keys()].map((output) => output.stop(deadline, false)),
      ...this.#retiring.values(),
    ]);
  }
}
