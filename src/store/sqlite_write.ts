/**
 * What an update writes into the SQLite store's `leases` table: the
 * difference between the client's stored rows and its new leases.
 *
 * - An update writes only what changed: a refresh or a release is one
 *   UPDATE of the client's row (the lookup's rows travel with the token),
 *   so it touches the row's page and the indexes of the columns it
 *   changes, nothing else.
 * - A new table for a client with a row of history (a request after a
 *   release, the common case) moves that row to the new table: one UPDATE
 *   instead of a DELETE and an INSERT inside a savepoint.
 *
 * @module
 */

import type { Lease } from "./lease_store.ts";
import { type LeaseRow, rowFromLease } from "./core.ts";
import type { Statements } from "./sqlite_schema.ts";

/** Whether a stored row and a new lease have the same identity columns. */
function sameIdentity(row: LeaseRow, lease: Lease): boolean {
  return row[1] === lease.family && row[2] === lease.ifname && row[3] === lease.address;
}

/** Whether a new lease is the same row as a stored one (same key and identity columns). */
function sameRow(row: LeaseRow, lease: Lease): boolean {
  return row[4] === lease.table && sameIdentity(row, lease);
}

/**
 * Replaces the client's rows `old` (what the lookup read; the version
 * check vouches that nothing changed since) with `leases`: a lease on a
 * table the client has a row for is an UPDATE of that row's changed
 * columns; a lease on another table takes over a row left over (moved to
 * its table) while there is one, else it is inserted; rows still left
 * over are deleted. More than one statement runs inside a savepoint, so a
 * failure undoes all. Runs inside the store's open transaction; `now` is
 * the rows' update time.
 */
export function writeLeaseRows(
  q: Statements,
  clientId: string,
  old: readonly LeaseRow[],
  leases: Lease[],
  now: number,
): void {
  const kept = leases.map((l) => old.find((o) => sameRow(o, l)));
  const spare = old.filter((o) => !leases.some((l) => sameRow(o, l)));
  // Each lease without its row takes over a spare row of the same identity, while there is one.
  const moved = kept.map((was, i) => {
    if (was !== undefined) return undefined;
    const at = spare.findIndex((o) => sameIdentity(o, leases[i]));
    return at < 0 ? undefined : spare.splice(at, 1)[0];
  });
  const single = leases.length + spare.length <= 1;
  if (!single) q.savepoint.run();
  try {
    for (const o of spare) q.deleteRow.run(clientId, o[4]);
    leases.forEach((l, i) => {
      // No row to write over: a new one, or history pruned since the lookup.
      if (writeOver(q, clientId, l, kept[i], moved[i], now) === 0) {
        q.insert.run(...rowFromLease(clientId, l), now);
      }
    });
    if (!single) q.releaseSavepoint.run();
  } catch (error) {
    if (!single) {
      q.rollbackToSavepoint.run();
      q.releaseSavepoint.run();
    }
    throw error;
  }
}

/**
 * Writes lease `l` over its own row `was` or, without one, over the spare
 * row `from` (moved to the lease's table); returns how many rows changed
 * (0: there was no row to write over).
 */
function writeOver(
  q: Statements,
  clientId: string,
  l: Lease,
  was: LeaseRow | undefined,
  from: LeaseRow | undefined,
  now: number,
): number {
  const expiresAt = Math.round(l.expiresAt);
  const tag = l.tag ?? null;
  let result;
  if (was !== undefined) {
    // A refresh leaves the state alone, so the indexes filtered on it stay untouched.
    result = was[8] === l.state && was[9] === l.uid
      ? q.refreshRow.run(expiresAt, tag, l.owner, now, clientId, l.table)
      : q.updateRow.run(expiresAt, tag, l.owner, l.state, l.uid, now, clientId, l.table);
  } else if (from !== undefined) {
    result = q.moveRow.run(
      l.table,
      expiresAt,
      tag,
      l.owner,
      l.state,
      l.uid,
      now,
      clientId,
      from[4],
    );
  } else return 0;
  return Number(result.changes);
}
