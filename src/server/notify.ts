/**
 * systemd's notification protocol (sd_notify(3)) for `Type=notify`:
 * `READY=1` once the socket is bound, `RELOADING=1` around a reload,
 * `STATUS=` lines people see in `systemctl status`, and `WATCHDOG=1`
 * pings when the unit sets `WatchdogSec=` (systemd then passes
 * `WATCHDOG_USEC`, and restarts a server whose loop stops pinging).
 * Messages go to the datagram socket named by `NOTIFY_SOCKET`; without it
 * nothing is sent.
 *
 * @module
 */

import { clockSeconds } from "../../ffi/libc.ts";
import { AbstractDatagramSocket, unixAddress } from "../unix/abstract_socket.ts";

/** `CLOCK_MONOTONIC`, which `MONOTONIC_USEC=` is read on. */
const CLOCK_MONOTONIC = 1;
/** `STATUS=` lines are sent at most this often, however busy the server is. */
export const STATUS_INTERVAL_MS = 1000;

/** Sends `state` (e.g. `READY=1`) to `$NOTIFY_SOCKET`; returns false when it is not set. */
export function notifySystemd(state: string, socketPath = Deno.env.get("NOTIFY_SOCKET")): boolean {
  if (!socketPath) return false;
  using socket = AbstractDatagramSocket.bind(null);
  socket.send(new TextEncoder().encode(state), unixAddress(socketPath));
  return true;
}

/**
 * How often to ping the watchdog, in ms: half of `WATCHDOG_USEC` (as
 * sd_watchdog_enabled(3) advises), or null when no watchdog is asked for
 * this process (`WATCHDOG_PID`, when set, must be ours).
 */
export function watchdogIntervalMs(
  usec = Deno.env.get("WATCHDOG_USEC"),
  pid = Deno.env.get("WATCHDOG_PID"),
): number | null {
  if (!usec || !/^\d+$/.test(usec) || Number(usec) === 0) return null;
  if (pid !== undefined && pid !== String(Deno.pid)) return null;
  return Math.max(1, Math.floor(Number(usec) / 2000));
}

/** One socket for every notification of a run; every method is a no-op without `NOTIFY_SOCKET`. */
export class SystemdNotifier implements Disposable {
  readonly #target: Uint8Array<ArrayBuffer> | null;
  readonly #socket: AbstractDatagramSocket | null;
  readonly #encoder = new TextEncoder();
  /** Ping interval in ms, or null without a watchdog. */
  readonly watchdogMs: number | null;
  #lastPing = -Infinity;
  #lastStatus = "";
  #statusAt = -Infinity;

  /** Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` (or the values given). */
  constructor(env: { socket?: string; watchdogUsec?: string; watchdogPid?: string } = {
    socket: Deno.env.get("NOTIFY_SOCKET"),
    watchdogUsec: Deno.env.get("WATCHDOG_USEC"),
    watchdogPid: Deno.env.get("WATCHDOG_PID"),
  }) {
    this.#target = env.socket ? unixAddress(env.socket) : null;
    this.#socket = this.#target ? AbstractDatagramSocket.bind(null) : null;
    this.watchdogMs = this.#target ? watchdogIntervalMs(env.watchdogUsec, env.watchdogPid) : null;
  }

  /** Whether systemd listens. */
  get enabled(): boolean {
    return this.#target !== null;
  }

  /**
   * Sends one message now; false when it could not be sent (systemd gone,
   * its queue full): a notification is never worth stopping the server for.
   */
  send(state: string): boolean {
    if (!this.#socket || !this.#target) return false;
    try {
      return this.#socket.send(this.#encoder.encode(state), this.#target);
    } catch {
      return false;
    }
  }

  /** `READY=1`, then the status line; false when systemd could not be told. */
  ready(status: string, now = performance.now()): boolean {
    const sent = this.send("READY=1");
    this.send(`STATUS=${status}`);
    this.#lastStatus = status;
    this.#statusAt = now;
    return sent;
  }

  /** `RELOADING=1` with the time, as systemd 253 and later want it. */
  reloading(): void {
    const usec = Math.floor(clockSeconds(CLOCK_MONOTONIC) * 1e6);
    this.send(`RELOADING=1\nMONOTONIC_USEC=${usec}`);
  }

  /**
   * Pings the watchdog when half its interval has passed since the last
   * ping, and sends the status line when it changed, at most once per
   * {@link STATUS_INTERVAL_MS} (`status` is only called then). Called from
   * the server's loop, so a loop that hangs stops the pings. Returns the
   * ms until it wants to run again (Infinity without systemd).
   */
  tick(status: () => string, now = performance.now()): number {
    if (!this.#target) return Infinity;
    const lines: string[] = [];
    if (this.watchdogMs !== null && now - this.#lastPing >= this.watchdogMs) {
      lines.push("WATCHDOG=1");
      this.#lastPing = now;
    }
    if (now - this.#statusAt >= STATUS_INTERVAL_MS) {
      const text = status();
      this.#statusAt = now;
      if (text !== this.#lastStatus) {
        lines.push(`STATUS=${text}`);
        this.#lastStatus = text;
      }
    }
    if (lines.length > 0) this.send(lines.join("\n"));
    const ping = this.watchdogMs === null ? Infinity : this.#lastPing + this.watchdogMs - now;
    return Math.max(0, Math.min(ping, this.#statusAt + STATUS_INTERVAL_MS - now));
  }

  /** Closes the socket. */
  [Symbol.dispose](): void {
    this.#socket?.close();
  }
}
