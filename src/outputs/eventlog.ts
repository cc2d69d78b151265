/**
 * The `eventlog` output: one log line per lease event, the server's
 * classic lines (`granted family=inet ifname=eth1 address=192.0.2.10
 * table=10000 pool=default expires=... from=@eth1-192.0.2.10-2 pid=812
 * uid=0 gid=0`). On by default when the config has no `outputs`.
 *
 * @module
 */

import type { Logger } from "../log/logger.ts";
import { familyName } from "../net/family.ts";
import type { BoundLease, LeaseEvent, Output } from "./lease_event.ts";

/** Logs each lease event. */
export class EventLogOutput implements Output {
  name: string;
  readonly #log: Logger;

  /** An output named `name` (its place in the config). */
  constructor(name: string, log: Logger) {
    this.name = name;
    this.#log = log;
  }

  /** Nothing to do at start. */
  start(_bound: readonly BoundLease[]): void {}

  /** One line: the event, the identity, the table, then the event's details. */
  leaseEvent(event: LeaseEvent): void {
    this.#log.info(event.kind, {
      family: familyName(event.family),
      ifname: event.ifname,
      address: event.address,
      tag: event.tag,
      table: event.table,
      previous_table: event.kind === "moved" ? event.previousTable : undefined,
      ...event.details,
    });
  }

  /** Nothing to wait for. */
  stop(_deadline: number, _removed: boolean): Promise<void> {
    return Promise.resolve();
  }
}
