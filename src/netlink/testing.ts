/**
 * Encoders for the kernel's side of netlink, for the tests of code that
 * consumes kernel messages (notifications, ACKs) without a kernel: fakes
 * at the message level, not the socket. Nothing outside tests imports it.
 *
 * @module
 */

import { Ifa, IFADDRMSG_LEN, IFINFOMSG_LEN, IFLA_IFNAME, type LinkEvent } from "./link.ts";
import {
  encodeMessage,
  MsgType,
  NLMSG_HDRLEN,
  parseMessages,
  putAttribute,
  u32,
} from "./message.ts";

const encoder = new TextEncoder();

/** Builds a link or address notification as the kernel sends it. */
export function encodeLinkEvent(event: LinkEvent, seq = 0): Uint8Array<ArrayBuffer> {
  const body: number[] = [];
  if (event.kind === "link-deleted" || event.kind === "link-changed") {
    const header = new Uint8Array(IFINFOMSG_LEN);
    new DataView(header.buffer).setInt32(4, event.index, true);
    body.push(...header);
    if (event.name !== undefined) {
      putAttribute(body, IFLA_IFNAME, encoder.encode(`${event.name}\0`));
    }
    const type = event.kind === "link-deleted" ? MsgType.RTM_DELLINK : MsgType.RTM_NEWLINK;
    return encodeMessage(type, 0, { seq }, body);
  }
  const header = new Uint8Array(IFADDRMSG_LEN);
  header[0] = event.family;
  header[1] = event.prefix;
  new DataView(header.buffer).setUint32(4, event.index, true);
  body.push(...header);
  putAttribute(body, Ifa.ADDRESS, event.address);
  if (event.family === 2) putAttribute(body, Ifa.LOCAL, event.address);
  const type = event.kind === "address-deleted" ? MsgType.RTM_DELADDR : MsgType.RTM_NEWADDR;
  return encodeMessage(type, 0, { seq }, body);
}

/** Builds the NLMSG_ERROR answer (errno 0 is an ACK) the kernel sends to a request. */
export function encodeAck(request: Uint8Array, errnoValue: number): Uint8Array<ArrayBuffer> {
  const original = parseMessages(request)[0];
  const body: number[] = [...u32(-errnoValue >>> 0), ...request.subarray(0, NLMSG_HDRLEN)];
  return encodeMessage(MsgType.ERROR, 0, { seq: original.seq, portid: original.portid }, body);
}
