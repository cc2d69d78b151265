/**
 * The daemon's counter for `table-allocator-ctl`: the control handler
 * (`control.ts`) over the daemon's state, answering root only. A request
 * the handler refuses (a ProtocolError) gets an error reply naming why;
 * an administrator's release tells the lease's holder (the revoke notice).
 *
 * @module
 */

import type { ServerConfig } from "../../config/config.ts";
import type { Allocation } from "../allocator/allocation.ts";
import { decodeControlRequest, type ReloadView } from "../control/protocol.ts";
import { ProtocolError } from "../protocol/v1.ts";
import type { Datagram } from "../unix/abstract_socket.ts";
import { type ControlContext, ControlHandler } from "./control.ts";
import type { DaemonOptions } from "./daemon_options.ts";
import type { LeaseObserver } from "./events.ts";
import { sendRevokeNotice } from "./notice.ts";
import type { Replies } from "./replies.ts";

/** What the desk needs of the daemon besides its options. */
export interface ControlDeskParts {
  /** The daemon's allocation now (replaced when it is rebuilt). */
  allocation: () => Allocation;
  observer: LeaseObserver;
  replies: Replies;
  startedAt: number;
  now: () => number;
  /** The metrics as Prometheus text, when the server keeps them. */
  metrics: (() => string) | undefined;
  /** The daemon's reload (one at a time). */
  reload: () => Promise<ReloadView>;
}

/** The control requests of one daemon, answered. */
export class ControlDesk {
  readonly #context: ControlContext;
  readonly #handler: ControlHandler;
  readonly #replies: Replies;

  /** A desk over the daemon's options and parts. */
  constructor(options: DaemonOptions, parts: ControlDeskParts) {
    this.#replies = parts.replies;
    this.#context = {
      config: options.config,
      store: options.store,
      allocation: parts.allocation,
      log: options.logger,
      observer: parts.observer,
      startedAt: parts.startedAt,
      storeDescription: options.storeDescription ?? "sqlite",
      now: parts.now,
      metrics: parts.metrics,
      reload: parts.reload,
      revoke: (lease) => {
        const auth = options.auth;
        sendRevokeNotice(
          options.socket,
          lease,
          options.logger,
          auth?.require ? (data) => auth.authenticator.seal(data) : undefined,
        );
      },
    };
    this.#handler = new ControlHandler(this.#context);
  }

  /** The config the handler works with, replaced by a reload. */
  set config(config: ServerConfig) {
    this.#context.config = config;
  }

  /** The reply to one control request: refused unless it comes from root (uid 0). */
  async reply(
    datagram: Datagram,
    message: Record<string, unknown>,
  ): Promise<Uint8Array<ArrayBuffer>> {
    const uid = datagram.credentials?.uid;
    if (uid !== 0) {
      return this.#replies.reject(
        "not_permitted",
        `control requests are answered only to root (uid 0), got uid ${uid ?? "unknown"}`,
        datagram,
      );
    }
    try {
      return await this.#handler.handle(decodeControlRequest(message), uid);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      return this.#replies.reject(error.code, error.message, datagram);
    }
  }
}
