import { assertEquals } from "../../tests/helpers/assert.ts";
import type { PoolConfig } from "../../config/pools.ts";
import { Allocation, type Hold } from "../allocator/allocation.ts";
import { Command, type Request } from "../protocol/v1.ts";
import { ConcurrencyError, type Lease, TransientError } from "../store/lease_store.ts";
import {
  admit,
  decide,
  decideFailure,
  type Decision,
  type DecisionPolicy,
  type FailureDecision,
  MAX_ATTEMPTS,
  MAX_COLLISIONS,
  refusal,
  SERVER_OWNER,
} from "./decide.ts";
import type { ClientOrigin } from "./events.ts";

const NOW = 1_700_000_000_000;
const LEASE_MS = 3600_000;
const POOLS: PoolConfig[] = [
  { name: "default", family: 2, ranges: [{ first: 100, last: 102 }], tags: [], ifnames: [] },
];
const POLICY: DecisionPolicy = {
  leaseMs: LEASE_MS,
  families: [2],
  sharedStore: false,
  maxLeasesPerUid: 8,
};
const SHARED: DecisionPolicy = { ...POLICY, sharedStore: true };

const ME = { family: 2 as const, ifname: "eth1", address: "10.0.0.1" };
const sender = new Uint8Array([1, 0, 0, 116]);
const credentials = { pid: 812, uid: 1000, gid: 1000 };

function origin(cmd: Request["cmd"], tag?: string, identity = ME): ClientOrigin {
  return { kind: "client", request: { cmd, identity, tag }, sender, credentials };
}
const request = (tag?: string) => origin(Command.REQUEST, tag);
const release = () => origin(Command.RELEASE);
/** The same datagram, sent by another uid. */
const asUid = (o: ClientOrigin, uid: number): ClientOrigin => ({
  ...o,
  credentials: { pid: 900, uid, gid: uid },
});
const notPermitted = (message: string) => ({
  kind: "reply",
  answer: { kind: "error", code: "not_permitted", message },
  events: [],
});

const bound = (table: number, tag?: string): Lease => ({
  ...ME,
  table,
  expiresAt: NOW + 60_000,
  tag,
  owner: SERVER_OWNER,
  state: "bound",
  uid: credentials.uid,
});
const reserved = (table: number): Lease => ({
  family: 2,
  ifname: "eth1",
  address: "*",
  table,
  expiresAt: 0,
  tag: undefined,
  owner: "config",
  uid: 0,
  state: "reserved",
});
const fresh = (table: number, tag?: string): Lease => ({
  ...bound(table, tag),
  expiresAt: NOW + LEASE_MS,
});

const held = (table: number, address = ME.address): Hold => ({
  family: 2 as const,
  table,
  address,
  ifname: undefined,
  until: NOW + 5000,
  reason: "readiness" as const,
});

interface Case {
  name: string;
  origin: ClientOrigin;
  /** Tables held (free tables, held for an address). */
  holds?: Hold[];
  leases?: Lease[];
  /** Reservations in the store. */
  reservations?: Lease[];
  /** Tables held in the store (usedTables()). */
  used?: Array<[2, number]>;
  policy?: DecisionPolicy;
  attempt?: number;
  /** Bound leases the sender's uid holds. */
  uidLeases?: number;
  /** The decision, with a claim shown as `kind:table` and events without their origin. */
  expected: unknown;
}

