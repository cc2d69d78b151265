/**
 * Opening the SQLite store's file: its directory, the locks, the pragmas,
 * the schema, the import of the original C server's leases, and a first
 * durable write.
 *
 * - One writer: the process holds an exclusive lock on `<db>-lock` for as
 *   long as the store is open. A second server gets a clear error at start
 *   instead of silently diverging, and tokens can be checked against
 *   per-client versions held in memory. Other processes may still read
 *   the file (WAL readers never block the writer).
 * - Proven writable at open: a durable write before the store is handed
 *   out, so a read-only file or a full disk fails at start, not at the
 *   first request.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { type CImportOptions, importCDatabase, lastWrittenMs } from "./c_database_import.ts";
import {
  CACHE_KIB,
  ensureSchema,
  PAGE_SIZE,
  SCHEMA_VERSION,
  WAL_AUTOCHECKPOINT_PAGES,
} from "./sqlite_schema.ts";
import { WalSync } from "./wal_sync.ts";
import { errorMessage } from "../util/errors.ts";
import { dirname } from "../util/paths.ts";
import { syncDirectory } from "../util/sync_directory.ts";
import { FileIdentity, PathLock } from "./file_guard.ts";
import type { StoreGuard } from "./sqlite_upkeep.ts";

/** An open database and what holds it: handed to the store, which closes it all. */
export interface OpenedDatabase {
  db: DatabaseSync;
  /** The exclusive lock on `<db>-lock`; none for an in-memory database. */
  lock: Deno.FsFile | undefined;
  /** The file and its path lock; none for an in-memory database. */
  guard: StoreGuard | undefined;
  /** The WAL's fdatasync; none for an in-memory database. */
  wal: WalSync | undefined;
}

/** What opening needs of the store's options. */
export interface OpenDatabaseOptions {
  /** Wall clock in ms (the import's reference time). */
  now?: () => number;
  /** Import the original C server's leases when the file holds them. */
  cImport?: CImportOptions;
}

/**
 * Opens (creating if needed) the database and its directory, takes the
 * exclusive lock, checks the schema and makes the open's write durable,
 * then hands it all to `make`. When any of it fails (`make` included),
 * everything opened is closed again and the Error names the file and the
 * reason: locked by another process, unwritable, newer schema.
 */
export function openDatabase<T>(
  path: string,
  options: OpenDatabaseOptions,
  make: (opened: OpenedDatabase) => T,
): T {
  let db: DatabaseSync | undefined;
  let lock: Deno.FsFile | undefined;
  let pathLock: PathLock | undefined;
  let wal: WalSync | undefined;
  try {
    if (path !== ":memory:") {
      Deno.mkdirSync(dirname(path), { recursive: true });
      lock = Deno.openSync(`${path}-lock`, { create: true, write: true });
      if (!lock.tryLockSync(true)) {
        throw new Error(
          `it is locked by another process (${path}-lock): is another server using it?`,
        );
      }
      // The lock file goes with a deleted directory; this lock does not.
      pathLock = PathLock.take(path);
    }
    // Read before opening: switching to WAL writes the file.
    const writtenAt = options.cImport ? lastWrittenMs(path) : 0;
    db = new DatabaseSync(path);
    // Only a new database takes it (an existing one keeps its page size).
    db.exec(`PRAGMA page_size = ${PAGE_SIZE}`);
    db.exec("PRAGMA journal_mode = WAL");
    // Durability is the store's: it syncs the WAL itself (see WalSync).
    db.exec("PRAGMA synchronous = NORMAL");
    db.exec(`PRAGMA wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
    db.exec(`PRAGMA cache_size = -${CACHE_KIB}`);
    // Waiting for a lock would block the event loop: fail at once with a
    // TransientError instead (only outside writers can hold the lock).
    db.exec("PRAGMA busy_timeout = 0");
    db.exec("BEGIN IMMEDIATE");
    ensureSchema(db);
    const imported = options.cImport &&
      importCDatabase(db, writtenAt, (options.now ?? Date.now)(), options.cImport);
    // A read-only file opens (SQLite falls back to reading), and a
    // transaction that changes nothing commits on a full disk: write.
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    db.exec("COMMIT");
    // The open's write is made durable now (and proves the disk takes it).
    if (path !== ":memory:") {
      wal = new WalSync(`${path}-wal`);
      wal.syncNow();
      // A new database or WAL file is on disk only once its directory
      // entry is: SQLite syncs the directory at the WAL's first sync under
      // synchronous=FULL, and the store's own sync must do the same.
      syncDirectory(dirname(path));
    }
    if (imported) options.cImport?.onImported?.(imported);
    const guard = path === ":memory:" ? undefined : {
      identity: FileIdentity.of(path),
      pathLock: pathLock!,
    };
    return make({ db, lock, guard, wal });
  } catch (error) {
    wal?.close();
    try {
      db?.close();
    } catch { /* closing after a failed open has nothing left to report */ }
    lock?.close();
    pathLock?.close();
    throw new Error(`Cannot open database "${path}": ${errorMessage(error)}`, { cause: error });
  }
}
