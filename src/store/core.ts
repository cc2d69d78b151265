/**
 * What every {@link LeaseStore} backend shares, so that both behave alike
 * by construction rather than by copy: tokens and their checks, list
 * cursors, limits and state filters, and the mapping from a stored row to
 * a {@link Lease}. Pure: no I/O.
 *
 * @module
 */

import type { AddrFamily } from "../net/family.ts";
import {
  BadCursorError,
  type Lease,
  type LeasePage,
  type LeaseState,
  type LeaseToken,
  type ListOptions,
  type TableRun,
  TransientError,
} from "./lease_store.ts";

/** How long released and expired leases are kept as history, by default. */
export const DEFAULT_HISTORY_RETENTION_MS = 7 * 24 * 3600_000;

/** The page size of {@link LeaseStore.list} when none is given. */
export const DEFAULT_PAGE_SIZE = 1000;

/** The error of any call on a closed store. */
export function closedError(): TransientError {
  return new TransientError("the lease store is closed");
}

/** What a store keeps behind the opaque {@link LeaseToken}. */
export interface StoreToken {
  readonly clientId: string;
  /** The client's version when the token was issued. */
  readonly version: number;
  /** The store that issued it: a token is good only there. */
  readonly store: object;
  /** Spent by an update or {@link discardToken}. */
  used: boolean;
  /**
   * What the lookup read, in the backend's own form, for a backend that
   * writes only the difference (the version check vouches it is current).
   */
  readonly rows?: unknown;
}

/** Issues a token for one update of `clientId` at `version`; `rows` is what the lookup read. */
export function issueToken(
  store: object,
  clientId: string,
  version: number,
  rows?: unknown,
): LeaseToken {
  const token: StoreToken = { clientId, version, store, used: false, rows };
  return token as unknown as LeaseToken;
}

/**
 * The store's view of a token handed back to `update()`. Throws a
 * TypeError for a token another store issued, or one issued for another
 * client: that is a caller's bug, not a race.
 */
export function openToken(leaseToken: LeaseToken, store: object, clientId: string): StoreToken {
  const token = leaseToken as unknown as StoreToken;
  if (token?.store !== store || token.clientId !== clientId) {
    throw new TypeError(`the token was not issued by this store for ${clientId}`);
  }
  return token;
}

/** Spends a token without an update (`releaseToken()`). */
export function discardToken(leaseToken: LeaseToken): void {
  (leaseToken as unknown as StoreToken).used = true;
}

/**
 * A stored lease row, as both backends select it: the columns of
 * {@link LEASE_COLUMNS}, in that order.
 */
export type LeaseRow = [
  clientId: string,
  family: number,
  ifname: string,
  address: string,
  table: number,
  expiresAt: number,
  tag: string | null,
  owner: string,
  state: string,
  uid: number,
];

/** The columns of a {@link LeaseRow}, for SELECT and INSERT lists. */
export const LEASE_COLUMNS =
  "client_id, family, ifname, address, table_id, expires_at, tag, owner, state, uid";

/** The lease a row holds (its client id is the row's key, not part of the lease). */
export function leaseFromRow(row: LeaseRow): Lease {
  return {
    family: row[1] as AddrFamily,
    ifname: row[2],
    address: row[3],
    table: row[4],
    expiresAt: row[5],
    tag: row[6] ?? undefined,
    owner: row[7],
    state: row[8] as LeaseState,
    uid: row[9],
  };
}

/** The row the store writes for `lease` of `clientId` (its expiry rounded to a millisecond). */
export function rowFromLease(clientId: string, lease: Lease): LeaseRow {
  return [
    clientId,
    lease.family,
    lease.ifname,
    lease.address,
    lease.table,
    Math.round(lease.expiresAt),
    lease.tag ?? null,
    lease.owner,
    lease.state,
    lease.uid,
  ];
}

/** A list position: after this client id and table (rows are ordered by both). */
export interface Cursor {
  clientId: string;
  table: number;
}

/** The position before every row. */
const START: Cursor = { clientId: "", table: -1 };

/** The `next` cursor of a page that ended at this row. */
export function formatCursor(clientId: string, table: number): string {
  return JSON.stringify([clientId, table]);
}

/**
 * Reads an `after` cursor; undefined means the start. Throws a
 * {@link BadCursorError} for anything {@link formatCursor} did not write,
 * the same on every backend.
 */
export function parseCursor(after: string | undefined): Cursor {
  if (after === undefined) return START;
  let parsed: unknown;
  try {
    parsed = JSON.parse(after);
  } catch (error) {
    throw new BadCursorError(after, { cause: error });
  }
  if (
    !Array.isArray(parsed) || parsed.length !== 2 || typeof parsed[0] !== "string" ||
    !Number.isSafeInteger(parsed[1])
  ) {
    throw new BadCursorError(after);
  }
  return { clientId: parsed[0], table: parsed[1] };
}

/** The page size of a list call; a RangeError unless a positive integer. */
export function pageLimit(options: ListOptions): number {
  const limit = options.limit ?? DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(limit) || limit < 1) {
    throw new RangeError(`limit must be a positive integer, got ${limit}`);
  }
  return limit;
}

/**
 * The state filter as one text parameter, `,bound,released,` (null: every
 * state), which both SQL dialects test with a substring search: one
 * prepared statement serves every combination of states.
 */
export function stateFilter(state: ListOptions["state"]): string | null {
  if (state === undefined) return null;
  return `,${(typeof state === "string" ? [state] : state).join(",")},`;
}

/** One page from the rows a list query returned with `LIMIT limit`. */
export function pageOf(rows: readonly LeaseRow[], limit: number): LeasePage {
  const last = rows.at(-1);
  return {
    leases: rows.map(leaseFromRow),
    next: rows.length === limit && last ? formatCursor(last[0], last[4]) : undefined,
  };
}

/**
 * Runs of consecutive tables, ascending (a table listed twice counts
 * once). Tables that come in ascending order, as an index lists them, are
 * taken as they are; others are sorted first.
 */
export function runsOf(tables: readonly number[]): TableRun[] {
  let sorted = tables;
  for (let i = 1; i < tables.length; i++) {
    if (tables[i] < tables[i - 1]) {
      sorted = tables.toSorted((a, b) => a - b);
      break;
    }
  }
  const runs: TableRun[] = [];
  let run: TableRun | undefined;
  for (const table of sorted) {
    if (run && table <= run[1] + 1) run[1] = Math.max(run[1], table);
    else runs.push(run = [table, table]);
  }
  return runs;
}
