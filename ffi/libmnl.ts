/**
 * FFI bindings to libmnl (the minimalistic netlink library the original
 * client uses): it carries the netlink socket only. Messages are built and
 * parsed in TypeScript (`src/netlink/`), so this file stays a
 * thin, typed layer over the socket calls.
 *
 * The library is opened on first use; importing this module has no side
 * effect. Every wrapper turns a failure into an {@link ErrnoError}.
 *
 * @module
 */

import { callDoubtingErrno, Errno, errno, ErrnoError } from "./libc.ts";
import { errorMessage } from "../src/util/errors.ts";

const SYMBOLS = {
  // struct mnl_socket *mnl_socket_open2(int bus, int flags)
  mnl_socket_open2: { parameters: ["i32", "i32"], result: "pointer" },
  // int mnl_socket_bind(struct mnl_socket *nl, unsigned int groups, pid_t pid)
  mnl_socket_bind: { parameters: ["pointer", "u32", "i32"], result: "i32" },
  // ssize_t mnl_socket_sendto(const struct mnl_socket *nl, const void *req, size_t siz)
  mnl_socket_sendto: { parameters: ["pointer", "buffer", "usize"], result: "isize" },
  // ssize_t mnl_socket_recvfrom(const struct mnl_socket *nl, void *buf, size_t siz)
  mnl_socket_recvfrom: { parameters: ["pointer", "buffer", "usize"], result: "isize" },
  // int mnl_socket_get_fd(const struct mnl_socket *nl)
  mnl_socket_get_fd: { parameters: ["pointer"], result: "i32" },
  // unsigned int mnl_socket_get_portid(const struct mnl_socket *nl)
  mnl_socket_get_portid: { parameters: ["pointer"], result: "u32" },
  // int mnl_socket_close(struct mnl_socket *nl)
  mnl_socket_close: { parameters: ["pointer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

let library: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;

/** Opens libmnl on first use. */
function mnl(): Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] {
  if (!library) {
    try {
      library = Deno.dlopen("libmnl.so.0", SYMBOLS);
    } catch (error) {
      throw new Error(
        `Cannot load libmnl.so.0 (install the libmnl0 package): ${errorMessage(error)}`,
        { cause: error },
      );
    }
  }
  return library.symbols;
}

/** Netlink bus of the routing subsystem. */
export const NETLINK_ROUTE = 0;
/** `MNL_SOCKET_AUTOPID`: let the kernel choose the port id. */
export const MNL_SOCKET_AUTOPID = 0;
/** `MNL_SOCKET_BUFFER_SIZE` on 4 KiB pages: large enough for any message. */
export const MNL_SOCKET_BUFFER_SIZE = 8192;

/** An opaque `struct mnl_socket *`. */
export type MnlSocket = Deno.PointerObject;

/**
 * mnl_socket_open2(3): a new netlink socket on `bus` with socket flags
 * (`SOCK_NONBLOCK`, `SOCK_CLOEXEC`).
 */
export function socketOpen(bus: number, flags: number): MnlSocket {
  const nl = mnl().mnl_socket_open2(bus, flags);
  if (nl === null) throw new ErrnoError("mnl_socket_open2", errno());
  return nl;
}

/** mnl_socket_bind(3) to multicast `groups` with an automatic port id. */
export function socketBind(nl: MnlSocket, groups: number, pid = MNL_SOCKET_AUTOPID): void {
  if (mnl().mnl_socket_bind(nl, groups >>> 0, pid) < 0) {
    throw new ErrnoError("mnl_socket_bind", errno(), `(groups 0x${groups.toString(16)})`);
  }
}

/** mnl_socket_sendto(3): sends one message (or batch) to the kernel. */
export function socketSendto(nl: MnlSocket, message: Uint8Array<ArrayBuffer>): number {
  const rc = Number(mnl().mnl_socket_sendto(nl, message, BigInt(message.byteLength)));
  if (rc < 0) throw new ErrnoError("mnl_socket_sendto", errno());
  return rc;
}

/**
 * The errno values a receive on a netlink socket gives: recvmsg(2)'s, the
 * netlink errors the kernel reports through a receive (ENOBUFS: messages
 * dropped; EMSGSIZE, EOPNOTSUPP), and libmnl's own (ENOSPC: truncated).
 */
const NETLINK_RECV_ERRNOS: ReadonlySet<number> = new Set([
  Errno.EAGAIN,
  Errno.EINTR,
  Errno.ENOBUFS,
  Errno.EBADF,
  Errno.EFAULT,
  Errno.EINVAL,
  Errno.ENOMEM,
  Errno.ENOTCONN,
  Errno.ENOTSOCK,
  Errno.ENOSPC,
  Errno.EMSGSIZE,
  Errno.EOPNOTSUPP,
]);

/**
 * mnl_socket_recvfrom(3) on a non-blocking socket: the number of bytes
 * read, or -1 when nothing is waiting. ENOBUFS (the kernel dropped
 * messages because the receive buffer was full) is thrown like every
 * other failure, so callers can resynchronise. An errno outside
 * {@link NETLINK_RECV_ERRNOS} is not believed at once
 * ({@link callDoubtingErrno}): the agent once failed to add a rule with a
 * lone ENOENT from here, right after the lease was granted.
 */
export function socketRecvfrom(nl: MnlSocket, buffer: Uint8Array<ArrayBuffer>): number {
  const { rc, code } = callDoubtingErrno(
    () => Number(mnl().mnl_socket_recvfrom(nl, buffer, BigInt(buffer.byteLength))),
    NETLINK_RECV_ERRNOS,
  );
  if (rc >= 0) return rc;
  if (code === Errno.EAGAIN || code === Errno.EINTR) return -1;
  throw new ErrnoError("mnl_socket_recvfrom", code);
}

/** mnl_socket_get_fd(3). */
export function socketGetFd(nl: MnlSocket): number {
  return mnl().mnl_socket_get_fd(nl);
}

/** mnl_socket_get_portid(3): the port id the kernel addresses replies to. */
export function socketGetPortid(nl: MnlSocket): number {
  return mnl().mnl_socket_get_portid(nl);
}

/** mnl_socket_close(3): closes the descriptor and frees the handle. */
export function socketClose(nl: MnlSocket): void {
  mnl().mnl_socket_close(nl);
}
