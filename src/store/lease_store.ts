/**
 * The lease storage API: a map from client id to that client's leases (a
 * client may hold several, history included), read-modify-written with an
 * opaque token for optimistic concurrency: a lookup hands out the token, an
 * update with a stale one fails and is redone (the shape proposed for
 * coredhcp's lease storage, coredhcp/coredhcp#111). Backends implement
 * {@link LeaseStore}; consumers (the server's daemon, other programs) use
 * only this interface; `docs/api.md` describes it with examples.
 *
 * A consumer's loop:
 *
 * ```ts
 * const { leases, token } = await store.lookup(clientId);
 * const next = leases.length ? [{ ...leases[0], expiresAt: Date.now() + 3600_000 }] : [];
 * try {
 *   await store.update(clientId, next, token); // durable when this resolves
 * } catch (error) {
 *   if (error instanceof ConcurrencyError) {} // token stale: look up again and redo
 *   if (error instanceof TransientError) {} // nothing written: retry later
 * }
 * ```
 *
 * @module
 */

import type { AddrFamily } from "../net/family.ts";
import type { Identity } from "../protocol/v1.ts";

/**
 * Where a lease stands, stored with it (see `docs/leases.md`):
 *
 * - `bound`: the identity holds the table until `expiresAt`.
 * - `released`: the identity gave it back; kept as history, the table is free.
 * - `expired`: not refreshed in time; kept as history, the table is free.
 * - `reserved`: a reservation: the table is held for the identities its
 *   selector (`ifname`, `address` or `*`, `family`) names, and never given
 *   to anyone else. Its owner's lease is a `bound` lease of the same table.
 *
 * At most one `bound` and one `reserved` lease exist per (family, table).
 */
export type LeaseState = "bound" | "released" | "expired" | "reserved";

/** Every state, for validation. */
export const LEASE_STATES: readonly LeaseState[] = ["bound", "released", "expired", "reserved"];

/** Whether a lease in this state holds its table. */
export function holdsTable(state: LeaseState): boolean {
  return state === "bound" || state === "reserved";
}

/** One lease: a table held by an identity until `expiresAt`. */
export interface Lease {
  /** The address family of the identity. */
  family: AddrFamily;
  /** The interface name of the identity. */
  ifname: string;
  /** The address; `*` in a reservation that covers every address of the interface. */
  address: string;
  /** The routing table number. */
  table: number;
  /** Wall-clock expiry, in milliseconds since the epoch (0 for `reserved`). */
  expiresAt: number;
  /** The tag the client sent, if any. */
  tag: string | undefined;
  /** The consumer that wrote the lease (e.g. `table-allocator-server`). */
  owner: string;
  /**
   * The uid that took the lease, as the kernel vouched for it
   * (SCM_CREDENTIALS): only it and root may refresh or release it. 0 for
   * root, reservations, and leases stored before uids were (see
   * `docs/security.md`).
   */
  uid: number;
  /** Where the lease stands: bound, history (released, expired) or a reservation. */
  state: LeaseState;
}

/** The tables `first` to `last`, both included. */
export type TableRun = [first: number, last: number];

/** An opaque handle from {@link LeaseStore.lookup}, good for one update. */
export interface LeaseToken {
  /** The client id the token was issued for. */
  readonly clientId: string;
  /** Brand: only stores make tokens. */
  readonly __leaseToken: unique symbol;
}

/** What {@link LeaseStore.lookup} returns. */
export interface LookupResult {
  /** The client's leases, every state. */
  leases: Lease[];
  /** The token for one update of this client. */
  token: LeaseToken;
}

/** One page of {@link LeaseStore.list}. */
export interface LeasePage {
  /** The leases of this page, in client-id and table order. */
  leases: Lease[];
  /** Pass as `after` to get the next page; undefined on the last page. */
  next: string | undefined;
}

/** Options of {@link LeaseStore.list}. */
export interface ListOptions {
  /** Start after this cursor (from a previous page). */
  after?: string | undefined;
  /** Page size (default 1000). */
  limit?: number | undefined;
  /** Only leases in this state (or these states). */
  state?: LeaseState | readonly LeaseState[] | undefined;
  /** Only leases of this family. */
  family?: AddrFamily | undefined;
  /** Only leases of this interface. */
  ifname?: string | undefined;
  /** Only leases of this table. */
  table?: number | undefined;
  /** Only leases this consumer wrote (a consumer keeping to its own leases). */
  owner?: string | undefined;
  /** Only leases taken by this uid. */
  uid?: number | undefined;
}

