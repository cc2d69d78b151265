/**
 * Syslog lines that never block the daemon. glibc's syslog(3) sends on a
 * blocking socket: while the syslog daemon does not read (journald busy on
 * a slow disk, rsyslog stuck on a remote target), every caller waits in
 * it, and a server that logs each lease would stop answering. This sink
 * formats the line as glibc does (`<PRI>Mmm dd hh:mm:ss ident[pid]: text`)
 * and sends it to `/dev/log` without waiting: a line the daemon has no room
 * for is dropped and counted, and the next line that gets through is
 * preceded by one saying how many were lost. Where `/dev/log` is a stream
 * socket (rare: an old syslog-ng setup), it falls back to syslog(3).
 *
 * @module
 */

import {
  AF_UNIX,
  close,
  closelog,
  Errno,
  ErrnoError,
  LOG_DAEMON,
  LogSeverity,
  MSG_DONTWAIT,
  openlog,
  sendto,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  socket,
  syslog,
} from "../../ffi/libc.ts";
import { unixAddress } from "../unix/abstract_socket.ts";

/** Where the local syslog daemon listens. */
export const SYSLOG_PATH = "/dev/log";

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const two = (n: number) => String(n).padStart(2, "0");

/** A time as syslog(3) writes it (`%h %e %T`, local time): `Dec  8 02:23:13`. */
export function syslogTime(date: Date): string {
  const day = String(date.getDate()).padStart(2, " ");
  return `${MONTHS[date.getMonth()]} ${day} ${two(date.getHours())}:${two(date.getMinutes())}:${
    two(date.getSeconds())
  }`;
}

/** Options of {@link SyslogSink}. */
export interface SyslogSinkOptions {
  /** The daemon's socket (default {@link SYSLOG_PATH}; tests use a stand-in). */
  path?: string;
  /** The facility (default daemon). */
  facility?: number;
}

const encoder = new TextEncoder();

/** Lines to the local syslog daemon, sent without blocking. */
export class SyslogSink {
  #ident: string;
  #path: string;
  #address: Uint8Array<ArrayBuffer>;
  #facility: number;
  /** An unbound datagram socket, as glibc's: the daemon never answers. */
  #fd: number | undefined;
  /** `/dev/log` is a stream socket: lines go through syslog(3). */
  #libc = false;
  /** Lines dropped since the last one that got through. */
  #dropped = 0;

  /** Lines tagged `ident[pid]`; nothing is opened before the first line. */
  constructor(ident: string, options: SyslogSinkOptions = {}) {
    this.#ident = ident;
    this.#path = options.path ?? SYSLOG_PATH;
    this.#address = unixAddress(this.#path);
    this.#facility = options.facility ?? LOG_DAEMON;
  }

  /** Lines dropped since the last one the daemon took. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Whether lines go through glibc's syslog(3) (`/dev/log` is a stream socket). */
  get viaLibc(): boolean {
    return this.#libc;
  }

  /** Sends `message` at `severity` (0 to 7), or drops and counts it. Never throws. */
  send(severity: number, message: string): void {
    if (this.#dropped > 0) {
      const lost = `${this.#dropped} log lines dropped: the syslog daemon at ${this.#path} ` +
        "had no room for them, or was not there";
      if (!this.#deliver(LogSeverity.warning, lost)) {
        this.#dropped++;
        return;
      }
      this.#dropped = 0;
    }
    if (!this.#deliver(severity, message)) this.#dropped++;
  }

  /** One datagram to the daemon; false when it was not taken. */
  #deliver(severity: number, message: string): boolean {
    if (this.#libc) {
      syslog(severity, message);
      return true;
    }
    const line = `<${this.#facility | severity}>${
      syslogTime(new Date())
    } ${this.#ident}[${Deno.pid}]: ${message}`;
    try {
      this.#fd ??= socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      return sendto(this.#fd, encoder.encode(line), MSG_DONTWAIT, this.#address) >= 0;
    } catch (error) {
      if (error instanceof ErrnoError && error.errno === Errno.EPROTOTYPE) {
        // A stream socket: glibc knows how to talk to it (and blocks, as before).
        this.#libc = true;
        openlog(this.#ident, this.#facility);
        syslog(severity, message);
        return true;
      }
      // No daemon (ENOENT, ECONNREFUSED), or a line it refuses: dropped, counted.
      return false;
    }
  }

  /** Closes the socket (or glibc's connection); safe to call twice. */
  close(): void {
    if (this.#fd !== undefined) close(this.#fd);
    this.#fd = undefined;
    if (this.#libc) closelog();
    this.#libc = false;
  }
}
