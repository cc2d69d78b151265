/**
 * The daemon's answers, as bytes on the wire: lease replies with the
 * expiry on the C client's clock, error replies told to the observers,
 * signatures for the replies to signed requests, and the sending, whose
 * failures are logged without letting one sender flood the log.
 *
 * @module
 */

import type { Logger } from "../log/logger.ts";
import type { LimitedLog } from "../log/rate_limit.ts";
import { signatureOverhead } from "../protocol/auth.ts";
import {
  encodeError,
  encodeReply,
  type ErrorCode,
  MAX_REPLY_BYTES,
  type Request,
} from "../protocol/v1.ts";
import {
  type AbstractDatagramSocket,
  type Datagram,
  describeAddress,
} from "../unix/abstract_socket.ts";
import { errorMessage } from "../util/errors.ts";
import type { Answer } from "./decide.ts";
import { type ClientOrigin, type LeaseObserver, senderKey } from "./events.ts";
import type { MessageAuth } from "./intake.ts";

/** What {@link Replies} works with. */
export interface RepliesContext {
  socket: AbstractDatagramSocket;
  log: Logger;
  /** Repeated warnings, limited per kind and sender. */
  limited: LimitedLog;
  observer: LeaseObserver;
  auth: MessageAuth | undefined;
  /** Wall clock in ms. */
  now: () => number;
  /** Seconds on the clock the C client reads (CLOCK_MONOTONIC_RAW). */
  monotonic: () => number;
}

/** Encodes and sends the daemon's answers. */
export class Replies {
  #c: RepliesContext;
  /** Error replies encoded so far. */
  errors = 0;
  /** The monotonic and the wall clock, read at the first lease reply of a pass. */
  #clock: { monotonic: number; now: number } | undefined;

  /** Answers through `context`. */
  constructor(context: RepliesContext) {
    this.#c = context;
  }

  /** A pass begins: its replies read the clocks anew (once). */
  startPass(): void {
    this.#clock = undefined;
  }

  /**
   * Encodes an answer to a request (an error answer is counted and told
   * to the observers), signed when the request was.
   */
  answer(
    answer: Answer,
    job: { datagram: Datagram; origin: ClientOrigin; signed: boolean },
  ): Uint8Array<ArrayBuffer> {
    switch (answer.kind) {
      case "lease": {
        // The C client reads the expiry on its CLOCK_MONOTONIC_RAW; both clocks are read once a pass.
        const clock = this.#clock ??= { monotonic: this.#c.monotonic(), now: this.#c.now() };
        return this.#seal(
          encodeReply(answer.table, clock.monotonic + (answer.expiresAt - clock.now) / 1000),
          job.signed,
        );
      }
      case "released":
        return this.#seal(encodeReply(0, 0), job.signed);
      case "error":
        return this.reject(
          answer.code,
          answer.message,
          job.datagram,
          job.origin.request,
          job.signed,
        );
    }
  }

  /** Encodes an error reply to a datagram, counted and told to the observers. */
  reject(
    code: ErrorCode,
    message: string,
    datagram: Datagram,
    request?: Request,
    signed = false,
  ): Uint8Array<ArrayBuffer> {
    this.errors++;
    this.#c.observer.onErrorReply({
      code,
      message,
      request,
      sender: datagram.sender,
      credentials: datagram.credentials,
    });
    const auth = this.#c.auth;
    if (!signed || !auth) return encodeError(code, message);
    // Signed, the reply must still fit the C client's buffer.
    const room = MAX_REPLY_BYTES - signatureOverhead(auth.authenticator.timestamp());
    return this.#seal(encodeError(code, message, room), true);
  }

  /**
   * Sends a reply to the datagram's sender and to each of its twins' (the
   * same request, sent again and answered with it).
   */
  sendWithTwins(
    data: Uint8Array<ArrayBuffer>,
    datagram: Datagram,
    twins: readonly { datagram: Datagram }[],
  ): void {
    this.send(data, datagram);
    for (const twin of twins) this.send(data, twin.datagram);
  }

  /** Sends a reply to exactly the address the datagram came from. */
  send(data: Uint8Array<ArrayBuffer>, datagram: Datagram): void {
    try {
      if (!this.#c.socket.send(data, datagram.sender)) {
        // A sender that never reads its replies must not flood the log.
        this.#c.limited.warn(
          "reply dropped",
          senderKey(datagram.credentials),
          "reply dropped: the client's queue is full",
          { to: describeAddress(datagram.sender), uid: datagram.credentials?.uid },
        );
      }
    } catch (error) {
      // The client may have gone; its lease stays correct and reclaimable.
      this.#c.log.debug("reply not delivered", {
        to: describeAddress(datagram.sender),
        error: errorMessage(error),
      });
    }
  }

  /** Signs a reply to a signed request; any other reply goes out as it is. */
  #seal(reply: Uint8Array<ArrayBuffer>, signed: boolean): Uint8Array<ArrayBuffer> {
    return signed && this.#c.auth ? this.#c.auth.authenticator.seal(reply) : reply;
  }
}
