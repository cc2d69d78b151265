/**
 * A {@link Logger} that keeps its lines in memory, every level included,
 * for in-process tests of what the daemon logs. Lines read as the log
 * file's would, without the timestamp: `INFO granted family=inet ...`.
 *
 * @module
 */

import { type Fields, formatFields, type Level, Logger } from "../../src/log/logger.ts";

/** A logger whose lines are kept in {@link MemoryLogger.lines}. */
export class MemoryLogger extends Logger {
  /** Every line so far, oldest first. */
  readonly lines: string[] = [];

  /** A logger writing nowhere but {@link lines}. */
  constructor() {
    super({ program: "test" });
  }

  override log(level: Level, message: string, fields?: Fields): void {
    this.lines.push(`${level.toUpperCase()} ${message}${formatFields(fields)}`);
  }

  /** The lines that match `pattern`. */
  matching(pattern: RegExp): string[] {
    return this.lines.filter((line) => pattern.test(line));
  }
}
