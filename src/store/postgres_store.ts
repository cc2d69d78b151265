/**
 * The PostgreSQL {@link LeaseStore}: one database shared by several
 * servers, on several hosts, through the npm package `postgres` (porsager,
 * pinned in `deno.json`; pure JavaScript, pipelined, prepared statements).
 * Its semantics are the SQLite store's; what differs is that concurrency
 * comes from the database, not the process: a version compare-and-swap
 * per client for tokens, one server-side call per group commit, the
 * partial unique indexes for uniqueness, sweeps that split expiry between
 * servers. `docs/postgres.md` has the design and its reasons; the schema
 * is `postgres_schema.ts`, the connection `postgres_connection.ts`.
 *
 * @module
 */

import postgres from "postgres";
import type { AddrFamily } from "../net/family.ts";
import {
  ConcurrencyError,
  type ExpiryListener,
  type FlushOptions,
  holdsTable,
  type Lease,
  type LeasePage,
  type LeaseStore,
  type LeaseToken,
  type ListOptions,
  type LookupResult,
  syncInBackground,
  type TableRun,
  TransientError,
} from "./lease_store.ts";
import {
  closedError,
  DEFAULT_HISTORY_RETENTION_MS,
  discardToken,
  issueToken,
  leaseFromRow,
  type LeaseRow,
  openToken,
  pageLimit,
  pageOf,
  parseCursor,
  runsOf,
  stateFilter,
  type StoreToken,
} from "./core.ts";
import { ExpiryNotifier, ExpiryTimer } from "./expiry.ts";
import {
  connectionOptions,
  isConnectionFailure,
  isPermanent,
  type PostgresStoreConfig,
  sandboxHint,
  sqlState,
  timed,
} from "./postgres_connection.ts";
import { ensureSchema } from "./postgres_schema.ts";
import { errorMessage } from "../util/errors.ts";
import { after, every, sleep, type Timer } from "../util/timer.ts";

export { DEFAULT_HISTORY_RETENTION_MS } from "./core.ts";
export type { PostgresStoreConfig } from "./postgres_connection.ts";
export { SCHEMA_VERSION } from "./postgres_schema.ts";

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

interface Pending {
  token: StoreToken;
  leases: Lease[];
  resolve: () => void;
  reject: (error: Error) => void;
}

/** While the database is unreachable, look for it this often. */
export const PROBE_INTERVAL_MS = 250;
/** How long one look for an unreachable database may take. */
const PROBE_TIMEOUT_MS = 2000;

