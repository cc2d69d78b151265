import { assert, assertEquals } from "../../tests/helpers/assert.ts";
import type { PoolConfig } from "../../config/pools.ts";
import type { Lease } from "../store/lease_store.ts";
import { Allocation, type Choice } from "./allocation.ts";

const POOLS: PoolConfig[] = [
  { name: "wan", family: 2, ranges: [{ first: 100, last: 103 }], tags: ["wan"], ifnames: [] },
  { name: "default", family: 2, ranges: [{ first: 200, last: 202 }], tags: [], ifnames: [] },
];

const reservation = (table: number, ifname: string, address = "*"): Lease => ({
  family: 2,
  ifname,
  address,
  table,
  expiresAt: 0,
  tag: undefined,
  owner: "config",
  uid: 0,
  state: "reserved",
});

const eth = (ifname: string, address: string) => ({ family: 2 as const, ifname, address });

Deno.test("Allocation.build() marks stored tables, reserved ones bound when listed twice, and counts the rest outside", () => {
  const outside: Array<[number, number]> = [];
  const a = Allocation.build(
    POOLS,
    [reservation(201, "eth5"), reservation(900, "eth6")],
    [[2, 100], [2, 201], [2, 900], [2, 900], [2, 555], [10, 100]],
    (family, table) => outside.push([family, table]),
  );
  assertEquals(outside, [[2, 555], [10, 100]]);
  assertEquals(a.outside, 2);
  assertEquals([a.pools.pools[0].used, a.pools.pools[1].used], [1, 1]);
  assertEquals([a.isReservedBound(2, 201), a.isReservedBound(2, 900)], [false, true]);
  assertEquals(a.reservations.map((r) => r.table), [201, 900]);
});

Deno.test("Allocation.fromBound() marks bound runs by family, reserved tables bound, and counts the rest outside", () => {
  const outside: Array<[number, number]> = [];
  const a = Allocation.fromBound(
    POOLS,
    [reservation(201, "eth5"), reservation(900, "eth6")],
    new Map([[2, [[100, 101], [200, 202], [555, 555], [900, 900]]], [10, [[100, 100]]]]),
    (family, table) => outside.push([family, table]),
  );
  assertEquals(outside, [[2, 555], [10, 100]]);
  assertEquals(a.outside, 2);
  assertEquals([a.pools.pools[0].used, a.pools.pools[1].used], [2, 3]);
  assertEquals([a.isReservedBound(2, 201), a.isReservedBound(2, 900)], [true, true]);
  assertEquals((a.propose(eth("eth0", "x"), "wan") as Choice).table, 102);
  assertEquals(a.propose(eth("eth0", "x"), undefined), {
    code: "pool_exhausted",
    message: "all 3 tables of pool default (200-202) are taken",
  });
});

Deno.test("Allocation.fromBound() takes runs over several ranges, and what lies between them is outside", () => {
  const pool: PoolConfig = {
    name: "big",
    family: 10,
    ranges: [{ first: 1, last: 50_000 }, { first: 60_001, last: 110_000 }],
    tags: [],
    ifnames: [],
  };
  const outside: number[] = [];
  const a = Allocation.fromBound(
    [pool],
    [],
    new Map([[10, [[1, 50_001], [60_001, 110_000]]]]),
    (_, table) => outside.push(table),
  );
  assertEquals(outside, [50_001], "in no range: a lease left outside by a config change");
  assertEquals([a.pools.pools[0].used, a.pools.pools[0].free, a.outside], [100_000, 0, 1]);
  assertEquals(a.propose({ family: 10, ifname: "x", address: "::1" }, undefined), {
    code: "pool_exhausted",
    message: "all 100000 tables of pool big (1-50000,60001-110000) are taken",
  });
});

Deno.test("Allocation.propose() names a table without taking it; apply() takes it and undo() gives it back", () => {
  const a = Allocation.build(POOLS, [], []);
  const first = a.propose(eth("eth0", "10.0.0.1"), "wan");
  assertEquals(a.propose(eth("eth0", "10.0.0.1"), "wan"), first, "proposing twice changes nothing");
  assert(!("code" in first));
  assertEquals([first.kind, first.table, a.pools.pools[0].used], ["pool", 100, 0]);
  a.apply(first);
  const second = a.propose(eth("eth0", "10.0.0.2"), "wan") as Choice;
  assertEquals(second.table, 101);
  a.undo(first);
  assertEquals((a.propose(eth("eth0", "10.0.0.3"), "wan") as Choice).table, 100);
  assertEquals((a.propose(eth("eth9", "10.0.0.3"), undefined) as Choice).table, 200);
});

Deno.test("Allocation.propose() prefers an unbound reservation, exact address before *, and refuses with a reason", async (t) => {
  const a = Allocation.build(
    POOLS,
    [reservation(202, "eth5"), reservation(201, "eth5", "10.0.0.5")],
    [[2, 200]],
  );
  const cases: Array<[string, () => unknown, unknown]> = [
    ["the exact address", () => a.propose(eth("eth5", "10.0.0.5"), undefined), {
      kind: "reservation",
      table: 201,
      reservation: reservation(201, "eth5", "10.0.0.5"),
    }],
    ["* for any other address", () => a.propose(eth("eth5", "10.0.0.6"), undefined), {
      kind: "reservation",
      table: 202,
      reservation: reservation(202, "eth5"),
    }],
    ["no pool of the family", () => a.propose({ ...eth("eth0", "x"), family: 10 }, "lte"), {
      code: "no_pool",
      message: "no pool of family inet6 serves ifname eth0 with tag lte",
    }],
    ["a full pool", () => a.propose(eth("eth0", "x"), undefined), {
      code: "pool_exhausted",
      message: "all 3 tables of pool default (200-202) are taken",
    }],
  ];
  for (const [what, run, expected] of cases) {
    await t.step(what, () => assertEquals(run(), expected));
  }
  a.apply(a.propose(eth("eth5", "10.0.0.6"), undefined) as Choice);
  assertEquals(a.isReservedBound(2, 202), true);
  assertEquals(
    a.propose(eth("eth5", "10.0.0.7"), undefined),
    { code: "pool_exhausted", message: "all 3 tables of pool default (200-202) are taken" },
    "a bound reservation is not offered again; the pool is all taken or reserved",
  );
});

