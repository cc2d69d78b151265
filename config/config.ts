/**
 * The server's configuration: the original table_allocator keys, parsed from
 * JSON with comments and validated once. `unknown` in, a typed
 * {@link ServerConfig} or a {@link ConfigError} naming the key out.
 *
 * @module
 */

import { stripJsonComments } from "./jsonc.ts";
import { ConfigError } from "./config_error.ts";
import { unknownKeyWarnings } from "./unknown_keys.ts";
import {
  DEFAULT_SOCKET_QUEUE_LENGTH,
  MAX_NUM_TABLES,
  MAX_SOCKET_PATH,
  MAX_SOCKET_QUEUE_LENGTH,
  MAX_TABLE,
  MAX_TABLE_TIMEOUT,
  RESERVED_TABLES,
} from "./limits.ts";

import {
  parsePools,
  parseReservations,
  type PoolConfig,
  type ReservationConfig,
  type TableRange,
} from "./pools.ts";
import { type AddrFamily, FAMILY_BY_NAME } from "../src/net/family.ts";
import { parsePostgresUrl } from "../src/store/postgres_url.ts";
import { type OperationsConfig, parseOperations } from "./operations.ts";
import { parseTrust, TRUST_KEYS, type TrustConfig } from "./trust.ts";

export { ConfigError } from "./config_error.ts";
export { type PoolConfig, type ReservationConfig, type TableRange } from "./pools.ts";
export { type AuthConfig, type TrustConfig } from "./trust.ts";
export {
  DEFAULT_SOCKET_QUEUE_LENGTH,
  MAX_NUM_TABLES,
  MAX_SOCKET_PATH,
  MAX_SOCKET_QUEUE_LENGTH,
  MAX_TABLE,
  MAX_TABLE_TIMEOUT,
  RESERVED_TABLES,
} from "./limits.ts";
import { errorMessage } from "../src/util/errors.ts";

/** Which address families get a pool. */
export interface FamilyFlags {
  /** IPv4 (family 2). */
  inet: boolean;
  /** IPv6 (family 10). */
  inet6: boolean;
  /** Family 0: any identifier as the address. */
  unspec: boolean;
}

/** Where leases are stored. */
export type StoreConfig =
  | { kind: "sqlite"; path: string }
  | {
    kind: "postgres";
    /** A `postgres://` URL; the fields below override its parts. */
    url: string | undefined;
    /** Host name, or the directory of a unix socket. */
    host: string | undefined;
    port: number | undefined;
    database: string | undefined;
    user: string | undefined;
    password: string | undefined;
    /** Connections in the pool (default 4). */
    poolSize: number;
  };

/** A validated server configuration (with the operations keys of `operations.ts`). */
export interface ServerConfig extends OperationsConfig {
  /** Abstract socket name, without the leading NUL. */
  socketPath: string;
  /**
   * The pools, in the order requests try them: those of `pools`, then one
   * `default` pool per enabled family from `table_offset`/`num_tables`.
   */
  pools: PoolConfig[];
  /** Tables held for given identities. */
  reservations: ReservationConfig[];
  /** Lease lifetime in seconds. */
  tableTimeout: number;
  /** SQLite database file (unused with a PostgreSQL store). */
  dbPath: string | undefined;
  /** The lease store: SQLite at `db_path` unless `store` says otherwise. */
  store: StoreConfig;
  /**
   * Datagrams the kernel queues for the server's socket, at least (`socket_queue_length`):
   * the namespace's `net.unix.max_dgram_qlen` is raised for the socket when lower; 0 keeps it.
   */
  socketQueueLength: number;
  /** Families served. */
  addrFamilies: FamilyFlags;
  /** Log to syslog (facility daemon). */
  doSyslog: boolean;
  /** Append log lines to this file instead of stderr. */
  logPath: string | undefined;
  /**
   * What was ignored, one message per unknown key of the original's objects
   * (the top level and `addr_families`), as the original ignored them; the
   * server logs each at start.
   */
  warnings: string[];
  /** Who may do what: the per-uid lease cap and message authentication. */
  trust: TrustConfig;
}

const KEYS = [
  "socket_path",
  "socket_queue_length",
  "table_offset",
  "num_tables",
  "table_timeout",
  "db_path",
  "addr_families",
  "do_syslog",
  "log_path",
  "store",
  "pools",
  "reservations",
  "outputs",
  "log_level",
  "readiness_delay",
  ...TRUST_KEYS,
] as const;
const FAMILY_KEYS = ["inet", "inet6", "unspec"] as const;

