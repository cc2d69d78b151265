/**
 * The LeaseStore conformance suite: the behaviour every backend must show.
 * A backend's test file calls {@link storeConformance} with a factory.
 *
 * @module
 */

import { assert, assertEquals, assertInstanceOf } from "./assert.ts";
import {
  BadCursorError,
  ConcurrencyError,
  type Lease,
  type LeaseStore,
} from "../../src/store/lease_store.ts";

/** Makes stores for one test; `reopen` gives a new store on the same data. */
export interface StoreFactory {
  open(): Promise<LeaseStore>;
  reopen(): Promise<LeaseStore>;
  cleanup(): Promise<void>;
}

/** Builds a lease for family 2 on eth1. */
export function lease(address: string, table: number, expiresAt = Date.now() + 3600_000): Lease {
  return {
    family: 2,
    ifname: "eth1",
    address,
    table,
    expiresAt,
    tag: undefined,
    owner: "test",
    uid: 0,
    state: "bound",
  };
}

const id = (address: string) => `2/eth1/${address}`;

/**
 * Gives eth1/`address` the lowest table no lease holds, looking up again
 * after every ConcurrencyError, the loop every allocating consumer runs.
 * Returns the table.
 */
export async function allocateLowest(store: LeaseStore, address: string): Promise<number> {
  const client = id(address);
  for (;;) {
    const { token } = await store.lookup(client);
    const used = new Set((await store.usedTables()).map(([, t]) => t));
    let table = 10000;
    while (used.has(table)) table++;
    try {
      await store.update(client, [lease(address, table)], token);
      return table;
    } catch (error) {
      if (!(error instanceof ConcurrencyError)) throw error;
    }
  }
}

