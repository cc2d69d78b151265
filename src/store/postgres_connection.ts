/**
 * The PostgreSQL store's connection: the driver's options from the store
 * config (URL first, then the config's fields over it), the description
 * of where the database is for error messages, answer deadlines, the
 * classification of driver failures, and what a failure caused by the
 * process's own sandbox means.
 *
 * @module
 */

import postgres from "postgres";
import type { StoreConfig } from "../../config/config.ts";
import { parsePostgresUrl, type PostgresUrlParts, type SslMode } from "./postgres_url.ts";
import { after, type Timer } from "../util/timer.ts";

/** The store config this backend takes. */
export type PostgresStoreConfig = Extract<StoreConfig, { kind: "postgres" }>;

/** The driver's options, typed for the int8 parser below. */
export type DriverOptions = postgres.Options<Record<string, postgres.PostgresType>>;

const SSL: Record<SslMode, DriverOptions["ssl"]> = {
  disable: false,
  allow: "allow",
  prefer: "prefer",
  require: "require",
  "verify-full": "verify-full",
};

/**
 * Seconds a connection attempt may take. A local or LAN database answers
 * in milliseconds; one behind a dead path sends nothing, and every pass
 * of the server that needs a connection would wait this long.
 */
export const CONNECT_TIMEOUT_S = 2;

/**
 * The connection options: the URL first, libpq style (a unix socket
 * directory may be given as `?host=/dir`), then the config's fields over
 * it; porsager's own defaults (PGHOST etc., then localhost:5432) for the
 * rest. `where` names the database in messages. Throws a TypeError for a
 * bad URL (the config's validation refuses those before).
 */
export function connectionOptions(config: PostgresStoreConfig): {
  options: DriverOptions;
  where: string;
} {
  const url: Partial<PostgresUrlParts> = config.url === undefined
    ? {}
    : parsePostgresUrl(config.url);
  const host = config.host ?? url.host;
  const port = config.port ?? url.port;
  const database = config.database ?? url.database;
  const user = config.user ?? url.user;
  const password = config.password ?? url.password;
  const options: DriverOptions = {
    max: config.poolSize,
    // A server that cannot be reached is a TransientError soon, not in 30 s:
    // a pass waiting on a connection attempt waits this long at most.
    connect_timeout: CONNECT_TIMEOUT_S,
    // Reconnect soon after the database comes back (the driver's default
    // back-off grows to 20 s, during which queries wait).
    backoff: (attempt: number) => Math.min(0.5, 0.05 * 2 ** attempt) * (0.5 + Math.random() / 2),
    // No arrays go over the wire: skip the type query on every new connection.
    fetch_types: false,
    onnotice: () => {},
    connection: { application_name: "table-allocator" },
    types: {
      // BIGINT columns (tables, ms timestamps, versions) fit a double exactly.
      int8: {
        to: 20,
        from: [20],
        serialize: (x: number) => String(x),
        parse: (x: string) => Number(x),
      },
    },
  };
  if (host !== undefined) options.host = host;
  if (port !== undefined) options.port = port;
  if (database !== undefined) options.database = database;
  if (user !== undefined) options.user = user;
  if (password !== undefined) options.password = password;
  if (url.sslmode !== undefined) options.ssl = SSL[url.sslmode];
  const env = Deno.env.toObject();
  const shownHost = host ?? env.PGHOST ?? "localhost";
  const shownPort = port ?? (env.PGPORT ? Number(env.PGPORT) : 5432);
  const shownDatabase = database ?? env.PGDATABASE ?? user ?? env.PGUSER ?? "(default)";
  return {
    options,
    where: `PostgreSQL at ${shownHost}:${shownPort} database "${shownDatabase}"`,
  };
}

/**
 * Settles like `query`, or rejects after `ms`. The query is not cancelled
 * (cancelling needs the same unresponsive server); if it commits later, the
 * version check refuses the retry of its updates, which is safe.
 */
export function timed<T>(query: PromiseLike<T>, ms: number): Promise<T> {
  let timer: Timer | undefined;
  return Promise.race([
    query,
    new Promise<never>((_, reject) => {
      timer = after(ms, () => reject(new Error(`no answer within ${ms} ms`)));
    }),
  ]).finally(() => timer?.cancel());
}

/** SQLSTATE of a server error, if it is one. */
export function sqlState(error: unknown): string | undefined {
  return error instanceof postgres.PostgresError ? error.code : undefined;
}

/**
 * Whether a failure says the database cannot be reached, rather than that
 * one statement failed: no server error at all (refused, reset, closed,
 * timed out, no answer), a connection exception (SQLSTATE 08), or an
 * operator intervention (57: shutting down, starting up, terminated).
 */
export function isConnectionFailure(error: unknown): boolean {
  const state = sqlState(error);
  return state === undefined || /^(08|57)/.test(state);
}

/**
 * Whether a failure is bad data or a bug rather than a passing condition:
 * data exceptions (22), integrity violations other than the unique ones
 * handled as conflicts (23), syntax and undefined objects (42).
 */
export function isPermanent(state: string | undefined): boolean {
  return state !== undefined && /^(22|23|42)/.test(state);
}

/**
 * What a failure to connect means when the process's own sandbox caused
 * it, for the message an administrator reads (empty otherwise). Under the
 * packaged unit the server may open unix sockets only
 * (`RestrictAddressFamilies=`): a TCP connection fails with EAFNOSUPPORT,
 * which says nothing of systemd. A connection that systemd's
 * `IPAddressDeny=` blocks fails with EPERM.
 */
export function sandboxHint(error: unknown): string {
  const code = typeof error === "object" && error !== null && "code" in error
    ? error.code
    : undefined;
  switch (code) {
    case "EAFNOSUPPORT":
      return " (IP sockets are not allowed to this process: under systemd, its unit needs " +
        "RestrictAddressFamilies=AF_INET AF_INET6; see the PostgreSQL drop-in in docs/packaging.md)";
    case "EPERM":
      return " (the connection is not allowed to this process: under systemd, its unit's " +
        "IPAddressDeny= needs an IPAddressAllow= for the database; see the PostgreSQL drop-in in " +
        "docs/packaging.md)";
    default:
      return "";
  }
}
