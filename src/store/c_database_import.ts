/**
 * Upgrade from the original C server: its SQLite file holds the leases in
 *
 *     RtTables(RtTable, AddrFamily, Ifname, Addr, LeaseExpires, Tag,
 *              PRIMARY KEY(RtTable, AddrFamily))
 *
 * with `LeaseExpires` in seconds on the host's CLOCK_MONOTONIC_RAW. When
 * our server opens such a file and holds no leases of its own yet, every
 * row becomes a `bound` lease of the same table, family, interface,
 * address and tag, so that running clients keep their tables (a C client
 * never moves its rules). `RtTables` is left as it is, so that the C
 * server can still be started on the file (a rollback); a marker table
 * makes sure the import happens once.
 *
 * Expiry: a monotonic value means something only in the boot that wrote
 * it. When the file was last written in the current boot and the lease
 * still runs, it keeps its remaining time (at most `table_timeout`: the C
 * server never granted more); otherwise (an earlier boot, or already
 * expired) it gets a full `table_timeout`, giving its holder the time to
 * come back.
 *
 * {@link planImport} is pure; {@link importCDatabase} reads and writes the
 * database inside the caller's transaction.
 *
 * @module
 */

import type { DatabaseSync } from "node:sqlite";
import { CLOCK_BOOTTIME, clockSeconds } from "../../ffi/libc.ts";
import { MAX_TABLE, RESERVED_TABLES } from "../../config/limits.ts";
import { MAX_TAG_BYTES, ProtocolError, validateIdentity } from "../protocol/v1.ts";
import { errorMessage } from "../util/errors.ts";
import { clientIdOf, type Lease } from "./lease_store.ts";

/** The marker table: one row once the import ran (whatever it found). */
export const IMPORT_MARKER_TABLE = "c_database_import";

/** One row of the original's `RtTables`, as stored (any type: it is input). */
export interface CRow {
  /** The routing table. */
  RtTable: unknown;
  /** 0, 2 (AF_INET) or 10 (AF_INET6). */
  AddrFamily: unknown;
  /** The interface name. */
  Ifname: unknown;
  /** The address (any identifier for family 0). */
  Addr: unknown;
  /** The lease's end, seconds on CLOCK_MONOTONIC_RAW of the boot that wrote it. */
  LeaseExpires: unknown;
  /** The client's tag, or NULL. */
  Tag: unknown;
}

/** The clocks and settings an import is planned with. */
export interface ImportClock {
  /** Wall clock now, ms since the epoch. */
  nowMs: number;
  /** CLOCK_MONOTONIC_RAW now, in seconds (the original's clock). */
  monotonicSeconds: number;
  /** Whether the file was last written during the current boot. */
  writtenThisBoot: boolean;
  /** The configured lease lifetime, in seconds. */
  tableTimeout: number;
  /** The owner written on the imported leases. */
  owner: string;
}

/** A row that could not become a lease, and why. */
export interface SkippedRow {
  /** The row as stored. */
  row: CRow;
  /** What is wrong with it, naming its table and family. */
  reason: string;
}

/** What {@link planImport} decided. */
export interface ImportPlan {
  /** The leases to write, with their client ids. */
  leases: Array<{ clientId: string; lease: Lease }>;
  /** How many of them kept their remaining time (the rest got a full lease). */
  kept: number;
  skipped: SkippedRow[];
}

/** What an import did, for the log. */
export interface ImportReport {
  /** Rows in `RtTables`. */
  rows: number;
  /** Leases written. */
  imported: number;
  /** Imported leases that kept their remaining time. */
  kept: number;
  /** Imported leases given a full `table_timeout`. */
  renewed: number;
  /** Rows left out, with the reason. */
  skipped: SkippedRow[];
}

function describe(row: CRow): string {
  return `table ${JSON.stringify(row.RtTable)} family ${JSON.stringify(row.AddrFamily)}`;
}

function asNumber(value: unknown): number | undefined {
  if (typeof value === "number") return value;
  if (typeof value === "bigint") return Number(value);
  return undefined;
}

/** Turns one row into a lease, or says why it cannot be one. */
function toLease(row: CRow, clock: ImportClock): { clientId: string; lease: Lease; kept: boolean } {
  const table = asNumber(row.RtTable);
  if (table === undefined || !Number.isInteger(table) || table < 1 || table > MAX_TABLE) {
    throw new Error(`RtTable must be an integer from 1 to ${MAX_TABLE}`);
  }
  if (RESERVED_TABLES.includes(table)) throw new Error(`table ${table} is reserved by the kernel`);
  if (typeof row.Ifname !== "string" || typeof row.Addr !== "string") {
    throw new Error("Ifname and Addr must be text");
  }
  let identity;
  try {
    identity = validateIdentity(asNumber(row.AddrFamily), row.Ifname, row.Addr);
  } catch (error) {
    if (error instanceof ProtocolError) throw new Error(error.message);
    throw error;
  }
  const tag = row.Tag === null || row.Tag === undefined || row.Tag === "" ? undefined : row.Tag;
  if (
    tag !== undefined &&
    (typeof tag !== "string" || new TextEncoder().encode(tag).byteLength > MAX_TAG_BYTES)
  ) {
    throw new Error(`Tag must be text of at most ${MAX_TAG_BYTES} bytes`);
  }
  const leaseExpires = asNumber(row.LeaseExpires);
  if (leaseExpires === undefined || !Number.isFinite(leaseExpires)) {
    throw new Error("LeaseExpires must be a number");
  }
  const remaining = leaseExpires - clock.monotonicSeconds;
  const kept = clock.writtenThisBoot && remaining > 0;
  const seconds = kept ? Math.min(remaining, clock.tableTimeout) : clock.tableTimeout;
  return {
    clientId: clientIdOf(identity),
    kept,
    lease: {
      ...identity,
      table,
      expiresAt: Math.round(clock.nowMs + seconds * 1000),
      tag,
      owner: clock.owner,
      state: "bound",
      // The original's clients ran from root's hooks: their leases are root's.
      uid: 0,
    },
  };
}