const CASES: Case[] = [
  {
    name: "a first request gets the lowest free table of its pool",
    origin: request("wan"),
    used: [[2, 100]],
    expected: {
      kind: "write",
      leases: [fresh(101, "wan")],
      claim: "pool:101",
      ended: [],
      answer: { kind: "lease", table: 101, expiresAt: NOW + LEASE_MS },
      events: [{ kind: "granted", lease: fresh(101, "wan"), pool: "default", reserved: false }],
    },
  },
  {
    name: "a request from the holder refreshes its table and keeps its tag",
    origin: request(),
    leases: [{ ...bound(102, "wan"), state: "released" }, bound(101, "wan")],
    used: [[2, 101]],
    expected: {
      kind: "write",
      leases: [fresh(101, "wan")],
      claim: undefined,
      ended: [],
      answer: { kind: "lease", table: 101, expiresAt: NOW + LEASE_MS },
      events: [{ kind: "refreshed", lease: fresh(101, "wan"), reserved: false }],
    },
  },
  {
    name: "a holder whose reservation is free moves to it",
    origin: request(),
    leases: [bound(100)],
    reservations: [reserved(102)],
    used: [[2, 100], [2, 102]],
    expected: {
      kind: "write",
      leases: [fresh(102)],
      claim: "reservation:102",
      ended: [bound(100)],
      answer: { kind: "lease", table: 102, expiresAt: NOW + LEASE_MS },
      events: [{ kind: "moved", lease: fresh(102), previousTable: 100, reserved: true }],
    },
  },
  {
    name: "a holder whose reserved table another identity holds stays where it is",
    origin: request(),
    leases: [bound(100)],
    reservations: [reserved(102)],
    used: [[2, 100], [2, 102], [2, 102]],
    expected: {
      kind: "write",
      leases: [fresh(100)],
      claim: undefined,
      ended: [],
      answer: { kind: "lease", table: 100, expiresAt: NOW + LEASE_MS },
      events: [{ kind: "refreshed", lease: fresh(100), reserved: false }],
    },
  },
  {
    name: "a first request with a free reservation gets the reserved table",
    origin: request(),
    reservations: [reserved(102)],
    used: [[2, 102]],
    expected: {
      kind: "write",
      leases: [fresh(102)],
      claim: "reservation:102",
      ended: [],
      answer: { kind: "lease", table: 102, expiresAt: NOW + LEASE_MS },
      events: [{ kind: "granted", lease: fresh(102), reserved: true }],
    },
  },
  {
    name: "a request no pool serves is refused with no_pool",
    origin: origin(Command.REQUEST, undefined, { ...ME, family: 10 as 2 }),
    expected: {
      kind: "reply",
      answer: {
        kind: "error",
        code: "no_pool",
        message: "no pool of family inet6 serves ifname eth1 without a tag",
      },
      events: [],
    },
  },
  {
    name: "a full pool is refused with pool_exhausted",
    origin: request(),
    used: [[2, 100], [2, 101], [2, 102]],
    expected: {
      kind: "reply",
      answer: {
        kind: "error",
        code: "pool_exhausted",
        message: "all 3 tables of pool default (100-102) are taken",
      },
      events: [],
    },
  },
  {
    name: "with a shared store, a full pool is looked at again after a rebuild",
    origin: request(),
    used: [[2, 100], [2, 101], [2, 102]],
    policy: SHARED,
    expected: { kind: "retry", races: { attempt: 2, collisions: 0 }, rebuild: true },
  },
  {
    name: "with a shared store, a pool still full after the first rebuild waits for another",
    origin: request(),
    used: [[2, 100], [2, 101], [2, 102]],
    policy: SHARED,
    attempt: 2,
    expected: { kind: "retry", races: { attempt: 3, collisions: 0 }, rebuild: true },
  },
  {
    name: "with a shared store, a pool still full after the second rebuild is refused",
    origin: request(),
    used: [[2, 100], [2, 101], [2, 102]],
    policy: SHARED,
    attempt: 3,
    expected: {
      kind: "reply",
      answer: {
        kind: "error",
        code: "pool_exhausted",
        message: "all 3 tables of pool default (100-102) are taken",
      },
      events: [],
    },
  },
  {
    name: "a release of nothing is acknowledged without a write",
    origin: release(),
    leases: [{ ...bound(100), state: "expired" }],
    expected: {
      kind: "reply",
      answer: { kind: "released" },
      events: [{ kind: "released" }], // no lease: the release of nothing
    },
  },
  {
    name: "a release turns every bound lease into history and frees its table once durable",
    origin: release(),
    leases: [bound(100), bound(101)],
    used: [[2, 100], [2, 101]],
    expected: {
      kind: "write",
      leases: [100, 101].map((t) => ({ ...bound(t), state: "released", expiresAt: NOW })),
      claim: undefined,
      ended: [bound(100), bound(101)],
      answer: { kind: "released" },
      events: [100, 101].map((t) => ({
        kind: "released",
        lease: { ...bound(t), state: "released", expiresAt: NOW },
      })),
    },
  },
  {
    // Held at start for the kernel's rules, which only root installs: root's to take back.
    name: "a table held for the identity goes to it, before any reservation or pool table",
    origin: asUid(request(), 0),
    reservations: [reserved(100)],
    used: [[2, 100]],
    holds: [held(102), held(101, "10.0.0.9")],
    expected: {
      kind: "write",
      leases: [{ ...fresh(102), uid: 0 }],
      claim: "held:102",
      ended: [],
      answer: { kind: "lease", table: 102, expiresAt: NOW + LEASE_MS },
      events: [{ kind: "granted", lease: { ...fresh(102), uid: 0 }, held: true, reserved: false }],
    },
  },
  {
    name: "another user may not take a table held at start for an identity (its rules are root's)",
    origin: request(),
    holds: [held(102)],
    expected: notPermitted(
      "table 102 is held for this identity's holder (root); uid 1000 may not take it",
    ),
  },
  {
    name: "another user's release does not end a hold made at start",
    origin: release(),
    holds: [held(101)],
    expected: { kind: "reply", answer: { kind: "released" }, events: [{ kind: "released" }] },
  },
  {
    name: "a table held for another identity is not proposed to this one",
    origin: request(),
    holds: [held(100, "10.0.0.9")],
    expected: {
      kind: "write",
      leases: [fresh(101)],
      claim: "pool:101",
      ended: [],
      answer: { kind: "lease", table: 101, expiresAt: NOW + LEASE_MS },
      events: [{ kind: "granted", lease: fresh(101), pool: "default", reserved: false }],
    },
  },
  {
    name: "a release of nothing ends the hold of the identity's table (the holder confirms)",
    origin: asUid(release(), 0),
    holds: [held(101)],
    expected: {
      kind: "reply",
      answer: { kind: "released" },
      events: [{ kind: "released" }],
      endHolds: [held(101)],
    },
  },
  {
    name: "a holder that refreshes a lease elsewhere no longer needs its held table",
    origin: request(),
    leases: [bound(100)],
    used: [[2, 100]],
    holds: [held(102)],
    expected: {
      kind: "write",
      leases: [fresh(100)],
      claim: undefined,
      ended: [],
      answer: { kind: "lease", table: 100, expiresAt: NOW + LEASE_MS },
      events: [{ kind: "refreshed", lease: fresh(100), reserved: false }],
      endHolds: [held(102)],
    },
  },
  {
    name: "another uid may not refresh a lease: not_permitted, nothing written",
    origin: asUid(request(), 65534),
    leases: [bound(100)],
    used: [[2, 100]],
    expected: notPermitted(
      "the lease of eth1 10.0.0.1 (inet) belongs to uid 1000; uid 65534 may not refresh it",
    ),
  },
  {
    name: "another uid may not release a lease",
    origin: asUid(release(), 65534),
    leases: [bound(100)],
    used: [[2, 100]],
    expected: notPermitted(
      "the lease of eth1 10.0.0.1 (inet) belongs to uid 1000; uid 65534 may not release it",
    ),
  },
  {
    name: "root refreshes any lease, which stays its taker's",
    origin: asUid(request(), 0),
    leases: [bound(100)],
    used: [[2, 100]],
    expected: {
      kind: "write",
      leases: [fresh(100)],
      claim: undefined,
      ended: [],
      answer: { kind: "lease", table: 100, expiresAt: NOW + LEASE_MS },
      events: [{ kind: "refreshed", lease: fresh(100), reserved: false }],
    },
  },
  {
    name: "root releases any lease",
    origin: asUid(release(), 0),
    leases: [bound(100)],
    used: [[2, 100]],
    expected: {
      kind: "write",
      leases: [{ ...bound(100), state: "released", expiresAt: NOW }],
      claim: undefined,
      ended: [bound(100)],
      answer: { kind: "released" },
      events: [{ kind: "released", lease: { ...bound(100), state: "released", expiresAt: NOW } }],
    },
  },
  {
    name: "a new lease is its taker's, and a uid below its cap gets one",
    origin: asUid(request(), 65534),
    uidLeases: 7,
    expected: {
      kind: "write",
      leases: [{ ...fresh(100), uid: 65534 }],
      claim: "pool:100",
      ended: [],
      answer: { kind: "lease", table: 100, expiresAt: NOW + LEASE_MS },
      events: [{
        kind: "granted",
        lease: { ...fresh(100), uid: 65534 },
        pool: "default",
        reserved: false,
      }],
    },
  },
  {
    name: "a uid at max_leases_per_uid is refused a new lease",
    origin: request(),
    uidLeases: 8,
    expected: notPermitted("uid 1000 holds 8 leases, the most max_leases_per_uid allows"),
  },
  {
    name: "a uid at its cap still refreshes the leases it holds",
    origin: request(),
    leases: [bound(101)],
    used: [[2, 101]],
    uidLeases: 8,
    expected: {
      kind: "write",
      leases: [fresh(101)],
      claim: undefined,
      ended: [],
      answer: { kind: "lease", table: 101, expiresAt: NOW + LEASE_MS },
      events: [{ kind: "refreshed", lease: fresh(101), reserved: false }],
    },
  },
  {
    name: "root has no cap",
    origin: asUid(request(), 0),
    uidLeases: 1000,
    expected: {
      kind: "write",
      leases: [{ ...fresh(100), uid: 0 }],
      claim: "pool:100",
      ended: [],
      answer: { kind: "lease", table: 100, expiresAt: NOW + LEASE_MS },
      events: [{
        kind: "granted",
        lease: { ...fresh(100), uid: 0 },
        pool: "default",
        reserved: false,
      }],
    },
  },
  {
    name: "max_leases_per_uid 0 refuses every new lease of a non-root uid",
    origin: request(),
    uidLeases: 0,
    policy: { ...POLICY, maxLeasesPerUid: 0 },
    expected: notPermitted("max_leases_per_uid is 0: only root may take leases; uid 1000 may not"),
  },
  {
    name: "an admin release's hold is confirmed by its lease's uid, not by another user",
    origin: asUid(release(), 65534),
    holds: [{ ...held(101), reason: "admin_release", uid: 1000 }],
    expected: { kind: "reply", answer: { kind: "released" }, events: [{ kind: "released" }] },
  },
  {
    name: "an admin release's hold is confirmed by root",
    origin: asUid(release(), 0),
    holds: [{ ...held(101), reason: "admin_release", uid: 1000 }],
    expected: {
      kind: "reply",
      answer: { kind: "released" },
      events: [{ kind: "released" }],
      endHolds: [{ ...held(101), reason: "admin_release", uid: 1000 }],
    },
  },
];

