/**
 * The SQLite store's schema, its upgrades from older versions, and every
 * statement the store runs over it, prepared once per connection.
 *
 * @module
 */

import type { DatabaseSync, StatementSync } from "node:sqlite";
import { LEASE_COLUMNS } from "./core.ts";

/**
 * SQLite's own checkpoint, which runs inside the COMMIT that crosses it,
 * only bounds the WAL (32 MiB of pages): the store checkpoints between
 * passes, long before (see `sqlite_upkeep.ts`).
 */
export const WAL_AUTOCHECKPOINT_PAGES = 8192;

/**
 * The page size of a new database. A grant or a release changes the row
 * and three index entries, each on its own page, and a synced commit costs
 * more the more bytes its frames carry: measured on this project's disk,
 * four 1 KiB frames sync as fast as one 4 KiB frame, four 4 KiB frames take
 * 40% longer (fdatasync of the WAL alone, when 1 KiB pages were chosen).
 */
export const PAGE_SIZE = 1024;

/**
 * SQLite's own page cache of the server's connection, in KiB (its default
 * is 2,000). The kernel caches the file as well, so this needs to hold
 * only the pages every lookup passes through: measured with 100,000
 * leases, 512 KiB kept 1.8 MiB less resident than the default, refreshed
 * all of them as fast and served 1 to 256 clients as fast (docs/performance.md).
 */
export const CACHE_KIB = 512;

/** The schema this code reads and writes (`PRAGMA user_version`). */
export const SCHEMA_VERSION = 5;

/**
 * Version 2: lease states. Uniqueness of a table holds per state class
 * (one `bound` and one `reserved` lease per family and table), history
 * (`released`, `expired`) is kept until the retention passes.
 */
const INDEXES_V2 = `
CREATE UNIQUE INDEX leases_bound_table ON leases (family, table_id) WHERE state = 'bound';
CREATE UNIQUE INDEX leases_reserved_table ON leases (family, table_id) WHERE state = 'reserved';
CREATE INDEX leases_expiry ON leases (expires_at) WHERE state = 'bound';
`;
/** Version 2 had this one too; version 5 dropped it. */
const HISTORY_INDEX_V2 = `
CREATE INDEX leases_history ON leases (updated_at) WHERE state IN ('released', 'expired');
`;

/**
 * Version 3: reservations are listed at every start; this index keeps that
 * from scanning every lease (bound leases are not in it, so writes of the
 * hot path do not touch it).
 */
const INDEXES_V3 = `
CREATE INDEX leases_reservations ON leases (client_id, table_id) WHERE state = 'reserved';
`;

/**
 * Version 4: the uid that took a lease (the server's policy: only it and
 * root may refresh or release it). Existing leases were root's. The index
 * counts a non-root uid's bound leases for the per-uid cap; root's leases,
 * nearly all of them, are not in it.
 */
const INDEXES_V4 = `
CREATE INDEX leases_uid ON leases (uid) WHERE state = 'bound' AND uid <> 0;
`;

/**
 * Version 5, for the hot path:
 *
 * - No index on history (`leases_history`): every grant and release
 *   changed an entry of it, one more page per commit, for a prune that
 *   needs no hurry. History is pruned by a sweep over the table instead,
 *   a chunk at a time (`sqlite_upkeep.ts`).
 * - The bound tables as runs, written at a clean close, so that a start
 *   reads a few rows instead of every bound lease. Any change to the set
 *   of bound tables, by whatever writer, empties it first (the triggers
 *   cost a look at an empty table, and a refresh, which changes no table or
 *   state, does not even fire them); an empty `bound_runs` means "scan".
 */
const BOUND_RUNS_V5 = `
CREATE TABLE bound_runs (family INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL);
CREATE TRIGGER bound_runs_insert AFTER INSERT ON leases
  WHEN NEW.state = 'bound' AND EXISTS (SELECT 1 FROM bound_runs)
  BEGIN DELETE FROM bound_runs; END;
CREATE TRIGGER bound_runs_delete AFTER DELETE ON leases
  WHEN OLD.state = 'bound' AND EXISTS (SELECT 1 FROM bound_runs)
  BEGIN DELETE FROM bound_runs; END;
CREATE TRIGGER bound_runs_update AFTER UPDATE OF family, table_id, state ON leases
  WHEN (OLD.state = 'bound' OR NEW.state = 'bound') AND EXISTS (SELECT 1 FROM bound_runs)
  BEGIN DELETE FROM bound_runs; END;
`;

