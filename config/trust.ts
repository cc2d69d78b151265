/**
 * The config keys of local trust: `max_leases_per_uid` (the per-user cap of
 * the credential policy) and `auth` (message authentication with a PSK).
 * `unknown` in, a typed {@link TrustConfig} or a {@link ConfigError} naming
 * the key out. The PSK file itself is read at start (`psk_file.ts`).
 *
 * @module
 */

import { ConfigError } from "./config_error.ts";
import { MAX_NUM_TABLES } from "./limits.ts";
import { DEFAULT_CLOCK_SKEW_S } from "../src/protocol/auth.ts";

/** The top-level keys this module reads. */
export const TRUST_KEYS = ["max_leases_per_uid", "auth"] as const;

/** Bound leases a non-root uid may hold at once, by default. */
export const DEFAULT_MAX_LEASES_PER_UID = 8;
/** Largest `auth.clock_skew`: one hour. */
export const MAX_CLOCK_SKEW_S = 3600;

/** Message authentication (`auth`). */
export interface AuthConfig {
  /** The file holding the PSK as hex (`table-allocator-ctl genpsk`). */
  pskFile: string;
  /** Refuse unsigned requests (`unauthenticated`); false serves them under the credential policy. */
  require: boolean;
  /** Seconds a message's `ts` may differ from the server's clock. */
  clockSkew: number;
}

/** The trust settings of a server config. */
export interface TrustConfig {
  /** Bound leases a non-root uid may hold; 0 refuses every non-root request. Root has no cap. */
  maxLeasesPerUid: number;
  /** Message authentication, when configured. */
  auth: AuthConfig | undefined;
}

const AUTH_KEYS = ["psk_file", "require", "clock_skew"];

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function integer(value: unknown, key: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(
      `"${key}" must be an integer from ${min} to ${max}, got ${show(value)}`,
      key,
    );
  }
  return value;
}

function parseAuth(raw: unknown): AuthConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError(
      `"auth" must be an object like {"psk_file": "/etc/table-allocator/psk", "require": true}, got ${
        show(raw)
      }`,
      "auth",
    );
  }
  const auth = raw as Record<string, unknown>;
  for (const key of Object.keys(auth)) {
    if (!AUTH_KEYS.includes(key)) {
      throw new ConfigError(
        `"auth.${key}" is not a known key; known keys: ${AUTH_KEYS.join(", ")}`,
        `auth.${key}`,
      );
    }
  }
  const pskFile = auth.psk_file;
  if (typeof pskFile !== "string" || pskFile.length === 0 || pskFile.length > 4096) {
    throw new ConfigError(
      `"auth.psk_file" is required: the path of the PSK file (a string), got ${
        pskFile === undefined ? "nothing" : show(pskFile)
      }`,
      "auth.psk_file",
    );
  }
  if (auth.require !== undefined && typeof auth.require !== "boolean") {
    throw new ConfigError(
      `"auth.require" must be true or false, got ${show(auth.require)}`,
      "auth.require",
    );
  }
  return {
    pskFile,
    require: auth.require ?? true,
    clockSkew: auth.clock_skew === undefined
      ? DEFAULT_CLOCK_SKEW_S
      : integer(auth.clock_skew, "auth.clock_skew", 1, MAX_CLOCK_SKEW_S),
  };
}

/** Reads `max_leases_per_uid` and `auth` of a config object. Throws {@link ConfigError}. */
export function parseTrust(obj: Record<string, unknown>): TrustConfig {
  return {
    maxLeasesPerUid: obj.max_leases_per_uid === undefined
      ? DEFAULT_MAX_LEASES_PER_UID
      : integer(obj.max_leases_per_uid, "max_leases_per_uid", 0, MAX_NUM_TABLES),
    auth: obj.auth === undefined ? undefined : parseAuth(obj.auth),
  };
}