/** A decision in the cases' shorthand: claims as `kind:table`, events without origin. */
function shown(decision: Decision): unknown {
  if (decision.kind === "retry") return decision;
  const events = decision.events.map(({ origin: o, ...rest }) => {
    assertEquals(o, decision.events[0].origin);
    return Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined));
  });
  if (decision.kind === "reply") return { ...decision, events };
  const claim = decision.claim && `${decision.claim.kind}:${decision.claim.table}`;
  return { ...decision, claim, events };
}

for (const c of CASES) {
  Deno.test(`decide(): ${c.name}`, () => {
    const allocation = Allocation.build(POOLS, c.reservations ?? [], c.used ?? []);
    for (const h of c.holds ?? []) allocation.holdFree(h);
    const input = {
      origin: c.origin,
      leases: c.leases ?? [],
      allocation,
      now: NOW,
      attempt: c.attempt ?? 1,
      collisions: 0,
      uidLeases: c.uidLeases,
    };
    const before = JSON.stringify([allocation.pools.pools[0].used, allocation.reservations]);
    const decision = decide(input, c.policy ?? POLICY);
    assertEquals(shown(decision), c.expected);
    if (decision.kind !== "retry") {
      for (const event of decision.events) assertEquals(event.origin, c.origin);
    }
    // Pure: deciding again gives the same outcome, and the allocation is as it was.
    assertEquals(decide(input, c.policy ?? POLICY), decision);
    assertEquals(
      JSON.stringify([allocation.pools.pools[0].used, allocation.reservations]),
      before,
    );
  });
}

