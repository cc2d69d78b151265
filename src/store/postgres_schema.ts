/**
 * The PostgreSQL store's schema: the tables, indexes and the two
 * server-side functions (one group commit, one expiry sweep), created on
 * first start and checked at every start. `docs/postgres.md` explains the
 * design they implement.
 *
 * @module
 */

import type postgres from "postgres";
import { timed } from "./postgres_connection.ts";

/** The schema this code reads and writes (`table_allocator_meta.schema_version`). */
export const SCHEMA_VERSION = 2;

/**
 * Serializes schema creation and upgrades between servers starting at
 * once (`pg_advisory_xact_lock`); any fixed key works, this one spells
 * "tabl".
 */
const SCHEMA_LOCK_KEY = 0x7461626c;

/**
 * Version 1. `COLLATE "C"` on client ids: byte order, the same on every
 * server and database locale, like SQLite's (list cursors and lock order
 * rely on it).
 */
const SCHEMA_V1 = `
CREATE TABLE table_allocator_meta (
  singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  schema_version integer NOT NULL
);
CREATE TABLE lease_clients (
  client_id  text COLLATE "C" PRIMARY KEY,
  version    bigint NOT NULL,
  updated_at bigint NOT NULL -- ms since the epoch; old rows without leases are pruned
);
CREATE TABLE leases (
  client_id  text    COLLATE "C" NOT NULL,
  family     integer NOT NULL,
  ifname     text    NOT NULL,
  address    text    NOT NULL,
  table_id   bigint  NOT NULL,
  expires_at bigint  NOT NULL, -- wall clock, ms since the epoch (0: reserved)
  tag        text,
  owner      text    NOT NULL,
  state      text    NOT NULL DEFAULT 'bound'
             CHECK (state IN ('bound', 'released', 'expired', 'reserved')),
  updated_at bigint  NOT NULL,
  PRIMARY KEY (client_id, table_id)
);
CREATE UNIQUE INDEX leases_bound_table ON leases (family, table_id) WHERE state = 'bound';
CREATE UNIQUE INDEX leases_reserved_table ON leases (family, table_id) WHERE state = 'reserved';
CREATE INDEX leases_expiry ON leases (expires_at) WHERE state = 'bound';
CREATE INDEX leases_history ON leases (updated_at) WHERE state IN ('released', 'expired');

-- One group commit: p_updates is a JSON array of
-- {"c": client id, "v": token version, "l": [lease rows]}, in client-id
-- order. Returns a JSON array of one status per update: ok, stale (token), taken (unique
-- violation), busy (lock wait timed out or deadlock) or "SQLSTATE message".
CREATE FUNCTION table_allocator_apply(p_now bigint, p_durable boolean, p_updates jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  u jsonb;
  n bigint;
  result text[] := '{}';
BEGIN
  PERFORM set_config('lock_timeout', '100ms', true);
  IF NOT p_durable THEN
    PERFORM set_config('synchronous_commit', 'off', true);
  END IF;
  FOR u IN SELECT value FROM jsonb_array_elements(p_updates) LOOP
    BEGIN
      IF (u->>'v')::bigint = 0 THEN
        INSERT INTO lease_clients (client_id, version, updated_at)
        VALUES (u->>'c', 1, p_now) ON CONFLICT DO NOTHING;
      ELSE
        UPDATE lease_clients SET version = version + 1, updated_at = p_now
        WHERE client_id = u->>'c' AND version = (u->>'v')::bigint;
      END IF;
      GET DIAGNOSTICS n = ROW_COUNT;
      IF n = 0 THEN
        result := result || 'stale'::text;
      ELSE
        DELETE FROM leases WHERE client_id = u->>'c';
        INSERT INTO leases (client_id, family, ifname, address, table_id, expires_at, tag,
                            owner, state, updated_at)
        SELECT u->>'c', x.family, x.ifname, x.address, x.table_id, x.expires_at, x.tag,
               x.owner, x.state, p_now
        FROM jsonb_to_recordset(u->'l') AS x(family integer, ifname text, address text,
          table_id bigint, expires_at bigint, tag text, owner text, state text);
        result := result || 'ok'::text;
      END IF;
    EXCEPTION
      WHEN unique_violation THEN result := result || 'taken'::text;
      WHEN lock_not_available OR deadlock_detected THEN result := result || 'busy'::text;
      WHEN OTHERS THEN result := result || (SQLSTATE || ' ' || SQLERRM);
    END;
  END LOOP;
  RETURN to_jsonb(result); -- jsonb: the driver parses it without fetching array types
END $$;

-- One expiry sweep: moves due bound leases to 'expired' and bumps their
-- clients' versions, for the clients no other transaction holds (SKIP
-- LOCKED: those are retried by the next sweep), then prunes old history.
CREATE FUNCTION table_allocator_expire(p_now bigint, p_prune_before bigint)
RETURNS SETOF leases LANGUAGE plpgsql AS $$
DECLARE
  due text[];
BEGIN
  PERFORM set_config('lock_timeout', '100ms', true);
  PERFORM set_config('synchronous_commit', 'off', true);
  SELECT array_agg(k.client_id) INTO due FROM (
    SELECT c.client_id FROM lease_clients c
    WHERE c.client_id IN (
      SELECT l.client_id FROM leases l WHERE l.state = 'bound' AND l.expires_at <= p_now)
    ORDER BY c.client_id
    FOR UPDATE SKIP LOCKED) k;
  IF due IS NOT NULL THEN
    RETURN QUERY
      WITH e AS (
        UPDATE leases l SET state = 'expired', updated_at = p_now
        WHERE l.client_id = ANY (due) AND l.state = 'bound' AND l.expires_at <= p_now
        RETURNING l.*
      ), bumped AS (
        UPDATE lease_clients c SET version = c.version + 1, updated_at = p_now
        WHERE c.client_id IN (SELECT e.client_id FROM e)
      )
      SELECT * FROM e;
  END IF;
  DELETE FROM leases l WHERE l.ctid IN (
    SELECT h.ctid FROM leases h
    WHERE h.state IN ('released', 'expired') AND h.updated_at < p_prune_before
    LIMIT 10000 FOR UPDATE SKIP LOCKED);
  -- updated_at guards against a concurrent first update: it sets updated_at
  -- to now before inserting leases, and the row lock re-checks it.
  DELETE FROM lease_clients c WHERE c.client_id IN (
    SELECT k.client_id FROM lease_clients k
    WHERE k.updated_at < p_prune_before
      AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.client_id = k.client_id)
    LIMIT 10000 FOR UPDATE SKIP LOCKED);
  RETURN;
END $$;

INSERT INTO table_allocator_meta (schema_version) VALUES (1);
`;

