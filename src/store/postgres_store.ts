/**
 * The PostgreSQL {@link LeaseStore}: one database shared by several
 * servers, on several hosts, through the npm package `postgres` (porsager,
 * pinned in `deno.json`; pure JavaScript, pipelined, prepared statements).
 * Its semantics are the SQLite store's; what differs is that concurrency
 * comes from the database, not the process. See `docs/postgres.md`.
 *
 * - Tokens: optimistic concurrency with a version per client, persisted in
 *   `lease_clients(client_id, version)`. A lookup reads the version and the
 *   leases in one statement (one snapshot); an update is a compare-and-swap
 *   (`UPDATE ... SET version = version + 1 WHERE version = $token`, or an
 *   `INSERT ... ON CONFLICT DO NOTHING` for version 0) whose row count
 *   decides: 0 rows is a stale token, a ConcurrencyError. Row locks held
 *   across a lookup and its update (`SELECT ... FOR UPDATE`) would tie a
 *   connection to every outstanding token and let a slow consumer block the
 *   other servers; a version check holds no lock between the two calls, and
 *   the CAS row lock taken by the update lives for one short statement.
 * - Group commit: updates issued before {@link PostgresLeaseStore.flush}
 *   (or within one tick) are sent as ONE call of the server-side function
 *   `table_allocator_apply`, which runs as one implicit transaction: one
 *   round trip and one WAL flush for the whole batch. Each update runs in
 *   its own PL/pgSQL exception block, i.e. a savepoint, so a stale token or
 *   a table taken (unique violation) fails that update only. A client-side
 *   SAVEPOINT per update would cost five round trips per update instead.
 * - Locks: every writer locks a client's `lease_clients` row before it
 *   touches that client's leases, batches in client-id order. The only
 *   other wait is on the unique indexes, when two servers insert the same
 *   table at once: the second waits for the first to commit, then gets a
 *   unique violation (table taken). Cycles of such waits (two batches each
 *   taking a table the other wants) are broken by `lock_timeout` (100 ms)
 *   and deadlock detection inside the update's exception block: that
 *   update fails with a ConcurrencyError and the rest of its batch commits.
 * - Durability: a batch that writes no table-holding lease (releases,
 *   history, deletions) and every expiry sweep commit with `SET LOCAL
 *   synchronous_commit = off`: the WAL is ordered, so the next synchronous
 *   commit, the one that could give the table to someone else, flushes
 *   them first (the SQLite store's reasoning, across servers as well).
 * - Expiry: a timer on the earliest `expires_at` this store knows of (its
 *   own writes, and `MIN(expires_at)` read after each sweep) plus a sweep
 *   every 5 s, because other servers write leases too. The sweep
 *   (`table_allocator_expire`) locks the due clients' rows with `SKIP
 *   LOCKED`, moves their leases to `expired` and bumps their versions in
 *   one transaction: two servers sweeping at once split the work, so each
 *   expiry is announced exactly once across all servers, by the server
 *   whose sweep reclaimed it. The sweep also prunes history older than the
 *   retention. Servers compare expiry with their own clocks: keep them in
 *   sync (NTP).
 * - Errors: a stale, used or released token, a table taken, or a lock wait
 *   that timed out is a ConcurrencyError; a lost connection, an admin
 *   shutdown, a serialization failure, a full disk, or no answer within the
 *   query timeout (10 s) is a TransientError and the token stays valid. A
 *   commit whose answer was lost may still have happened: its retry is then
 *   refused by the version CAS, and the lookup shows the lease.
 *
 * @module
 */

import postgres from "postgres";
import type { StoreConfig } from "../../config/config.ts";
import type { AddrFamily } from "../net/family.ts";
import {
  ConcurrencyError,
  type ExpiryListener,
  holdsTable,
  type Lease,
  type LeasePage,
  type LeaseStore,
  type LeaseToken,
  type ListOptions,
  type LookupResult,
  TransientError,
} from "./lease_store.ts";
import { errorMessage } from "../util/errors.ts";

/** The store config this backend takes. */
export type PostgresStoreConfig = Extract<StoreConfig, { kind: "postgres" }>;

/** The schema this code reads and writes (`table_allocator_meta.schema_version`). */
export const SCHEMA_VERSION = 1;

/** How long released and expired leases are kept as history, by default. */
export const DEFAULT_HISTORY_RETENTION_MS = 7 * 24 * 3600_000;

/** How often the store sweeps for leases that expired, by default. */
export const DEFAULT_SWEEP_INTERVAL_MS = 5000;