/** When a sweep left due leases behind (locked by another transaction), retry after this. */
const SWEEP_RETRY_MS = 50;
/** After a failed sweep (database down), retry after this. */
const SWEEP_FAILURE_RETRY_MS = 1000;

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
  #flushTimer: Timer | undefined;
  #expiry: ExpiryTimer;
  #sweepTimer: Timer | undefined;
  /** The sweep running now, if any; a timer firing meanwhile asks for another. */
  #sweeping: Promise<void> | undefined;
  #sweepAgain = false;
  #listeners = new ExpiryNotifier();
  /** No new work is taken (close() was called). */
  #closed = false;
  /** The connections are being shut down: failures from now on are the close's. */
  #ended = false;
  #closing: Promise<void> | undefined;
  /**
   * Set while the database is unreachable: calls fail at once instead of
   * each waiting for a connection attempt, and a probe looks for the
   * database every {@link PROBE_INTERVAL_MS} until it answers.
   */
  #down: { since: number; error: string } | undefined;

  // deno-lint-ignore no-explicit-any
  private constructor(sql: postgres.Sql<any>, where: string, options: PostgresStoreOptions) {
    this.#sql = sql;
    this.#where = where;
    this.#now = options.now ?? Date.now;
    this.#historyRetentionMs = options.historyRetentionMs ?? DEFAULT_HISTORY_RETENTION_MS;
    this.#queryTimeoutMs = options.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS;
    this.#expiry = new ExpiryTimer(this.#now, () => this.#sweep());
    const interval = options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
    this.#sweepTimer = every(interval, () => this.#sweep());
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
      await ensureSchema(sql, options.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS);
    } catch (error) {
      await sql.end({ timeout: 1 }).catch(() => {});
      const message = `Cannot open ${where}: ${errorMessage(error)}${sandboxHint(error)}`;
      // Unreachable now is worth retrying; a refusal (no such database, a
      // wrong password, a newer schema) is not.
      throw isConnectionFailure(error) && !(error instanceof Error && /schema/.test(error.message))
        ? new TransientError(message, { cause: error })
        : new Error(message, { cause: error });
    }
    return new PostgresLeaseStore(sql, where, options);
  }

  async lookup(clientId: string): Promise<LookupResult> {
    if (this.#closed) throw closedError();
    this.#assertUp();
    let rows;
    try {
      // One statement, one snapshot: the version matches the leases read.
      rows = await timed(
        this.#sql`
        SELECT c.version, l.client_id, l.family, l.ifname, l.address, l.table_id,
               l.expires_at, l.tag, l.owner, l.state, l.uid
        FROM (SELECT ${clientId}::text COLLATE "C" AS id) k
        LEFT JOIN lease_clients c ON c.client_id = k.id
        LEFT JOIN leases l ON l.client_id = k.id
        ORDER BY l.table_id`.values(),
        this.#queryTimeoutMs,
      );
    } catch (error) {
      throw this.#wrap(`cannot look up ${clientId}`, error);
    }
    const token = issueToken(this, clientId, (rows[0]?.[0] as number | null) ?? 0);
    // Without leases the join still gives one row, of NULLs after the version.
    const leases = rows.filter((r) => r[1] !== null).map((r) =>
      leaseFromRow(r.slice(1) as LeaseRow)
    );
    return { leases, token };
  }

  async peek(clientId: string): Promise<Lease[]> {
    if (this.#closed) throw closedError();
    this.#assertUp();
    try {
      const rows = await timed(
        this.#sql`
        SELECT client_id, family, ifname, address, table_id, expires_at, tag, owner, state, uid
        FROM leases WHERE client_id = ${clientId} ORDER BY table_id`.values(),
        this.#queryTimeoutMs,
      );
      return (rows as unknown as LeaseRow[]).map(leaseFromRow);
    } catch (error) {
      throw this.#wrap(`cannot look up ${clientId}`, error);
    }
  }

  update(clientId: string, leases: Lease[], leaseToken: LeaseToken): Promise<void> {
    if (this.#closed) return Promise.reject(closedError());
    let token: StoreToken;
    try {
      token = openToken(leaseToken, this, clientId);
    } catch (error) {
      return Promise.reject(error);
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
      this.#flushTimer ??= after(0, () => this.flush().catch(() => {}));
    });
  }

  releaseToken(leaseToken: LeaseToken): void {
    discardToken(leaseToken);
  }

  /**
   * Sends every update queued so far as one batch, after the batch in
   * flight, and resolves once it is committed (rejects when the commit
   * failed; each update's own promise carries its outcome). The commit is
   * always waited for off the calling thread: a batch asks
   * `options.background` all the same, since a caller that gives a
   * function decides there whether it works meanwhile (the daemon drains
   * its socket while the database answers, once commits prove long
   * enough to fill the socket's queue).
   */
  flush(options: FlushOptions = {}): Promise<void> {
    this.#flushTimer?.cancel();
    this.#flushTimer = undefined;
    const batch = this.#queue;
    this.#queue = [];
    if (batch.length > 0) syncInBackground(options);
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
    // Each update as its own JSON text, parsed in its own savepoint: text
    // the database refuses fails that update only (see postgres_schema.ts).
    const payload = JSON.stringify(sorted.map((p) =>
      JSON.stringify({
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
          uid: l.uid,
        })),
      })
    ));
    let statuses: string[];
    try {
      this.#assertUp();
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
    if (nextExpiry < this.#expiry.at) this.#armExpiry(nextExpiry);
  }

  async list(options: ListOptions = {}): Promise<LeasePage> {
    const limit = pageLimit(options);
    if (this.#closed) throw closedError();
    const after = parseCursor(options.after);
    this.#assertUp();
    const states = stateFilter(options.state);
    let rows;
    try {
      // One statement for every filter: a NULL parameter switches its filter off.
      rows = await timed(
        this.#sql`
        SELECT client_id, family, ifname, address, table_id, expires_at, tag, owner, state, uid
        FROM leases
        WHERE (client_id, table_id) > (${after.clientId}::text, ${after.table}::bigint)
          AND (${states}::text IS NULL OR strpos(${states}::text, ',' || state || ',') > 0)
          AND (${options.family ?? null}::integer IS NULL OR family = ${options.family ?? null})
          AND (${options.ifname ?? null}::text IS NULL OR ifname = ${options.ifname ?? null})
          AND (${options.table ?? null}::bigint IS NULL OR table_id = ${options.table ?? null})
          AND (${options.owner ?? null}::text IS NULL OR owner = ${options.owner ?? null})
          AND (${options.uid ?? null}::bigint IS NULL OR uid = ${options.uid ?? null})
        ORDER BY client_id, table_id LIMIT ${limit}::integer`.values(),
        this.#queryTimeoutMs,
      );
    } catch (error) {
      throw this.#wrap("cannot list leases", error);
    }
    return pageOf(rows as unknown as LeaseRow[], limit);
  }

  async usedTables(): Promise<Array<[AddrFamily, number]>> {
    if (this.#closed) throw closedError();
    this.#assertUp();
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

  async boundCount(uid: number): Promise<number> {
    if (this.#closed) throw closedError();
    this.#assertUp();
    try {
      // "uid <> 0" lets the planner use the partial index leases_uid.
      const [row] = await timed(
        uid === 0
          ? this.#sql`SELECT count(*)::integer AS n FROM leases WHERE state = 'bound' AND uid = 0`
          : this.#sql`
            SELECT count(*)::integer AS n FROM leases
            WHERE state = 'bound' AND uid = ${uid}::bigint AND uid <> 0`,
        this.#queryTimeoutMs,
      );
      return row.n as number;
    } catch (error) {
      throw this.#wrap("cannot count leases", error);
    }
  }

  async boundTables(): Promise<Map<AddrFamily, TableRun[]>> {
    if (this.#closed) throw closedError();
    this.#assertUp();
    try {
      const rows = await timed(
        this.#sql`
        SELECT family, json_agg(table_id ORDER BY table_id)::text FROM leases
        WHERE state = 'bound' GROUP BY family`.values(),
        this.#queryTimeoutMs,
      );
      // One JSON text per family: the driver need not know the type of an aggregate.
      return new Map(rows.map((r) => [r[0] as AddrFamily, runsOf(JSON.parse(r[1] as string))]));
    } catch (error) {
      throw this.#wrap("cannot read leased tables", error);
    }
  }

  onExpire(listener: ExpiryListener): () => void {
    return this.#listeners.listen(listener);
  }

  /** Fails at once while the database is known to be unreachable. */
  #assertUp(): void {
    if (!this.#down) return;
    throw new TransientError(
      `${this.#where} is unreachable since ${new Date(this.#down.since).toISOString()} ` +
        `(${this.#down.error}); looking for it every ${PROBE_INTERVAL_MS} ms`,
    );
  }

  /**
   * The database could not be reached: from now on calls fail at once,
   * and a probe looks for it until it answers. No pass of the server waits
   * for a connection attempt meanwhile.
   */
  #markDown(error: unknown): void {
    if (this.#down || this.#closed) return;
    this.#down = { since: this.#now(), error: errorMessage(error) };
    (async () => {
      while (this.#down && !this.#closed) {
        await sleep(PROBE_INTERVAL_MS);
        if (this.#closed) break;
        try {
          await timed(this.#sql`SELECT 1`, PROBE_TIMEOUT_MS);
          this.#down = undefined;
          this.#sweep(); // expiries that came due meanwhile
        } catch (probeError) {
          if (this.#down) this.#down.error = errorMessage(probeError);
        }
      }
    })();
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      // Refuse new work at once; what was issued before is committed.
      this.#closed = true;
      this.#expiry.clear();
      this.#sweepTimer?.cancel();
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
    const message = errorMessage(error);
    const state = sqlState(error);
    const text = `${action} in ${this.#where}: ${
      state ? `${message} (SQLSTATE ${state})` : message
    }`;
    if (this.#ended) return new TransientError(closedError().message, { cause: error });
    if (error instanceof TransientError) return error; // already said (#assertUp)
    if (isPermanent(state)) return new Error(text, { cause: error });
    if (isConnectionFailure(error)) this.#markDown(error);
    return new TransientError(text, { cause: error });
  }

  /** Sets the expiry timer for `at` (ms since the epoch), replacing a later one. */
  #armExpiry(at: number): void {
    if (!this.#closed) this.#expiry.arm(at);
  }

  /** Starts a sweep, or asks the running one to go again when it is done. */
  #sweep(): void {
    if (this.#closed || this.#down) return;
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
      const expired = await timed(
        this.#sql`
        SELECT client_id, family, ifname, address, table_id, expires_at, tag, owner, state, uid
        FROM table_allocator_expire(${now}::bigint, ${now - this.#historyRetentionMs}::bigint)`
          .values(),
        this.#queryTimeoutMs,
      );
      // Committed: announce before anything else can fail.
      for (const row of expired as unknown as LeaseRow[]) {
        this.#listeners.announce(leaseFromRow(row));
      }
      [{ next }] = await timed(
        this.#sql`
        SELECT MIN(expires_at) AS next FROM leases WHERE state = 'bound'`,
        this.#queryTimeoutMs,
      );
    } catch {
      // The database is unreachable or busy: try again soon (the periodic
      // sweep would too, but an exact expiry should not wait for it).
      this.#armExpiry(Math.min(this.#expiry.at, now + SWEEP_FAILURE_RETRY_MS));
      return;
    }
    if (this.#closed) return;
    // Leases still due were held by another transaction: look again shortly.
    const at = next === null ? Infinity : next <= now ? now + SWEEP_RETRY_MS : next;
    if (at < this.#expiry.at || !this.#expiry.armed) this.#armExpiry(at);
  }
}
