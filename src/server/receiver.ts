/**
 * The receive side of the daemon's loop: each pass's batch is what the
 * last pass carried over, then every datagram waiting on the socket. When
 * nothing waits, it spins briefly after a pass, then parks in poll(2).
 *
 * @module
 */

import type { Logger } from "../log/logger.ts";
import type { AbstractDatagramSocket, Datagram } from "../unix/abstract_socket.ts";
import { errorMessage } from "../util/errors.ts";
import type { Races } from "./decide.ts";

/** Most datagrams handled in one pass (one transaction). */
export const MAX_BATCH = 512;
/**
 * After a pass, how long to keep trying a non-blocking receive before
 * parking in poll(2). Waking from poll costs a thread hand-off (about
 * 100 µs here); a client that answers quickly (the next request after a
 * reply) is caught by the spin instead. An idle server spins once, then sleeps.
 */
export const SPIN_MICROSECONDS = 150;

/** A datagram waiting for its pass, with the races it lost so far. */
export interface Carried extends Races {
  datagram: Datagram;
  /**
   * How its authentication turned out, once checked: a carried signed
   * datagram is not checked again (its nonce is already spent).
   */
  verdict?: "authentic" | "unsigned" | undefined;
}

/** Batches of datagrams for the daemon's passes. */
export class BatchReceiver {
  #socket: AbstractDatagramSocket;
  #log: Logger;
  #carry: Carried[] = [];
  #justServed = false;
  /** Datagrams received so far. */
  received = 0;

  /** Receives from `socket`; failures to receive are logged to `log`. */
  constructor(socket: AbstractDatagramSocket, log: Logger) {
    this.#socket = socket;
    this.#log = log;
  }

  /** Puts a datagram into the next batch (a request that waits for the next pass). */
  carry(carried: Carried): void {
    this.#carry.push(carried);
  }

  /** The last batch was served: the next wait starts with a short spin. */
  served(): void {
    this.#justServed = true;
  }

  /**
   * The next batch: what was carried over, then every datagram waiting
   * (up to {@link MAX_BATCH}). Empty after waiting in poll(2) until the
   * socket became readable, {@link AbstractDatagramSocket.wake} was called
   * or `timeoutMs` passed (-1: no timeout), so the loop can run its timers.
   */
  async next(timeoutMs = -1): Promise<Carried[]> {
    const batch = this.#carry;
    this.#carry = [];
    const add = (datagram: Datagram) => {
      batch.push({ datagram, attempt: 1, collisions: 0 });
      this.received++;
    };
    try {
      while (batch.length < MAX_BATCH) {
        const datagram = this.#socket.receive();
        if (!datagram) break;
        add(datagram);
      }
      if (batch.length === 0) {
        const datagram = this.#spin();
        if (!datagram) {
          await this.#socket.readable(timeoutMs);
          return batch;
        }
        add(datagram);
      }
    } catch (error) {
      this.#log.error("cannot receive from the socket", { error: errorMessage(error) });
      await new Promise((r) => setTimeout(r, 100));
    }
    return batch;
  }

  /**
   * Right after a pass, tries a non-blocking receive for
   * {@link SPIN_MICROSECONDS}; otherwise returns null at once.
   */
  #spin(): Datagram | null {
    if (!this.#justServed) return null;
    this.#justServed = false;
    const until = performance.now() + SPIN_MICROSECONDS / 1000;
    do {
      const datagram = this.#socket.receive();
      if (datagram) return datagram;
    } while (performance.now() < until);
    return null;
  }
}