/** Registers the conformance tests for one backend. */
export function storeConformance(
  backend: string,
  makeFactory: () => Promise<StoreFactory>,
  options: Deno.TestDefinition["ignore"] = false,
): void {
  const test = (name: string, fn: (store: LeaseStore, factory: StoreFactory) => Promise<void>) =>
    Deno.test({
      name: `${backend} store: ${name}`,
      ignore: options,
      sanitizeOps: false,
      sanitizeResources: false,
      async fn() {
        const factory = await makeFactory();
        const store = await factory.open();
        try {
          await fn(store, factory);
        } finally {
          await store.close();
          await factory.cleanup();
        }
      },
    });

  test("lookup, update and peek round-trip, and updates are durable", async (store, factory) => {
    const { leases, token } = await store.lookup(id("10.0.0.1"));
    assertEquals(leases, []);
    const l = lease("10.0.0.1", 10000);
    await store.update(id("10.0.0.1"), [{ ...l, tag: "wan" }], token);
    assertEquals(await store.peek(id("10.0.0.1")), [{ ...l, tag: "wan" }]);
    await store.close();
    const again = await factory.reopen();
    try {
      assertEquals(await again.peek(id("10.0.0.1")), [{ ...l, tag: "wan" }]);
      assertEquals(await again.usedTables(), [[2, 10000]]);
    } finally {
      await again.close();
    }
  });

  test("a client may hold several leases, and an empty update releases them all", async (store) => {
    const { token } = await store.lookup(id("10.0.0.1"));
    await store.update(id("10.0.0.1"), [lease("10.0.0.1", 10001), lease("10.0.0.1", 10002)], token);
    assertEquals((await store.peek(id("10.0.0.1"))).map((l) => l.table), [10001, 10002]);
    const second = await store.lookup(id("10.0.0.1"));
    await store.update(id("10.0.0.1"), [], second.token);
    assertEquals(await store.peek(id("10.0.0.1")), []);
  });

  test("a stale token, a used token and a released token are refused", async (store) => {
    const a = await store.lookup(id("10.0.0.1"));
    const b = await store.lookup(id("10.0.0.1"));
    await store.update(id("10.0.0.1"), [lease("10.0.0.1", 10000)], a.token);
    const stale = await store.update(id("10.0.0.1"), [lease("10.0.0.1", 10009)], b.token).catch((
      e,
    ) => e);
    assertInstanceOf(stale, ConcurrencyError);
    assertEquals(stale.kind, "stale");
    const used = await store.update(id("10.0.0.1"), [], a.token).catch((e) => e);
    assertInstanceOf(used, ConcurrencyError);
    const c = await store.lookup(id("10.0.0.1"));
    store.releaseToken(c.token);
    assertInstanceOf(
      await store.update(id("10.0.0.1"), [], c.token).catch((e) => e),
      ConcurrencyError,
    );
    assertEquals((await store.peek(id("10.0.0.1"))).map((l) => l.table), [10000]);
  });

  test("concurrent read-modify-write from many tasks never loses an update", async (store) => {
    const client = id("10.0.0.1");
    const base = Date.now() + 3600_000;
    const { token } = await store.lookup(client);
    await store.update(client, [lease("10.0.0.1", 10000, base)], token);
    const increment = async () => {
      for (;;) {
        const { leases, token } = await store.lookup(client);
        await new Promise((r) => setTimeout(r, Math.random() * 3));
        try {
          await store.update(client, [{ ...leases[0], expiresAt: leases[0].expiresAt + 1 }], token);
          return;
        } catch (error) {
          if (!(error instanceof ConcurrencyError)) throw error;
        }
      }
    };
    await Promise.all(Array.from({ length: 40 }, increment));
    assertEquals((await store.peek(client))[0].expiresAt, base + 40);
  });

  test("concurrent allocation never hands one table to two clients", async (store) => {
    const allocate = (n: number) => allocateLowest(store, `10.0.1.${n}`);
    const tables = await Promise.all(Array.from({ length: 30 }, (_, n) => allocate(n)));
    assertEquals(new Set(tables).size, 30);
    assertEquals((await store.usedTables()).length, 30);
  });

  test("expiry fires once per lease, and expired leases stay as history without their table", async (store) => {
    const seen: string[] = [];
    store.onExpire((l) => seen.push(l.address));
    const soon = Date.now() + 300;
    for (let i = 0; i < 10; i++) {
      const { token } = await store.lookup(id(`10.0.2.${i}`));
      await store.update(
        id(`10.0.2.${i}`),
        [lease(`10.0.2.${i}`, 10000 + i, soon + i * 20)],
        token,
      );
    }
    const { token } = await store.lookup(id("10.0.3.1"));
    await store.update(id("10.0.3.1"), [lease("10.0.3.1", 20000)], token);
    await new Promise((r) => setTimeout(r, 1200));
    assertEquals(seen.toSorted(), Array.from({ length: 10 }, (_, i) => `10.0.2.${i}`).toSorted());
    assertEquals((await store.usedTables()).map(([, t]) => t), [20000]);
    for (let i = 0; i < 10; i++) {
      assertEquals((await store.peek(id(`10.0.2.${i}`))).map((l) => [l.state, l.table]), [[
        "expired",
        10000 + i,
      ]]);
    }
    const expired = await store.list({ state: "expired" });
    assertEquals(expired.leases.length, 10);
  });

  test("a refresh before expiry keeps the lease from expiring", async (store) => {
    const seen: string[] = [];
    store.onExpire((l) => seen.push(l.address));
    const first = await store.lookup(id("10.0.4.1"));
    await store.update(id("10.0.4.1"), [lease("10.0.4.1", 10000, Date.now() + 300)], first.token);
    const second = await store.lookup(id("10.0.4.1"));
    await store.update(
      id("10.0.4.1"),
      [lease("10.0.4.1", 10000, Date.now() + 60_000)],
      second.token,
    );
    await new Promise((r) => setTimeout(r, 600));
    assertEquals(seen, []);
    assertEquals((await store.peek(id("10.0.4.1"))).map((l) => l.state), ["bound"]);
  });

  test("released leases are history: their table is free for another client", async (store) => {
    const a = await store.lookup(id("10.0.6.1"));
    await store.update(id("10.0.6.1"), [lease("10.0.6.1", 10000)], a.token);
    const b = await store.lookup(id("10.0.6.1"));
    await store.update(id("10.0.6.1"), [{ ...b.leases[0], state: "released" }], b.token);
    assertEquals(await store.usedTables(), []);
    const c = await store.lookup(id("10.0.6.2"));
    await store.update(id("10.0.6.2"), [lease("10.0.6.2", 10000)], c.token);
    assertEquals((await store.peek(id("10.0.6.1"))).map((l) => l.state), ["released"]);
    assertEquals(await store.usedTables(), [[2, 10000]]);
    assertEquals(await store.boundTables(), new Map([[2, [[10000, 10000]]]]));
  });

  test("one bound and one reserved lease may share a table; two of a kind may not", async (store) => {
    const reservation = { ...lease("*", 10007), state: "reserved" as const, expiresAt: 0 };
    const r = await store.lookup("reserved/2/eth1/*");
    await store.update("reserved/2/eth1/*", [reservation], r.token);
    const owner = await store.lookup(id("10.0.7.1"));
    await store.update(id("10.0.7.1"), [lease("10.0.7.1", 10007)], owner.token);
    const other = await store.lookup(id("10.0.7.2"));
    const taken = await store.update(id("10.0.7.2"), [lease("10.0.7.2", 10007)], other.token).catch(
      (e) => e,
    );
    assertInstanceOf(taken, ConcurrencyError);
    assertEquals(taken.kind, "taken");
    const r2 = await store.lookup("reserved/2/eth2/*");
    const twice = await store.update(
      "reserved/2/eth2/*",
      [{ ...reservation, ifname: "eth2" }],
      r2.token,
    )
      .catch((e) => e);
    assertInstanceOf(twice, ConcurrencyError);
    assertEquals((await store.usedTables()).toSorted(), [[2, 10007], [2, 10007]]);
    assertEquals(
      await store.boundTables(),
      new Map([[2, [[10007, 10007]]]]),
      "not the reservation",
    );
    assertEquals((await store.list({ state: "reserved" })).leases, [reservation]);
  });

  test("boundTables() lists the bound tables by family, as runs of consecutive tables", async (store) => {
    const put = async (client: string, l: Lease) => {
      const { token } = await store.lookup(client);
      await store.update(client, [l], token);
    };
    for (const t of [10024, 10020, 10021, 10030, 10022]) {
      await put(id(`10.0.9.${t - 10000}`), lease(`10.0.9.${t - 10000}`, t));
    }
    await put("10/eth1/2001:db8::1", { ...lease("2001:db8::1", 10020), family: 10 });
    await put(id("10.0.9.99"), { ...lease("10.0.9.99", 10023), state: "released" });
    const bound = await store.boundTables();
    assertEquals([...bound.keys()].toSorted((a, b) => a - b), [2, 10]);
    assertEquals(bound.get(2), [[10020, 10022], [10024, 10024], [10030, 10030]]);
    assertEquals(bound.get(10), [[10020, 10020]]);
  });

  test("a reserved lease never expires", async (store) => {
    const seen: string[] = [];
    store.onExpire((l) => seen.push(l.address));
    const r = await store.lookup("reserved/2/eth1/*");
    await store.update("reserved/2/eth1/*", [{
      ...lease("*", 10008),
      state: "reserved",
      expiresAt: 0,
    }], r.token);
    const b = await store.lookup(id("10.0.8.1"));
    await store.update(id("10.0.8.1"), [lease("10.0.8.1", 10009, Date.now() + 50)], b.token);
    await new Promise((r) => setTimeout(r, 400));
    assertEquals(seen, ["10.0.8.1"]);
    assertEquals((await store.peek("reserved/2/eth1/*")).map((l) => l.state), ["reserved"]);
  });

  test("list() filters by state, family and interface", async (store) => {
    const put = async (clientId: string, l: Lease) => {
      const { token } = await store.lookup(clientId);
      await store.update(clientId, [l], token);
    };
    await put(id("10.0.9.1"), lease("10.0.9.1", 10001));
    await put(id("10.0.9.2"), { ...lease("10.0.9.2", 10002), state: "released" });
    await put("10/eth1/2001:db8::1", { ...lease("2001:db8::1", 10001), family: 10 });
    await put("2/eth2/10.0.9.3", { ...lease("10.0.9.3", 10003), ifname: "eth2" });
    const tables = async (options: Parameters<LeaseStore["list"]>[0]) =>
      (await store.list(options)).leases.map((l) => `${l.family}:${l.table}`);
    assertEquals(await tables({ state: "bound" }), ["10:10001", "2:10001", "2:10003"]);
    assertEquals(await tables({ state: ["bound", "released"], family: 2 }), [
      "2:10001",
      "2:10002",
      "2:10003",
    ]);
    assertEquals(await tables({ ifname: "eth2" }), ["2:10003"]);
    assertEquals(await tables({ state: "released", ifname: "eth1" }), ["2:10002"]);
    assertEquals(await tables({ table: 10001 }), ["10:10001", "2:10001"]);
    assertEquals(await tables({ table: 10001, family: 2 }), ["2:10001"]);
    await put("2/eth3/10.0.9.4", {
      ...lease("10.0.9.4", 10004),
      ifname: "eth3",
      owner: "other-consumer",
      uid: 0,
    });
    assertEquals(await tables({ owner: "other-consumer" }), ["2:10004"]);
    assertEquals((await tables({ owner: "test" })).length, 4);
  });

  test("a lease keeps the uid that took it; boundCount() and list() count a uid's", async (store) => {
    const put = async (address: string, uid: number, state: Lease["state"] = "bound") => {
      const { token } = await store.lookup(id(address));
      await store.update(id(address), [{
        ...lease(address, 10000 + Number(address.split(".")[3])),
        uid,
        state,
      }], token);
    };
    await put("10.0.8.1", 65534);
    await put("10.0.8.2", 65534);
    await put("10.0.8.3", 65534, "released");
    await put("10.0.8.4", 1000);
    await put("10.0.8.5", 0);
    assertEquals((await store.peek(id("10.0.8.1")))[0].uid, 65534);
    assertEquals(await store.boundCount(65534), 2, "released leases do not count");
    assertEquals(await store.boundCount(1000), 1);
    assertEquals(await store.boundCount(0), 1);
    assertEquals(await store.boundCount(4242), 0);
    assertEquals(
      (await store.list({ uid: 65534 })).leases.map((l) => [l.address, l.state]),
      [["10.0.8.1", "bound"], ["10.0.8.2", "bound"], ["10.0.8.3", "released"]],
    );
  });

  test("list() pages through every lease in order", async (store) => {
    for (let i = 0; i < 25; i++) {
      const address = `10.0.5.${String(i).padStart(2, "0")}`;
      const { token } = await store.lookup(id(address));
      await store.update(id(address), [lease(address, 10000 + i)], token);
    }
    const seen: number[] = [];
    let after: string | undefined;
    let pages = 0;
    do {
      const page = await store.list({ after, limit: 10 });
      seen.push(...page.leases.map((l) => l.table));
      after = page.next;
      pages++;
      assert(pages < 10, "paging terminates");
    } while (after);
    assertEquals(seen, Array.from({ length: 25 }, (_, i) => 10000 + i));
  });

  test("list() refuses a cursor it did not hand out and a bad limit, the same on every store", async (store) => {
    const { token } = await store.lookup(id("10.0.5.1"));
    await store.update(id("10.0.5.1"), [lease("10.0.5.1", 10000)], token);
    const { next } = await store.list({ limit: 1 });
    assertEquals(next, JSON.stringify([id("10.0.5.1"), 10000]), "a cursor names the last row");
    for (const after of ["garbage", "[1,2]", '["2/eth1/x"]', '["2/eth1/x", 1.5]', "{}"]) {
      const error = await store.list({ after }).catch((e) => e);
      assertInstanceOf(error, BadCursorError);
      assertInstanceOf(error, TypeError);
      assertEquals(error.message, `the cursor ${JSON.stringify(after)} is not from list()`);
    }
    for (const limit of [0, -1, 1.5]) {
      const error = await store.list({ limit }).catch((e) => e);
      assertInstanceOf(error, RangeError);
      assertEquals(error.message, `limit must be a positive integer, got ${limit}`);
    }
  });
}
