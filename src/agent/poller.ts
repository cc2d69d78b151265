/**
 * One poll(2) over every descriptor a holder watches (the identities'
 * sockets, the agent's socket, the netlink notifications) plus an eventfd
 * that signal handlers and finished tasks use to wake it. poll runs on a thread of its own (a `nonblocking` FFI call), so the
 * event loop, timers and signal listeners keep running while it waits.
 *
 * @module
 */

import { close, eventfd, eventfdDrain, eventfdSignal, poll, POLLIN } from "../../ffi/libc.ts";

/** Waits for readable descriptors, a timeout or a wake-up. */
export class Poller implements Disposable {
  #wakeFd = eventfd();
  #closed = false;

  /**
   * Resolves with the descriptors of `fds` that are readable (an empty set
   * after a timeout or a wake-up). A negative or infinite timeout waits
   * until something happens.
   */
  async wait(fds: readonly number[], timeoutMs: number): Promise<Set<number>> {
    if (this.#closed) throw new Error("poller is closed");
    const all = [...fds, this.#wakeFd];
    const buf = new Uint8Array(8 * all.length);
    const view = new DataView(buf.buffer);
    all.forEach((fd, i) => {
      view.setInt32(8 * i, fd, true);
      view.setInt16(8 * i + 4, POLLIN, true);
    });
    const timeout = Number.isFinite(timeoutMs) && timeoutMs >= 0
      ? Math.min(Math.ceil(timeoutMs), 2 ** 31 - 1)
      : -1;
    await poll(buf, timeout);
    const ready = new Set<number>();
    all.forEach((fd, i) => {
      // Any revents (POLLIN, POLLERR, POLLHUP) makes the descriptor worth a read.
      if (view.getInt16(8 * i + 6, true) !== 0) ready.add(fd);
    });
    if (ready.delete(this.#wakeFd)) eventfdDrain(this.#wakeFd);
    return ready;
  }

  /** Makes a pending (or the next) {@link wait} return at once. */
  wake(): void {
    if (!this.#closed) eventfdSignal(this.#wakeFd);
  }

  /** Closes the wake descriptor; safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    close(this.#wakeFd);
  }

  /** Same as {@link close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