/**
 * Version 2: the uid that took a lease (the server's policy: only it and
 * root may refresh or release it); existing leases were root's. The index
 * counts a non-root uid's bound leases for the per-uid cap.
 *
 * The group commit now takes each update as JSON text and parses it
 * inside that update's savepoint: text PostgreSQL cannot hold (a lone
 * surrogate escape, NUL) then fails that update alone instead of the
 * batch's parameter, so one bad request never fails the others of its
 * pass, and the pass still commits once. Elements that are objects (a
 * version 1 server's payload) are read as before, with uid 0.
 */
const MIGRATION_V2 = `
ALTER TABLE leases ADD COLUMN uid bigint NOT NULL DEFAULT 0;
CREATE INDEX leases_uid ON leases (uid) WHERE state = 'bound' AND uid <> 0;

-- One group commit: p_updates is a JSON array of one element per update,
-- the JSON text (or object) {"c": client id, "v": token version, "l": [lease
-- rows]}, in client-id order. Returns a JSON array of one status per update:
-- ok, stale (token), taken (unique violation), busy (lock wait timed out or
-- deadlock) or "SQLSTATE message".
CREATE OR REPLACE FUNCTION table_allocator_apply(p_now bigint, p_durable boolean, p_updates jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  t text;
  u jsonb;
  n bigint;
  result text[] := '{}';
BEGIN
  PERFORM set_config('lock_timeout', '100ms', true);
  IF NOT p_durable THEN
    PERFORM set_config('synchronous_commit', 'off', true);
  END IF;
  FOR t IN SELECT value FROM jsonb_array_elements_text(p_updates) LOOP
    BEGIN
      u := t::jsonb;
      IF (u->>'v')::bigint = 0 THEN
        INSERT INTO lease_clients (client_id, version, updated_at)
        VALUES (u->>'c', 1, p_now) ON CONFLICT DO NOTHING;
      ELSE
        UPDATE lease_clients SET version = version + 1, updated_at = p_now
        WHERE client_id = u->>'c' AND version = (u->>'v')::bigint;
      END IF;
      GET DIAGNOSTICS n = ROW_COUNT;
      IF n = 0 THEN
        result := result || 'stale'::text;
      ELSE
        DELETE FROM leases WHERE client_id = u->>'c';
        INSERT INTO leases (client_id, family, ifname, address, table_id, expires_at, tag,
                            owner, state, updated_at, uid)
        SELECT u->>'c', x.family, x.ifname, x.address, x.table_id, x.expires_at, x.tag,
               x.owner, x.state, p_now, COALESCE(x.uid, 0)
        FROM jsonb_to_recordset(u->'l') AS x(family integer, ifname text, address text,
          table_id bigint, expires_at bigint, tag text, owner text, state text, uid bigint);
        result := result || 'ok'::text;
      END IF;
    EXCEPTION
      WHEN unique_violation THEN result := result || 'taken'::text;
      WHEN lock_not_available OR deadlock_detected THEN result := result || 'busy'::text;
      WHEN OTHERS THEN result := result || (SQLSTATE || ' ' || SQLERRM);
    END;
  END LOOP;
  RETURN to_jsonb(result); -- jsonb: the driver parses it without fetching array types
END $$;

UPDATE table_allocator_meta SET schema_version = 2;
`;

/** Upgrades of older schemas, by the version they start from. */
const MIGRATIONS: Record<number, string> = { 1: MIGRATION_V2 };

/**
 * Creates the schema if it is missing (version 1, then the upgrades), or
 * checks its version and upgrades an older one, in one
 * transaction under the schema lock (servers that start at once do not
 * race). Rejects with an Error naming the reason: a newer schema, a
 * broken meta table, no answer within `timeoutMs`.
 */
export async function ensureSchema(
  // deno-lint-ignore no-explicit-any
  sql: postgres.Sql<any>,
  timeoutMs: number,
): Promise<void> {
  await timed(
    sql.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(${SCHEMA_LOCK_KEY}::bigint)`;
      const [{ meta }] = await tx`SELECT to_regclass('table_allocator_meta') IS NOT NULL AS meta`;
      if (!meta) await tx.unsafe(SCHEMA_V1);
      const rows = await tx`SELECT schema_version FROM table_allocator_meta`;
      const version = rows.length ? Number(rows[0].schema_version) : 0;
      if (version > SCHEMA_VERSION) {
        throw new Error(
          `its schema version ${version} is newer than this server's (${SCHEMA_VERSION})`,
        );
      }
      if (version < 1) {
        throw new Error(`its table_allocator_meta has no valid schema version (${version})`);
      }
      for (let v = version; v < SCHEMA_VERSION; v++) await tx.unsafe(MIGRATIONS[v]);
    }),
    timeoutMs,
  );
}
