import { assertEquals, assertMatch } from "../../tests/helpers/assert.ts";
import { MemoryLogger } from "../../tests/helpers/log.ts";
import { Allocation } from "../allocator/allocation.ts";
import type { PoolConfig } from "../../config/pools.ts";
import { SqliteLeaseStore } from "../store/sqlite_store.ts";
import { holdRoutedTables } from "./readiness.ts";

const POOLS: PoolConfig[] = [
  { name: "default", family: 2, ranges: [{ first: 100, last: 103 }], tags: [], ifnames: [] },
];

Deno.test("holdRoutedTables() holds free routed tables of the pools, and reports conflicts", async () => {
  const store = SqliteLeaseStore.open(":memory:");
  try {
    const { token } = await store.lookup("2/eth1/10.0.0.2");
    await store.update("2/eth1/10.0.0.2", [{
      family: 2,
      ifname: "eth1",
      address: "10.0.0.2",
      table: 101,
      expiresAt: Date.now() + 60_000,
      tag: undefined,
      owner: "t",
      uid: 0,
      state: "bound",
    }], token);
    const allocation = Allocation.build(POOLS, [], await store.usedTables());
    const log = new MemoryLogger();
    const held = await holdRoutedTables({
      allocation,
      store,
      routed: [
        { family: 2, address: "10.0.0.1", table: 100 }, // free: held
        { family: 2, address: "10.0.0.2", table: 101 }, // its own lease: nothing to do
        { family: 2, address: "10.0.0.3", table: 101 }, // another's lease: a conflict
        { family: 2, address: "10.0.0.4", table: 999 }, // not in a pool: not ours
        { family: 10, address: "2001:db8::1", table: 100 }, // no inet6 pool
      ],
      now: 1000,
      delayMs: 5000,
      log,
    });
    assertEquals(held, [{
      family: 2,
      table: 100,
      address: "10.0.0.1",
      ifname: undefined,
      until: 6000,
      reason: "readiness",
    }]);
    assertEquals(
      allocation.heldFor({ family: 2, ifname: "eth7", address: "10.0.0.1" })?.table,
      100,
    );
    assertEquals(log.lines.length, 3);
    assertMatch(
      log.lines[0],
      /^INFO held for the address its kernel rule routes family=inet address=10\.0\.0\.1 table=100 until=1970-01-01T00:00:06\.000Z$/,
    );
    assertMatch(
      log.lines[1],
      /^WARN a kernel rule routes an address through a table leased to another identity family=inet address=10\.0\.0\.3 table=101 holder="eth1 10\.0\.0\.2"$/,
    );
    assertMatch(log.lines[2], /^INFO tables held back after the start.* count=1 /);
  } finally {
    await store.close();
  }
});