function show(value: unknown): string {
  if (value === undefined) return "nothing";
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function integer(obj: Record<string, unknown>, key: string, min: number, max: number): number {
  const value = obj[key];
  if (value === undefined) {
    throw new ConfigError(`"${key}" is required (an integer from ${min} to ${max})`, key);
  }
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(
      `"${key}" must be an integer from ${min} to ${max}, got ${show(value)}`,
      key,
    );
  }
  return value;
}

function text(obj: Record<string, unknown>, key: string, maxLength: number): string {
  const value = obj[key];
  if (value === undefined) throw new ConfigError(`"${key}" is required (a string)`, key);
  if (typeof value !== "string" || value.length === 0 || value.length > maxLength) {
    throw new ConfigError(
      `"${key}" must be a string of 1 to ${maxLength} characters, got ${show(value)}`,
      key,
    );
  }
  return value;
}

function boolean(obj: Record<string, unknown>, key: string, fallback: boolean): boolean {
  const value = obj[key];
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") {
    throw new ConfigError(`"${key}" must be true or false, got ${show(value)}`, key);
  }
  return value;
}

function families(value: unknown, warnings: string[]): FamilyFlags {
  const key = "addr_families";
  if (value === undefined) {
    throw new ConfigError(
      `"${key}" is required (an object like {"inet": true, "inet6": false, "unspec": false})`,
      key,
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ConfigError(
      `"${key}" must be an object like {"inet": true}, got ${show(value)}`,
      key,
    );
  }
  const obj = value as Record<string, unknown>;
  warnings.push(...unknownKeyWarnings(obj, FAMILY_KEYS, `${key}.`));
  const flags = {
    inet: boolean(obj, "inet", false),
    inet6: boolean(obj, "inet6", false),
    unspec: boolean(obj, "unspec", false),
  };
  if (!flags.inet && !flags.inet6 && !flags.unspec) {
    throw new ConfigError(
      `"${key}" must enable at least one of "inet", "inet6", "unspec", got ${show(value)}`,
      key,
    );
  }
  return flags;
}

const STORE_KEYS = ["kind", "url", "host", "port", "database", "user", "password", "pool_size"];

/** `store` (optional, default SQLite at `db_path`), with `db_path` required for SQLite. */
function storeConfig(obj: Record<string, unknown>): StoreConfig {
  const raw = obj.store;
  if (raw === undefined) return { kind: "sqlite", path: text(obj, "db_path", 4096) };
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError(
      `"store" must be an object like {"kind": "postgres", "url": "..."}, got ${show(raw)}`,
      "store",
    );
  }
  const store = raw as Record<string, unknown>;
  for (const key of Object.keys(store)) {
    if (!STORE_KEYS.includes(key)) {
      throw new ConfigError(
        `"store.${key}" is not a known key; known keys: ${STORE_KEYS.join(", ")}`,
        `store.${key}`,
      );
    }
  }
  if (store.kind === "sqlite") {
    if (Object.keys(store).length > 1) {
      throw new ConfigError(
        `"store" of kind "sqlite" takes no other keys; the file is "db_path"`,
        "store",
      );
    }
    return { kind: "sqlite", path: text(obj, "db_path", 4096) };
  }
  if (store.kind !== "postgres") {
    throw new ConfigError(
      `"store.kind" must be "sqlite" or "postgres", got ${show(store.kind)}`,
      "store.kind",
    );
  }
  const optionalText = (key: string) =>
    store[key] === undefined ? undefined : text(store, key, 4096);
  const url = optionalText("url");
  if (url !== undefined) {
    // Checked now, so a bad URL stops the server as a config error, not at connect.
    try {
      parsePostgresUrl(url);
    } catch (error) {
      throw new ConfigError(errorMessage(error), "url", { cause: error });
    }
  }
  return {
    kind: "postgres",
    url,
    host: optionalText("host"),
    port: store.port === undefined ? undefined : integer(store, "port", 1, 65535),
    database: optionalText("database"),
    user: optionalText("user"),
    password: optionalText("password"),
    poolSize: store.pool_size === undefined ? 4 : integer(store, "pool_size", 1, 100),
  };
}

