/**
 * Link and address messages (`struct ifinfomsg`, `struct ifaddrmsg`, after
 * `<linux/if_link.h>` and `<linux/if_addr.h>`): the notifications the
 * client watches and the address dump it starts from. Pure.
 *
 * @module
 */

import {
  encodeMessage,
  type EncodeOptions,
  type Message,
  MsgType,
  NlmFlags,
  parseAttributes,
  readCString,
} from "./message.ts";

/** `struct ifaddrmsg` size. */
export const IFADDRMSG_LEN = 8;
/** `struct ifinfomsg` size. */
export const IFINFOMSG_LEN = 16;
/** IFA_* attribute types of an address message. */
export const Ifa = { ADDRESS: 1, LOCAL: 2 } as const;
/** IFLA_IFNAME attribute of a link message. */
export const IFLA_IFNAME = 3;

/** Encodes an RTM_GETADDR dump request (struct ifaddrmsg) for one address family. */
export function encodeAddressDump(family: number, options: EncodeOptions): Uint8Array<ArrayBuffer> {
  const body = new Uint8Array(IFADDRMSG_LEN);
  body[0] = family;
  return encodeMessage(MsgType.RTM_GETADDR, NlmFlags.REQUEST | NlmFlags.DUMP, options, body);
}

/** A link or address notification the client reacts to. */
export type LinkEvent =
  | { kind: "link-deleted"; index: number; name: string | undefined }
  | { kind: "link-changed"; index: number; name: string | undefined }
  | {
    kind: "address-deleted" | "address-added";
    index: number;
    family: number;
    prefix: number;
    address: Uint8Array;
  };

/**
 * Decodes RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR and RTM_DELADDR
 * notifications; null for any other message, or one too short for its
 * header. The address of an IPv4 entry is IFA_LOCAL (the interface's own
 * address; IFA_ADDRESS is the peer on point-to-point links), of an IPv6
 * entry IFA_ADDRESS.
 */
export function decodeLinkEvent(message: Message): LinkEvent | null {
  const p = message.payload;
  const view = new DataView(p.buffer, p.byteOffset, p.byteLength);
  if (message.type === MsgType.RTM_NEWLINK || message.type === MsgType.RTM_DELLINK) {
    if (p.byteLength < IFINFOMSG_LEN) return null;
    const index = view.getInt32(4, true);
    const nameAttr = parseAttributes(p, IFINFOMSG_LEN).find((a) => a.type === IFLA_IFNAME);
    const name = nameAttr ? readCString(nameAttr.payload) : undefined;
    return {
      kind: message.type === MsgType.RTM_DELLINK ? "link-deleted" : "link-changed",
      index,
      name,
    };
  }
  if (message.type === MsgType.RTM_NEWADDR || message.type === MsgType.RTM_DELADDR) {
    if (p.byteLength < IFADDRMSG_LEN) return null;
    const family = p[0];
    const attrs = parseAttributes(p, IFADDRMSG_LEN);
    const local = attrs.find((a) => a.type === Ifa.LOCAL);
    const address = attrs.find((a) => a.type === Ifa.ADDRESS);
    const chosen = family === 2 ? (local ?? address) : (address ?? local);
    if (!chosen) return null;
    return {
      kind: message.type === MsgType.RTM_DELADDR ? "address-deleted" : "address-added",
      index: view.getUint32(4, true),
      family,
      prefix: p[1],
      address: chosen.payload.slice(),
    };
  }
  return null;
}
