/**
 * Asks the kernel which addresses the interfaces have: what a holder
 * checks when netlink notifications were lost (ENOBUFS), since a missed
 * RTM_DELADDR cannot be replayed, and what a restarted agent checks before
 * it takes a lease back.
 *
 * @module
 */

import { NetlinkSocket } from "../netlink/connection.ts";
import { decodeLinkEvent, encodeAddressDump } from "../netlink/link.ts";

/** An interface address: the interface's index and the address bytes. */
export interface InterfaceAddress {
  index: number;
  address: Uint8Array;
}

/** Every address of `family` (2 or 10) on every interface now, by a dump. */
export async function listAddresses(family: number): Promise<InterfaceAddress[]> {
  using netlink = NetlinkSocket.open();
  const messages = await netlink.dump(
    "dump of the interface addresses",
    encodeAddressDump(family, { seq: netlink.nextSeq(), portid: netlink.portid }),
  );
  return messages.flatMap((message) => {
    const event = decodeLinkEvent(message);
    return event?.kind === "address-added" && event.family === family
      ? [{ index: event.index, address: event.address }]
      : [];
  });
}

/** Whether `address` is in a list of {@link listAddresses} on interface `ifindex`. */
export function includesAddress(
  addresses: readonly InterfaceAddress[],
  ifindex: number,
  address: Uint8Array,
): boolean {
  return addresses.some((a) =>
    a.index === ifindex && a.address.byteLength === address.byteLength &&
    a.address.every((b, i) => b === address[i])
  );
}

/** Whether interface `ifindex` has `address` (of `family`) now, by a dump of the kernel's addresses. */
export async function hasAddress(
  family: number,
  ifindex: number,
  address: Uint8Array,
): Promise<boolean> {
  return includesAddress(await listAddresses(family), ifindex, address);
}