/** The original's `table_offset` and `num_tables`: one range for each enabled family. */
function shorthandRange(obj: Record<string, unknown>): TableRange {
  const tableOffset = integer(obj, "table_offset", 1, MAX_TABLE);
  const numTables = integer(obj, "num_tables", 1, MAX_NUM_TABLES);
  const last = tableOffset + numTables - 1;
  if (last > MAX_TABLE) {
    throw new ConfigError(
      `"num_tables" of ${numTables} from "table_offset" ${tableOffset} ends at ${last}, past the last table ${MAX_TABLE}`,
      "num_tables",
    );
  }
  const reserved = RESERVED_TABLES.filter((t) => t >= tableOffset && t <= last);
  if (reserved.length > 0) {
    throw new ConfigError(
      `"table_offset" ${tableOffset} and "num_tables" ${numTables} cover tables ${tableOffset}-${last}, ` +
        `which include the kernel's reserved table(s) ${
          reserved.join(", ")
        }; start the pool at 256 or above`,
      "table_offset",
    );
  }
  return { first: tableOffset, last };
}

/** The families `addr_families` enables, as numbers. */
export function enabledFamilies(flags: FamilyFlags): AddrFamily[] {
  return (Object.keys(FAMILY_BY_NAME) as Array<keyof FamilyFlags>).filter((name) => flags[name])
    .map((name) => FAMILY_BY_NAME[name]);
}

/**
 * Validates a parsed config object. Throws {@link ConfigError}; unknown keys
 * of the original's objects are not errors but {@link ServerConfig.warnings}.
 */
export function validateConfig(raw: unknown): ServerConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError(`the config must be a JSON object, got ${show(raw)}`);
  }
  const obj = raw as Record<string, unknown>;
  const warnings = unknownKeyWarnings(obj, KEYS);
  const socketPath = text(obj, "socket_path", MAX_SOCKET_PATH);
  if (socketPath.includes("\0")) {
    throw new ConfigError(`"socket_path" must not contain NUL`, "socket_path");
  }
  const socketQueueLength = obj.socket_queue_length === undefined
    ? DEFAULT_SOCKET_QUEUE_LENGTH
    : integer(obj, "socket_queue_length", 0, MAX_SOCKET_QUEUE_LENGTH);
  const shorthand =
    obj.table_offset === undefined && obj.num_tables === undefined && obj.pools !== undefined
      ? undefined
      : shorthandRange(obj);
  const tableTimeout = integer(obj, "table_timeout", 1, MAX_TABLE_TIMEOUT);
  const store = storeConfig(obj);
  const dbPath = store.kind === "sqlite" ? store.path : undefined;
  const addrFamilies = families(obj.addr_families, warnings);
  const enabled = enabledFamilies(addrFamilies);
  const pools = parsePools(obj, enabled, shorthand);
  const reservations = parseReservations(obj, enabled);
  const doSyslog = boolean(obj, "do_syslog", false);
  const logPath = obj.log_path === undefined ? undefined : text(obj, "log_path", 4096);
  return {
    socketPath,
    socketQueueLength,
    pools,
    reservations,
    tableTimeout,
    dbPath,
    store,
    addrFamilies,
    doSyslog,
    logPath,
    warnings,
    ...parseOperations(obj, tableTimeout),
    trust: parseTrust(obj),
  };
}

/** Parses config text (JSON with comments). Throws {@link ConfigError}. */
export function parseConfig(source: string): ServerConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(stripJsonComments(source));
  } catch (error) {
    throw new ConfigError(`not valid JSON: ${errorMessage(error)}`, undefined, {
      cause: error,
    });
  }
  return validateConfig(raw);
}

/** Reads and validates a config file; errors say which file and what is wrong. */
export async function loadConfig(path: string): Promise<ServerConfig> {
  let source: string;
  try {
    source = await Deno.readTextFile(path);
  } catch (error) {
    throw new ConfigError(`Cannot load config "${path}": ${errorMessage(error)}`, undefined, {
      cause: error,
    });
  }
  try {
    return parseConfig(source);
  } catch (error) {
    if (error instanceof ConfigError) {
      throw new ConfigError(`Cannot load config "${path}": ${error.message}`, error.key, {
        cause: error,
      });
    }
    throw error;
  }
}
