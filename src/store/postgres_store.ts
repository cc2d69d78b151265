/**
 * The PostgreSQL {@link LeaseStore} (placeholder until the backend lands).
 *
 * @module
 */

import type { StoreConfig } from "../../config/config.ts";
import type { LeaseStore } from "./lease_store.ts";

/** A {@link LeaseStore} in PostgreSQL, shared by several servers. */
export class PostgresLeaseStore {
  /** Connects and prepares the schema. */
  static open(_config: Extract<StoreConfig, { kind: "postgres" }>): Promise<LeaseStore> {
    return Promise.reject(new Error("the PostgreSQL store is not implemented yet"));
  }
}
