/**
 * Asks the kernel whether an interface still has an address: the check a
 * client makes when netlink notifications were lost (ENOBUFS), since a
 * missed RTM_DELADDR cannot be replayed.
 *
 * @module
 */

import { NetlinkSocket } from "../netlink/connection.ts";
import { decodeLinkEvent, encodeAddressDump } from "../netlink/link.ts";

/** Whether interface `ifindex` has `address` (of `family`) now, by a dump of the kernel's addresses. */
export async function hasAddress(
  family: number,
  ifindex: number,
  address: Uint8Array,
): Promise<boolean> {
  using netlink = NetlinkSocket.open();
  const messages = await netlink.dump(
    "dump of the interface addresses",
    encodeAddressDump(family, { seq: netlink.nextSeq(), portid: netlink.portid }),
  );
  return messages.some((message) => {
    const event = decodeLinkEvent(message);
    return event?.kind === "address-added" && event.index === ifindex && event.family === family &&
      event.address.byteLength === address.byteLength && event.address.every((b, i) =>
        b === address[i]
      );
  });
}
