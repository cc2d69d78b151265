/**
 * What the server does before it may serve, beyond reading its config:
 * read the PSK of message authentication, and open the lease store, which
 * for a shared PostgreSQL store means waiting, with a clear log line, until
 * the database can be reached. The server binds its socket and reports
 * ready to systemd only after both; its socket gets the kernel queue the
 * config asks for.
 *
 * @module
 */

import type { ServerConfig } from "../../config/config.ts";
import { readPskFile } from "../../config/psk_file.ts";
import type { Logger } from "../log/logger.ts";
import { Authenticator } from "../protocol/auth.ts";
import { type LeaseStore, TransientError } from "../store/lease_store.ts";
import { openStore, type OpenStoreOptions } from "../store/open_store.ts";
import { AbstractDatagramSocket } from "../unix/abstract_socket.ts";
import { withDatagramQueue } from "../unix/datagram_queue.ts";
import { MAX_REQUEST_BYTES } from "../protocol/v1.ts";
import { RECEIVE_BATCH } from "./receiver.ts";
import { errorMessage } from "../util/errors.ts";
import { after } from "../util/timer.ts";

/** Between two attempts to open an unreachable store. */
export const OPEN_RETRY_MS = 1000;
/** While the store stays unreachable, say so again this often. */
export const OPEN_REPORT_MS = 60_000;

/**
 * The daemon's message authentication from the config, or undefined
 * without `auth`. Throws a PskFileError naming the file when the PSK
 * cannot be used (unreadable, readable by group or others, not a key).
 */
export function loadAuth(
  config: ServerConfig,
): { authenticator: Authenticator; require: boolean } | undefined {
  const auth = config.trust.auth;
  if (!auth) return undefined;
  return {
    authenticator: new Authenticator(readPskFile(auth.pskFile), { clockSkew: auth.clockSkew }),
    require: auth.require,
  };
}

/**
 * Opens the config's store. A store that cannot be reached now (a
 * TransientError: PostgreSQL down or starting) is tried again every
 * {@link OPEN_RETRY_MS} until it opens or `signal` aborts (then undefined):
 * logged once, then every {@link OPEN_REPORT_MS}. Any other failure (a
 * locked, read-only or full SQLite file, a refused login, a newer schema)
 * is thrown at once.
 */
export async function openStoreWhenReachable(
  config: ServerConfig,
  log: Logger,
  signal: AbortSignal,
  options: OpenStoreOptions = {},
): Promise<LeaseStore | undefined> {
  let attempts = 0;
  let reportedAt = -Infinity;
  for (;;) {
    try {
      const store = await openStore(config.store, options);
      if (attempts > 0) log.info("lease store reachable", { attempts: attempts + 1 });
      return store;
    } catch (error) {
      if (!(error instanceof TransientError)) throw error;
      attempts++;
      const now = Date.now();
      if (now - reportedAt >= OPEN_REPORT_MS) {
        log.warn(
          attempts === 1
            ? `cannot open the lease store, retrying every ${
              OPEN_RETRY_MS / 1000
            } s until it can serve: ${errorMessage(error)}`
            : `still cannot open the lease store after ${attempts} attempts, retrying: ${
              errorMessage(error)
            }`,
        );
        reportedAt = now;
      }
    }
    const aborted = await new Promise<boolean>((resolve) => {
      if (signal.aborted) return resolve(true);
      const onAbort = () => {
        timer.cancel();
        resolve(true);
      };
      // A store down for hours: each wait takes its listener off the signal again.
      const timer = after(OPEN_RETRY_MS, () => {
        signal.removeEventListener("abort", onAbort);
        resolve(false);
      });
      signal.addEventListener("abort", onAbort, { once: true });
    });
    if (aborted) return undefined;
  }
}

/**
 * Binds the server's socket with a kernel queue of `socket_queue_length`
 * datagrams at least ({@link withDatagramQueue}: the namespace's
 * `net.unix.max_dgram_qlen` is raised for the socket alone). Logs what
 * it got when that is not the namespace's value: an info line when
 * raised, a warning when the value could not be raised (the socket then
 * has the namespace's, and a crowd of clients gets EAGAIN sooner) or
 * could not be put back. Returns the socket and its queue; throws what
 * bind(2) throws (a name in use).
 */
export function bindServerSocket(
  config: ServerConfig,
  log: Logger,
): { socket: AbstractDatagramSocket; queue: number } {
  const wanted = config.socketQueueLength;
  const bound = withDatagramQueue(wanted, () =>
    AbstractDatagramSocket.bind(config.socketPath, {
      passCredentials: true,
      receiveBufferSize: MAX_REQUEST_BYTES,
      receiveBatch: RECEIVE_BATCH,
    }));
  if (bound.raiseError !== undefined) {
    log.warn("cannot raise the kernel queue of the server's socket to socket_queue_length", {
      socket_queue_length: wanted,
      max_dgram_qlen: bound.namespaceQueue,
      error: bound.raiseError,
      hint: "the server needs root and a writable /proc/sys to raise it for its socket; or " +
        "raise net.unix.max_dgram_qlen in its network namespace, or set socket_queue_length " +
        "to 0 to keep it (docs/config.md, Socket queue)",
    });
  } else if (bound.queue > bound.namespaceQueue) {
    log.info("raised the kernel queue of the server's socket above its namespace's", {
      queue: bound.queue,
      max_dgram_qlen: bound.namespaceQueue,
    });
  }
  if (bound.restoreError !== undefined) {
    log.warn(
      "cannot put net.unix.max_dgram_qlen back: new sockets of this namespace get the server's queue",
      {
        max_dgram_qlen: bound.queue,
        was: bound.namespaceQueue,
        error: bound.restoreError,
      },
    );
  }
  return { socket: bound.made, queue: bound.queue };
}
