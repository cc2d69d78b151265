/**
 * Unix datagram sockets in the abstract namespace, addressed the way the
 * original table_allocator does it: the name padded with NULs to the full
 * 108-byte `sun_path`, address length 110. Each received datagram carries the
 * sender's exact address (to reply to) and its kernel-verified credentials.
 *
 * @module
 */

import {
  AF_UNIX,
  bind,
  close,
  ErrnoError,
  eventfd,
  eventfdDrain,
  eventfdSignal,
  getsockname,
  MessageReceiver,
  MSG_DONTWAIT,
  MSG_TRUNC,
  poll,
  pollBlocking,
  POLLIN,
  sendto,
  setsockoptInt,
  SO_PASSCRED,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  socket,
  SOL_SOCKET,
  type Ucred,
} from "../../ffi/libc.ts";

/** `sizeof(struct sockaddr_un)`: the address length the original uses. */
export const SOCKADDR_UN_SIZE = 110;
/** Bytes of `sun_path`. */
const SUN_PATH_SIZE = 108;
/** Longest abstract name: `sun_path` less the leading NUL. */
export const MAX_ABSTRACT_NAME = SUN_PATH_SIZE - 1;

/** Sender credentials from `SCM_CREDENTIALS`, checked by the kernel. */
export type Credentials = Ucred;

/** One received datagram. */
export interface Datagram {
  /** The payload (at most the receive buffer; see {@link Datagram.length}). */
  data: Uint8Array<ArrayBuffer>;
  /** The datagram's real length; larger than `data` when it was truncated. */
  length: number;
  /** The sender's address bytes, exactly as received: reply to these. */
  sender: Uint8Array<ArrayBuffer>;
  /** Kernel-verified credentials, when the socket passes them. */
  credentials: Credentials | undefined;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Encodes an abstract name as a padded `sockaddr_un` (110 bytes): family,
 * a NUL, the name, NULs up to the end of `sun_path`.
 */
export function paddedAbstractAddress(name: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(name);
  if (bytes.byteLength === 0 || bytes.byteLength > MAX_ABSTRACT_NAME) {
    throw new RangeError(
      `abstract socket name must be 1 to ${MAX_ABSTRACT_NAME} bytes, got ${bytes.byteLength}: "${name}"`,
    );
  }
  const addr = new Uint8Array(SOCKADDR_UN_SIZE);
  addr[0] = AF_UNIX; // sa_family_t, little endian
  addr.set(bytes, 3);
  return addr;
}

/**
 * A readable form of a socket address for logs: `@name` for abstract
 * names (trailing padding removed), the path for filesystem sockets,
 * `unnamed` for an unbound sender.
 */
export function describeAddress(addr: Uint8Array): string {
  if (addr.byteLength <= 2) return "unnamed";
  const path = addr.subarray(2);
  if (path[0] !== 0) {
    const end = path.indexOf(0);
    return decoder.decode(end < 0 ? path : path.subarray(0, end));
  }
  let end = path.byteLength;
  while (end > 1 && path[end - 1] === 0) end--;
  return `@${decoder.decode(path.subarray(1, end))}`;
}

/** Options for {@link AbstractDatagramSocket.bind}. */
export interface BindOptions {
  /** Attach sender credentials to every received datagram (SO_PASSCRED). */
  passCredentials?: boolean;
  /** Largest datagram returned whole; longer ones are reported truncated. */
  receiveBufferSize?: number;
  /** Most datagrams {@link AbstractDatagramSocket.receiveMany} takes in one call (default 1). */
  receiveBatch?: number;
}

/**
 * A non-blocking `AF_UNIX` `SOCK_DGRAM` socket bound to a padded abstract
 * name (or autobound when no name is given).
 */
export class AbstractDatagramSocket implements Disposable {
  #fd: number;
  #wakeFd: number;
  #pollFds = new Uint8Array(16);
  #receiver: MessageReceiver;
  #closed = false;
  /** The address this socket is bound to (padded, 110 bytes when named). */
  readonly address: Uint8Array<ArrayBuffer>;
  /** Most datagrams {@link receiveMany} returns. */
  readonly receiveBatch: number;