const SCHEMA = `
CREATE TABLE leases (
  client_id  TEXT    NOT NULL,
  family     INTEGER NOT NULL,
  ifname     TEXT    NOT NULL,
  address    TEXT    NOT NULL,
  table_id   INTEGER NOT NULL,
  expires_at INTEGER NOT NULL, -- wall clock, ms since the epoch (0: reserved)
  tag        TEXT,
  owner      TEXT    NOT NULL,
  state      TEXT    NOT NULL DEFAULT 'bound', -- bound, released, expired, reserved
  updated_at INTEGER NOT NULL,
  uid        INTEGER NOT NULL DEFAULT 0, -- who took it (SCM_CREDENTIALS)
  PRIMARY KEY (client_id, table_id)
) WITHOUT ROWID;
${INDEXES_V2}
${INDEXES_V3}
${INDEXES_V4}
${BOUND_RUNS_V5}
PRAGMA user_version = ${SCHEMA_VERSION};
`;

/** Upgrades of older schemas, by the version they start from. */
const MIGRATIONS: Record<number, string> = {
  // v1 had one unique index over every lease, and every lease was bound.
  1: `
DROP INDEX leases_family_table;
DROP INDEX leases_expires_at;
${INDEXES_V2}
${HISTORY_INDEX_V2}
PRAGMA user_version = 2;
`,
  2: `
${INDEXES_V3}
PRAGMA user_version = 3;
`,
  3: `
ALTER TABLE leases ADD COLUMN uid INTEGER NOT NULL DEFAULT 0;
${INDEXES_V4}
PRAGMA user_version = 4;
`,
  4: `
DROP INDEX leases_history;
${BOUND_RUNS_V5}
PRAGMA user_version = 5;
`,
};

/**
 * Creates the schema in an empty database or upgrades an older one; run
 * inside the open transaction. Throws for a schema newer than this code's.
 * Returns whether it wrote anything.
 */
