/**
 * Log lines to journald's stream socket (stderr of a unit whose
 * `JOURNAL_STREAM` names it) that never block the daemon. A plain write
 * waits while journald does not read (busy on a slow disk): once the
 * socket's buffer is full, a server that logs each lease would stop
 * answering. Here each write is a send(2) that does not wait:
 *
 * - what the buffer has no room for at all is dropped and counted, and the
 *   next write that gets through starts with a warning saying how many
 *   lines were lost;
 * - the rest of a line sent in part is kept and goes first at the next
 *   write, so journald never sees two lines run together; lines written
 *   while it waits are dropped and counted.
 *
 * @module
 */

import { Errno, ErrnoError, MSG_DONTWAIT, MSG_NOSIGNAL, sendto } from "../../ffi/libc.ts";

const encoder = new TextEncoder();
/** No address: the stream is connected. */
const CONNECTED = new Uint8Array(0);

/** Lines (each ending in a newline) to a stream socket, sent without waiting. */
export class JournalStream {
  #fd: number;
  /** The rest of a line sent in part. */
  #pending: Uint8Array<ArrayBuffer> | undefined;
  /** Lines dropped since the last write that got through. */
  #dropped = 0;
  /** The descriptor is not a socket: the caller writes the usual way. */
  #notSocket = false;

  /** Writes to `fd` (default 2, stderr). */
  constructor(fd = 2) {
    this.#fd = fd;
  }

  /** Lines dropped since the last write that got through. */
  get dropped(): number {
    return this.#dropped;
  }

  /**
   * Sends `text` (whole lines), or drops and counts it. False when the
   * descriptor is not a socket: nothing was sent, and the caller writes
   * the text itself (stderr is a pipe or a file, as under a test runner).
   */
  write(text: string): boolean {
    if (this.#notSocket) return false;
    const lines = countLines(text);
    if (this.#pending) {
      const rest = this.#send(this.#pending);
      if (rest === "not a socket") return false;
      if (rest !== undefined) {
        // The line begun earlier still waits: this text cannot go before it.
        if (rest !== "dropped") this.#pending = rest;
        this.#dropped += lines;
        return true;
      }
      this.#pending = undefined;
    }
    const notice = this.#dropped > 0
      ? `<4>${this.#dropped} log lines dropped: the journal had no room for them\n`
      : "";
    const rest = this.#send(encoder.encode(notice + text));
    if (rest === "not a socket") return false;
    if (rest === "dropped") {
      this.#dropped += lines;
      return true;
    }
    this.#dropped = 0;
    this.#pending = rest;
    return true;
  }

  /**
   * One send: undefined when all went, what is left when part did,
   * "dropped" when none did (no room, or journald is gone).
   */
  #send(
    bytes: Uint8Array<ArrayBuffer>,
  ): Uint8Array<ArrayBuffer> | undefined | "dropped" | "not a socket" {
    let sent: number;
    try {
      sent = sendto(this.#fd, bytes, MSG_DONTWAIT | MSG_NOSIGNAL, CONNECTED);
    } catch (error) {
      const code = error instanceof ErrnoError ? error.errno : undefined;
      if (code === Errno.ENOTSOCK) {
        this.#notSocket = true;
        return "not a socket";
      }
      // Interrupted: again; journald gone (EPIPE) or another failure: dropped.
      return code === Errno.EINTR ? this.#send(bytes) : "dropped";
    }
    if (sent < 0) return "dropped"; // no room at all (EAGAIN)
    if (sent === bytes.byteLength) return undefined;
    if (sent === 0) return "dropped";
    return bytes.slice(sent);
  }
}

/** How many lines `text` holds (each ends in a newline). */
function countLines(text: string): number {
  let lines = 0;
  for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) lines++;
  return lines;
}
