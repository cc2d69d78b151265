/**
 * The agent's state file: the leases it holds (identity, server, tag, log
 * settings, trusted uids, table, netmask), so that an agent that crashed
 * loses nothing: the next one reads it, takes back every lease whose
 * address still exists and releases the rest.
 *
 * One file per network namespace, named by the inode of the namespace
 * (`/proc/self/ns/net`), under `/run/table-allocator/` (a tmpfs: the
 * leases of a previous boot are not ours to take back). An inode may be
 * used again by a later namespace, so the file also carries the
 * namespace's cookie (SO_NETNS_COOKIE, never reused while the host runs):
 * a file of another namespace is ignored. Written atomically: a temporary
 * file, fsync, rename, fsync of the directory.
 *
 * @module
 */

import {
  AF_UNIX,
  close,
  getsockoptU64,
  SO_NETNS_COOKIE,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  socket,
  SOL_SOCKET,
} from "../../ffi/libc.ts";
import { decodeAgentRequest, encodeAgentRequest, type HoldSpec } from "./protocol.ts";
import { errorMessage } from "../util/errors.ts";
import { syncDirectory } from "../util/sync_directory.ts";

/** Where state files live. */
export const RUN_DIR = "/run/table-allocator";
/** Overrides {@link RUN_DIR} (tests, which must not touch the host's agent). */
export const RUN_DIR_ENV = "TABLE_ALLOCATOR_RUN_DIR";

/** One held lease as the state file keeps it. */
export interface HeldRecord {
  spec: HoldSpec;
  table: number;
}

/** What a state file says. */
export interface State {
  /** The cookie of the network namespace that wrote it (decimal). */
  netnsCookie: string;
  records: HeldRecord[];
  /** Records that could not be read, named (the others are still good). */
  errors: string[];
}

/** The state file of this process's network namespace. */
export function stateFilePath(dir = Deno.env.get(RUN_DIR_ENV) || RUN_DIR): string {
  const netns = Deno.statSync("/proc/self/ns/net").ino;
  return `${dir}/agent-netns-${netns}.json`;
}

/** The cookie of this process's network namespace, in decimal. */
export function netnsCookie(): string {
  const fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  try {
    return getsockoptU64(fd, SOL_SOCKET, SO_NETNS_COOKIE).toString();
  } finally {
    close(fd);
  }
}

/** The file's text: each record is a hold request of the agent protocol plus its table. */
export function encodeState(records: readonly HeldRecord[], cookie: string): string {
  const identities = records.map(({ spec, table }) => {
    const { version: _version, op: _op, ...fields } = JSON.parse(
      new TextDecoder().decode(encodeAgentRequest({ op: "hold", spec })),
    );
    return { ...fields, table };
  });
  return `${JSON.stringify({ version: 1, netns_cookie: cookie, identities }, null, 1)}\n`;
}

/**
 * Reads the file's text. Records that do not decode are skipped and
 * named in `errors` (the others are still taken back); a file that is
 * not a state file at all throws a TypeError.
 */
export function decodeState(text: string): State {
  let obj;
  try {
    obj = JSON.parse(text);
  } catch (error) {
    throw new TypeError(`not JSON: ${errorMessage(error)}`, { cause: error });
  }
  if (
    obj?.version !== 1 || typeof obj.netns_cookie !== "string" || !Array.isArray(obj.identities)
  ) {
    throw new TypeError(`not a state file of version 1 with "netns_cookie" and "identities"`);
  }
  const records: HeldRecord[] = [];
  const errors: string[] = [];
  for (const [i, entry] of (obj.identities as unknown[]).entries()) {
    try {
      const { table, ...fields } = entry as Record<string, unknown>;
      if (typeof table !== "number" || !Number.isInteger(table) || table < 1) {
        throw new TypeError(`"table" must be a positive integer, got ${JSON.stringify(table)}`);
      }
      const message = new TextEncoder().encode(
        JSON.stringify({ ...fields, version: 1, op: "hold" }),
      );
      const request = decodeAgentRequest(message);
      if (request.op !== "hold") throw new TypeError("not a hold");
      records.push({ spec: request.spec, table });
    } catch (error) {
      errors.push(`identity ${i}: ${errorMessage(error)}`);
    }
  }
  return { netnsCookie: obj.netns_cookie, records, errors };
}

/**
 * Reads the state file; an absent file is an empty state (of no namespace). Throws an Error
 * naming the file when it cannot be read or is not a state file.
 */
export function readState(path: string): State {
  let text;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { netnsCookie: "", records: [], errors: [] };
    throw new Error(`Cannot read the state file "${path}": ${errorMessage(error)}`, {
      cause: error,
    });
  }
  try {
    return decodeState(text);
  } catch (error) {
    throw new Error(`Cannot read the state file "${path}": ${errorMessage(error)}`, {
      cause: error,
    });
  }
}

/**
 * Replaces the state file atomically: written to a temporary file in the
 * same directory, synced, renamed over the old one, and the directory
 * synced, so that a crash leaves either the old or the new file. Creates
 * the directory (mode 0755) when missing.
 */
export function writeState(path: string, records: readonly HeldRecord[], cookie: string): void {
  const dir = path.slice(0, path.lastIndexOf("/")) || "/";
  Deno.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const temporary = `${path}.tmp-${Deno.pid}`;
  const file = Deno.openSync(temporary, { write: true, create: true, truncate: true, mode: 0o600 });
  try {
    const bytes = new TextEncoder().encode(encodeState(records, cookie));
    for (let done = 0; done < bytes.byteLength;) done += file.writeSync(bytes.subarray(done));
    file.syncSync();
  } finally {
    file.close();
  }
  Deno.renameSync(temporary, path);
  syncDirectory(dir);
}