export function ensureSchema(db: DatabaseSync): boolean {
  const version =
    (db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version;
  if (version > SCHEMA_VERSION) {
    throw new Error(
      `its schema version ${version} is newer than this server's (${SCHEMA_VERSION})`,
    );
  }
  if (version === SCHEMA_VERSION) return false;
  if (version === 0) db.exec(SCHEMA);
  else for (let v = version; v < SCHEMA_VERSION; v++) db.exec(MIGRATIONS[v]);
  return true;
}

/** The store's statements; lease rows come back as {@link LEASE_COLUMNS} arrays. */
export interface Statements {
  select: StatementSync;
  deleteRow: StatementSync;
  insert: StatementSync;
  refreshRow: StatementSync;
  updateRow: StatementSync;
  moveRow: StatementSync;
  nextExpiry: StatementSync;
  expireDue: StatementSync;
  sweepChunkEnd: StatementSync;
  pruneChunk: StatementSync;
  page: StatementSync;
  pageReserved: StatementSync;
  used: StatementSync;
  boundCount: StatementSync;
  bound: StatementSync;
  boundRuns: StatementSync;
  clearBoundRuns: StatementSync;
  putBoundRun: StatementSync;
  // Transaction control, prepared once: db.exec() would compile it every time.
  beginStatement: StatementSync;
  commitStatement: StatementSync;
  savepoint: StatementSync;
  releaseSavepoint: StatementSync;
  rollbackToSavepoint: StatementSync;
  checkpoint: StatementSync;
  /** Moves when another connection commits (the row cache's check). */
  dataVersion: StatementSync;
}

/** Prepares every statement of the store on `db`. */
export function prepareStatements(db: DatabaseSync): Statements {
  // Rows as arrays: building an object per row costs several times more.
  const prepare = (sql: string): StatementSync => {
    // setReturnArrays exists in Deno's node:sqlite but not yet in its types.
    const statement = db.prepare(sql) as StatementSync & { setReturnArrays(on: boolean): void };
    statement.setReturnArrays(true);
    return statement;
  };
  // One statement for every filter: a NULL parameter switches its filter off.
  const filters = `(client_id, table_id) > ($afterClient, $afterTable)
       AND ($family IS NULL OR family = $family)
       AND ($ifname IS NULL OR ifname = $ifname)
       AND ($table IS NULL OR table_id = $table)
       AND ($owner IS NULL OR owner = $owner)
       AND ($uid IS NULL OR uid = $uid)`;
  return {
    select: prepare(`SELECT ${LEASE_COLUMNS} FROM leases WHERE client_id = ? ORDER BY table_id`),
    deleteRow: prepare("DELETE FROM leases WHERE client_id = ? AND table_id = ?"),
    insert: prepare(
      `INSERT INTO leases (${LEASE_COLUMNS}, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    // Only the columns that change: SQLite rewrites the entries of an index
    // whose columns (or, for a partial index, whose filter's) are assigned,
    // so a refresh that leaves `state` alone touches the row and the expiry
    // index only.
    refreshRow: prepare(
      `UPDATE leases SET expires_at = ?, tag = ?, owner = ?, updated_at = ?
       WHERE client_id = ? AND table_id = ?`,
    ),
    updateRow: prepare(
      `UPDATE leases SET expires_at = ?, tag = ?, owner = ?, state = ?, uid = ?, updated_at = ?
       WHERE client_id = ? AND table_id = ?`,
    ),
    // A row of the client's history taken over by its lease on another table.
    moveRow: prepare(
      `UPDATE leases SET table_id = ?, expires_at = ?, tag = ?, owner = ?, state = ?, uid = ?,
       updated_at = ? WHERE client_id = ? AND table_id = ?`,
    ),
    nextExpiry: prepare("SELECT MIN(expires_at) FROM leases WHERE state = 'bound'"),
    expireDue: prepare(
      `UPDATE leases SET state = 'expired', updated_at = ?1
       WHERE state = 'bound' AND expires_at <= ?1 RETURNING ${LEASE_COLUMNS}`,
    ),
    // The history sweep, a chunk of the table at a time, in key order.
    sweepChunkEnd: prepare(
      `SELECT client_id, table_id FROM leases WHERE (client_id, table_id) > (?1, ?2)
       ORDER BY client_id, table_id LIMIT 1 OFFSET ?3`,
    ),
    pruneChunk: prepare(
      `DELETE FROM leases WHERE (client_id, table_id) > (?1, ?2)
       AND (?3 IS NULL OR (client_id, table_id) <= (?3, ?4))
       AND state IN ('released', 'expired') AND updated_at < ?5`,
    ),
    page: prepare(
      `SELECT ${LEASE_COLUMNS} FROM leases
       WHERE ${filters} AND ($states IS NULL OR instr($states, ',' || state || ',') > 0)
       ORDER BY client_id, table_id LIMIT $limit`,
    ),
    // The same for reservations only, on their own small index.
    pageReserved: prepare(
      `SELECT ${LEASE_COLUMNS} FROM leases WHERE state = 'reserved' AND ${filters}
       ORDER BY client_id, table_id LIMIT $limit`,
    ),
    // Two index-only scans instead of one scan of the whole table.
    used: prepare(
      `SELECT family, table_id FROM leases WHERE state = 'bound'
       UNION ALL SELECT family, table_id FROM leases WHERE state = 'reserved'`,
    ),
    // An index-only scan of the bound tables, aggregated in SQLite.
    // A scan of the bound tables' index (in table order, though SQL does not
    // promise it: runsOf() checks), aggregated in SQLite.
    bound: prepare(
      `SELECT family, json_group_array(table_id) FROM leases WHERE state = 'bound'
       GROUP BY family`,
    ),
    boundRuns: prepare("SELECT family, first, last FROM bound_runs ORDER BY family, first"),
    clearBoundRuns: prepare("DELETE FROM bound_runs"),
    putBoundRun: prepare("INSERT INTO bound_runs (family, first, last) VALUES (?, ?, ?)"),
    // "uid <> 0" lets SQLite use the partial index leases_uid.
    boundCount: prepare(
      "SELECT count(*) FROM leases WHERE state = 'bound' AND uid = ?1 AND uid <> 0",
    ),
    beginStatement: db.prepare("BEGIN IMMEDIATE"),
    commitStatement: db.prepare("COMMIT"),
    savepoint: db.prepare("SAVEPOINT lease_update"),
    releaseSavepoint: db.prepare("RELEASE lease_update"),
    rollbackToSavepoint: db.prepare("ROLLBACK TO lease_update"),
    checkpoint: db.prepare("PRAGMA wal_checkpoint(PASSIVE)"),
    dataVersion: prepare("PRAGMA data_version"),
  };
}
