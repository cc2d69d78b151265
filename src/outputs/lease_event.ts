/**
 * Lease events as outputs hear of them, and the small interfaces between
 * the server and its outputs. The daemon reports each event once its
 * change is durable; outputs never delay it (they queue or coalesce).
 *
 * @module
 */

import type { LeaseEventKind } from "../../config/operations.ts";
import type { Fields } from "../log/logger.ts";
import type { AddrFamily } from "../net/family.ts";

export type { LeaseEventKind } from "../../config/operations.ts";

/** One durable change of a lease. */
export interface LeaseEvent {
  kind: LeaseEventKind;
  family: AddrFamily;
  ifname: string;
  address: string;
  tag: string | undefined;
  /** The lease's table; for `released` and `expired`, the table it had. */
  table: number;
  /** For `moved`, the table it had before; 0 otherwise. */
  previousTable: number;
  /** Wall-clock expiry in ms; for `released` and `expired`, when it ended. */
  expiresAt: number;
  /**
   * Further fields of the event's log line, after the table: where the
   * table came from (`pool`, `reserved`), `expires`, and who asked
   * (`from`, `pid`, `uid`, `gid`, or `by=control`).
   */
  details: Fields;
}

/** Hears of lease events; must return at once (queue, do not wait). */
export interface LeaseObserver {
  leaseEvent(event: LeaseEvent): void;
}

/** A bound lease as outputs see it at start and after a reload. */
export interface BoundLease {
  family: AddrFamily;
  ifname: string;
  address: string;
  tag: string | undefined;
  table: number;
}

/** One running output. */
export interface Output extends LeaseObserver {
  /**
   * `outputs[N]`, its place in the config, for log lines and metrics (a
   * reload that keeps the output may move it).
   */
  name: string;
  /** Starts with the bound leases of the store (files are rewritten from them). */
  start(bound: readonly BoundLease[]): void;
  /**
   * Stops timers and waits (at most until `deadline`, a `performance.now()`
   * time) for queued work; `removed`: the output is gone from the config,
   * so it removes what it maintained.
   */
  stop(deadline: number, removed: boolean): Promise<void>;
}