/** How long the store waits for the database's answer, by default. */
export const DEFAULT_QUERY_TIMEOUT_MS = 10_000;

/** Options of {@link PostgresLeaseStore.open}. */
export interface PostgresStoreOptions {
  /** Wall clock in ms (tests may pass their own). */
  now?: () => number;
  /** How long `released` and `expired` leases are kept (default 7 days). */
  historyRetentionMs?: number;
  /** How often to sweep for expired leases other servers wrote (default 5 s). */
  sweepIntervalMs?: number;
  /**
   * How long to wait for the database's answer before giving up with a
   * TransientError (default 10 s). A database behind a broken network
   * path sends nothing, not even a reset: without this, the server would
   * wait for TCP keepalive, many minutes.
   */
  queryTimeoutMs?: number;
}

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

interface Token {
  readonly clientId: string;
  readonly version: number;
  readonly store: PostgresLeaseStore;
  used: boolean;
}

interface Pending {
  token: Token;
  leases: Lease[];
  resolve: () => void;
  reject: (error: Error) => void;
}

interface LeaseRow {
  client_id: string;
  family: number;
  ifname: string;
  address: string;
  table_id: number;
  expires_at: number;
  tag: string | null;
  owner: string;
  state: string;
}

const MAX_TIMER_MS = 2 ** 30; // setTimeout's limit is 2^31-1; re-arm past that
/** When a sweep left due leases behind (locked by another transaction), retry after this. */
const SWEEP_RETRY_MS = 50;
/** After a failed sweep (database down), retry after this. */
const SWEEP_FAILURE_RETRY_MS = 1000;

function toLease(row: LeaseRow): Lease {
  return {
    family: row.family as AddrFamily,
    ifname: row.ifname,
    address: row.address,
    table: row.table_id,
    expiresAt: row.expires_at,
    tag: row.tag ?? undefined,
    owner: row.owner,
    state: row.state as Lease["state"],
  };
}

/**
 * Settles like `query`, or rejects after `ms`. The query is not cancelled
 * (cancelling needs the same unresponsive server); if it commits later, the
 * version check refuses the retry of its updates, which is safe.
 */
