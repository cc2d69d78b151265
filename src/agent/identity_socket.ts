/**
 * An identity's socket as its holder uses it: bound to the identity's
 * padded name, it sends the identity's requests and releases to the
 * server, exactly as the C client does, and sorts what arrives. A
 * datagram from the server's name is believed only when the kernel says
 * (SCM_CREDENTIALS) its sender is root or a trusted server uid, and a
 * lease only for a table that is not the kernel's own; anything else from
 * the server's name is logged (rate-limited) and dropped. With
 * `--psk-file`, requests are signed and a reply is believed only with a
 * valid MAC, a fresh `ts` and a nonce not seen before (`docs/protocol.md`).
 * Datagrams from other names are questions of other processes.
 *
 * @module
 */

import { ErrnoError } from "../../ffi/libc.ts";
import type { Fields } from "../log/logger.ts";
import {
  Command,
  decodeReply,
  encodeRequest,
  identityName,
  isLeasableTable,
  type Reply,
} from "../protocol/v1.ts";
import {
  AbstractDatagramSocket,
  type Datagram,
  paddedAbstractAddress,
} from "../unix/abstract_socket.ts";
import { sameBytes } from "../util/bytes.ts";
import { errorMessage } from "../util/errors.ts";
import type { HoldSpec } from "./protocol.ts";
import type { IdentityLog } from "./sinks.ts";
import { trustedServerUids } from "./trust.ts";
import { Authenticator } from "../protocol/auth.ts";
import { readPskFile } from "../../config/psk_file.ts";
import { authentic } from "../client/peer.ts";
import type { LimitedLog } from "../log/rate_limit.ts";

/** The socket of one identity, and whom it believes. */
export class IdentitySocket implements Disposable {
  /** Bound to the identity's padded name, with SO_PASSCRED. */
  readonly socket: AbstractDatagramSocket;
  #spec: HoldSpec;
  #server: Uint8Array<ArrayBuffer>;
  #trusted: Set<number>;
  #auth: Authenticator | undefined;
  #log: IdentityLog;
  #warnings: LimitedLog;
  #fields: () => Fields;

  private constructor(
    socket: AbstractDatagramSocket,
    spec: HoldSpec,
    log: IdentityLog,
    warnings: LimitedLog,
    fields: () => Fields,
  ) {
    this.socket = socket;
    this.#spec = spec;
    this.#server = paddedAbstractAddress(spec.server);
    this.#trusted = trustedServerUids(spec.serverUids);
    this.#auth = authenticatorFor(spec);
    this.#log = log;
    this.#warnings = warnings;
    this.#fields = fields;
  }

  /**
   * Binds the identity's name. Throws an {@link ErrnoError} EADDRINUSE
   * when another process holds it, a PskFileError when `--psk-file`
   * cannot be used.
   */
  static bind(
    spec: HoldSpec,
    log: IdentityLog,
    warnings: LimitedLog,
    fields: () => Fields,
  ): IdentitySocket {
    authenticatorFor(spec); // a PSK file that cannot be used fails before the name is taken
    const socket = AbstractDatagramSocket.bind(identityName(spec.identity), {
      passCredentials: true,
    });
    return new IdentitySocket(socket, spec, log, warnings, fields);
  }

  /**
   * Sends a request or release to the server. False only when the server's
   * queue is full (try again soon); a send nobody receives (ECONNREFUSED:
   * no server bound yet) counts as sent, and the retransmission timer
   * tries again.
   */
  sendToServer(cmd: typeof Command.REQUEST | typeof Command.RELEASE, logIt: boolean): boolean {
    const plain = encodeRequest({ cmd, identity: this.#spec.identity, tag: this.#spec.tag });
    // Each send is signed anew: the server refuses a copy as a replay.
    const data = this.#auth ? this.#auth.seal(plain) : plain;
    const what = cmd === Command.REQUEST ? "request" : "release";
    const fields = { ...this.#fields(), server: this.#spec.server };
    try {
      if (!this.socket.send(data, this.#server)) {
        this.#log.log("debug", `${what} not sent yet: the server's queue is full`, fields);
        return false;
      }
      this.#log.log("debug", `${what} sent`, fields);
    } catch (error) {
      if (logIt) {
        this.#log.log("warn", `${what} not sent`, {
          ...fields,
          reason: error instanceof ErrnoError ? error.code : errorMessage(error),
        });
      }
    }
    return true;
  }

  /** Sends `data` to `to`; an asker that is gone is ignored. */
  trySend(data: Uint8Array<ArrayBuffer>, to: Uint8Array<ArrayBuffer>): void {
    try {
      this.socket.send(data, to);
    } catch {
      // The asking process is gone: nothing to tell.
    }
  }

  /**
   * Reads every waiting datagram: what the trusted server says goes to
   * `fromServer` (a lease only of a table the client may use, or table 0),
   * datagrams of other names to `fromPeer`.
   */
  read(fromServer: (reply: Reply) => void, fromPeer: (dg: Datagram) => void): void {
    for (let dg = this.#receive(); dg !== null; dg = this.#receive()) {
      if (!sameBytes(dg.sender, this.#server)) fromPeer(dg);
      else {
        const reply = this.#believe(dg);
        if (reply) fromServer(reply);
      }
    }
  }

  /** Closes the socket (the name is free again). */
  [Symbol.dispose](): void {
    this.socket.close();
  }

  #believe(dg: Datagram): Reply | null {
    const uid = dg.credentials?.uid;
    if (uid === undefined || !this.#trusted.has(uid)) {
      this.#warnings.warn(
        "untrusted",
        `uid=${uid}`,
        "ignoring a datagram from the server's name: its uid is not trusted",
        {
          ...this.#fields(),
          server: this.#spec.server,
          uid,
          pid: dg.credentials?.pid,
          trusted: [...this.#trusted].join(","),
        },
      );
      return null;
    }
    if (this.#auth && !authentic(this.#auth, dg.data)) {
      this.#warnings.warn(
        "unauthenticated",
        `uid=${uid}`,
        "ignoring a reply without a valid hmac (is the server's auth.psk_file this key?)",
        { ...this.#fields(), server: this.#spec.server, reply: new TextDecoder().decode(dg.data) },
      );
      return null;
    }
    let reply;
    try {
      reply = decodeReply(dg.data);
    } catch (error) {
      this.#warnings.warn("malformed", `uid=${uid}`, "ignoring a malformed reply", {
        ...this.#fields(),
        reason: errorMessage(error),
      });
      return null;
    }
    if (reply.kind === "lease" && reply.table !== 0 && !isLeasableTable(reply.table)) {
      this.#warnings.warn(
        "kernel-table",
        `uid=${uid}`,
        "not accepting a lease on a kernel table: treated as no lease",
        { ...this.#fields(), offered_table: reply.table },
      );
      return null;
    }
    return reply;
  }

  #receive(): Datagram | null {
    try {
      return this.socket.receive();
    } catch (error) {
      this.#log.log("warn", "cannot read the identity's socket", {
        ...this.#fields(),
        reason: errorMessage(error),
      });
      return null;
    }
  }
}

/**
 * The authenticator of a spec's `--psk-file`, or undefined without one.
 * Throws a PskFileError naming the file when it cannot be used.
 */
export function authenticatorFor(spec: HoldSpec): Authenticator | undefined {
  return spec.pskFile === undefined ? undefined : new Authenticator(readPskFile(spec.pskFile));
}
