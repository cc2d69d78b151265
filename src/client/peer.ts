/**
 * One question to whoever is bound on a name (a server, or the holder of
 * an identity), answered only from that name and by a trusted uid.
 *
 * @module
 */

import { Command, decodeReply, encodeRequest, type Identity, type Reply } from "../protocol/v1.ts";
import type { Authenticator } from "../protocol/auth.ts";
import { AbstractDatagramSocket, paddedAbstractAddress } from "../unix/abstract_socket.ts";
import { sameBytes } from "../util/bytes.ts";

/**
 * Sends one request (`cmd` 0 or 1) for `identity` to the padded name `to`
 * and waits for an answer from exactly that address whose sender the
 * kernel says (SCM_CREDENTIALS) has a uid in `trusted`; retransmits every
 * `waitMs` up to `tries` times. Null when nobody trusted answered.
 * `socket` must pass credentials (`passCredentials: true`). With `auth`
 * (`--psk-file`) the request is signed and only a signed answer counts.
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
  auth?: Authenticator,
): Promise<Reply | null> {
  const target = paddedAbstractAddress(to);
  const plain = encodeRequest({ cmd, identity, tag });
  for (let attempt = 0; attempt < tries; attempt++) {
    // A new nonce for each try: the server would refuse a copy as a replay.
    const data = auth ? auth.seal(plain) : plain;
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
          if (auth && !authentic(auth, dg.data)) continue;
          return decodeReply(dg.data);
        } catch {
          // Not an answer we understand: keep waiting.
        }
      }
    }
  }
  return null;
}

/** Whether a reply carries a valid MAC, fresh `ts` and new nonce. */
export function authentic(auth: Authenticator, data: Uint8Array): boolean {
  let message;
  try {
    message = JSON.parse(new TextDecoder().decode(data));
  } catch {
    return false;
  }
  if (typeof message !== "object" || message === null || Array.isArray(message)) return false;
  return auth.check(data, message).kind === "authentic";
}

/** A socket to ask from: autobound, with sender credentials. */
export function askingSocket(): AbstractDatagramSocket {
  return AbstractDatagramSocket.bind(null, { passCredentials: true });
}
