/**
 * A non-blocking rtnetlink socket over libmnl (`ffi/libmnl.ts`): requests
 * that wait for the kernel's ACK without blocking the event loop (poll(2)
 * on a thread of its own, with a deadline), dumps, and multicast
 * notifications read only when the socket is readable.
 *
 * @module
 */

import { poll, POLLIN, SOCK_CLOEXEC, SOCK_NONBLOCK, strerror } from "../../ffi/libc.ts";
import {
  MNL_SOCKET_BUFFER_SIZE,
  type MnlSocket,
  NETLINK_ROUTE,
  socketBind,
  socketClose,
  socketGetFd,
  socketGetPortid,
  socketOpen,
  socketRecvfrom,
  socketSendto,
} from "../../ffi/libmnl.ts";
import { ackErrno, type Message, MsgType, NlmFlags, parseMessages } from "./message.ts";

/** The kernel refused a request: `errno` says why (EPERM, EEXIST, ENOENT, ...). */
export class NetlinkError extends Error {
  /** The positive errno from NLMSG_ERROR. */
  readonly errno: number;
  /** Builds the error for a request described by `what`. */
  constructor(what: string, errnoValue: number, message?: string) {
    super(message ?? `${what} failed: ${strerror(errnoValue)} (errno ${errnoValue})`);
    this.name = "NetlinkError";
    this.errno = errnoValue;
  }
}

/** The kernel did not answer a request in time. */
export class NetlinkTimeoutError extends Error {
  /** Builds the error for a request described by `what`. */
  constructor(what: string, timeoutMs: number) {
    super(`${what}: no answer from the kernel within ${timeoutMs} ms`);
    this.name = "NetlinkTimeoutError";
  }
}

/** A netlink route socket; `close()` is idempotent. */
export class NetlinkSocket implements Disposable {
  #nl: MnlSocket | null;
  #fd: number;
  #portid: number;
  #seq: number;
  #buffer = new Uint8Array(MNL_SOCKET_BUFFER_SIZE * 4);
  #pollFd = new Uint8Array(8);

  private constructor(nl: MnlSocket) {
    this.#nl = nl;
    this.#fd = socketGetFd(nl);
    this.#portid = socketGetPortid(nl);
    // Start from the clock like libmnl's examples, so a restarted process does not reuse numbers.
    this.#seq = Math.floor(Date.now() / 1000) >>> 0;
    const view = new DataView(this.#pollFd.buffer);
    view.setInt32(0, this.#fd, true);
    view.setInt16(4, POLLIN, true);
  }

  /**
   * Opens a non-blocking, close-on-exec netlink socket on `bus`
   * (NETLINK_ROUTE by default), subscribed to the multicast `groups` bit
   * mask (0 for a request-only socket).
   */
  static open(groups = 0, bus = NETLINK_ROUTE): NetlinkSocket {
    const nl = socketOpen(bus, SOCK_NONBLOCK | SOCK_CLOEXEC);
    try {
      socketBind(nl, groups);
    } catch (error) {
      socketClose(nl);
      throw error;
    }
    return new NetlinkSocket(nl);
  }

  /** The descriptor, for poll(2). */
  get fd(): number {
    return this.#fd;
  }

  /** The next sequence number. */
  nextSeq(): number {
    this.#seq = (this.#seq + 1) >>> 0;
    return this.#seq;
  }

  /** The port id the kernel addresses answers to. */
  get portid(): number {
    return this.#portid;
  }

  /**
   * Reads every message waiting on the socket without blocking; an empty
   * array when nothing is waiting. Throws ErrnoError ENOBUFS when the
   * kernel had to drop notifications.
   */
  receive(): Message[] {
    const out: Message[] = [];
    for (;;) {
      const n = socketRecvfrom(this.#handle(), this.#buffer);
      if (n < 0) return out;
      // Copy: the buffer is reused by the next read.
      out.push(...parseMessages(this.#buffer.slice(0, n)));
    }
  }

  /**
   * Sends a request that carries NLM_F_ACK and waits for its answer.
   * Resolves when the kernel acknowledges; rejects with a
   * {@link NetlinkError} carrying the kernel's errno, or a
   * {@link NetlinkTimeoutError}. `message` must have been encoded with a
   * sequence number from {@link nextSeq}.
   */
  async request(what: string, message: Uint8Array<ArrayBuffer>, timeoutMs = 1000): Promise<void> {
    const seq = new DataView(message.buffer).getUint32(8, true);
    for (const answer of await this.#exchange(what, message, seq, timeoutMs, true)) {
      const error = ackErrno(answer);
      if (error === 0) return;
      if (error !== null) throw new NetlinkError(what, error);
    }
    throw new NetlinkError(what, 0, `${what}: the kernel sent no acknowledgement`);
  }

  /** Sends a dump request and collects every answer up to NLMSG_DONE. */
  async dump(what: string, message: Uint8Array<ArrayBuffer>, timeoutMs = 1000): Promise<Message[]> {
    const seq = new DataView(message.buffer).getUint32(8, true);
    const answers = await this.#exchange(what, message, seq, timeoutMs, false);
    for (const answer of answers) {
      const error = ackErrno(answer);
      if (error !== null && error !== 0) throw new NetlinkError(what, error);
    }
    return answers.filter((m) => m.type !== MsgType.DONE && m.type !== MsgType.ERROR);
  }

  async #exchange(
    what: string,
    message: Uint8Array<ArrayBuffer>,
    seq: number,
    timeoutMs: number,
    single: boolean,
  ): Promise<Message[]> {
    // Answers to earlier requests that timed out must not be taken for this one.
    this.receive();
    socketSendto(this.#handle(), message);
    const deadline = performance.now() + timeoutMs;
    const collected: Message[] = [];
    for (;;) {
      for (const answer of this.receive()) {
        if (answer.seq !== seq || (answer.portid !== 0 && answer.portid !== this.#portid)) continue;
        collected.push(answer);
        const last = answer.type === MsgType.ERROR || answer.type === MsgType.DONE ||
          (single && (answer.flags & NlmFlags.MULTI) === 0);
        if (last) return collected;
      }
      const left = Math.ceil(deadline - performance.now());
      if (left <= 0) throw new NetlinkTimeoutError(what, timeoutMs);
      this.#pollFd[6] = this.#pollFd[7] = 0;
      await poll(this.#pollFd, left);
    }
  }

  /** Closes the socket; safe to call twice. */
  close(): void {
    if (this.#nl === null) return;
    socketClose(this.#nl);
    this.#nl = null;
  }

  /** Same as {@link close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  #handle(): MnlSocket {
    if (this.#nl === null) throw new Error("netlink socket is closed");
    return this.#nl;
  }
}
