/**
 * FFI bindings to the parts of glibc that Deno does not expose: datagram
 * sockets in the abstract namespace with kernel credentials, poll(2) with a
 * wake-up eventfd, the raw monotonic clock and syslog(3).
 *
 * Nothing outside `ffi/` calls `Deno.dlopen`; callers use the typed wrappers
 * below, which turn a `-1` return into an {@link ErrnoError}.
 *
 * @module
 */

// Two handles on libc: Deno builds a binding for every symbol at dlopen, so the
// symbols a hook's client needs (sockets, poll, eventfd) are opened apart from
// those only daemons and error paths use.
const SYMBOLS = {
  // int socket(int domain, int type, int protocol)
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int bind(int sockfd, const struct sockaddr *addr, socklen_t addrlen)
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // ssize_t sendto(int sockfd, const void *buf, size_t len, int flags,
  //                const struct sockaddr *dest_addr, socklen_t addrlen)
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
  // ssize_t recvmsg(int sockfd, struct msghdr *msg, int flags)
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  // int setsockopt(int sockfd, int level, int optname, const void *optval, socklen_t optlen)
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  // int getsockname(int sockfd, struct sockaddr *addr, socklen_t *addrlen)
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  // int close(int fd)
  close: { parameters: ["i32"], result: "i32" },
  // int poll(struct pollfd *fds, nfds_t nfds, int timeout): blocks, so it runs off the main thread
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  // int eventfd(unsigned int initval, int flags)
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  // ssize_t write(int fd, const void *buf, size_t count)
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  // ssize_t read(int fd, void *buf, size_t count)
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  // int *__errno_location(void): errno of the calling (main) thread
  __errno_location: { parameters: [], result: "pointer" },
  // unsigned int if_nametoindex(const char *ifname)
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
} as const satisfies Deno.ForeignLibraryInterface;

const EXTRA_SYMBOLS = {
  // int getsockopt(int sockfd, int level, int optname, void *optval, socklen_t *optlen)
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  // The same poll(2), on the calling thread: for short waits that must not
  // pay a hand-off between threads, and for tools with nothing else to run.
  poll_blocking: { name: "poll", parameters: ["buffer", "u64", "i32"], result: "i32" },
  // char *strerror(int errnum)
  strerror: { parameters: ["i32"], result: "pointer" },
  // int clock_gettime(clockid_t clockid, struct timespec *tp)
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
  // void openlog(const char *ident, int option, int facility)
  openlog: { parameters: ["buffer", "i32", "i32"], result: "void" },
  // void syslog(int priority, const char *format, ...): called with the fixed
  // format "%s" and one pointer argument, which the x86-64 and AArch64 calling
  // conventions pass exactly like a non-variadic call.
  syslog: { parameters: ["i32", "buffer", "buffer"], result: "void" },
  // void closelog(void)
  closelog: { parameters: [], result: "void" },
  // int malloc_trim(size_t pad)
  malloc_trim: { parameters: ["usize"], result: "i32" },
  // int mallopt(int param, int value)
  mallopt: { parameters: ["i32", "i32"], result: "i32" },
  // int recvmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags,
  //              struct timespec *timeout): the daemon drains its queue in one call
  recvmmsg: { parameters: ["i32", "buffer", "u32", "i32", "pointer"], result: "i32" },
  // int stat(const char *pathname, struct stat *statbuf) (exported by glibc since 2.33)
  stat: { parameters: ["buffer", "buffer"], result: "i32" },
  // int socketpair(int domain, int type, int protocol, int sv[2]): a stand-in for journald's stream (tests)
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

let library: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;
let extraLibrary: Deno.DynamicLibrary<typeof EXTRA_SYMBOLS> | undefined;

/** Opens libc on first use, so importing this module has no side effect. */
function libc(): Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] {
  library ??= Deno.dlopen("libc.so.6", SYMBOLS);
  return library.symbols;
}

