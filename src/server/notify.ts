/**
 * systemd readiness notification (`Type=notify`): sends `READY=1` to the
 * datagram socket named by `NOTIFY_SOCKET`, when it is set.
 *
 * @module
 */

import { AbstractDatagramSocket, unixAddress } from "../unix/abstract_socket.ts";

/** Sends `state` (e.g. `READY=1`) to `$NOTIFY_SOCKET`; returns false when it is not set. */
export function notifySystemd(state: string, socketPath = Deno.env.get("NOTIFY_SOCKET")): boolean {
  if (!socketPath) return false;
  using socket = AbstractDatagramSocket.bind(null);
  socket.send(new TextEncoder().encode(state), unixAddress(socketPath));
  return true;
}
