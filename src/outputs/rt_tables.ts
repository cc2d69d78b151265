/**
 * The `rt_tables` output: keeps an iproute2 table-names file (for example
 * `/etc/iproute2/rt_tables.d/table-allocator.conf`) listing every bound
 * lease, so `ip route show table eth1-v4` works. Rewritten atomically from
 * the store at start and after every change; writes never wait in the
 * allocation loop: a change while a write runs is folded into the next.
 *
 * @module
 */

import type { Logger } from "../log/logger.ts";
import type { ServerMetrics } from "../metrics/server_metrics.ts";
import { errorMessage } from "../util/errors.ts";
import { writeFileAtomic } from "./atomic_file.ts";
import type { Lease } from "../store/lease_store.ts";
import type { LeaseEvent, Output } from "./lease_event.ts";
import { renderRtTables, TableNames } from "./table_names.ts";

/** The file and name template. */
export interface RtTablesOptions {
  path: string;
  name: string;
}

/** Keeps the table-names file of the bound leases. */
export class RtTablesOutput implements Output {
  name: string;
  readonly needsLeases = true;
  readonly #options: RtTablesOptions;
  readonly #log: Logger;
  readonly #metrics: ServerMetrics | undefined;
  #names: TableNames;
  /** The running write, if any; `#dirty`: another is due after it. */
  #writing: Promise<void> | null = null;
  #dirty = false;
  #failing = false;
  /**
   * Events that came before {@link start} (while the store was read): they
   * are replayed over what the store gave, which is correct whichever of
   * them it already showed.
   */
  #early: LeaseEvent[] | null = [];

  /** An output named `name` (its place in the config). */
  constructor(name: string, options: RtTablesOptions, log: Logger, metrics?: ServerMetrics) {
    this.name = name;
    this.#options = options;
    this.#log = log;
    this.#metrics = metrics;
    this.#names = new TableNames(options.name);
  }

  /** Names every bound lease, in table order, and writes the file. */
  start(bound: readonly Lease[]): void {
    this.#names = new TableNames(this.#options.name);
    for (const lease of [...bound].sort((a, b) => a.table - b.table || a.family - b.family)) {
      this.#names.assign(lease);
    }
    for (const event of this.#early ?? []) this.#apply(event);
    this.#early = null;
    this.#schedule();
  }

  /** Updates the names of the event's lease and schedules a write when they changed. */
  onLease(event: LeaseEvent): void {
    if (this.#early) {
      this.#early.push(event);
      return;
    }
    const before = this.#names.version;
    this.#apply(event);
    // A refresh changes no name: no write.
    if (this.#names.version !== before) this.#schedule();
  }

  /** Waits for the last write; a removed output deletes its file. */
  async stop(_deadline: number, removed: boolean): Promise<void> {
    while (this.#writing) await this.#writing;
    if (!removed) return;
    try {
      await Deno.remove(this.#options.path);
      this.#log.info("rt_tables file removed: the output is gone from the config", {
        output: this.name,
        path: this.#options.path,
      });
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        this.#log.warn("cannot remove the rt_tables file", {
          output: this.name,
          path: this.#options.path,
          error: errorMessage(error),
        });
      }
    }
  }

  #apply(event: LeaseEvent): void {
    const { lease } = event;
    if (!lease) return;
    if (event.kind === "released" || event.kind === "expired") this.#names.remove(lease);
    else this.#names.assign(lease);
  }

  /** Resolves once the file holds every change made so far (for tests). */
  async settled(): Promise<void> {
    while (this.#writing) await this.#writing;
  }

  #schedule(): void {
    if (this.#writing) {
      this.#dirty = true;
      return;
    }
    this.#writing = this.#write().finally(() => {
      this.#writing = null;
      if (this.#dirty) {
        this.#dirty = false;
        this.#schedule();
      }
    });
  }

  async #write(): Promise<void> {
    try {
      await writeFileAtomic(this.#options.path, renderRtTables(this.#names.entries()));
      if (this.#failing) {
        this.#log.info("rt_tables file written again", { output: this.name });
        this.#failing = false;
      }
    } catch (error) {
      this.#metrics?.outputFailure(this.name);
      // One line per failure run, not per lease event.
      if (!this.#failing) {
        this.#log.error("cannot write the rt_tables file", {
          output: this.name,
          error: errorMessage(error),
        });
      }
      this.#failing = true;
    }
  }
}
