/**
 * The smallest valid server config, as the original's example writes it
 * (IPv4 only): the base the config and reload tests vary one key of.
 *
 * @module
 */

/** A valid config object: `{ ...VALID_CONFIG, key: value }` makes a case. */
export const VALID_CONFIG = {
  socket_path: "tas_socket",
  table_offset: 10000,
  num_tables: 40,
  table_timeout: 3600,
  db_path: "var/leases.db",
  addr_families: { inet: true },
} as const;
