/**
 * The `command` output: runs a program after each lease event it chose
 * (`events`), with the event in its environment. Events reach the program
 * one at a time and in order, from a queue of its own, so a slow program
 * delays only itself and never the allocation loop. Its stdout and stderr
 * go to the log line by line; a failure or a timeout is logged and, with
 * `retries`, run again.
 *
 * @module
 */

import type { LeaseEventKind } from "../../config/operations.ts";
import type { Logger } from "../log/logger.ts";
import type { ServerMetrics } from "../metrics/server_metrics.ts";
import { errorMessage } from "../util/errors.ts";
import type { Lease } from "../store/lease_store.ts";
import type { LeaseEvent, Output } from "./lease_event.ts";
import { after, sleep, type Timer } from "../util/timer.ts";

/** Options of a command output. */
export interface CommandOptions {
  command: string[];
  events: LeaseEventKind[];
  /** Seconds before a run is stopped (SIGTERM, then SIGKILL after {@link KILL_GRACE_MS}). */
  timeout: number;
  retries: number;
}

/** Events waiting beyond this many are dropped, oldest first (a hung program must not eat memory). */
export const MAX_QUEUE = 10_000;
/** After SIGTERM at the timeout, how long a program has before SIGKILL. */
export const KILL_GRACE_MS = 2000;
/** Pause between a failed run and its retry. */
export const RETRY_DELAY_MS = 1000;
/**
 * After the program exits, how long to go on reading its output: a child
 * it left behind may hold the pipes open, and must not stall the queue.
 */
export const PIPE_GRACE_MS = 500;
/** Longest line of output logged; the rest is cut. */
const MAX_LINE = 1000;

/**
 * Variables a program must not inherit: they belong to the server's own
 * relation with systemd (a child that wrote to NOTIFY_SOCKET would speak
 * for the server; its stderr is not the journal stream).
 */
const PRIVATE_ENV = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"];

/** An event a command runs for: its kind, the lease, the table before a move. */
interface Queued {
  kind: LeaseEvent["kind"];
  lease: Lease;
  previousTable: number;
}

/** The environment of a run: the server's, minus {@link PRIVATE_ENV}, plus the event. */
export function commandEnv(
  event: Queued,
  base: Record<string, string> = Deno.env.toObject(),
): Record<string, string> {
  const env = { ...base };
  for (const key of PRIVATE_ENV) delete env[key];
  const { lease } = event;
  return {
    ...env,
    EVENT: event.kind,
    TABLE: String(lease.table),
    PREVIOUS_TABLE: String(event.previousTable),
    FAMILY: String(lease.family),
    IFNAME: lease.ifname,
    ADDRESS: lease.address,
    TAG: lease.tag ?? "",
  };
}

/** Runs a program for each chosen lease event, in order. */
export class CommandOutput implements Output {
  name: string;
  readonly needsLeases = false;
  readonly #options: CommandOptions;
  readonly #log: Logger;
  readonly #metrics: ServerMetrics | undefined;
  readonly #queue: Queued[] = [];
  #worker: Promise<void> | null = null;
  #running: Deno.ChildProcess | null = null;
  #stopping = false;
  #dropped = 0;

  /** An output named `name` (its place in the config). */
  constructor(name: string, options: CommandOptions, log: Logger, metrics?: ServerMetrics) {
    this.name = name;
    this.#options = options;
    this.#log = log;
    this.#metrics = metrics;
  }

  /** Nothing to do at start: a command hears of events, not of state. */
  start(_bound: readonly Lease[]): void {}