/** The rest of libc, opened on first use of one of its symbols. */
function libcExtra(): Deno.DynamicLibrary<typeof EXTRA_SYMBOLS>["symbols"] {
  extraLibrary ??= Deno.dlopen("libc.so.6", EXTRA_SYMBOLS);
  return extraLibrary.symbols;
}

/** errno values used by callers; names follow `<errno.h>`. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EEXIST: 17,
  ENODEV: 19,
  ENOTDIR: 20,
  EINVAL: 22,
  ENOSPC: 28,
  EROFS: 30,
  EPIPE: 32,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ELOOP: 40,
  EOPNOTSUPP: 95,
  EMSGSIZE: 90,
  EPROTOTYPE: 91,
  EADDRINUSE: 98,
  EADDRNOTAVAIL: 99,
  ENETUNREACH: 101,
  ENOBUFS: 105,
  ENOTSOCK: 88,
  ENOTCONN: 107,
  ECONNREFUSED: 111,
} as const;

/** The errno values recvmsg(2) gives for a datagram socket (its manual page). */
const RECVMSG_ERRNOS: ReadonlySet<number> = new Set([
  Errno.EAGAIN,
  Errno.EBADF,
  Errno.ECONNREFUSED,
  Errno.EINTR,
  Errno.EINVAL,
  Errno.ENOMEM,
  Errno.ENOTCONN,
  Errno.ENOTSOCK,
  Errno.EFAULT,
]);

/**
 * Makes `call`, a libc call that returns -1 and sets errno when it fails;
 * returns its result and errno (0 when it did not fail). An errno outside
 * `expected` (the call's manual page) is not believed at once: the call
 * is made once more, and that call's result counts. Receives on sockets
 * have given a lone ENOENT under load (Linux 6.18) where the next call
 * found the queue empty; thrown, it would end a process that holds every
 * lease of its namespace. `readErrno` is for tests.
 */
export function callDoubtingErrno(
  call: () => number,
  expected: ReadonlySet<number>,
  readErrno: () => number = errno,
): { rc: number; code: number } {
  let rc = call();
  let code = rc < 0 ? readErrno() : 0;
  if (rc < 0 && !expected.has(code)) {
    rc = call();
    code = rc < 0 ? readErrno() : 0;
  }
  return { rc, code };
}

const ERRNO_NAMES = new Map<number, string>(
  Object.entries(Errno).map(([name, value]) => [value, name]),
);

/** A failed libc call, with the errno it set. */
export class ErrnoError extends Error {
  /** The numeric errno. */
  readonly errno: number;
  /** The symbolic name (`EAGAIN`), or `errno N` when unknown. */
  readonly code: string;
  /** The libc function that failed. */
  readonly syscall: string;

  /** Builds the error from a function name and an errno. */
  constructor(syscall: string, errno: number, detail?: string) {
    const code = ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
    super(`${syscall}${detail ? ` ${detail}` : ""} failed: ${code} (${strerror(errno)})`);
    this.name = "ErrnoError";
    this.errno = errno;
    this.code = code;
    this.syscall = syscall;
  }
}

/** Reads errno of the main thread; valid right after a synchronous call. */
export function errno(): number {
  const ptr = libc().__errno_location();
  return ptr === null ? 0 : new Deno.UnsafePointerView(ptr).getInt32();
}

/** The C library's description of an errno value. */
export function strerror(code: number): string {
  const ptr = libcExtra().strerror(code);
  return ptr === null ? `errno ${code}` : Deno.UnsafePointerView.getCString(ptr);
}

function check(syscall: string, rc: number, detail?: string): number {
  if (rc < 0) throw new ErrnoError(syscall, errno(), detail);
  return rc;
}

function checkSize(syscall: string, rc: number | bigint, detail?: string): number {
  return check(syscall, Number(rc), detail);
}