/**
 * Receives each lease the store reclaimed because it expired, in state
 * `expired` (it stays in the store as history).
 */
export type ExpiryListener = (lease: Lease) => void;

/**
 * The update lost a race. `kind` says which: `stale`, another update or an
 * expiry changed the client's leases since the lookup (or the token was
 * used); `taken`, another client holds a table the update wanted (a store
 * shared with other writers). Either way: look up again and redo the change.
 */
export class ConcurrencyError extends Error {
  /** Builds the error for `clientId`. */
  constructor(
    readonly clientId: string,
    message = `leases of ${clientId} changed since the lookup`,
    readonly kind: "stale" | "taken" = "stale",
  ) {
    super(message);
    this.name = "ConcurrencyError";
  }
}

/**
 * The store could not complete the operation (database locked, disk full,
 * connection lost). Nothing is known to be written (after a lost answer the
 * commit may have happened); the token stays valid, and its version check
 * makes the retry safe either way.
 */
export class TransientError extends Error {
  /** Builds the error, keeping the backend's error as the cause. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TransientError";
  }
}

/**
 * The store can make nothing durable any more, and will not again: its
 * database file was deleted or replaced under it. Every call fails with
 * this error from then on; the process should stop (and be restarted on
 * a fresh database), since anything it acknowledged would be lost.
 */
export class StoreLostError extends Error {
  /** Builds the error; the message says what happened to the database. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StoreLostError";
  }
}

/**
 * The `after` cursor given to {@link LeaseStore.list} is not one a page
 * returned as `next`. A TypeError: the caller passed something else.
 */
export class BadCursorError extends TypeError {
  /** Builds the error for the cursor given. */
  constructor(readonly cursor: string, options?: ErrorOptions) {
    super(`the cursor ${JSON.stringify(cursor)} is not from list()`, options);
    this.name = "BadCursorError";
  }
}

/** Options of {@link LeaseStore.flush}. */
export interface FlushOptions {
  /**
   * The caller has other work while the disk works (a server with more
   * requests waiting): a store may then wait for the disk off the calling
   * thread. Without it a store may block the thread for the sync, which is
   * quicker when nothing else waits. A function is asked only when there
   * is a sync to place, before it starts (a commit of releases alone has
   * none in the SQLite store).
   */
  background?: boolean | (() => boolean);
  /**
   * Called as the commit's updates resolve (it is as durable as
   * {@link LeaseStore.update} promises: synced, or committed when it holds
   * no table), with their promises as update() returned them, before any
   * reaction to them runs: the caller may answer for them at once. Not
   * called for a commit that failed; a store may not call it at all (the
   * promises say the same, later).
   */
  durable?: (updates: ReadonlySet<Promise<void>>) => void;
}

/**
 * Whether a store that has a sync to place should run it off the calling
 * thread ({@link FlushOptions.background}): asks the function, if that is
 * what the caller gave, now.
 */
export function syncInBackground(options: FlushOptions = {}): boolean {
  const { background } = options;
  return typeof background === "function" ? background() : background === true;
}

/** Storage of leases, keyed by client id. */
export interface LeaseStore {
  /**
   * Returns the client's leases, in every state (history included), and a
   * token for one {@link update}.
   */
  lookup(clientId: string): Promise<LookupResult>;
  /** Returns the client's leases without a token (read only). */
  peek(clientId: string): Promise<Lease[]>;
  /**
   * Replaces the client's leases with `leases` (empty: forget them). A
   * lease that holds a table (`bound`, `reserved`) must not collide with
   * another client's lease of the same state, family and table: that is a
   * {@link ConcurrencyError}. Resolves once the change is durable; an
   * update that writes no table-holding lease (a release, history) may
   * resolve once committed, to become durable with the next durable commit
   * (a crash in between brings the lease back until it expires, and never
   * lets a table be leased twice). Rejects with {@link ConcurrencyError}
   * (token stale, or table taken) or {@link TransientError}. The token is
   * used up either way, except after a TransientError.
   */
  update(clientId: string, leases: Lease[], token: LeaseToken): Promise<void>;
  /** Discards a token that will not be used for an update. */
  releaseToken(token: LeaseToken): void;
  /**
   * A lookup is likely soon: the daemon is about to wait for the next
   * request of the one client it has just answered. A store may get ready
   * for it now, while that client works rather than while it waits. Never
   * throws: a failure is the next lookup's to report.
   */
  expectLookup?(): void;
  /**
   * Commits every update issued so far in one transaction. Stores group
   * concurrent updates themselves; calling this makes the commit happen now.
   * Resolves once the commit is durable (its updates have resolved).
   */
  flush(options?: FlushOptions): Promise<void>;
  /**
   * The store's commits become durable in the order they were made, and
   * {@link flush} makes its COMMIT before it returns (only the wait for
   * the disk may remain): a later commit's durability implies every
   * earlier one's, and a failed sync fails every commit after it. A caller
   * may then issue the next updates and flush again while an earlier
   * flush still waits. Optional; absent, flush one batch at a time.
   */
  readonly commitsInOrder?: boolean;
  /**
   * Leases in client-id order, one page at a time, optionally filtered.
   * Rejects with a {@link BadCursorError} for an `after` that no page
   * returned, and a RangeError for a `limit` that is not a positive integer.
   */
  list(options?: ListOptions): Promise<LeasePage>;
  /**
   * `[family, table]` of every lease that holds its table (`bound`,
   * `reserved`; a table may appear twice): what an allocator must mark taken.
   */
  usedTables(): Promise<Array<[AddrFamily, number]>>;
  /**
   * How many `bound` leases `uid` holds (the per-uid cap of the server's
   * policy), counted on an index of non-root leases: cheap for any uid but 0.
   */
  boundCount(uid: number): Promise<number>;
  /**
   * The tables of the `bound` leases by family, as runs of consecutive
   * tables in ascending order: the compact form of what an allocator marks
   * taken at start (reservations, listed by {@link list}, are not in it).
   */
  boundTables(): Promise<Map<AddrFamily, TableRun[]>>;
  /** Registers a listener for reclaimed leases; returns the unregister function. */
  onExpire(listener: ExpiryListener): () => void;
  /**
   * Registers a listener told once when the store is lost for good (a
   * {@link StoreLostError}); returns the unregister function. Optional: a
   * store that cannot be lost (a server's database) need not have it.
   */
  onFatal?(listener: (error: StoreLostError) => void): () => void;
  /** Finishes pending work and closes the store; safe to call twice. */
  close(): Promise<void>;
}

/**
 * A bound lease given back at `endedAt`: state `released`, kept as
 * history, its `expiresAt` the time it ended.
 */
export function releasedAt(lease: Lease, endedAt: number): Lease {
  return { ...lease, state: "released", expiresAt: endedAt };
}

/** The client id of an identity: `family/ifname/address`. */
export function clientIdOf(identity: Identity): string {
  return `${identity.family}/${identity.ifname}/${identity.address}`;
}

/** The client id of a reservation: `reserved/family/ifname/address` (address may be `*`). */
export function reservationIdOf(
  selector: { family: AddrFamily; ifname: string; address: string },
): string {
  return `reserved/${selector.family}/${selector.ifname}/${selector.address}`;
}

/** Every lease a filter selects, page by page (`after` and `limit` are the helper's). */
export async function* listAll(
  store: LeaseStore,
  filter: Omit<ListOptions, "after" | "limit"> = {},
): AsyncGenerator<Lease> {
  let after: string | undefined;
  do {
    const page = await store.list({ ...filter, after, limit: 1000 });
    yield* page.leases;
    after = page.next;
  } while (after);
}

/**
 * Read-modify-writes one client's leases and commits at once: `change`
 * gets the stored leases and returns the new ones. Resolves with the
 * stored ones once the change is committed; rejects as
 * {@link LeaseStore.update} does.
 */
export async function commitChange(
  store: LeaseStore,
  clientId: string,
  change: (leases: Lease[]) => Lease[],
): Promise<Lease[]> {
  const { leases, token } = await store.lookup(clientId);
  const write = store.update(clientId, change(leases), token);
  await store.flush().catch(() => {/* the write's promise carries the failure */});
  await write;
  return leases;
}
