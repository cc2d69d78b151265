/**
 * The SQLite store's bound tables as runs, which the server reads at start
 * to rebuild its allocation: the runs written at the last clean close
 * (`bound_runs`; the triggers empty it at the next change, see
 * `sqlite_schema.ts`), or else every bound lease, read in one query.
 *
 * @module
 */

import type { DatabaseSync } from "node:sqlite";
import type { AddrFamily } from "../net/family.ts";
import type { TableRun } from "./lease_store.ts";
import { runsOf } from "./core.ts";
import type { Statements } from "./sqlite_schema.ts";

/** The runs kept by the last clean close when nothing changed since, else {@link scanBound}. */
export function readBoundTables(q: Statements): Map<AddrFamily, TableRun[]> {
  const bound = new Map<AddrFamily, TableRun[]>();
  for (const [family, first, last] of q.boundRuns.all() as unknown as number[][]) {
    const runs = bound.get(family as AddrFamily) ?? [];
    runs.push([first, last]);
    bound.set(family as AddrFamily, runs);
  }
  return bound.size > 0 ? bound : scanBound(q);
}

/** Every bound table, as one JSON array per family built by SQLite (a row each costs more). */
function scanBound(q: Statements): Map<AddrFamily, TableRun[]> {
  const rows = q.bound.all() as unknown as Array<[AddrFamily, string]>;
  return new Map(rows.map(([family, tables]) => [family, runsOf(JSON.parse(tables))]));
}

/**
 * Writes the bound tables as runs for the next start (`bound_runs`), in a
 * transaction of its own; the triggers empty it at the next change. Best
 * effort: a start without it reads every bound lease instead.
 */
export function writeBoundRuns(db: DatabaseSync, q: Statements): void {
  try {
    q.beginStatement.run();
    try {
      q.clearBoundRuns.run();
      for (const [family, runs] of scanBound(q)) {
        for (const [first, last] of runs) q.putBoundRun.run(family, first, last);
      }
      q.commitStatement.run();
    } catch (error) {
      db.exec("ROLLBACK");
      throw error;
    }
  } catch { /* the next start scans the bound leases */ }
}