/** Address family and socket type constants from `<sys/socket.h>`. */
export const AF_UNIX = 1;
/** Datagram socket type. */
export const SOCK_DGRAM = 2;
/** Raw socket type (netlink uses it). */
export const SOCK_RAW = 3;
/** Socket flag: non-blocking I/O. */
export const SOCK_NONBLOCK = 0o4000;
/** Socket flag: close on exec, so child processes do not inherit it. */
export const SOCK_CLOEXEC = 0o2000000;
/** Socket option level. */
export const SOL_SOCKET = 1;
/** Ask the kernel to attach the sender's credentials to every datagram. */
export const SO_PASSCRED = 16;
/** The cookie of the socket's network namespace (Linux 5.14): unique per boot, never reused. */
export const SO_NETNS_COOKIE = 71;
/** Receive buffer size option. */
export const SO_RCVBUF = 8;
/** `SO_SNDBUF` of `<sys/socket.h>`. */
export const SO_SNDBUF = 7;
/** Control message type carrying `struct ucred`. */
export const SCM_CREDENTIALS = 2;
/** recv/send flag: do not block. */
export const MSG_DONTWAIT = 0x40;
/** recv flag: return the real datagram length even when truncated. */
export const MSG_TRUNC = 0x20;
/** poll(2) event: data to read. */
export const POLLIN = 1;
/** eventfd flag: non-blocking. */
export const EFD_NONBLOCK = 0o4000;
/** eventfd flag: close on exec. */
export const EFD_CLOEXEC = 0o2000000;
/** `clock_gettime` clock used by the original for `lease_expires`. */
export const CLOCK_MONOTONIC_RAW = 4;
/** `clock_gettime` clock: time since boot, suspend included. */
export const CLOCK_BOOTTIME = 7;

/** socket(2). */
export function socket(domain: number, type: number, protocol: number): number {
  return check("socket", libc().socket(domain, type, protocol));
}

/** bind(2). */
export function bind(fd: number, addr: Uint8Array<ArrayBuffer>, detail?: string): void {
  const { rc, code } = callDoubtingErrno(
    () => libc().bind(fd, addr, addr.byteLength),
    bindErrnos(addr),
  );
  if (rc < 0) throw new ErrnoError("bind", code, detail);
}

/**
 * The errno values bind(2) gives for a unix socket's `addr` (its manual
 * page): a filesystem path's lookup errors only for a path, never for an
 * abstract name or an autobind. A host agent once saw a lone ENOENT where
 * the name was held (EADDRINUSE, which tells it to ask the holder); a
 * failed bind changes nothing, so the call is made again
 * ({@link callDoubtingErrno}).
 */
export function bindErrnos(addr: Uint8Array<ArrayBuffer>): ReadonlySet<number> {
  const path = addr.byteLength > 2 && addr[2] !== 0;
  return path ? BIND_PATH_ERRNOS : BIND_ERRNOS;
}

const BIND_ERRNOS: ReadonlySet<number> = new Set([
  Errno.EACCES,
  Errno.EADDRINUSE,
  Errno.EADDRNOTAVAIL,
  Errno.EBADF,
  Errno.EFAULT,
  Errno.EINVAL,
  Errno.ENOMEM,
  Errno.ENOTSOCK,
]);
const BIND_PATH_ERRNOS: ReadonlySet<number> = new Set([
  ...BIND_ERRNOS,
  Errno.ELOOP,
  Errno.ENAMETOOLONG,
  Errno.ENOENT,
  Errno.ENOTDIR,
  Errno.EROFS,
]);

/**
 * sendto(2). Returns the number of bytes sent, or -1 when the call would
 * block (the peer's queue is full); every other failure throws.
 */
export function sendto(
  fd: number,
  data: Uint8Array<ArrayBuffer>,
  flags: number,
  addr: Uint8Array<ArrayBuffer>,
  addrLength = addr.byteLength,
): number {
  const rc = Number(libc().sendto(fd, data, BigInt(data.byteLength), flags, addr, addrLength));
  if (rc < 0) {
    const code = errno();
    if (code === Errno.EAGAIN) return -1;
    throw new ErrnoError("sendto", code);
  }
  return rc;
}

