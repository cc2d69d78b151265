/**
 * The daemon's decisions, apart from its loop: what to do with one request
 * or release, given the identity's stored leases, the allocation and the
 * time. Pure: nothing here reads a clock, touches the store or changes the
 * allocation; the outcome says what the daemon is to do.
 *
 * - `reply`: answer at once (an error, or a release of nothing), no write.
 * - `write`: write these leases; once durable, give back the `ended`
 *   tables, tell the observers of the `events` and send the `answer`. The
 *   `claim`, if any, is the table taken now and given back on failure.
 * - `endHolds` (on a reply or a write, only when there are some): tables
 *   held for the identity whose hold its message ends, confirmed by its
 *   release, or no longer needed since it asked again.
 * - `retry`: carry the datagram to the next pass, with the counters of the
 *   races it lost, after a rebuild of the allocation when `rebuild`.
 *
 * @module
 */

import type { AddrFamily } from "../net/family.ts";
import { familyName } from "../net/family.ts";
import { Command, type ErrorCode, type Request } from "../protocol/v1.ts";
import type { AllocationView, Choice, Hold } from "../allocator/allocation.ts";
import { ConcurrencyError, type Lease, releasedAt } from "../store/lease_store.ts";
import { errorMessage } from "../util/errors.ts";
import type { ClientOrigin, LeaseEvent } from "./events.ts";

/** The lease owner the server writes. */
export const SERVER_OWNER = "table-allocator-server";
/** A request that loses an optimistic-concurrency race is retried this often. */
export const MAX_ATTEMPTS = 5;
/**
 * With a shared store, a fresh table another server took meanwhile is not
 * the request's fault: such collisions are retried this often on top (each
 * retry follows a rebuild of the allocation, so they end quickly).
 */
export const MAX_COLLISIONS = 32;
/**
 * With a shared store, a request that finds its pool full waits for a
 * rebuild this often before it is answered `pool_exhausted`. Once is not
 * enough: the tables marked taken after collisions stay marked until a
 * rebuild, and those marked while a rebuild ran are marked again in the
 * view it makes, though the other server may have freed them since.
 */
export const MAX_EXHAUSTED_REBUILDS = 2;

/** The races a request lost so far (1 and 0 on its first pass). */
export interface Races {
  attempt: number;
  collisions: number;
}

/** The server's settings a decision depends on. */
export interface DecisionPolicy {
  /** Lease lifetime in ms. */
  leaseMs: number;
  /** Families with pools; a request of another family is refused. */
  families: readonly AddrFamily[];
  /** Other servers write to the same store: a full pool may not be full. */
  sharedStore: boolean;
  /** Bound leases a non-root uid may hold (0: none); root has no cap. */
  maxLeasesPerUid: number;
}

/** What one decision reads. */
export interface DecisionInput extends Races {
  /** The request, where it came from and the sender's kernel-verified credentials. */
  origin: ClientOrigin;
  /** The identity's stored leases, every state. */
  leases: readonly Lease[];
  allocation: AllocationView;
  /** Wall clock, ms since the epoch. */
  now: number;
  /**
   * Bound leases the sender's uid holds, counting those granted earlier in
   * this pass; needed for a new lease of a non-root uid (the cap).
   */
  uidLeases?: number | undefined;
}

/** What to answer the client. */
export type Answer =
  /** cmd 2 with the table and its expiry (wall clock; the daemon converts it). */
  | { kind: "lease"; table: number; expiresAt: number }
  /** cmd 2 with table 0: a release, acknowledged. */
  | { kind: "released" }
  /** cmd 3: why the request could not be served. */
  | { kind: "error"; code: ErrorCode; message: string };

/** What the daemon is to do with one request. */
export type Decision =
  | { kind: "reply"; answer: Answer; events: LeaseEvent[]; endHolds?: Hold[] }
  | {
    kind: "write";
    leases: Lease[];
    claim: Choice | undefined;
    ended: Lease[];
    answer: Answer;
    events: LeaseEvent[];
    endHolds?: Hold[];
  }
  | { kind: "retry"; races: Races; rebuild: boolean };

/** `{ endHolds }` when the identity has a held table, to spread into a decision. */
function endingHold(hold: Hold | undefined): { endHolds?: Hold[] } {
  return hold ? { endHolds: [hold] } : {};
}