function timed<T>(query: PromiseLike<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    query,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** SQLSTATE of a server error, if it is one. */
function sqlState(error: unknown): string | undefined {
  return error instanceof postgres.PostgresError ? error.code : undefined;
}

/**
 * Whether a failure is bad data or a bug rather than a passing condition:
 * data exceptions (22), integrity violations other than the unique ones
 * handled as conflicts (23), syntax and undefined objects (42).
 */
function isPermanent(state: string | undefined): boolean {
  return state !== undefined && /^(22|23|42)/.test(state);
}

/**
 * The connection options: the URL first, libpq style (a unix socket
 * directory may be given as `?host=/dir`), then the config's fields over
 * it; porsager's own defaults (PGHOST etc., then localhost:5432) for the rest.
 */
function connectionOptions(config: PostgresStoreConfig): {
  options: postgres.Options<Record<string, postgres.PostgresType>>;
  where: string;
} {
  let host: string | undefined;
  let port: number | undefined;
  let database: string | undefined;
  let user: string | undefined;
  let password: string | undefined;
  let ssl: string | undefined;
  if (config.url !== undefined) {
    // libpq allows an empty host (`postgres://user@/db?host=/run/postgresql`);
    // the URL parser does not, so parse it with a stand-in host.
    const emptyHost = /^postgres(ql)?:\/\/([^/?#]*@)?(?=[/?#]|$)/.test(config.url);
    let url: URL;
    try {
      url = new URL(
        emptyHost
          ? config.url.replace(/^(postgres(ql)?:\/\/([^/?#]*@)?)/, "$1empty.invalid")
          : config.url,
      );
    } catch (error) {
      throw new TypeError(`"url" is not a valid URL: ${errorMessage(error)}`, {
        cause: error,
      });
    }
    host = url.hostname && !emptyHost ? decodeURIComponent(url.hostname) : undefined;
    port = url.port ? Number(url.port) : undefined;
    database = url.pathname.length > 1 ? decodeURIComponent(url.pathname.slice(1)) : undefined;
    user = url.username ? decodeURIComponent(url.username) : undefined;
    password = url.password ? decodeURIComponent(url.password) : undefined;
    for (const [key, value] of url.searchParams) {
      if (key === "host") host = value;
      else if (key === "port") port = Number(value);
      else if (key === "dbname") database = value;
      else if (key === "user") user = value;
      else if (key === "password") password = value;
      else if (key === "sslmode") ssl = value;
      else {
        throw new TypeError(
          `"url" parameter "${key}" is not supported; supported: host, port, dbname, user, password, sslmode`,
        );
      }
    }
    if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) {
      throw new TypeError(`"url" port must be an integer from 1 to 65535, got ${port}`);
    }
  }
  host = config.host ?? host;
  port = config.port ?? port;
  database = config.database ?? database;
  user = config.user ?? user;
  password = config.password ?? password;
  const options: postgres.Options<Record<string, postgres.PostgresType>> = {
    max: config.poolSize,
    // A server that cannot be reached is a TransientError soon, not in 30 s.
    connect_timeout: 5,
    // Reconnect soon after the database comes back (the driver's default
    // back-off grows to 20 s, during which queries wait).
    backoff: (attempt: number) => Math.min(2, 0.05 * 2 ** attempt) * (0.5 + Math.random() / 2),
    // No arrays go over the wire: skip the type query on every new connection.
    fetch_types: false,
    onnotice: () => {},
    connection: { application_name: "table-allocator" },
    types: {
      // BIGINT columns (tables, ms timestamps, versions) fit a double exactly.
      int8: {
        to: 20,
        from: [20],
        serialize: (x: number) => String(x),
        parse: (x: string) => Number(x),
      },
    },
  };
  if (host !== undefined) options.host = host;
  if (port !== undefined) options.port = port;
  if (database !== undefined) options.database = database;
  if (user !== undefined) options.user = user;
  if (password !== undefined) options.password = password;
  if (ssl !== undefined) {
    const modes: Record<string, postgres.Options<Record<string, never>>["ssl"]> = {
      disable: false,
      allow: "allow",
      prefer: "prefer",
      require: "require",
      "verify-full": "verify-full",
    };
    if (!(ssl in modes)) {
      throw new TypeError(
        `"url" sslmode must be one of ${Object.keys(modes).join(", ")}, got "${ssl}"`,
      );
    }
    options.ssl = modes[ssl];
  }
  const env = Deno.env.toObject();
  const shownHost = host ?? env.PGHOST ?? "localhost";
  const shownPort = port ?? (env.PGPORT ? Number(env.PGPORT) : 5432);
  const shownDatabase = database ?? env.PGDATABASE ?? user ?? env.PGUSER ?? "(default)";
  return {
    options,
    where: `PostgreSQL at ${shownHost}:${shownPort} database "${shownDatabase}"`,
  };
}

/** A {@link LeaseStore} in a PostgreSQL database, shared by several servers. */
export class PostgresLeaseStore implements LeaseStore {
  // deno-lint-ignore no-explicit-any
  #sql: postgres.Sql<any>;
  #where: string;
  #now: () => number;
  #historyRetentionMs: number;
  #queryTimeoutMs: number;
  #queue: Pending[] = [];
  /** The last batch sent: batches go one at a time, in order. */
  #tail: Promise<void> = Promise.resolve();
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  #expiryTimer: ReturnType<typeof setTimeout> | undefined;
  #expiryAt = Infinity;
  #sweepTimer: ReturnType<typeof setInterval> | undefined;
  /** The sweep running now, if any; a timer firing meanwhile asks for another. */
  #sweeping: Promise<void> | undefined;
  #sweepAgain = false;
  #listeners = new Set<ExpiryListener>();
  /** No new work is taken (close() was called). */
  #closed = false;
  /** The connections are being shut down: failures from now on are the close's. */
  #ended = false;
  #closing: Promise<void> | undefined;

  // deno-lint-ignore no-explicit-any
  private constructor(sql: postgres.Sql<any>, where: string, options: PostgresStoreOptions) {
    this.#sql = sql;
    this.#where = where;
    this.#now = options.now ?? Date.now;
    this.#historyRetentionMs = options.historyRetentionMs ?? DEFAULT_HISTORY_RETENTION_MS;
    this.#queryTimeoutMs = options.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS;
    const interval = options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
    this.#sweepTimer = setInterval(() => this.#sweep(), interval);
    // Leases that expired while every server was down are reclaimed as
    // soon as the caller has had the chance to register its listeners.
    this.#armExpiry(this.#now());
  }

  /**
   * Connects, then creates the schema if missing (serialized between
   * servers by an advisory lock) or checks its version. Throws an Error
   * naming the server, the database and the reason: unreachable, refused,
   * newer schema.
   */
  static async open(
    config: PostgresStoreConfig,
    options: PostgresStoreOptions = {},
  ): Promise<PostgresLeaseStore> {
    let connection, where;
    try {
      ({ options: connection, where } = connectionOptions(config));
    } catch (error) {
      throw new TypeError(`Cannot open the PostgreSQL store: ${errorMessage(error)}`, {
        cause: error,
      });
    }
    const sql = postgres(connection);
    try {
      await timed(
        sql.begin(async (tx) => {
          await tx`SELECT pg_advisory_xact_lock(${SCHEMA_LOCK_KEY}::bigint)`;
          const [{ meta }] =
            await tx`SELECT to_regclass('table_allocator_meta') IS NOT NULL AS meta`;
          if (!meta) {
            await tx.unsafe(SCHEMA_V1);
            return;
          }
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
        }),
        options.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS,
      );
    } catch (error) {
      await sql.end({ timeout: 1 }).catch(() => {});
      const reason = error instanceof Error ? error.message : String(error);
      throw new Error(`Cannot open ${where}: ${reason}`, { cause: error });
    }
    return new PostgresLeaseStore(sql, where, options);
  }

  async lookup(clientId: string): Promise<LookupResult> {
    if (this.#closed) throw new TransientError("the lease store is closed");
    let rows;
    try {
      // One statement, one snapshot: the version matches the leases read.
      rows = await timed(
        this.#sql`
        SELECT c.version, l.client_id, l.family, l.ifname, l.address, l.table_id,
               l.expires_at, l.tag, l.owner, l.state
        FROM (SELECT ${clientId}::text COLLATE "C" AS id) k
        LEFT JOIN lease_clients c ON c.client_id = k.id
        LEFT JOIN leases l ON l.client_id = k.id
        ORDER BY l.table_id`,
        this.#queryTimeoutMs,
      );
    } catch (error) {
      throw this.#wrap(`cannot look up ${clientId}`, error);
    }
    const token: Token = {
      clientId,
      version: rows[0]?.version ?? 0,
      store: this,
      used: false,
    };
    const leases = rows.filter((r) => r.client_id !== null).map((r) => toLease(r as LeaseRow));
    return { leases, token: token as unknown as LeaseToken };
  }

  async peek(clientId: string): Promise<Lease[]> {
    if (this.#closed) throw new TransientError("the lease store is closed");
    try {
      const rows = await timed(
        this.#sql`
        SELECT client_id, family, ifname, address, table_id, expires_at, tag, owner, state
        FROM leases WHERE client_id = ${clientId} ORDER BY table_id`,
        this.#queryTimeoutMs,
      );
      return rows.map((r) => toLease(r as LeaseRow));
    } catch (error) {
      throw this.#wrap(`cannot look up ${clientId}`, error);
    }
  }

  update(clientId: string, leases: Lease[], leaseToken: LeaseToken): Promise<void> {
    const token = leaseToken as unknown as Token;
    if (this.#closed) return Promise.reject(new TransientError("the lease store is closed"));
    if (token.store !== this || token.clientId !== clientId) {
      return Promise.reject(
        new TypeError(`the token was not issued by this store for ${clientId}`),
      );
    }
    if (token.used) return Promise.reject(new ConcurrencyError(clientId));
    // PostgreSQL text cannot hold NUL, and the batch's JSON would fail as a
    // whole: refuse this update alone.
    const nul = [clientId, ...leases.flatMap((l) => [l.ifname, l.address, l.owner, l.tag ?? ""])]
      .find((text) => text.includes("\0"));
    if (nul !== undefined) {
      token.used = true;
      return Promise.reject(
        new TypeError(`cannot store ${JSON.stringify(nul)} for ${clientId}: it contains NUL`),
      );
    }
    token.used = true;
    return new Promise((resolve, reject) => {
      this.#queue.push({ token, leases, resolve, reject });
      this.#flushTimer ??= setTimeout(() => this.flush().catch(() => {}), 0);
    });
  }

  releaseToken(leaseToken: LeaseToken): void {
    (leaseToken as unknown as Token).used = true;
  }

  /**
   * Sends every update queued so far as one batch, after the batch in
   * flight, and resolves once it is committed (rejects when the commit
   * failed; each update's own promise carries its outcome).
   */
  flush(): Promise<void> {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    const batch = this.#queue;
    this.#queue = [];
    const run = this.#tail.then(() => batch.length ? this.#commit(batch) : undefined);
    this.#tail = run.catch(() => {});
    return run;
  }

  async #commit(batch: Pending[]): Promise<void> {
    // Client-id order: every batch takes its row locks in the same order.
    const sorted = batch.toSorted((a, b) =>
      a.token.clientId < b.token.clientId ? -1 : a.token.clientId > b.token.clientId ? 1 : 0
    );
    const durable = sorted.some((p) => p.leases.some((l) => holdsTable(l.state)));
    const payload = JSON.stringify(sorted.map((p) => ({
      c: p.token.clientId,
      v: p.token.version,
      l: p.leases.map((l) => ({
        family: l.family,
        ifname: l.ifname,
        address: l.address,
        table_id: l.table,
        expires_at: Math.round(l.expiresAt),
        tag: l.tag ?? null,
        owner: l.owner,
        state: l.state,
      })),
    })));
    let statuses: string[];
    try {
      const [row] = await timed(
        this.#sql`
        SELECT table_allocator_apply(${this.#now()}::bigint, ${durable}::boolean,
                                     ${payload}::text::jsonb) AS statuses`,
        this.#queryTimeoutMs,
      );
      statuses = row.statuses;
    } catch (error) {
      // Nothing is known to be written: every token stays valid for a retry.
      const failure = this.#wrap(`cannot commit ${batch.length} lease update(s)`, error);
      for (const p of sorted) {
        p.token.used = false;
        p.reject(failure);
      }
      throw failure;
    }
    let nextExpiry = Infinity;
    sorted.forEach((p, i) => {
      const status = statuses[i];
      const clientId = p.token.clientId;
      if (status === "ok") {
        for (const l of p.leases) {
          if (l.state === "bound") nextExpiry = Math.min(nextExpiry, l.expiresAt);
        }
        p.resolve();
      } else if (status === "stale") p.reject(new ConcurrencyError(clientId));
      else if (status === "taken") {
        p.reject(
          new ConcurrencyError(
            clientId,
            `a table of ${clientId} is leased to another client`,
            "taken",
          ),
        );
      } else if (status === "busy") {
        p.reject(
          new ConcurrencyError(
            clientId,
            `the leases or tables of ${clientId} are being changed by another server`,
            "taken",
          ),
        );
      } else {
        const state = status.slice(0, 5);
        const message = `cannot update ${clientId} in ${this.#where}: ${status.slice(6)}`;
        if (isPermanent(state)) p.reject(new Error(message));
        else {
          p.token.used = false;
          p.reject(new TransientError(message));
        }
      }
    });
    if (nextExpiry < this.#expiryAt) this.#armExpiry(nextExpiry);
  }

  async list(options: ListOptions = {}): Promise<LeasePage> {
    const limit = options.limit ?? 1000;
    if (!Number.isInteger(limit) || limit < 1) {
      throw new RangeError(`limit must be a positive integer, got ${limit}`);
    }
    if (this.#closed) throw new TransientError("the lease store is closed");
    let clientId = "";
    let table = -1;
    if (options.after !== undefined) {
      try {
        [clientId, table] = JSON.parse(options.after) as [string, number];
      } catch (error) {
        throw new TypeError(`the cursor ${JSON.stringify(options.after)} is not from list()`, {
          cause: error,
        });
      }
    }
    const states = options.state === undefined
      ? null
      : `,${(typeof options.state === "string" ? [options.state] : options.state).join(",")},`;
    let rows;
    try {
      // One statement for every filter: a NULL parameter switches its filter off.
      rows = await timed(
        this.#sql`
        SELECT client_id, family, ifname, address, table_id, expires_at, tag, owner, state
        FROM leases
        WHERE (client_id, table_id) > (${clientId}::text, ${table}::bigint)
          AND (${states}::text IS NULL OR strpos(${states}::text, ',' || state || ',') > 0)
          AND (${options.family ?? null}::integer IS NULL OR family = ${options.family ?? null})
          AND (${options.ifname ?? null}::text IS NULL OR ifname = ${options.ifname ?? null})
          AND (${options.table ?? null}::bigint IS NULL OR table_id = ${options.table ?? null})
          AND (${options.owner ?? null}::text IS NULL OR owner = ${options.owner ?? null})
        ORDER BY client_id, table_id LIMIT ${limit}::integer`,
        this.#queryTimeoutMs,
      );
    } catch (error) {
      throw this.#wrap("cannot list leases", error);
    }
    const last = rows.at(-1);
    return {
      leases: rows.map((r) => toLease(r as LeaseRow)),
      next: rows.length === limit && last
        ? JSON.stringify([last.client_id, last.table_id])
        : undefined,
    };
  }

  async usedTables(): Promise<Array<[AddrFamily, number]>> {
    if (this.#closed) throw new TransientError("the lease store is closed");
    try {
      // Two index-only scans of the partial unique indexes.
      const rows = await timed(
        this.#sql`
        SELECT family, table_id FROM leases WHERE state = 'bound'
        UNION ALL SELECT family, table_id FROM leases WHERE state = 'reserved'`.values(),
        this.#queryTimeoutMs,
      );
      // Plain arrays, not the driver's row list (an Array subclass).
      return rows.map((r): [AddrFamily, number] => [r[0] as AddrFamily, r[1] as number]);
    } catch (error) {
      throw this.#wrap("cannot read leased tables", error);
    }
  }

  onExpire(listener: ExpiryListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      // Refuse new work at once; what was issued before is committed.
      this.#closed = true;
      clearTimeout(this.#expiryTimer);
      clearInterval(this.#sweepTimer);
      try {
        await this.flush();
      } catch { /* each update's promise carries the failure */ }
      await this.#sweeping;
      this.#ended = true;
      await this.#sql.end({ timeout: 5 });
    })();
    return this.#closing;
  }

  /** Maps a driver failure to the API's errors, naming the database. */
  #wrap(action: string, error: unknown): Error {
    const message = error instanceof Error ? error.message : String(error);
    const state = sqlState(error);
    const text = `${action} in ${this.#where}: ${
      state ? `${message} (SQLSTATE ${state})` : message
    }`;
    if (this.#ended) return new TransientError("the lease store is closed", { cause: error });
    if (isPermanent(state)) return new Error(text, { cause: error });
    return new TransientError(text, { cause: error });
  }

  /** Sets the expiry timer for `at` (ms since the epoch), replacing a later one. */
  #armExpiry(at: number): void {
    if (this.#closed) return;
    clearTimeout(this.#expiryTimer);
    this.#expiryTimer = undefined;
    this.#expiryAt = at;
    if (at === Infinity) return;
    const delay = Math.min(Math.max(0, at - this.#now()), MAX_TIMER_MS);
    this.#expiryTimer = setTimeout(() => {
      this.#expiryTimer = undefined;
      this.#expiryAt = Infinity;
      this.#sweep();
    }, delay);
  }

  /** Starts a sweep, or asks the running one to go again when it is done. */
  #sweep(): void {
    if (this.#closed) return;
    if (this.#sweeping) {
      this.#sweepAgain = true;
      return;
    }
    this.#sweeping = this.#runSweep().finally(() => {
      this.#sweeping = undefined;
      if (this.#sweepAgain) {
        this.#sweepAgain = false;
        this.#sweep();
      }
    });
  }

  /**
   * Reclaims every due lease no other transaction holds, announces each,
   * prunes history, then arms the timer on the earliest remaining expiry.
   */
  async #runSweep(): Promise<void> {
    const now = this.#now();
    let next: number | null;
    try {
      const expired: LeaseRow[] = await timed(
        this.#sql`
        SELECT client_id, family, ifname, address, table_id, expires_at, tag, owner, state
        FROM table_allocator_expire(${now}::bigint, ${now - this.#historyRetentionMs}::bigint)`,
        this.#queryTimeoutMs,
      );
      // Committed: announce before anything else can fail.
      for (const row of expired) this.#announce(toLease(row));
      [{ next }] = await timed(
        this.#sql`
        SELECT MIN(expires_at) AS next FROM leases WHERE state = 'bound'`,
        this.#queryTimeoutMs,
      );
    } catch {
      // The database is unreachable or busy: try again soon (the periodic
      // sweep would too, but an exact expiry should not wait for it).
      if (!this.#closed) this.#armExpiry(Math.min(this.#expiryAt, now + SWEEP_FAILURE_RETRY_MS));
      return;
    }
    if (this.#closed) return;
    // Leases still due were held by another transaction: look again shortly.
    const at = next === null ? Infinity : next <= now ? now + SWEEP_RETRY_MS : next;
    if (at < this.#expiryAt || this.#expiryTimer === undefined) this.#armExpiry(at);
  }

  #announce(lease: Lease): void {
    for (const listener of this.#listeners) {
      try {
        listener(lease);
      } catch { /* a failing listener must not stop expiry for the others */ }
    }
  }
}
