/**
 * The interface between the server and its outputs. Outputs hear of lease
 * events through the daemon's observer interface (`src/server/events.ts`)
 * once each change is durable, and never delay it: they queue or coalesce
 * their work.
 *
 * @module
 */

import type { LeaseEvent } from "../server/events.ts";
import type { Lease } from "../store/lease_store.ts";

export type { LeaseEvent, LeaseEventKind } from "../server/events.ts";

/** One running output. */
export interface Output {
  /**
   * `outputs[N]`, its place in the config, for log lines and metrics (a
   * reload that keeps the output may move it).
   */
  name: string;
  /** Whether {@link start} needs the store's bound leases (they are read only then). */
  readonly needsLeases: boolean;
  /** Starts, with the store's bound leases when it asked for them (files are rewritten from them). */
  start(bound: readonly Lease[]): void;
  /** A lease changed (durably); must return at once. */
  onLease(event: LeaseEvent): void;
  /**
   * Stops timers and waits (at most until `deadline`, a `performance.now()`
   * time) for queued work; `removed`: the output is gone from the config,
   * so it removes what it maintained.
   */
  stop(deadline: number, removed: boolean): Promise<void>;
}