/** After a write failed: retry it, or answer; and what the failure says about the table. */
export type FailureDecision =
  & (
    | { kind: "retry"; races: Races }
    | { kind: "reply"; answer: Answer }
  )
  & {
    /** Another server may hold the claimed table: mark it taken until the next rebuild. */
    markTaken: boolean;
    /** Rebuild the allocation before the next pass. */
    rebuild: boolean;
  };

/** An error answer. */
export function refusal(code: ErrorCode, message: string): Answer {
  return { kind: "error", code, message };
}

/** The answer to a request the store could not serve. */
export function storeFailure(reason: unknown): Answer {
  return refusal("store_failure", `lease store failure: ${errorMessage(reason)}`);
}

/**
 * Refuses, before any lookup, a request for a family this server has no
 * pool for; undefined when the request may go on. Releases always may: a
 * release of nothing is acknowledged anyway.
 */
export function admit(request: Request, policy: DecisionPolicy): Answer | undefined {
  if (request.cmd !== Command.REQUEST || policy.families.includes(request.identity.family)) {
    return undefined;
  }
  const family = request.identity.family;
  return refusal(
    "family_disabled",
    `address family ${family} (${familyName(family)}) is not enabled on this server`,
  );
}

/**
 * Why the sender may not refresh or release `lease`, or undefined when it
 * may: only the uid that took a lease, or root, may (kernel-verified
 * credentials; see `docs/security.md`).
 */
export function ownershipRefusal(
  lease: Lease,
  uid: number | undefined,
  action: "refresh" | "release",
): Answer | undefined {
  if (uid === 0 || uid === lease.uid) return undefined;
  return refusal(
    "not_permitted",
    `the lease of ${lease.ifname} ${lease.address} (${
      familyName(lease.family)
    }) belongs to uid ${lease.uid}; ${
      uid === undefined ? "a sender without credentials" : `uid ${uid}`
    } may not ${action} it`,
  );
}

/**
 * Why the sender may not take a new lease, or undefined when it may: root
 * always may; another uid while it holds fewer than `max_leases_per_uid`.
 */
export function capRefusal(
  uid: number | undefined,
  held: number | undefined,
  max: number,
): Answer | undefined {
  if (uid === 0) return undefined;
  if (uid === undefined) {
    return refusal(
      "not_permitted",
      "the request carried no credentials: only root may take leases",
    );
  }
  if (max === 0) {
    return refusal(
      "not_permitted",
      `max_leases_per_uid is 0: only root may take leases; uid ${uid} may not`,
    );
  }
  if (held === undefined || held < max) return undefined;
  return refusal(
    "not_permitted",
    `uid ${uid} holds ${held} leases, the most max_leases_per_uid allows`,
  );
}

/**
 * Whether `uid` may take back or confirm a held table: root, or the uid of
 * the lease an admin release ended. A table held at start because the
 * kernel's rules still route through it is root's (only root installs
 * rules): another user's request or release for its identity would hand
 * the table on, or free it, while those rules are in place.
 */
function mayEndHold(hold: Hold, uid: number | undefined): boolean {
  return uid === 0 || (hold.uid !== undefined && uid === hold.uid);
}

/** Decides a request or a release. */
export function decide(input: DecisionInput, policy: DecisionPolicy): Decision {
  return input.origin.request.cmd === Command.REQUEST
    ? decideRequest(input, policy)
    : decideRelease(input);
}

/**
 * A request: refresh the identity's lease (same table), or give it a
 * table: its reservation's, else the lowest free one of the first pool
 * that serves it. A reservation wins over a lease on another table: the
 * owner moves to its reserved table when that is free (the client moves
 * its rules). With a shared store, a full pool is looked at again after a
 * rebuild, up to {@link MAX_EXHAUSTED_REBUILDS} times, since another
 * server may have freed tables. Only the lease's uid or root may refresh
 * it; a new lease of a non-root uid counts against its cap.
 */
