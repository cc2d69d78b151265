/**
 * Log sinks of the identities a process holds. Each identity logs where
 * its client's `-l`/`-s` said, and every line also goes to the process's
 * own log (the agent's, or the foreground client's). A sink shared by
 * several identities (one log file, syslog) is opened once and closed
 * with its last identity; a line is never written twice to one sink.
 *
 * @module
 */

import { type Fields, type Level, Logger } from "../log/logger.ts";
import { PROGRAM } from "../client/options.ts";

/** Where one identity's lines go: `-l PATH`, `-s`, or neither. */
export interface SinkChoice {
  logPath: string | undefined;
  syslog: boolean;
}

/** The key that two choices share exactly when they write to the same place. */
function sinkKey(choice: SinkChoice): string {
  if (choice.logPath !== undefined) return `file:${choice.logPath}`;
  return choice.syslog ? "syslog" : "own";
}

/** One identity's log: its own sink plus the process's log. */
export interface IdentityLog {
  log(level: Level, message: string, fields?: Fields): void;
  /** Gives the sink back; the last identity of a sink closes it. */
  close(): void;
}

/** Opens and shares the sinks of a process's identities. */
export class Sinks {
  #own: Logger;
  #ownKey: string;
  #open = new Map<string, { logger: Logger; users: number }>();

  /** Sinks around the process's own log, written where `own` says. */
  constructor(own: Logger, ownChoice: SinkChoice) {
    this.#own = own;
    this.#ownKey = sinkKey(ownChoice);
  }

  /** The process's own log. */
  get own(): Logger {
    return this.#own;
  }

  /**
   * The log of one identity. Throws (naming the file) when its log file
   * cannot be opened for appending.
   */
  open(choice: SinkChoice): IdentityLog {
    const key = sinkKey(choice);
    if (key === "own" || key === this.#ownKey) {
      return { log: (level, message, fields) => this.#own.log(level, message, fields), close() {} };
    }
    let entry = this.#open.get(key);
    if (!entry) {
      const logger = new Logger({
        program: PROGRAM,
        logPath: choice.logPath,
        syslog: choice.syslog,
      });
      entry = { logger, users: 0 };
      this.#open.set(key, entry);
    }
    entry.users++;
    const own = this.#own;
    let closed = false;
    const shared = entry;
    return {
      log(level, message, fields) {
        own.log(level, message, fields);
        shared.logger.log(level, message, fields);
      },
      close: () => {
        if (closed) return;
        closed = true;
        if (--shared.users === 0) {
          shared.logger.close();
          this.#open.delete(key);
        }
      },
    };
  }

  /** Closes every sink but the process's own log. */
  closeAll(): void {
    for (const { logger } of this.#open.values()) logger.close();
    this.#open.clear();
  }
}
