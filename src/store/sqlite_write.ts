/**
 * What an update writes into the SQLite store's `leases` table: the
 * difference between the client's stored rows and its new leases.
 *
 * - An update writes only what changed: a refresh or a release is one
 *   UPDATE of the client's row (the lookup's rows travel with the token),
 *   so it touches the row's page and the indexes of the columns it
 *   changes, nothing else.
 *
 * @module
 */

import type { Lease } from "./lease_store.ts";
import type { LeaseRow } from "./core.ts";
import type { Statements } from "./sqlite_schema.ts";

/** Whether a new lease is the same row as a stored one (same key and identity columns). */
function sameRow(row: LeaseRow, lease: Lease): boolean {
  return row[4] === lease.table && row[1] === lease.family && row[2] === lease.ifname &&
    row[3] === lease.address;
}

/**
 * Replaces the client's rows `old` (what the lookup read; the version
 * check vouches that nothing changed since) with `leases`: a lease on a
 * table the client has a row for is an UPDATE of that row's changed
 * columns, the others are inserts, and rows left over are deleted. More
 * than one statement runs inside a savepoint, so a failure undoes all.
 * Runs inside the store's open transaction; `now` is the rows' update time.
 */
export function writeLeaseRows(
  q: Statements,
  clientId: string,
  old: readonly LeaseRow[],
  leases: Lease[],
  now: number,
): void {
  const kept = leases.map((l) => old.find((o) => sameRow(o, l)));
  const dropped = old.filter((o) => !leases.some((l) => sameRow(o, l)));
  const single = leases.length + dropped.length <= 1;
  if (!single) q.savepoint.run();
  try {
    for (const o of dropped) q.deleteRow.run(clientId, o[4]);
    leases.forEach((l, i) => {
      const expiresAt = Math.round(l.expiresAt);
      const tag = l.tag ?? null;
      const was = kept[i];
      // A refresh leaves the state alone, so the indexes filtered on it stay untouched.
      const changes = was === undefined ? 0 : Number(
        (was[8] === l.state && was[9] === l.uid
          ? q.refreshRow.run(expiresAt, tag, l.owner, now, clientId, l.table)
          : q.updateRow.run(expiresAt, tag, l.owner, l.state, l.uid, now, clientId, l.table))
          .changes,
      );
      // No row to update: a new one, or history pruned since the lookup.
      if (changes === 0) {
        q.insert.run(
          clientId,
          l.family,
          l.ifname,
          l.address,
          l.table,
          expiresAt,
          tag,
          l.owner,
          l.state,
          l.uid,
          now,
        );
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