Deno.test("admit() refuses requests of a family without pools, never releases", () => {
  const v6 = { ...ME, family: 10 as const, address: "2001:db8::1" };
  assertEquals(admit({ cmd: Command.REQUEST, identity: ME, tag: undefined }, POLICY), undefined);
  assertEquals(admit({ cmd: Command.REQUEST, identity: v6, tag: undefined }, POLICY), {
    kind: "error",
    code: "family_disabled",
    message: "address family 10 (inet6) is not enabled on this server",
  });
  assertEquals(admit({ cmd: Command.RELEASE, identity: v6, tag: undefined }, POLICY), undefined);
});

Deno.test("decideFailure() retries lost races up to their limits and answers the rest", async (t) => {
  const allocation = Allocation.build(POOLS, [], []);
  const claim = allocation.propose(ME, undefined);
  if ("code" in claim) throw new Error("expected a table");
  const stale = new ConcurrencyError("c");
  const taken = new ConcurrencyError("c", "a table of c is leased to another client", "taken");
  const transient = new TransientError("cannot commit: disk I/O error");
  const failure = (message: string) => ({
    kind: "reply" as const,
    answer: refusal("store_failure", `lease store failure: ${message}`),
  });
  const cases: Array<
    [string, unknown, number, number, boolean, boolean, FailureDecision]
  > = [
    // what, error, attempt, collisions, claimed, shared, expected
    ["a stale token is retried", stale, 1, 0, true, false, {
      kind: "retry",
      races: { attempt: 2, collisions: 0 },
      markTaken: false,
      rebuild: false,
    }],
    [
      `a stale token after ${MAX_ATTEMPTS} attempts is a store failure`,
      stale,
      MAX_ATTEMPTS,
      0,
      false,
      false,
      {
        ...failure("leases of c changed since the lookup"),
        markTaken: false,
        rebuild: false,
      },
    ],
    ["a table taken on a private store counts as an attempt", taken, 1, 0, true, false, {
      kind: "retry",
      races: { attempt: 2, collisions: 0 },
      markTaken: false,
      rebuild: false,
    }],
    [
      "a table another server took is marked, rebuilt and retried as a collision",
      taken,
      1,
      0,
      true,
      true,
      {
        kind: "retry",
        races: { attempt: 1, collisions: 1 },
        markTaken: true,
        rebuild: true,
      },
    ],
    [
      `after ${MAX_COLLISIONS} collisions they count as attempts`,
      taken,
      1,
      MAX_COLLISIONS,
      true,
      true,
      {
        kind: "retry",
        races: { attempt: 2, collisions: MAX_COLLISIONS },
        markTaken: true,
        rebuild: true,
      },
    ],
    ["a refresh's lost race on a shared store marks nothing", stale, 1, 0, false, true, {
      kind: "retry",
      races: { attempt: 2, collisions: 0 },
      markTaken: false,
      rebuild: false,
    }],
    ["a transient failure is answered at once", transient, 1, 0, true, true, {
      ...failure("cannot commit: disk I/O error"),
      markTaken: false,
      rebuild: false,
    }],
  ];
  for (const [what, error, attempt, collisions, claimed, shared, expected] of cases) {
    await t.step(what, () => {
      assertEquals(
        decideFailure(error, { attempt, collisions }, claimed ? claim : undefined, shared),
        expected,
      );
    });
  }
});
