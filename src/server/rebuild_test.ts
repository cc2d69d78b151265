import { assert, assertEquals } from "../../tests/helpers/assert.ts";
import { validateConfig } from "../../config/config.ts";
import { SqliteLeaseStore } from "../store/sqlite_store.ts";
import { clientIdOf, type Lease } from "../store/lease_store.ts";
import {
  BackgroundRebuild,
  loadAllocationInPages,
  REBUILD_PAGE,
  rebuildAllocation,
  Resync,
} from "./rebuild.ts";
import { MemoryLogger } from "../../tests/helpers/log.ts";

const config = validateConfig({
  socket_path: "x",
  table_offset: 10000,
  num_tables: 20_000,
  table_timeout: 60,
  db_path: ":memory:",
  addr_families: { inet: true },
});

const bound = (i: number): Lease => ({
  family: 2,
  ifname: "eth1",
  address: `10.0.${i >> 8}.${i & 255}`,
  table: 10000 + i,
  expiresAt: Date.now() + 3600_000,
  tag: undefined,
  owner: "test",
  uid: 0,
  state: "bound",
});

Deno.test("loadAllocationInPages() reads every page and agrees with rebuildAllocation()", async () => {
  const store = SqliteLeaseStore.open(":memory:");
  try {
    const count = REBUILD_PAGE * 2 + 7;
    for (let i = 0; i < count; i++) {
      const lease = bound(i);
      const { token } = await store.lookup(clientIdOf(lease));
      void store.update(clientIdOf(lease), [lease], token);
    }
    await store.flush();
    const paged = await loadAllocationInPages(config, store);
    const once = await rebuildAllocation({
      config,
      store,
      log: new MemoryLogger(),
      report: false,
      holds: [],
    });
    assertEquals(paged.pools.pools[0].used, count);
    assertEquals(once.pools.pools[0].used, count);
    assertEquals(paged.pools.pools[0].lowestFree(), 10000 + count);
  } finally {
    await store.close();
  }
});

Deno.test("BackgroundRebuild applies the changes recorded while it ran to its result", async () => {
  const store = SqliteLeaseStore.open(":memory:");
  try {
    let resolveLoad!: () => void;
    const gate = new Promise<void>((r) => resolveLoad = r);
    let woken = 0;
    const rebuild = new BackgroundRebuild(async () => {
      const allocation = await loadAllocationInPages(config, store);
      await gate;
      return allocation;
    }, () => woken++);
    assert(!rebuild.done);
    // Taken and freed by this server while the store was being read.
    rebuild.record((a) => a.markTaken(2, 10003));
    rebuild.record((a) => a.markTaken(2, 10000));
    rebuild.record((a) => a.free(2, 10000));
    resolveLoad();
    await new Promise((r) => setTimeout(r, 10));
    assert(rebuild.done);
    assertEquals(woken, 1, "the daemon's loop is woken");
    const result = rebuild.result();
    if (result instanceof Error) throw result;
    assertEquals(result.pools.pools[0].used, 1);
    assertEquals(result.pools.pools[0].lowestFree(), 10000);

    const failed = new BackgroundRebuild(() => Promise.reject(new Error("no store")), () => {});
    await new Promise((r) => setTimeout(r, 10));
    assertEquals(String(failed.result()), "Error: no store");
  } finally {
    await store.close();
  }
});

Deno.test("Resync starts a rebuild when due or asked; a waiting request is let on by a rebuild started after it asked", async () => {
  const store = SqliteLeaseStore.open(":memory:");
  try {
    let now = 0;
    let loads = 0;
    let woken = 0;
    const log = new MemoryLogger();
    const resync = new Resync({
      shared: true,
      now: () => now,
      load: () => {
        loads++;
        return loadAllocationInPages(config, store);
      },
      wake: () => woken++,
      log,
    });
    const current = await loadAllocationInPages(config, store);
    current.holdFree({
      family: 2,
      table: 10007,
      address: "10.0.0.7",
      ifname: "eth1",
      until: 1000,
      reason: "admin_release",
    });
    resync.loaded();
    resync.maybeStart();
    assertEquals([loads, resync.running], [0, false], "not due yet");
    now = 5000;
    resync.maybeStart();
    assertEquals([loads, resync.running], [1, true]);
    const carried = { datagram: undefined as never, attempt: 2, collisions: 0 };
    resync.wait([carried]);
    // The running rebuild may have read the store before what the request needs.
    assertEquals(loads, 1, "no second rebuild while one runs");
    assertEquals(resync.take(current), undefined, "still running");
    await new Promise((r) => setTimeout(r, 10));
    const taken = resync.take(current);
    assertEquals(woken, 1);
    assertEquals(taken?.waiting, [], "the request waits for a rebuild started after it asked");
    assertEquals(
      taken?.allocation?.heldFor({ family: 2, ifname: "eth1", address: "10.0.0.7" })?.table,
      10007,
    );
    assertEquals([loads, resync.running], [2, true], "the next rebuild starts at once");
    await new Promise((r) => setTimeout(r, 10));
    assertEquals(resync.take(current)?.waiting, [carried]);
    resync.wait([carried]);
    assertEquals([loads, resync.running], [3, true], "with none running, a rebuild starts now");
    await new Promise((r) => setTimeout(r, 10));
    assertEquals(resync.take(current)?.waiting, [carried], "and lets it on when in");
    resync.maybeStart();
    assertEquals(loads, 3, "the next one is an interval away");
    resync.ask();
    resync.maybeStart();
    assertEquals(loads, 4, "asked for");
  } finally {
    await store.close();
  }
});
