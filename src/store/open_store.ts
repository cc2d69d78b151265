/**
 * Opens the lease store a config names: SQLite (embedded, the default) or
 * PostgreSQL (a pool shared by several servers).
 *
 * @module
 */

import type { StoreConfig } from "../../config/config.ts";
import type { CImportOptions } from "./c_database_import.ts";
import type { LeaseStore } from "./lease_store.ts";
import { SqliteLeaseStore } from "./sqlite_store.ts";

/** Options of {@link openStore}. */
export interface OpenStoreOptions {
  /** An SQLite file of the original C server is imported with these settings. */
  cImport?: CImportOptions;
}

/**
 * Opens the store; errors name the database and the reason. The
 * PostgreSQL backend is imported only when configured, so an SQLite
 * server never loads the driver.
 */
export async function openStore(
  config: StoreConfig,
  options: OpenStoreOptions = {},
): Promise<LeaseStore> {
  if (config.kind === "sqlite") return SqliteLeaseStore.open(config.path, options);
  const { PostgresLeaseStore } = await import("./postgres_store.ts");
  return await PostgresLeaseStore.open(config);
}
