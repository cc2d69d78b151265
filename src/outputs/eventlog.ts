/**
 * The `eventlog` output: one log line per lease event, the server's
 * classic lines (`granted family=inet ifname=eth1 address=192.0.2.10
 * table=10000 pool=default expires=... from=@eth1-192.0.2.10-2 pid=812
 * uid=0 gid=0`), written by the daemon's {@link LogObserver}. On by default
 * when the config has no `outputs`.
 *
 * @module
 */

import type { Logger } from "../log/logger.ts";
import { LogObserver } from "../server/events.ts";
import type { Lease } from "../store/lease_store.ts";
import type { LeaseEvent, Output } from "./lease_event.ts";

/** Logs each lease event. */
export class EventLogOutput implements Output {
  name: string;
  readonly needsLeases = false;
  readonly #lines: LogObserver;

  /** An output named `name` (its place in the config). */
  constructor(name: string, log: Logger) {
    this.name = name;
    this.#lines = new LogObserver(log);
  }

  /** Nothing to do at start. */
  start(_bound: readonly Lease[]): void {}

  /** One line: the event, the identity, the table, then where it came from. */
  onLease(event: LeaseEvent): void {
    this.#lines.onLease(event);
  }

  /** Nothing to wait for. */
  stop(_deadline: number, _removed: boolean): Promise<void> {
    return Promise.resolve();
  }
}
