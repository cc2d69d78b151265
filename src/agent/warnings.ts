/**
 * Repeated warnings, rate-limited: one line per kind in an interval, and
 * the count of those left out on the next line (`suppressed=N`). A
 * squatter, a flood of bad datagrams or a rule fight cannot fill a log.
 *
 * @module
 */

import type { Fields, Level } from "../log/logger.ts";

/** How often one kind of warning is written, at most. */
export const WARNING_INTERVAL_MS = 10_000;

/** Writes each kind of warning at most once per interval. */
export class WarningLimiter {
  #write: (level: Level, message: string, fields?: Fields) => void;
  #intervalMs: number;
  #last = new Map<string, { at: number; suppressed: number }>();

  /** Warnings go to `write`, one per kind every `intervalMs`. */
  constructor(
    write: (level: Level, message: string, fields?: Fields) => void,
    intervalMs = WARNING_INTERVAL_MS,
  ) {
    this.#write = write;
    this.#intervalMs = intervalMs;
  }

  /** Logs `message` unless a warning of `kind` was logged within the interval (then counts it). */
  warn(kind: string, message: string, fields: Fields = {}): void {
    const now = performance.now();
    const last = this.#last.get(kind);
    if (last && now - last.at < this.#intervalMs) {
      last.suppressed++;
      return;
    }
    this.#write("warn", message, { ...fields, suppressed: last?.suppressed || undefined });
    this.#last.set(kind, { at: now, suppressed: 0 });
  }
}
