/**
 * A small line logger for the daemons: stderr by default, appended to a file
 * when a path is given, or syslog with facility daemon (`syslog_sink.ts`,
 * which never blocks). One event per line: a message followed by
 * `key=value` fields, so lines grep well.
 *
 * On stderr under journald (`JOURNAL_STREAM` names our stderr), a line
 * starts with its `<N>` syslog priority instead of a timestamp and a level
 * word: journald stamps and ranks each line itself (sd-daemon(3)); and it
 * is sent without waiting for journald (`journal_stream.ts`).
 *
 * (LogTape would work from npm, but the three sinks we need are a few lines
 * each and keep the compiled binaries free of dependencies.)
 *
 * @module
 */

import { LogSeverity } from "../../ffi/libc.ts";
import { errorMessage } from "../util/errors.ts";
import { IsoTimes } from "./iso_time.ts";
import { JournalStream } from "./journal_stream.ts";
import { SyslogSink } from "./syslog_sink.ts";

/** Severity of a log line, most severe first. */
export type Level = "error" | "warn" | "info" | "debug";

const LEVELS: Record<Level, number> = { error: 0, warn: 1, info: 2, debug: 3 };
const SYSLOG_SEVERITY: Record<Level, number> = {
  error: LogSeverity.err,
  warn: LogSeverity.warning,
  info: LogSeverity.info,
  debug: LogSeverity.debug,
};

/** Structured fields appended to a line as `key=value`. */
export type Fields = Record<string, string | number | boolean | undefined | null>;

/** Where log lines go. */
export interface LoggerOptions {
  /** Program name, used as the syslog ident. */
  program: string;
  /** Append lines to this file instead of stderr. */
  logPath?: string | undefined;
  /** Send lines to syslog (facility daemon) instead of stderr or the file. */
  syslog?: boolean | undefined;
  /** The syslog daemon's socket (default `/dev/log`; tests use a stand-in). */
  syslogPath?: string | undefined;
  /** Lines below this level are dropped (default `info`). */
  level?: Level | undefined;
  /**
   * stderr is a journald stream: prefix lines with `<N>`, no timestamp
   * (default: {@link journalStreamIsStderr}).
   */
  journal?: boolean | undefined;
  /** The descriptor of stderr in journal mode (default 2; tests use a stand-in socket). */
  journalFd?: number | undefined;
}

/**
 * Whether `JOURNAL_STREAM` (`DEVICE:INODE`, set by systemd for a service
 * whose stderr goes to the journal) names this process's stderr. A child
 * that inherited the variable but has its stderr elsewhere gets false.
 */
export function journalStreamIsStderr(
  stream = Deno.env.get("JOURNAL_STREAM"),
  stderrPath = "/proc/self/fd/2",
): boolean {
  const match = stream?.match(/^(\d+):(\d+)$/);
  if (!match) return false;
  try {
    const { dev, ino } = Deno.statSync(stderrPath);
    return String(dev) === match[1] && String(ino) === match[2];
  } catch {
    return false;
  }
}

/** A value with one of these is quoted. */
const NEEDS_QUOTES = /[\s"=]/;

/** Formats fields as ` key=value`, quoting values with spaces or quotes. */
export function formatFields(fields: Fields | undefined): string {
  if (!fields) return "";
  let out = "";
  // for-in and no test for numbers: a line's fields cost more than the rest of it.
  for (const key in fields) {
    const value = fields[key];
    if (value === undefined || value === null) continue;
    if (typeof value === "number") {
      out += ` ${key}=${value}`;
      continue;
    }
    const text = String(value);
    out += ` ${key}=${text === "" || NEEDS_QUOTES.test(text) ? JSON.stringify(text) : text}`;
  }
  return out;
}

const encoder = new TextEncoder();

/** A logger writing to one sink. */
export class Logger {
  #level = LEVELS.info;
  #file: Deno.FsFile | undefined;
  #syslog: SyslogSink | undefined;
  /**
   * stderr is journald's stream: lines carry their priority, and are sent
   * without waiting (`journal_stream.ts`).
   */
  #journal: JournalStream | undefined;
  /** Lines held by {@link hold}, written at {@link release}. */
  #held: string[] | undefined;
  /** A pass's lines share their time stamp. */
  #times = new IsoTimes();

  /** Opens the sink; throws when the log file cannot be opened for appending. */
  constructor(options: LoggerOptions) {
    this.reconfigure(options);
  }

  /**
   * Switches to another sink and level (a reload). The new sink is opened
   * first: when it cannot be, this throws and the old one stays in use.
   */
  reconfigure(options: LoggerOptions): void {
    let file: Deno.FsFile | undefined;
    const syslog = options.syslog === true;
    if (!syslog && options.logPath) {
      try {
        file = Deno.openSync(options.logPath, { append: true, create: true });
      } catch (error) {
        throw new Error(`Cannot open log file "${options.logPath}": ${errorMessage(error)}`, {
          cause: error,
        });
      }
    }
    this.close();
    this.#syslog = syslog
      ? new SyslogSink(options.program, { path: options.syslogPath })
      : undefined;
    this.#file = file;
    const journal = !syslog && !file && (options.journal ?? journalStreamIsStderr());
    this.#journal = journal ? new JournalStream(options.journalFd) : undefined;
    this.#level = LEVELS[options.level ?? "info"];
  }

  /** Whether lines at `level` are written (to skip building costly fields). */
  enabled(level: Level): boolean {
    return LEVELS[level] <= this.#level;
  }

  /** Logs at level error. */
  error(message: string, fields?: Fields): void {
    this.log("error", message, fields);
  }
  /** Logs at level warn. */
  warn(message: string, fields?: Fields): void {
    this.log("warn", message, fields);
  }
  /** Logs at level info. */
  info(message: string, fields?: Fields): void {
    this.log("info", message, fields);
  }
  /** Logs at level debug. */
  debug(message: string, fields?: Fields): void {
    this.log("debug", message, fields);
  }

  /** Writes one line if `level` passes the threshold. */
  log(level: Level, message: string, fields?: Fields): void {
    if (LEVELS[level] > this.#level) return;
    const body = `${message}${formatFields(fields)}`;
    if (this.#syslog) {
      this.#syslog.send(SYSLOG_SEVERITY[level], body);
      return;
    }
    const line = this.#journal
      ? `<${SYSLOG_SEVERITY[level]}>${body}\n`
      : `${this.#times.of(Date.now())} ${level.toUpperCase()} ${body}\n`;
    if (this.#held) this.#held.push(line);
    else this.#write(line);
  }

  /**
   * Holds file and stderr lines until {@link release}, so that a burst of
   * lines (a pass's lease events) costs one write. Syslog lines are not held.
   */
  hold(): void {
    if (!this.#syslog) this.#held ??= [];
  }

  /** Writes the lines held since {@link hold} at once. */
  release(): void {
    const held = this.#held;
    this.#held = undefined;
    if (held && held.length > 0) this.#write(held.join(""));
  }

  #write(text: string): void {
    if (this.#journal?.write(text)) return;
    const bytes = encoder.encode(text);
    try {
      // writeSync may write part of a large buffer: finish it.
      for (let done = 0; done < bytes.length;) {
        done += (this.#file ?? Deno.stderr).writeSync(bytes.subarray(done));
      }
    } catch {
      // A log sink that fails (disk full, closed stderr) must not stop the daemon.
    }
  }

  /** Closes the file or the syslog connection; safe to call twice. */
  close(): void {
    this.release();
    this.#file?.close();
    this.#file = undefined;
    this.#syslog?.close();
    this.#syslog = undefined;
  }
}
