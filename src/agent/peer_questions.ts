/**
 * What a holder answers on an identity's name to other processes, as our
 * client always has: a request (`cmd` 0) for the identity gets its table
 * (0 while there is none), so a second client prints it; a release
 * (`cmd` 1, from `-r`) is accepted from root or the holder's own user
 * only, by kernel-checked credentials, and answered once done.
 *
 * @module
 */

import type { Fields } from "../log/logger.ts";
import {
  Command,
  decodeRequest,
  encodeError,
  encodeReply,
  identityName,
  ProtocolError,
} from "../protocol/v1.ts";
import type { Datagram } from "../unix/abstract_socket.ts";
import type { LimitedLog } from "../log/rate_limit.ts";

/** What answering needs of the holding. */
export interface PeerContext {
  /** The identity's name. */
  name: string;
  table: number;
  leaseExpires: number;
  fields: Fields;
  info(message: string, fields: Fields): void;
  warnings: LimitedLog;
  /** Sends from the identity's socket; a gone asker is ignored. */
  reply(data: Uint8Array<ArrayBuffer>, to: Uint8Array<ArrayBuffer>): void;
  /** Ends the lease; `requester` is answered from the identity's socket when done. */
  release(reason: string, requester: Uint8Array<ArrayBuffer>): void;
}

/** Answers one datagram that did not come from the server. */
export function answerPeer(dg: Datagram, ctx: PeerContext): void {
  if (dg.sender.byteLength <= 2) return; // unbound sender: no way to answer
  let request;
  try {
    request = decodeRequest(dg.data, dg.length);
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error;
    ctx.warnings.warn(
      "peer-malformed",
      `uid=${dg.credentials?.uid}`,
      "ignoring a malformed datagram",
      {
        ...ctx.fields,
        reason: error.message,
      },
    );
    return;
  }
  if (identityName(request.identity) !== ctx.name) {
    ctx.warnings.warn(
      "peer-other",
      `uid=${dg.credentials?.uid}`,
      "ignoring a question about another identity",
      ctx.fields,
    );
    return;
  }
  if (request.cmd === Command.REQUEST) {
    ctx.info("another client asked for the table", { ...ctx.fields, pid: dg.credentials?.pid });
    ctx.reply(encodeReply(ctx.table, ctx.leaseExpires), dg.sender);
    return;
  }
  const uid = dg.credentials?.uid;
  if (uid === undefined || (uid !== 0 && uid !== Deno.uid())) {
    ctx.warnings.warn(
      "peer-refused",
      `uid=${uid}`,
      "refusing a release request from another user",
      {
        ...ctx.fields,
        uid,
      },
    );
    ctx.reply(
      encodeError("not_permitted", `uid ${uid} may not release a lease of uid ${Deno.uid()}`),
      dg.sender,
    );
    return;
  }
  ctx.release(`release requested by pid ${dg.credentials?.pid}`, dg.sender);
}