  private constructor(
    fd: number,
    address: Uint8Array<ArrayBuffer>,
    bufferSize: number,
    batch: number,
  ) {
    this.#fd = fd;
    this.address = address;
    this.receiveBatch = batch;
    this.#receiver = new MessageReceiver(bufferSize, SOCKADDR_UN_SIZE + 2, batch);
    this.#wakeFd = eventfd();
    const pollView = new DataView(this.#pollFds.buffer);
    pollView.setInt32(0, fd, true);
    pollView.setInt16(4, POLLIN, true);
    pollView.setInt32(8, this.#wakeFd, true);
    pollView.setInt16(12, POLLIN, true);
  }

  /**
   * Creates a socket bound to the padded abstract `name`, or autobound to
   * a kernel-chosen unique name when `name` is null. Throws an
   * {@link ErrnoError} with code `EADDRINUSE` when the name is taken.
   */
  static bind(name: string | null, options: BindOptions = {}): AbstractDatagramSocket {
    if (name === null) return AbstractDatagramSocket.#bindAddress(null, "(autobind)", options);
    return AbstractDatagramSocket.#bindAddress(paddedAbstractAddress(name), `@${name}`, options);
  }

  /**
   * Creates a socket bound to a filesystem path (e.g. a stand-in for
   * `/dev/log` in tests). The caller removes the path when done.
   */
  static bindPath(path: string, options: BindOptions = {}): AbstractDatagramSocket {
    if (path.startsWith("@")) {
      throw new RangeError(`bindPath() takes a filesystem path, got "${path}"`);
    }
    return AbstractDatagramSocket.#bindAddress(unixAddress(path), path, options);
  }

  static #bindAddress(
    address: Uint8Array<ArrayBuffer> | null,
    label: string,
    options: BindOptions,
  ): AbstractDatagramSocket {
    const fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    try {
      if (options.passCredentials) setsockoptInt(fd, SOL_SOCKET, SO_PASSCRED, 1);
      // Binding only the family asks the kernel for an autobind name.
      bind(fd, address ?? new Uint8Array([AF_UNIX, 0]), label);
      return new AbstractDatagramSocket(
        fd,
        address ?? getsockname(fd),
        options.receiveBufferSize ?? 2048,
        options.receiveBatch ?? 1,
      );
    } catch (error) {
      close(fd);
      throw error;
    }
  }

  /** The socket descriptor (for diagnostics). */
  get fd(): number {
    return this.#fd;
  }

  /**
   * Receives one waiting datagram without blocking, or returns null when
   * none is waiting. The payload is copied, so it stays valid.
   */
  receive(): Datagram | null {
    this.#assertOpen();
    return this.#receiver.receive(this.#fd, MSG_DONTWAIT | MSG_TRUNC);
  }

  /**
   * Receives the datagrams waiting, up to the socket's `receiveBatch`, in
   * one system call (recvmmsg(2)) without blocking; empty when none is
   * waiting. Payloads are copied, as by {@link receive}.
   */
  receiveMany(): Datagram[] {
    this.#assertOpen();
    return this.#receiver.receiveMany(this.#fd, MSG_DONTWAIT | MSG_TRUNC);
  }

  /**
   * Sends a datagram to an address (exactly these bytes and this length).
   * Returns false when the peer's queue is full; throws ErrnoError for
   * other failures (ECONNREFUSED: nobody is bound there).
   */
  send(data: Uint8Array<ArrayBuffer>, address: Uint8Array<ArrayBuffer>): boolean {
    this.#assertOpen();
    return sendto(this.#fd, data, MSG_DONTWAIT, address) >= 0;
  }

  /** Sends a datagram to a padded abstract name. */
  sendToName(data: Uint8Array<ArrayBuffer>, name: string): boolean {
    return this.send(data, paddedAbstractAddress(name));
  }

  /**
   * Waits until a datagram is readable, the timeout passes, or
   * {@link wake} is called; never blocks the event loop. A negative or
   * infinite timeout waits until something happens. Returns true when the
   * socket is readable.
   */
  async readable(timeoutMs: number): Promise<boolean> {
    this.#assertOpen();
    const fds = this.#clearedPollFds();
    // poll(2) takes whole milliseconds; negative or infinite: wait until something happens.
    const timeout = Number.isFinite(timeoutMs) && timeoutMs >= 0
      ? Math.min(Math.ceil(timeoutMs), 2 ** 31 - 1)
      : -1;
    const ready = await poll(fds, timeout);
    if (this.#closed) return false;
    if (ready > 0 && (fds[14] | fds[15]) !== 0) eventfdDrain(this.#wakeFd);
    return ready > 0 && (fds[6] | fds[7]) !== 0;
  }

  /**
   * Like {@link readable}, but waits on the calling thread: the event loop
   * (timers, signals) is held for up to `timeoutMs`, and in exchange the
   * wake-up costs no hand-off between threads. For short waits only. A
   * {@link wake} ends the wait too, and stays pending for the next
   * {@link readable} call, which returns at once.
   */
  readableNow(timeoutMs: number): boolean {
    this.#assertOpen();
    const fds = this.#clearedPollFds();
    return pollBlocking(fds, timeoutMs) > 0 && (fds[6] | fds[7]) !== 0;
  }

  /** The pollfd pair (socket, wake eventfd) with their `revents` cleared for the next poll. */
  #clearedPollFds(): Uint8Array<ArrayBuffer> {
    const fds = this.#pollFds;
    fds[6] =
      fds[7] =
      fds[14] =
      fds[15] =
        0;
    return fds;
  }

  /** Interrupts a pending {@link readable} call at once. */
  wake(): void {
    if (!this.#closed) eventfdSignal(this.#wakeFd);
  }

  /** Closes the socket; safe to call more than once. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    eventfdSignal(this.#wakeFd);
    close(this.#fd);
    // The wake descriptor may still be in a pending poll on another thread;
    // closing it after the signal is safe because poll holds its own reference.
    close(this.#wakeFd);
  }

  /** Same as {@link close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  #assertOpen(): void {
    if (this.#closed) throw new ErrnoError("socket", 9, "(already closed)");
  }
}

/**
 * Encodes a socket address the way systemd writes `NOTIFY_SOCKET`: a
 * filesystem path, or `@name` for an abstract name of exactly that length
 * (not padded).
 */
export function unixAddress(path: string): Uint8Array<ArrayBuffer> {
  const abstract = path.startsWith("@");
  const bytes = encoder.encode(abstract ? path.slice(1) : path);
  if (bytes.byteLength === 0 || bytes.byteLength > MAX_ABSTRACT_NAME) {
    throw new RangeError(`socket address must be 1 to ${MAX_ABSTRACT_NAME} bytes, got "${path}"`);
  }
  const addr = new Uint8Array(2 + 1 + bytes.byteLength);
  addr[0] = AF_UNIX;
  addr.set(bytes, 3);
  // A path address ends with its NUL; an abstract one starts with it.
  return abstract ? addr : Uint8Array.from([AF_UNIX, 0, ...bytes, 0]);
}
