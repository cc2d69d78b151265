/**
 * Rate limits for repeated warnings, so that one sender cannot flood the
 * log: per kind (e.g. `rejected bad_json`) and sender (its kernel-verified
 * uid), at most a few lines per window; the rest are counted and reported
 * as one `N similar messages suppressed` line when the window ends.
 *
 * {@link RateLimiter} is the pure bookkeeping (a clock passed in);
 * {@link LimitedLog} puts it in front of a {@link Logger}.
 *
 * @module
 */

import type { Fields, Level, Logger } from "./logger.ts";
import { every, type Timer } from "../util/timer.ts";

/** Lines of one kind from one sender logged per window, by default. */
export const DEFAULT_BURST = 10;
/** The window, by default: also how often suppressed counts are reported. */
export const DEFAULT_WINDOW_MS = 10_000;
/**
 * Keys tracked at once. Senders are uids, so this is rarely reached; past
 * it, new senders of a kind share one key (`other`), and memory stays bounded.
 */
export const MAX_KEYS = 4096;

/** Options of {@link RateLimiter}. */
export interface RateLimitOptions {
  /** Lines per key per window (default {@link DEFAULT_BURST}). */
  burst?: number;
  /** Window length in ms (default {@link DEFAULT_WINDOW_MS}). */
  windowMs?: number;
  /** Keys tracked at once (default {@link MAX_KEYS}). */
  maxKeys?: number;
}

/** A window's suppressed lines, to be reported. */
export interface Suppressed {
  kind: string;
  sender: string;
  count: number;
  /** Fields of the last suppressed line (who sent it), for the report. */
  fields: Fields;
}

interface Window {
  kind: string;
  sender: string;
  start: number;
  logged: number;
  suppressed: number;
  fields: Fields;
}

/** Counts lines per (kind, sender) in fixed windows. Pure: the caller passes the time. */
export class RateLimiter {
  #burst: number;
  #windowMs: number;
  #maxKeys: number;
  #windows = new Map<string, Window>();

  /** A limiter with the given burst and window. */
  constructor(options: RateLimitOptions = {}) {
    this.#burst = options.burst ?? DEFAULT_BURST;
    this.#windowMs = options.windowMs ?? DEFAULT_WINDOW_MS;
    this.#maxKeys = options.maxKeys ?? MAX_KEYS;
  }

  /** Keys tracked now. */
  get size(): number {
    return this.#windows.size;
  }

  /**
   * Records one line of `kind` from `sender` at `now` (ms). Returns
   * whether to log it, and the window that ended before it if that window
   * suppressed lines (report it first, so the log reads in order).
   */
  hit(
    kind: string,
    sender: string,
    now: number,
    fields: Fields = {},
  ): { log: boolean; ended: Suppressed | undefined } {
    let key = `${kind}\0${sender}`;
    let window = this.#windows.get(key);
    if (!window && this.#windows.size >= this.#maxKeys) {
      sender = "other";
      key = `${kind}\0${sender}`;
      window = this.#windows.get(key);
    }
    let ended: Suppressed | undefined;
    if (window && now - window.start >= this.#windowMs) {
      ended = report(window);
      window = undefined;
    }
    if (!window) {
      window = { kind, sender, start: now, logged: 0, suppressed: 0, fields };
      this.#windows.set(key, window);
    }
    if (window.logged < this.#burst) {
      window.logged++;
      return { log: true, ended };
    }
    window.suppressed++;
    window.fields = fields;
    return { log: false, ended };
  }

  /**
   * Ends every window older than the window length: returns those that
   * suppressed lines, and forgets them all (idle senders cost nothing).
   */
  sweep(now: number): Suppressed[] {
    const out: Suppressed[] = [];
    for (const [key, window] of this.#windows) {
      if (now - window.start < this.#windowMs) continue;
      const ended = report(window);
      if (ended) out.push(ended);
      this.#windows.delete(key);
    }
    return out;
  }

  /** Ends every window now (at shutdown): those that suppressed lines. */
  drain(): Suppressed[] {
    const out = [...this.#windows.values()].map(report).filter((s): s is Suppressed => !!s);
    this.#windows.clear();
    return out;
  }
}

function report(window: Window): Suppressed | undefined {
  return window.suppressed === 0 ? undefined : {
    kind: window.kind,
    sender: window.sender,
    count: window.suppressed,
    fields: window.fields,
  };
}

/**
 * Log lines through a {@link RateLimiter}: {@link log} writes or counts a
 * line; every window length, the suppressed counts are written as
 * `N similar messages suppressed` lines, at the level of the lines they
 * stand for. {@link close} reports what is left and stops the timer.
 */
export class LimitedLog {
  #log: Pick<Logger, "log">;
  #limiter: RateLimiter;
  #now: () => number;
  #timer: Timer | undefined;
  #windowMs: number;
  #levels = new Map<string, Level>();

  /** Lines to `log`; `now` is the clock in ms (default the wall clock). */
  constructor(log: Pick<Logger, "log">, options: RateLimitOptions & { now?: () => number } = {}) {
    this.#log = log;
    this.#limiter = new RateLimiter(options);
    this.#now = options.now ?? Date.now;
    this.#windowMs = options.windowMs ?? DEFAULT_WINDOW_MS;
  }

  /**
   * Writes a line of `kind` from `sender` (e.g. `uid=65534`), unless that
   * pair has written its burst in this window; then it is counted.
   */
  log(level: Level, kind: string, sender: string, message: string, fields: Fields = {}): void {
    this.#levels.set(kind, level);
    const { log, ended } = this.#limiter.hit(kind, sender, this.#now(), fields);
    if (ended) this.#report(ended);
    if (log) this.#log.log(level, message, fields);
    // Reports are due only once something was suppressed: no timer before.
    else if (this.#timer === undefined) {
      // The report timer alone must not keep a stopping process alive.
      this.#timer = every(this.#windowMs, () => this.#sweep(), { keepAlive: false });
    }
  }

  /** {@link log} at level warn. */
  warn(kind: string, sender: string, message: string, fields: Fields = {}): void {
    this.log("warn", kind, sender, message, fields);
  }

  /** Reports the suppressed counts left and stops the timer; safe to call twice. */
  close(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    for (const s of this.#limiter.drain()) this.#report(s);
  }

  #sweep(): void {
    for (const s of this.#limiter.sweep(this.#now())) this.#report(s);
    if (this.#limiter.size === 0) {
      this.#timer?.cancel();
      this.#timer = undefined;
    }
  }

  #report(s: Suppressed): void {
    this.#log.log(this.#levels.get(s.kind) ?? "warn", `${s.count} similar messages suppressed`, {
      kind: s.kind,
      sender: s.sender,
      ...s.fields,
    });
  }
}