function decideRequest(input: DecisionInput, policy: DecisionPolicy): Decision {
  const { origin, leases, allocation } = input;
  const { identity, tag } = origin.request;
  const uid = origin.credentials?.uid;
  const existing = leases.find((l) => l.state === "bound");
  const refused = existing
    ? ownershipRefusal(existing, uid, "refresh")
    : capRefusal(uid, input.uidLeases, policy.maxLeasesPerUid);
  if (refused) return { kind: "reply", answer: refused, events: [] };
  let claim: Choice | undefined;
  if (!existing) {
    const proposed = allocation.propose(identity, tag);
    if ("code" in proposed) {
      if (
        proposed.code === "pool_exhausted" && policy.sharedStore &&
        input.attempt <= MAX_EXHAUSTED_REBUILDS
      ) {
        return {
          kind: "retry",
          races: { attempt: input.attempt + 1, collisions: input.collisions },
          rebuild: true,
        };
      }
      return { kind: "reply", answer: refusal(proposed.code, proposed.message), events: [] };
    }
    if (proposed.kind === "held" && !mayEndHold(proposed.hold, uid)) {
      return {
        kind: "reply",
        answer: refusal(
          "not_permitted",
          `table ${proposed.table} is held for this identity's holder (${
            proposed.hold.uid === undefined ? "root" : `uid ${proposed.hold.uid} or root`
          }); uid ${uid ?? "unknown"} may not take it`,
        ),
        events: [],
      };
    }
    claim = proposed;
  } else {
    const reservation = allocation.reservationFor(identity);
    if (
      reservation && reservation.table !== existing.table &&
      !allocation.isReservedBound(reservation.family, reservation.table)
    ) {
      claim = { kind: "reservation", table: reservation.table, reservation };
    }
  }
  const table = claim?.table ?? existing!.table;
  const expiresAt = input.now + policy.leaseMs;
  const lease: Lease = {
    ...identity,
    table,
    expiresAt,
    tag: tag ?? existing?.tag,
    owner: SERVER_OWNER,
    state: "bound",
    // A lease stays its taker's, also when root refreshes it.
    uid: existing?.uid ?? uid!,
  };
  const moved = existing !== undefined && existing.table !== table ? existing : undefined;
  return {
    kind: "write",
    leases: [lease],
    claim,
    ended: moved ? [moved] : [],
    answer: { kind: "lease", table, expiresAt },
    events: [{
      kind: existing ? (moved ? "moved" : "refreshed") : "granted",
      lease,
      previousTable: moved?.table,
      pool: claim?.kind === "pool" ? claim.pool.name : undefined,
      reserved: claim?.kind === "reservation",
      held: claim?.kind === "held" ? true : undefined,
      origin,
    }],
    // A holder that still has a lease elsewhere needs no held table any more.
    ...(existing ? endingHold(allocation.heldFor(identity)) : {}),
  };
}

/**
 * A release: the identity's bound leases become history (kept until the
 * retention passes); acknowledged even when it has none. Only the lease's
 * uid or root may release it.
 */
function decideRelease(input: DecisionInput): Decision {
  const { origin } = input;
  const bound = input.leases.filter((l) => l.state === "bound");
  const uid = origin.credentials?.uid;
  for (const lease of bound) {
    const refused = ownershipRefusal(lease, uid, "release");
    if (refused) return { kind: "reply", answer: refused, events: [] };
  }
  // The release is also the holder's confirmation that its rules are gone.
  const hold = input.allocation.heldFor(origin.request.identity);
  const held = endingHold(hold && mayEndHold(hold, uid) ? hold : undefined);
  if (bound.length === 0) {
    return {
      kind: "reply",
      answer: { kind: "released" },
      events: [{ kind: "released", lease: undefined, origin }],
      ...held,
    };
  }
  const history = bound.map((l) => ({ ...releasedAt(l, input.now), owner: SERVER_OWNER }));
  return {
    kind: "write",
    leases: history,
    claim: undefined,
    ended: bound,
    answer: { kind: "released" },
    events: history.map((lease) => ({ kind: "released", lease, origin })),
    ...held,
  };
}

/**
 * A write failed with `error`. A lost race (ConcurrencyError) is retried:
 * with a shared store a table another server took (`taken`) up to
 * {@link MAX_COLLISIONS} times, any race up to {@link MAX_ATTEMPTS}
 * attempts; anything else is a `store_failure` answer. A shared store's
 * race on a claimed table also marks that table taken and asks for a
 * rebuild, since the other server is likely ahead on the next tables too.
 */
export function decideFailure(
  error: unknown,
  races: Races,
  claim: Choice | undefined,
  sharedStore: boolean,
): FailureDecision {
  const race = error instanceof ConcurrencyError;
  const mark = claim !== undefined && sharedStore && race;
  const flags = { markTaken: mark, rebuild: mark };
  if (sharedStore && race && error.kind === "taken" && races.collisions < MAX_COLLISIONS) {
    return { kind: "retry", races: { ...races, collisions: races.collisions + 1 }, ...flags };
  }
  if (race && races.attempt < MAX_ATTEMPTS) {
    return { kind: "retry", races: { ...races, attempt: races.attempt + 1 }, ...flags };
  }
  return { kind: "reply", answer: storeFailure(error), ...flags };
}
