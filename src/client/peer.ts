/**
 * One question to whoever is bound on a name (a server, or the holder of
 * an identity), answered only from that name and by a trusted uid.
 *
 * @module
 */

import { Command, decodeReply, encodeRequest, type Identity, type Reply } from "../protocol/v1.ts";
import { AbstractDatagramSocket, paddedAbstractAddress } from "../unix/abstract_socket.ts";
import { sameBytes } from "../util/bytes.ts";

/**
 * Sends one request (`cmd` 0 or 1) for `identity` to the padded name `to`
 * and waits for an answer from exactly that address whose sender the
 * kernel says (SCM_CREDENTIALS) has a uid in `trusted`; retransmits every
 * `waitMs` up to `tries` times. Null when nobody trusted answered.
 * `socket` must pass credentials (`passCredentials: true`).
 */
export async function ask(
  socket: AbstractDatagramSocket,
  identity: Identity,
  tag: string | undefined,
  cmd: typeof Command.REQUEST | typeof Command.RELEASE,
  to: string,
  trusted: ReadonlySet<number>,
  waitMs: number,
  tries = 1,
): Promise<Reply | null> {
  const target = paddedAbstractAddress(to);
  const data = encodeRequest({ cmd, identity, tag });
  for (let attempt = 0; attempt < tries; attempt++) {
    try {
      socket.send(data, target);
    } catch {
      // Nobody bound there (yet): count it as an unanswered try.
    }
    const deadline = performance.now() + waitMs;
    while (performance.now() < deadline) {
      await socket.readable(deadline - performance.now());
      for (let dg = socket.receive(); dg !== null; dg = socket.receive()) {
        const uid = dg.credentials?.uid;
        if (!sameBytes(dg.sender, target) || uid === undefined || !trusted.has(uid)) continue;
        try {
          return decodeReply(dg.data);
        } catch {
          // Not an answer we understand: keep waiting.
        }
      }
    }
  }
  return null;
}

/** A socket to ask from: autobound, with sender credentials. */
export function askingSocket(): AbstractDatagramSocket {
  return AbstractDatagramSocket.bind(null, { passCredentials: true });
}
