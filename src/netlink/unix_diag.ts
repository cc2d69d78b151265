/**
 * NETLINK_SOCK_DIAG for unix sockets (`<linux/unix_diag.h>`), in pure
 * TypeScript: the dump request and the parse of its answers. The agent
 * uses it to learn, from the kernel, which uid bound an abstract name that
 * it found taken (a peer that never answers has no SCM_CREDENTIALS to
 * show), so that only root's holder of an identity is believed.
 *
 * @module
 */

import {
  encodeMessage,
  type EncodeOptions,
  type Message,
  NlmFlags,
  parseAttributes,
  putAttribute,
  u32,
} from "./message.ts";

/** The netlink bus of socket diagnostics. */
export const NETLINK_SOCK_DIAG = 4;
/** `SOCK_DIAG_BY_FAMILY`: the request (and answer) type. */
export const SOCK_DIAG_BY_FAMILY = 20;

const AF_UNIX = 1;
/** `UDIAG_SHOW_NAME`: answers carry UNIX_DIAG_NAME. */
const UDIAG_SHOW_NAME = 0x01;
/** `UDIAG_SHOW_UID` (Linux 5.3): answers carry UNIX_DIAG_UID. */
const UDIAG_SHOW_UID = 0x40;
const UNIX_DIAG_NAME = 0;
const UNIX_DIAG_UID = 7;
/** `struct unix_diag_msg` size. */
const UNIX_DIAG_MSG_LEN = 16;

/** One unix socket as the kernel describes it. */
export interface UnixSocketInfo {
  /** `SOCK_STREAM` 1, `SOCK_DGRAM` 2, `SOCK_SEQPACKET` 5. */
  type: number;
  inode: number;
  /** The bound `sun_path` bytes (an abstract name starts with NUL); absent when unbound. */
  path: Uint8Array | undefined;
  /** The uid that owns the socket; absent on kernels before 5.3. */
  uid: number | undefined;
}

/** Encodes a dump request for every unix socket of this network namespace, with names and uids. */
export function encodeUnixDiagDump(options: EncodeOptions): Uint8Array<ArrayBuffer> {
  const body = new Uint8Array(24);
  const view = new DataView(body.buffer);
  body[0] = AF_UNIX; // sdiag_family; sdiag_protocol and pad stay 0
  view.setUint32(4, 0xffff_ffff, true); // udiag_states: every state
  view.setUint32(12, UDIAG_SHOW_NAME | UDIAG_SHOW_UID, true); // udiag_ino 0: every socket
  return encodeMessage(SOCK_DIAG_BY_FAMILY, NlmFlags.REQUEST | NlmFlags.DUMP, options, body);
}

/** Decodes one answer of {@link encodeUnixDiagDump}; null for another message type. */
export function decodeUnixDiag(message: Message): UnixSocketInfo | null {
  if (message.type !== SOCK_DIAG_BY_FAMILY) return null;
  const p = message.payload;
  if (p.byteLength < UNIX_DIAG_MSG_LEN) {
    throw new RangeError(`unix_diag_msg of ${p.byteLength} bytes is shorter than 16`);
  }
  const view = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const info: UnixSocketInfo = {
    type: p[1],
    inode: view.getUint32(4, true),
    path: undefined,
    uid: undefined,
  };
  for (const attr of parseAttributes(p, UNIX_DIAG_MSG_LEN)) {
    if (attr.type === UNIX_DIAG_NAME) info.path = attr.payload.slice();
    else if (attr.type === UNIX_DIAG_UID && attr.payload.byteLength >= 4) {
      info.uid = new DataView(attr.payload.buffer, attr.payload.byteOffset, 4).getUint32(0, true);
    }
  }
  return info;
}

/**
 * Builds an answer as the kernel sends it; for the tests of the decoder
 * (and documentation of the layout).
 */
export function encodeUnixDiagAnswer(info: UnixSocketInfo, seq = 0): Uint8Array<ArrayBuffer> {
  const body: number[] = [AF_UNIX, info.type, 7, 0, ...u32(info.inode), 0, 0, 0, 0, 0, 0, 0, 0];
  if (info.path) putAttribute(body, UNIX_DIAG_NAME, info.path);
  if (info.uid !== undefined) putAttribute(body, UNIX_DIAG_UID, u32(info.uid));
  return encodeMessage(SOCK_DIAG_BY_FAMILY, NlmFlags.MULTI, { seq }, body);
}
