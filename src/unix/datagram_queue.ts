/**
 * The kernel's queue of a unix datagram socket: how many datagrams wait
 * for the receiver before the kernel refuses senders (EAGAIN, or a
 * blocking sender waits). Linux gives a socket the network namespace's
 * `net.unix.max_dgram_qlen` when the socket is made, and keeps that value
 * for the socket's life; no socket option changes it.
 *
 * So a socket gets a longer queue than its namespace's by raising the
 * sysctl, making the socket, and putting the old value back:
 * {@link withDatagramQueue}. Only the sockets made in that moment (one
 * socket(2) call) get the raised value; every other socket keeps the
 * namespace's.
 *
 * @module
 */

import { errorMessage } from "../util/errors.ts";

/** Where Linux exposes the namespace's queue length. */
export const MAX_DGRAM_QLEN_PATH = "/proc/sys/net/unix/max_dgram_qlen";

/** The kernel's default `net.unix.max_dgram_qlen`. */
export const KERNEL_DGRAM_QLEN = 10;

/**
 * How many datagrams the kernel queues for a unix datagram socket made
 * now in this network namespace (`net.unix.max_dgram_qlen`); the kernel's
 * default where it cannot be read.
 */
export function datagramQueueLength(): number {
  try {
    const value = Number(Deno.readTextFileSync(MAX_DGRAM_QLEN_PATH).trim());
    if (Number.isInteger(value) && value > 0) return value;
  } catch { /* not Linux's /proc */ }
  return KERNEL_DGRAM_QLEN;
}

/** What {@link withDatagramQueue} made, and the queue the kernel gave it. */
export interface QueuedSocket<T> {
  /** What `make` returned. */
  made: T;
  /** Datagrams the kernel queues for it before it refuses senders. */
  queue: number;
  /** The namespace's `net.unix.max_dgram_qlen` as found (and, unless {@link restoreError}, as left). */
  namespaceQueue: number;
  /** Why the queue could not be raised (no root, a read-only /proc/sys), when it could not. */
  raiseError?: string;
  /** Why the namespace's value could not be put back: it stays at {@link queue}. */
  restoreError?: string;
}

/**
 * Runs `make` (which makes one unix datagram socket) so that its socket
 * queues at least `wanted` datagrams: when the namespace's value is lower,
 * it is raised for the call and put back after it. Nothing is raised for
 * `wanted` 0 or when the namespace's value is already as high. A value
 * that cannot be raised is reported in `raiseError`, and the socket is
 * made with the namespace's value.
 *
 * The value is put back only if it still reads what was written: another
 * writer in between (an administrator's sysctl) is left alone, unless it
 * wrote the very same number. Two processes doing this in one namespace
 * at the same moment may each see the other's value: a socket made just
 * after the other put it back has the namespace's queue while `queue`
 * says the raised one.
 */
export function withDatagramQueue<T>(wanted: number, make: () => T): QueuedSocket<T> {
  const namespaceQueue = datagramQueueLength();
  if (wanted <= namespaceQueue) return { made: make(), queue: namespaceQueue, namespaceQueue };
  try {
    Deno.writeTextFileSync(MAX_DGRAM_QLEN_PATH, `${wanted}\n`);
  } catch (error) {
    return {
      made: make(),
      queue: namespaceQueue,
      namespaceQueue,
      raiseError: errorMessage(error),
    };
  }
  let made: T;
  let restoreError: string | undefined;
  try {
    made = make();
  } finally {
    restoreError = restore(wanted, namespaceQueue);
  }
  return { made, queue: wanted, namespaceQueue, restoreError };
}

/** Puts the namespace's value back if it still reads `written`; the error when it cannot. */
function restore(written: number, original: number): string | undefined {
  try {
    if (datagramQueueLength() === written) {
      Deno.writeTextFileSync(MAX_DGRAM_QLEN_PATH, `${original}\n`);
    }
    return undefined;
  } catch (error) {
    return errorMessage(error);
  }
}
