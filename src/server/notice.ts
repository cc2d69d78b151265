/**
 * The revoke notice: when an administrator ends a live lease, the server
 * tells its holder on the identity's padded name
 * (`<ifname>-<address>-<family>`, where our agent and the C client
 * listen) so that it removes its rules and confirms with a release. The
 * notice is sent once and never waited for: the table stays held either
 * way until the confirmation or the lease's old expiry.
 *
 * @module
 */

import type { Logger } from "../log/logger.ts";
import { encodeNotice } from "../protocol/v1.ts";
import type { Lease } from "../store/lease_store.ts";
import { type AbstractDatagramSocket, paddedAbstractAddress } from "../unix/abstract_socket.ts";
import { errorMessage } from "../util/errors.ts";
import { leaseFields } from "./events.ts";

/** The abstract name a lease's holder binds: `eth1-192.0.2.10-2`. */
function holderName(lease: Pick<Lease, "family" | "ifname" | "address">): string {
  return `${lease.ifname}-${lease.address}-${lease.family}`;
}

/**
 * Sends the revoke notice for `lease` from the server's socket and logs
 * what became of it. `seal` signs it (with `auth.require`, when every
 * holder has the key; a signed notice would not fit a C client's 254 bytes).
 */
export function sendRevokeNotice(
  socket: AbstractDatagramSocket,
  lease: Lease,
  log: Logger,
  seal: (data: Uint8Array<ArrayBuffer>) => Uint8Array<ArrayBuffer> = (data) => data,
): void {
  const name = holderName(lease);
  const fields = { ...leaseFields(lease), to: `@${name}` };
  const notice = seal(encodeNotice({
    notice: "revoked",
    table: lease.table,
    identity: { family: lease.family, ifname: lease.ifname, address: lease.address },
  }));
  try {
    if (socket.send(notice, paddedAbstractAddress(name))) log.info("revoke notice sent", fields);
    else log.warn("revoke notice dropped: the holder's queue is full", fields);
  } catch (error) {
    // Nobody bound there (ECONNREFUSED): a holder that died, or a client that binds no name.
    log.info(`no holder listens on @${name}; the table stays held until the lease's old expiry`, {
      ...fields,
      until: new Date(lease.expiresAt).toISOString(),
      error: errorMessage(error),
    });
  }
}
