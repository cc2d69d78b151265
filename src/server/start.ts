/**
 * What the server does before it may serve, beyond reading its config:
 * read the PSK of message authentication, and open the lease store, which
 * for a shared PostgreSQL store means waiting, with a clear log line, until
 * the database can be reached. The server binds its socket and reports
 * ready to systemd only after both.
 *
 * @module
 */

import type { ServerConfig } from "../../config/config.ts";
import { readPskFile } from "../../config/psk_file.ts";
import type { Logger } from "../log/logger.ts";
import { Authenticator } from "../protocol/auth.ts";
import { type LeaseStore, TransientError } from "../store/lease_store.ts";
import { openStore, type OpenStoreOptions } from "../store/open_store.ts";
import { errorMessage } from "../util/errors.ts";

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
      const timer = setTimeout(() => resolve(false), OPEN_RETRY_MS);
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        resolve(true);
      }, { once: true });
    });
    if (aborted) return undefined;
  }
}