  /** Queues the event when the command wants it; returns at once. */
  onLease(event: LeaseEvent): void {
    const { lease } = event;
    if (!lease || this.#stopping || !this.#options.events.includes(event.kind)) return;
    if (this.#queue.length >= MAX_QUEUE) {
      this.#queue.shift();
      if (this.#dropped++ === 0) {
        this.#log.error("command output is behind: dropping the oldest events", {
          output: this.name,
          queued: MAX_QUEUE,
        });
      }
    }
    this.#queue.push({ kind: event.kind, lease, previousTable: event.previousTable ?? 0 });
    this.#worker ??= this.#drain().finally(() => (this.#worker = null));
  }

  /**
   * Runs what is queued until `deadline` (a `performance.now()` time), then
   * stops the running program and drops the rest, logging how many.
   */
  async stop(deadline: number, _removed: boolean): Promise<void> {
    this.#stopping = true;
    if (!this.#worker) return;
    let timer: Timer | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = after(deadline - performance.now(), () => resolve("late"));
    });
    const outcome = await Promise.race([this.#worker.then(() => "done" as const), late]);
    timer?.cancel();
    if (outcome === "late") {
      const left = this.#queue.length;
      this.#queue.length = 0;
      this.#kill("SIGKILL");
      await this.#worker;
      this.#log.warn("command output stopped with events left undelivered", {
        output: this.name,
        dropped: left,
      });
    }
  }

  /** Resolves when the queue is empty (for tests). */
  async settled(): Promise<void> {
    while (this.#worker) await this.#worker;
  }

  async #drain(): Promise<void> {
    // Start in a task of its own: the pass that reported the event finishes (and answers) first.
    await sleep(0);
    while (this.#queue.length > 0) {
      const event = this.#queue.shift()!;
      if (this.#dropped > 0) {
        this.#log.warn("command output dropped events", {
          output: this.name,
          dropped: this.#dropped,
        });
        this.#dropped = 0;
      }
      const attempts = this.#options.retries + 1;
      for (let attempt = 1; attempt <= attempts; attempt++) {
        if (await this.#run(event, attempt, attempts)) break;
        this.#metrics?.outputFailure(this.name);
        if (attempt < attempts && !this.#stopping) {
          await sleep(RETRY_DELAY_MS);
        } else break;
      }
    }
  }

  /** One run; true when the program exited 0 in time. */
  async #run(event: Queued, attempt: number, attempts: number): Promise<boolean> {
    const [program, ...args] = this.#options.command;
    const fields = {
      output: this.name,
      event: event.kind,
      table: event.lease.table,
      attempt: attempts > 1 ? `${attempt}/${attempts}` : undefined,
    };
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(program, {
        args,
        env: commandEnv(event),
        clearEnv: true,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        // Its own process group, so a timeout stops the children a script started too.
        detached: true,
      }).spawn();
    } catch (error) {
      this.#log.error("command cannot start", {
        ...fields,
        command: program,
        error: errorMessage(error),
      });
      return false;
    }
    this.#running = child;
    let timedOut = false;
    let killTimer: Timer | undefined;
    const timer = after(this.#options.timeout * 1000, () => {
      timedOut = true;
      this.#kill("SIGTERM");
      killTimer = after(KILL_GRACE_MS, () => this.#kill("SIGKILL"));
    });
    const readers = [child.stdout.getReader(), child.stderr.getReader()];
    const piped = Promise.all([
      this.#pipe(readers[0], "stdout", fields),
      this.#pipe(readers[1], "stderr", fields),
    ]);
    const status = await child.status;
    timer.cancel();
    killTimer?.cancel();
    let graceTimer: Timer | undefined;
    const grace = new Promise<void>((resolve) => (graceTimer = after(PIPE_GRACE_MS, resolve)));
    await Promise.race([piped, grace]);
    graceTimer?.cancel();
    for (const reader of readers) reader.cancel().catch(() => {});
    await piped;
    this.#running = null;
    if (timedOut) {
      this.#log.error("command timed out and was stopped", {
        ...fields,
        timeout: `${this.#options.timeout}s`,
      });
      return false;
    }
    if (!status.success) {
      this.#log.error("command failed", {
        ...fields,
        ...(status.signal ? { signal: status.signal } : { code: status.code }),
      });
      return false;
    }
    this.#log.debug("command done", fields);
    return true;
  }

  /** Logs a stream of the program line by line (stderr as warnings). */
  async #pipe(
    reader: ReadableStreamDefaultReader<Uint8Array>,
    name: "stdout" | "stderr",
    fields: Record<string, string | number | undefined>,
  ): Promise<void> {
    const decoder = new TextDecoder();
    let pending = "";
    const emit = (line: string) => {
      if (line === "") return;
      const text = line.length > MAX_LINE ? `${line.slice(0, MAX_LINE)}...` : line;
      this.#log.log(name === "stderr" ? "warn" : "info", "command output", {
        ...fields,
        stream: name,
        line: text,
      });
    };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        pending += decoder.decode(value, { stream: true });
        const lines = pending.split("\n");
        pending = lines.pop()!;
        lines.forEach(emit);
      }
    } catch {
      // Cancelled after the grace period: log what came.
    }
    emit(pending + decoder.decode());
  }

  /** Signals the running program's whole process group. */
  #kill(signal: Deno.Signal): void {
    if (!this.#running) return;
    try {
      Deno.kill(-this.#running.pid, signal);
    } catch { /* the group is gone */ }
  }
}