// struct msghdr on 64-bit Linux: msg_name (pointer, offset 0), msg_namelen
// (u32, 8), msg_iov (pointer, 16), msg_iovlen (size_t, 24), msg_control
// (pointer, 32), msg_controllen (size_t, 40), msg_flags (int, 48).
const MSGHDR_SIZE = 56;
// struct mmsghdr: the msghdr, then msg_len (u32, 56), padded to 8 bytes.
const MMSGHDR_SIZE = 64;
const IOVEC_SIZE = 16; // iov_base (pointer), iov_len (size_t)
const CMSG_HEADER = 16; // cmsg_len (size_t), cmsg_level, cmsg_type
const UCRED_SIZE = 12; // struct ucred: pid, uid, gid
const CMSG_SPACE_UCRED = 32; // CMSG_SPACE(sizeof(struct ucred))
const CONTROL_LENGTH = BigInt(CMSG_SPACE_UCRED);

/** `struct ucred`: a sender's pid, uid and gid as the kernel attached them. */
export interface Ucred {
  pid: number;
  uid: number;
  gid: number;
}

/** One datagram from {@link MessageReceiver.receive}, copied out of the buffers. */
export interface ReceivedMessage {
  /** The payload, at most the receive buffer's size. */
  data: Uint8Array<ArrayBuffer>;
  /** The datagram's real length (MSG_TRUNC): larger than `data` when it was cut. */
  length: number;
  /** The sender's address bytes (`msg_name`), as long as the kernel said. */
  sender: Uint8Array<ArrayBuffer>;
  /** SCM_CREDENTIALS, when the kernel attached them (SO_PASSCRED). */
  credentials: Ucred | undefined;
}

function pointerValue(buf: Uint8Array<ArrayBuffer>): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}

/**
 * recvmsg(2) and recvmmsg(2) with `slots` message headers set up once
 * (`struct mmsghdr`, whose first member is the `struct msghdr`): each with a
 * payload buffer behind one iovec, a name buffer and room for one
 * SCM_CREDENTIALS message. The buffers are referenced by raw pointers from
 * the headers, so they live as long as the receiver; callers see only
 * copies.
 */
export class MessageReceiver {
  #slots: number;
  #dataSize: number;
  #nameSize: number;
  #data: Uint8Array<ArrayBuffer>;
  #names: Uint8Array<ArrayBuffer>;
  #control: Uint8Array<ArrayBuffer>;
  /** Reached only through the headers' raw pointers: held so that they stay alive. */
  #iovecs: Uint8Array<ArrayBuffer>;
  #headers: Uint8Array<ArrayBuffer>;
  #view: DataView;
  #cmsg: DataView;
  /** Slots whose lengths a call may have changed since they were last reset. */
  #touched: number;