Deno.test("Allocation.ended() frees pool and reserved tables and reports one outside every pool", () => {
  const a = Allocation.build(POOLS, [reservation(103, "eth5")], [[2, 100], [2, 103], [2, 103], [
    2,
    999,
  ]]);
  const lease = (table: number): Lease => ({ ...reservation(table, "eth1", "x"), state: "bound" });
  assertEquals(a.ended(lease(100)), true);
  assertEquals(a.pools.pools[0].isFree(100), true);
  assertEquals(a.ended(lease(103)), true);
  assertEquals([a.isReservedBound(2, 103), a.pools.pools[0].isFree(103)], [false, false]);
  assertEquals([a.ended(lease(999)), a.outside], [false, 0]);
});

Deno.test("Allocation.markTaken(), reserved() and unreserved() follow what others wrote", () => {
  const a = Allocation.build(POOLS, [], []);
  a.markTaken(2, 200);
  assertEquals(a.pools.pools[1].isFree(200), false);
  a.reserved(reservation(201, "eth5"), false);
  assertEquals([a.pools.pools[1].isFree(201), a.isReservedBound(2, 201)], [false, false]);
  a.markTaken(2, 201);
  assertEquals(a.isReservedBound(2, 201), true, "another server's owner holds it");
  a.unreserved(reservation(201, "eth5"));
  assertEquals(a.pools.pools[1].isFree(201), false, "still taken by its lease");
  a.reserved(reservation(202, "eth6"), false);
  a.unreserved(reservation(202, "eth6"));
  assertEquals(a.pools.pools[1].isFree(202), true, "an unbound reserved table goes back");
});

const hold = (table: number, address: string, over: Record<string, unknown> = {}) => ({
  family: 2 as const,
  table,
  address,
  ifname: "eth0" as string | undefined,
  until: 5000,
  reason: "admin_release" as const,
  ...over,
});

Deno.test("a held table goes to its identity only, and back to its pool when the hold ends", () => {
  const a = Allocation.build(POOLS, [], [[2, 200]]);
  assert(a.holdFree(hold(201, "10.0.0.1")));
  assert(!a.holdFree(hold(200, "10.0.0.2")), "a bound table cannot be held");
  assert(!a.holdFree(hold(999, "10.0.0.2")), "nor one in no pool");
  assertEquals(a.heldIn(a.pools.pools[1]), 1);
  // Another identity gets the next free table; the holder gets its own.
  assertEquals((a.propose(eth("eth0", "10.0.0.9"), undefined) as Choice).table, 202);
  const mine = a.propose(eth("eth0", "10.0.0.1"), undefined);
  assertEquals(mine, { kind: "held", table: 201, hold: hold(201, "10.0.0.1") });
  // A write that fails puts the hold back; one that succeeds ends it, the table stays taken.
  a.apply(mine as Choice);
  assertEquals(a.holds.length, 0);
  a.undo(mine as Choice);
  assertEquals(a.holds.map((h) => h.table), [201]);
  a.apply(mine as Choice);
  assertEquals(a.pools.pools[1].used, 2);
  // A hold for any interface (a kernel rule names none); due holds end and free their table.
  assert(a.holdFree(hold(202, "10.0.0.3", { ifname: undefined, until: 100 })));
  assertEquals(a.heldFor(eth("eth7", "10.0.0.3"))?.table, 202);
  assertEquals(a.nextHoldEnd(), 100);
  assertEquals(a.endDueHolds(99), []);
  assertEquals(a.endDueHolds(100).map((h) => h.table), [202]);
  assertEquals(a.pools.pools[1].free, 1);
});

Deno.test("endedHeld() holds an ended lease's table for its identity; endHold() frees it", () => {
  const lease = (table: number): Lease => ({
    family: 2,
    ifname: "eth0",
    address: "10.0.0.1",
    table,
    expiresAt: 5000,
    uid: 0,
    tag: undefined,
    owner: "t",
    state: "bound",
  });
  const a = Allocation.build(POOLS, [reservation(202, "eth0")], [[2, 100], [2, 202], [2, 202], [
    2,
    900,
  ]]);
  assert(a.endedHeld(lease(100), hold(100, "10.0.0.1")));
  assertEquals(a.pools.pools[0].used, 1, "still taken");
  assertEquals((a.propose(eth("eth1", "10.0.0.2"), "wan") as Choice).table, 101);
  // A reserved table: held, so another address of the reserved interface does not get it.
  assert(a.endedHeld(lease(202), hold(202, "10.0.0.1")));
  assertEquals(a.isReservedBound(2, 202), false);
  assertEquals((a.propose(eth("eth0", "10.0.0.7"), undefined) as Choice).kind, "pool");
  // Outside every pool: nothing to hold, nothing changed; the caller ends the lease.
  assertEquals(a.endedHeld(lease(900), hold(900, "10.0.0.1")), false);
  assertEquals(a.outside, 1);
  assertEquals(a.ended(lease(900)), false);
  assertEquals(a.outside, 0);
  assertEquals(a.endHold(2, 100)?.table, 100);
  assertEquals(a.pools.pools[0].used, 0);
  assertEquals(a.endHold(2, 100), undefined);
});