/**
 * Decides what each row becomes. Rows outside the configured pools are
 * imported like the others (the server keeps such leases until they end).
 * A row that cannot be a lease (bad family, address, table, tag or
 * expiry) is skipped with its reason; so is all but the longest-running
 * row of an identity that holds two tables (our leases are one per
 * identity).
 */
export function planImport(rows: readonly CRow[], clock: ImportClock): ImportPlan {
  const byClient = new Map<string, { lease: Lease; kept: boolean; row: CRow }>();
  const skipped: SkippedRow[] = [];
  for (const row of rows) {
    let planned;
    try {
      planned = toLease(row, clock);
    } catch (error) {
      skipped.push({ row, reason: `${describe(row)}: ${errorMessage(error)}` });
      continue;
    }
    const other = byClient.get(planned.clientId);
    if (other && other.lease.expiresAt >= planned.lease.expiresAt) {
      skipped.push({
        row,
        reason: `${describe(row)}: ${planned.clientId} also holds table ${other.lease.table}`,
      });
      continue;
    }
    if (other) {
      skipped.push({
        row: other.row,
        reason: `${
          describe(other.row)
        }: ${planned.clientId} also holds table ${planned.lease.table}`,
      });
    }
    byClient.set(planned.clientId, { ...planned, row });
  }
  const leases = [...byClient].map(([clientId, p]) => ({ clientId, lease: p.lease }));
  const kept = [...byClient.values()].filter((p) => p.kept).length;
  return { leases, kept, skipped };
}

/** Where {@link importCDatabase} gets its clocks and settings. */
export interface CImportOptions {
  /** The configured lease lifetime, in seconds. */
  tableTimeout: number;
  /** The owner written on the imported leases. */
  owner: string;
  /** CLOCK_MONOTONIC_RAW in seconds (tests pass their own). */
  monotonicSeconds?: () => number;
  /** When the current boot began, ms since the epoch (tests pass their own). */
  bootedAtMs?: () => number;
  /** Hears what was imported, once it is committed. */
  onImported?: (report: ImportReport) => void;
}

function hasTable(db: DatabaseSync, name: string): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !==
    undefined;
}

/**
 * The latest modification time of a database file and its journals, in ms:
 * when the original server last wrote it. Read it before opening the file
 * for the import, since opening it (WAL mode) writes the file.
 */
export function lastWrittenMs(path: string): number {
  let latest = 0;
  for (const file of [path, `${path}-journal`, `${path}-wal`]) {
    try {
      latest = Math.max(latest, Deno.statSync(file).mtime?.getTime() ?? 0);
    } catch { /* a journal that does not exist says nothing */ }
  }
  return latest;
}

/**
 * Imports the original's `RtTables` into `leases` when the file holds
 * them, the import has not run before, and no lease of ours exists. Runs
 * in the caller's open transaction (so the import and its marker commit
 * together, or not at all). `writtenAtMs` is {@link lastWrittenMs} of the
 * file before it was opened. Returns what was done, or undefined when
 * there was nothing to do.
 */
export function importCDatabase(
  db: DatabaseSync,
  writtenAtMs: number,
  nowMs: number,
  options: CImportOptions,
): ImportReport | undefined {
  if (!hasTable(db, "RtTables") || hasTable(db, IMPORT_MARKER_TABLE)) return undefined;
  if (db.prepare("SELECT 1 FROM leases LIMIT 1").get() !== undefined) return undefined;
  const rows = db.prepare(
    "SELECT RtTable, AddrFamily, Ifname, Addr, LeaseExpires, Tag FROM RtTables",
  ).all() as unknown as CRow[];
  const bootedAt = options.bootedAtMs?.() ?? nowMs - clockSeconds(CLOCK_BOOTTIME) * 1000;
  const plan = planImport(rows, {
    nowMs,
    monotonicSeconds: options.monotonicSeconds?.() ?? clockSeconds(),
    writtenThisBoot: writtenAtMs >= bootedAt,
    tableTimeout: options.tableTimeout,
    owner: options.owner,
  });
  const insert = db.prepare(
    `INSERT INTO leases (client_id, family, ifname, address, table_id, expires_at, tag, owner,
       state, uid, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  for (const { clientId, lease } of plan.leases) {
    insert.run(
      clientId,
      lease.family,
      lease.ifname,
      lease.address,
      lease.table,
      lease.expiresAt,
      lease.tag ?? null,
      lease.owner,
      lease.state,
      lease.uid,
      nowMs,
    );
  }
  db.exec(
    `CREATE TABLE ${IMPORT_MARKER_TABLE} (imported_at INTEGER NOT NULL, rows INTEGER NOT NULL,
       imported INTEGER NOT NULL, skipped INTEGER NOT NULL)`,
  );
  db.prepare(`INSERT INTO ${IMPORT_MARKER_TABLE} VALUES (?, ?, ?, ?)`).run(
    nowMs,
    rows.length,
    plan.leases.length,
    plan.skipped.length,
  );
  return {
    rows: rows.length,
    imported: plan.leases.length,
    kept: plan.kept,
    renewed: plan.leases.length - plan.kept,
    skipped: plan.skipped,
  };
}