  /**
   * Buffers for `slots` datagrams (1: {@link receive} only) of up to
   * `dataSize` bytes and names of up to `nameSize`.
   */
  constructor(dataSize: number, nameSize: number, slots = 1) {
    this.#slots = slots;
    this.#dataSize = dataSize;
    this.#nameSize = nameSize;
    this.#data = new Uint8Array(dataSize * slots);
    this.#names = new Uint8Array(nameSize * slots);
    this.#control = new Uint8Array(CMSG_SPACE_UCRED * slots);
    this.#cmsg = new DataView(this.#control.buffer);
    const iovecs = new Uint8Array(IOVEC_SIZE * slots);
    this.#headers = new Uint8Array(MMSGHDR_SIZE * slots);
    this.#view = new DataView(this.#headers.buffer);
    const iov = new DataView(iovecs.buffer);
    const [data, names, control, iovBase] = [this.#data, this.#names, this.#control, iovecs]
      .map(pointerValue);
    for (let i = 0; i < slots; i++) {
      iov.setBigUint64(i * IOVEC_SIZE, data + BigInt(i * dataSize), true);
      iov.setBigUint64(i * IOVEC_SIZE + 8, BigInt(dataSize), true);
      const h = i * MMSGHDR_SIZE;
      this.#view.setBigUint64(h, names + BigInt(i * nameSize), true);
      this.#view.setBigUint64(h + 16, iovBase + BigInt(i * IOVEC_SIZE), true);
      this.#view.setBigUint64(h + 24, 1n, true);
      this.#view.setBigUint64(h + 32, control + BigInt(i * CMSG_SPACE_UCRED), true);
    }
    this.#iovecs = iovecs;
    this.#touched = slots;
    this.#reset();
  }

  /**
   * Receives one datagram with `flags` (MSG_TRUNC reports the full
   * length), or returns null when nothing is waiting (EAGAIN, EINTR);
   * every other failure throws an {@link ErrnoError}.
   *
   * An errno that recvmsg(2) does not give for a datagram socket is not
   * believed at once ({@link callDoubtingErrno}). Long-running holders saw
   * a lone ENOENT here (Linux 6.18, a socket with SO_PASSCRED, under load)
   * where the retry found the queue empty.
   */
  receive(fd: number, flags: number): ReceivedMessage | null {
    const call = () => {
      this.#reset();
      this.#touched = 1;
      return Number(libc().recvmsg(fd, this.#headers, flags));
    };
    const rc = this.#retried(call, "recvmsg");
    return rc < 0 ? null : this.#message(0, rc);
  }

  /**
   * Receives up to one datagram per slot in one recvmmsg(2) call without
   * blocking (`flags` should hold MSG_DONTWAIT), in the order they came;
   * empty when none is waiting. Failures as for {@link receive}; a failure
   * after some datagrams is reported by the kernel at the next call.
   */
  receiveMany(fd: number, flags: number): ReceivedMessage[] {
    const call = () => {
      this.#reset();
      const rc = libcExtra().recvmmsg(fd, this.#headers, this.#slots, flags, null);
      // The slots it filled, and the one it may have failed in.
      this.#touched = Math.min(Math.max(rc, 0) + 1, this.#slots);
      return rc;
    };
    const count = this.#retried(call, "recvmmsg");
    const messages: ReceivedMessage[] = [];
    for (let i = 0; i < count; i++) {
      messages.push(this.#message(i, this.#view.getUint32(i * MMSGHDR_SIZE + MSGHDR_SIZE, true)));
    }
    return messages;
  }

  /**
   * Makes `call`; -1 when nothing is waiting. An errno outside recvmsg(2)'s
   * list is checked by one more call (see {@link receive}).
   */
  #retried(call: () => number, syscall: string): number {
    const { rc, code } = callDoubtingErrno(call, RECVMSG_ERRNOS);
    if (rc >= 0) return rc;
    if (code === Errno.EAGAIN || code === Errno.EINTR) return -1;
    throw new ErrnoError(syscall, code);
  }

  /**
   * The kernel shrinks the lengths to what it wrote: before a call, the
   * slots the calls since the last reset may have written get theirs back.
   */
  #reset(): void {
    const view = this.#view;
    for (let i = 0; i < this.#touched; i++) {
      const h = i * MMSGHDR_SIZE;
      view.setUint32(h + 8, this.#nameSize, true);
      view.setBigUint64(h + 40, CONTROL_LENGTH, true);
      view.setInt32(h + 48, 0, true);
    }
    this.#touched = 0;
  }

  #message(slot: number, length: number): ReceivedMessage {
    const h = slot * MMSGHDR_SIZE;
    const data = slot * this.#dataSize;
    const name = slot * this.#nameSize;
    return {
      data: this.#data.slice(data, data + Math.min(length, this.#dataSize)),
      length,
      sender: this.#names.slice(name, name + this.#view.getUint32(h + 8, true)),
      credentials: this.#credentials(slot, Number(this.#view.getBigUint64(h + 40, true))),
    };
  }

  #credentials(slot: number, controlLength: number): Ucred | undefined {
    if (controlLength < CMSG_HEADER + UCRED_SIZE) return undefined;
    const c = this.#cmsg;
    const at = slot * CMSG_SPACE_UCRED;
    if (c.getInt32(at + 8, true) !== SOL_SOCKET || c.getInt32(at + 12, true) !== SCM_CREDENTIALS) {
      return undefined;
    }
    return {
      pid: c.getInt32(at + 16, true),
      uid: c.getUint32(at + 20, true),
      gid: c.getUint32(at + 24, true),
    };
  }
}

/** send(2) flag: no SIGPIPE when the peer is gone. */
export const MSG_NOSIGNAL = 0x4000;
/** `SOCK_STREAM` of `<sys/socket.h>`. */
export const SOCK_STREAM = 1;

/** socketpair(2) of two connected `AF_UNIX` stream sockets (non-blocking, close-on-exec). */
export function socketPair(): [number, number] {
  const fds = new Int32Array(2);
  check(
    "socketpair",
    libcExtra().socketpair(
      AF_UNIX,
      SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
      0,
      new Uint8Array(fds.buffer),
    ),
  );
  return [fds[0], fds[1]];
}

/** read(2) of at most `max` bytes from a non-blocking descriptor; empty when none waits. */
export function readSome(fd: number, max: number): Uint8Array<ArrayBuffer> {
  const buf = new Uint8Array(max);
  const got = Number(libc().read(fd, buf, BigInt(max)));
  if (got < 0) {
    const code = errno();
    if (code === Errno.EAGAIN) return new Uint8Array(0);
    throw new ErrnoError("read", code);
  }
  return buf.slice(0, got);
}

/** setsockopt(2) for an `int` option. */
export function setsockoptInt(fd: number, level: number, name: number, value: number): void {
  const buf = new Uint8Array(4);
  new DataView(buf.buffer).setInt32(0, value, true);
  check("setsockopt", libc().setsockopt(fd, level, name, buf, 4), `(option ${name})`);
}

/** getsockopt(2) for a 64-bit option (such as {@link SO_NETNS_COOKIE}). */
export function getsockoptU64(fd: number, level: number, name: number): bigint {
  const value = new BigUint64Array(1);
  const length = new Uint32Array([8]);
  check(
    "getsockopt",
    libcExtra().getsockopt(
      fd,
      level,
      name,
      new Uint8Array(value.buffer),
      new Uint8Array(length.buffer),
    ),
    `(option ${name})`,
  );
  return value[0];
}

/** getsockname(2): the socket's own address bytes. */
export function getsockname(fd: number): Uint8Array<ArrayBuffer> {
  const addr = new Uint8Array(128);
  const len = new Uint32Array([addr.byteLength]);
  check("getsockname", libc().getsockname(fd, addr, new Uint8Array(len.buffer)));
  return addr.slice(0, len[0]);
}

/**
 * if_nametoindex(3): the index of a network interface in this network
 * namespace, or 0 when there is no interface of that name.
 */
export function ifNameToIndex(name: string): number {
  return libc().if_nametoindex(cString(name));
}

/** close(2); errors are ignored because there is nothing left to do. */
export function close(fd: number): void {
  libc().close(fd);
}

/** eventfd(2), used to wake a pending poll from the main thread. */
export function eventfd(flags = EFD_NONBLOCK | EFD_CLOEXEC): number {
  return check("eventfd", libc().eventfd(0, flags));
}

/** Adds one to an eventfd counter, waking any poll on it. */
export function eventfdSignal(fd: number): void {
  const one = new BigUint64Array([1n]);
  checkSize("write", libc().write(fd, new Uint8Array(one.buffer), 8n), "(eventfd)");
}

/** Resets an eventfd counter; returns whether it was signalled. */
export function eventfdDrain(fd: number): boolean {
  const buf = new Uint8Array(8);
  return Number(libc().read(fd, buf, 8n)) === 8;
}

/**
 * poll(2) on a thread of its own, so the event loop keeps running. `fds`
 * is an array of `struct pollfd` (8 bytes each); `revents` are written back.
 * Returns the number of ready descriptors (0 on timeout, -1 on EINTR).
 */
export async function poll(fds: Uint8Array<ArrayBuffer>, timeoutMs: number): Promise<number> {
  return await libc().poll(fds, BigInt(fds.byteLength / 8), timeoutMs);
}

/**
 * poll(2) on the calling thread: blocks the event loop (no timer or signal
 * listener runs meanwhile), so only for short, bounded waits (the daemon's
 * wait right after a pass, the benchmark's load generator). Long waits use
 * {@link poll}.
 */
export function pollBlocking(fds: Uint8Array<ArrayBuffer>, timeoutMs: number): number {
  return libcExtra().poll_blocking(fds, BigInt(fds.byteLength / 8), timeoutMs);
}

/**
 * malloc_trim(3): gives memory that malloc holds free back to the kernel
 * (after a burst, SQLite's and the runtime's freed buffers stay resident
 * otherwise). Costs about a millisecond; for moments of quiet.
 */
export function mallocTrim(): void {
  libcExtra().malloc_trim(0n);
}

/** mallopt(3)'s `M_MMAP_THRESHOLD` (`<malloc.h>`). */
const M_MMAP_THRESHOLD = -3;

/**
 * Fixes the size from which malloc(3) maps a block of its own instead of
 * carving it from the heap. glibc raises that size by itself up to 32 MiB
 * whenever a mapped block is freed, after which a burst's large buffers
 * come from the heap and pin its pages: the server's heap kept 3 MiB more
 * after a burst of 100,000 refreshes that way (measured, see the README).
 * Setting the size also turns that raising off (mallopt(3)). False if
 * malloc refused the value.
 */
export function fixMallocMmapThreshold(bytes: number): boolean {
  return libcExtra().mallopt(M_MMAP_THRESHOLD, bytes) === 1;
}

/** The `struct timespec` that {@link clockSeconds} reads into (one per process: calls do not overlap). */
const timespec = new BigInt64Array(2);
const timespecBytes = new Uint8Array(timespec.buffer);

/** Seconds on a clock, as a float. */
export function clockSeconds(clock = CLOCK_MONOTONIC_RAW): number {
  check("clock_gettime", libcExtra().clock_gettime(clock, timespecBytes));
  return Number(timespec[0]) + Number(timespec[1]) / 1e9;
}

/**
 * What {@link fileIdentity} reads into: larger than `struct stat` on every
 * Linux ABI Deno runs on (144 bytes on x86-64, 128 on AArch64), both of
 * which begin with the 64-bit `st_dev` and `st_ino`.
 */
const statBuffer = new BigUint64Array(32);
const statBytes = new Uint8Array(statBuffer.buffer);

/**
 * Device and inode behind a path (a NUL-terminated C string, see
 * {@link cString}), by stat(2): what `Deno.statSync` gives too, without
 * building its object of times and modes, for a check made before every
 * commit. Throws an {@link ErrnoError} (ENOENT: nothing there).
 */
export function fileIdentity(path: Uint8Array<ArrayBuffer>): { dev: bigint; ino: bigint } {
  check("stat", libcExtra().stat(path, statBytes));
  return { dev: statBuffer[0], ino: statBuffer[1] };
}

/** syslog(3) facility for daemons. */
export const LOG_DAEMON = 3 << 3;
/** openlog(3) option: include the pid. */
export const LOG_PID = 0x01;
/** syslog(3) severities. */
export const LogSeverity = { err: 3, warning: 4, notice: 5, info: 6, debug: 7 } as const;

/** A string as a NUL-terminated C string (UTF-8). */
export const cString = (s: string): Uint8Array<ArrayBuffer> => new TextEncoder().encode(`${s}\0`);
const PERCENT_S = cString("%s");
// openlog keeps the ident pointer, so the buffer must outlive every syslog call.
let syslogIdent: Uint8Array<ArrayBuffer> | undefined;

/** openlog(3) with facility daemon and the pid in each line. */
export function openlog(ident: string, facility = LOG_DAEMON): void {
  syslogIdent = cString(ident);
  libcExtra().openlog(syslogIdent, LOG_PID, facility);
}

/** syslog(3) of one message, never interpreted as a format string. */
export function syslog(severity: number, message: string): void {
  libcExtra().syslog(severity, PERCENT_S, cString(message));
}

/** closelog(3). */
export function closelog(): void {
  libcExtra().closelog();
  syslogIdent = undefined;
}
