/**
 * The daemon in-process (`tests/helpers/daemon.ts`: a real abstract
 * socket, an SQLite store in memory), and a store wrapper where a test
 * needs a failure on cue.
 */

import { assert, assertEquals, assertMatch } from "../../tests/helpers/assert.ts";
import {
  ForwardingStore,
  type HarnessOptions,
  kinds,
  startDaemon,
} from "../../tests/helpers/daemon.ts";
import { requestBody, WireClient } from "../../tests/helpers/wire.ts";
import { validateConfig } from "../../config/config.ts";
import { encodeControlRequest } from "../control/protocol.ts";
import {
  ConcurrencyError,
  type Lease,
  type LeaseStore,
  type LeaseToken,
  TransientError,
} from "../store/lease_store.ts";
import { MAX_ATTEMPTS, SERVER_OWNER } from "./decide.ts";

/** Fails the updates `fail` returns an error for; everything else goes to the real store. */
class FaultyStore extends ForwardingStore {
  updates = 0;
  constructor(
    inner: LeaseStore,
    readonly fail: (clientId: string, leases: Lease[], n: number) => Error | undefined,
  ) {
    super(inner);
  }
  override update(clientId: string, leases: Lease[], token: LeaseToken): Promise<void> {
    const error = this.fail(clientId, leases, ++this.updates);
    if (!error) return this.inner.update(clientId, leases, token);
    this.inner.releaseToken(token);
    return Promise.reject(error);
  }
}

/** Writes a lease straight into the store, as another server sharing it would. */
async function putLease(store: LeaseStore, address: string, table: number | undefined) {
  const clientId = `2/eth9/${address}`;
  const { token } = await store.lookup(clientId);
  const leases: Lease[] = table === undefined ? [] : [{
    family: 2,
    ifname: "eth9",
    address,
    table,
    expiresAt: Date.now() + 3600_000,
    tag: undefined,
    owner: "another-server",
    uid: 0,
    state: "bound",
  }];
  await store.update(clientId, leases, token);
}

Deno.test("Daemon grants, refreshes and releases over its socket, telling observers once durable", async () => {
  await using h = await startDaemon();
  const client = h.client();
  assertEquals((await client.request("10.0.0.1")).table, 10000);
  assertEquals((await client.request("10.0.0.1")).table, 10000);
  assertEquals((await client.request("10.0.0.2", { tag: "x" })).table, 10001);
  assertEquals(await client.release("10.0.0.1"), {
    version: 1,
    cmd: 2,
    table: 0,
    lease_expires: 0,
  });
  assertEquals(kinds(h.events), [
    "granted 10000",
    "refreshed 10000",
    "granted 10001",
    "released 10000",
  ]);
  const origin = h.events[0].origin;
  assert(origin.kind === "client");
  assertEquals(
    origin.credentials?.uid,
    Deno.uid(),
    "the kernel's credentials travel with the event",
  );
  assertEquals((await h.store.peek("2/eth1/10.0.0.1")).map((l) => [l.state, l.owner]), [[
    "released",
    SERVER_OWNER,
  ]]);
  assertMatch(
    h.log.matching(/ granted /)[0],
    new RegExp(
      `^INFO granted family=inet ifname=eth1 address=10\\.0\\.0\\.1 table=10000 pool=default expires=\\S+ from=@t-\\S+ pid=${Deno.pid} uid=${Deno.uid()} gid=`,
    ),
  );
  assertEquals(h.daemon.stats.errors, 0);
});

Deno.test("Daemon carries a second message for one identity to the next pass, after the first commits", async () => {
  await using h = await startDaemon({ start: false });
  const a = h.client();
  const b = h.client();
  await a.send(requestBody("10.0.0.1"));
  await a.send(requestBody("10.0.0.1", { cmd: 1 }));
  await b.send(requestBody("10.0.0.2"));
  h.run();
  assertEquals((await a.receive())?.table, 10000);
  assertEquals((await b.receive())?.table, 10001, "another identity is served in the first pass");
  assertEquals((await a.receive())?.table, 0, "the release came after the grant");
  assertEquals(kinds(h.events), ["granted 10000", "granted 10001", "released 10000"]);
  assertEquals(h.daemon.stats.batches, 2);
  assertEquals(h.daemon.stats.requests, 3);
});

Deno.test("Daemon answers the same request sent twice in one pass with one grant, to both senders", async () => {
  await using h = await startDaemon({ start: false });
  const a = h.client();
  const b = h.client();
  const c = h.client();
  await a.send(requestBody("10.0.0.1"));
  await b.send(requestBody("10.0.0.1"));
  await c.send(requestBody("10.0.0.2"));
  h.run();
  assertEquals((await a.receive())?.table, 10000);
  assertEquals((await b.receive())?.table, 10000, "the twin hears the same answer");
  assertEquals((await c.receive())?.table, 10001);
  assertEquals(kinds(h.events), ["granted 10000", "granted 10001"]);
  assertEquals(h.daemon.stats.batches, 1);
});

Deno.test("Daemon answers at once only the writes its store committed; a failed one is answered after", async () => {
  await using h = await startDaemon({
    start: false,
    wrap: (store) =>
      new FaultyStore(
        store,
        (_, __, n) => n === 1 ? new TransientError("disk I/O error") : undefined,
      ),
  });
  const a = h.client();
  const b = h.client();
  await a.send(requestBody("10.0.0.1"));
  await b.send(requestBody("10.0.0.2"));
  h.run();
  const [first, second] = [await a.receive(), await b.receive()];
  assertEquals([first?.cmd, first?.error], [3, "store_failure"], "its update was never committed");
  assertEquals(second?.table, 10001, "committed, and answered");
  assertEquals(kinds(h.events), ["granted 10001"]);
});

Deno.test("Daemon answers a failed commit with store_failure, acknowledges nothing, and gives the table back", async () => {
  await using h = await startDaemon({
    wrap: (store) =>
      new FaultyStore(
        store,
        (_, __, n) => n === 1 ? new TransientError("disk I/O error") : undefined,
      ),
  });
  const client = h.client();
  const failed = await client.request("10.0.0.1");
  assertEquals([failed.cmd, failed.error, failed.message], [
    3,
    "store_failure",
    "lease store failure: disk I/O error",
  ]);
  assertEquals(await h.store.peek("2/eth1/10.0.0.1"), []);
  assertEquals(h.events, [], "nothing is told before it is durable");
  assertEquals((await client.request("10.0.0.2")).table, 10000, "the table went back");
  assertEquals(h.log.matching(/ rejected error=store_failure /).length, 1);
  assertEquals(h.daemon.stats.errors, 1);
});

Deno.test(`Daemon retries a lost race and gives up after ${MAX_ATTEMPTS} attempts`, async () => {
  let losing = 2;
  const faulty = (store: LeaseStore) =>
    new FaultyStore(store, (clientId) => losing-- > 0 ? new ConcurrencyError(clientId) : undefined);
  let wrapped: FaultyStore | undefined;
  await using h = await startDaemon({ wrap: (s) => (wrapped = faulty(s)) });
  const client = h.client();
  assertEquals((await client.request("10.0.0.1")).table, 10000);
  assertEquals(wrapped?.updates, 3, "two lost races, then the write");
  losing = Infinity;
  const before = wrapped!.updates;
  const reply = await client.request("10.0.0.1");
  assertEquals(reply.error, "store_failure");
  assertMatch(String(reply.message), /changed since the lookup/);
  assertEquals(wrapped!.updates - before, MAX_ATTEMPTS);
  assertEquals((await h.store.peek("2/eth1/10.0.0.1")).map((l) => l.table), [10000]);
});

Deno.test("Daemon with a shared store skips a table another server took, after a rebuild", async (t) => {
  for (const sharedStore of [true, false]) {
    await t.step(
      sharedStore ? "shared: the next free table" : "private: store_failure",
      async () => {
        await using h = await startDaemon({ sharedStore });
        // Another writer takes the lowest table behind the daemon's back.
        await putLease(h.store, "10.9.9.9", 10000);
        const reply = await h.client().request("10.0.0.1");
        if (sharedStore) {
          assertEquals(reply.table, 10001);
          assertEquals(kinds(h.events), ["granted 10001"]);
        } else {
          // A private store has no other writer: the race is a failure after the attempts.
          assertEquals(reply.error, "store_failure");
          assertMatch(String(reply.message), /leased to another client/);
        }
      },
    );
  }
});

Deno.test("Daemon with a shared store looks at a full pool again after a rebuild", async (t) => {
  for (const sharedStore of [true, false]) {
    await t.step(
      sharedStore ? "shared: a table another server freed" : "private: full",
      async () => {
        await using h = await startDaemon({
          sharedStore,
          config: { num_tables: 1 },
          before: (store) => putLease(store, "10.9.9.9", 10000),
        });
        // The other server releases; this daemon's allocation still thinks the table taken.
        await putLease(h.store, "10.9.9.9", undefined);
        const reply = await h.client().request("10.0.0.1");
        assertEquals(
          sharedStore ? reply.table : reply.error,
          sharedStore ? 10000 : "pool_exhausted",
        );
      },
    );
  }
});

Deno.test("Daemon refuses a disabled family and answers control requests only to root", async () => {
  await using h = await startDaemon();
  const client = h.client();
  const refused = await client.request("2001:db8::1", { family: 10 });
  assertEquals([refused.error, refused.message], [
    "family_disabled",
    "address family 10 (inet6) is not enabled on this server",
  ]);
  assertMatch(
    h.log.matching(/rejected/)[0],
    /^WARN rejected error=family_disabled reason="address family 10 \(inet6\) is not enabled on this server" family=inet6 ifname=eth1 address=2001:db8::1 from=@t-/,
  );
  const status = await client.call(encodeControlRequest("status", {}));
  if (Deno.uid() === 0) assertEquals([status.cmd, status.op], [17, "status"]);
  else {
    assertEquals(status.error, "not_permitted");
    assertMatch(String(status.message), new RegExp(`got uid ${Deno.uid()}$`));
  }
});

Deno.test("Daemon frees an expired lease's table and tells the observers", async () => {
  await using h = await startDaemon({ config: { table_timeout: 1, num_tables: 1 } });
  const client = h.client();
  assertEquals((await client.request("10.0.0.1")).table, 10000);
  assertEquals((await client.request("10.0.0.2")).error, "pool_exhausted");
  const deadline = Date.now() + 5000;
  while (!h.events.some((e) => e.kind === "expired") && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  assertEquals(kinds(h.events), ["granted 10000", "expired 10000"]);
  assertEquals(h.events[1].origin, { kind: "expiry" });
  assertEquals((await client.request("10.0.0.2")).table, 10000);
});

Deno.test("Daemon holds, at start, a free table the kernel's rules route; the address gets it back", async () => {
  await using h = await startDaemon({
    config: { num_tables: 3, readiness_delay: 60 },
    daemon: {
      routedTables: () => Promise.resolve([{ family: 2, address: "10.0.0.1", table: 10000 }]),
    },
  });
  const client = h.client();
  assertEquals((await client.request("10.0.0.9")).table, 10001, "a newcomer skips the held table");
  // The rule names no interface: the address on any interface is its holder.
  assertEquals((await client.request("10.0.0.1", { ifname: "eth7" })).table, 10000);
  assertEquals(h.events.map((e) => [e.kind, e.lease?.table, e.held ?? false]), [
    ["granted", 10001, false],
    ["granted", 10000, true],
  ]);
  assertMatch(h.log.matching(/held for the address/)[0], /address=10\.0\.0\.1 table=10000 until=/);
  assertEquals(h.daemon.allocation.holds.length, 0);
});

Deno.test("Daemon ends a hold at its deadline while no datagram comes", async () => {
  // Held before the loop starts, as the start's holds are (a pass computes the next wait itself).
  await using h = await startDaemon({ config: { num_tables: 1 }, start: false });
  assert(h.daemon.allocation.holdFree({
    family: 2,
    table: 10000,
    address: "10.0.0.1",
    ifname: "eth1",
    until: Date.now() + 300,
    reason: "admin_release",
  }));
  h.run();
  // The loop sleeps in poll(2) with nothing to read; the hold's deadline wakes it.
  const deadline = Date.now() + 5000;
  while (h.log.matching(/hold ended/).length === 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  assertMatch(
    h.log.matching(/hold ended/)[0],
    /^INFO hold ended family=inet ifname=eth1 address=10\.0\.0\.1 table=10000 reason=expired held_for=admin_release$/,
  );
  assertEquals((await h.client().request("10.0.0.2")).table, 10000);
});

Deno.test("Daemon.reload() applies new pools and keeps live leases; a bad config changes nothing", async () => {
  const configs: Array<Record<string, unknown> | Error> = [];
  const base = {
    socket_path: "set below",
    table_timeout: 3600,
    db_path: ":memory:",
    addr_families: { inet: true },
  };
  let socketName = "";
  await using h = await startDaemon({
    config: { num_tables: 2 },
    daemon: {
      configPath: "/etc/x.json",
      readConfig: () => {
        const next = configs.shift()!;
        if (next instanceof Error) return Promise.reject(next);
        return Promise.resolve(validateConfig({ ...base, socket_path: socketName, ...next }));
      },
    },
  });
  socketName = h.socketName;
  const client = h.client();
  assertEquals((await client.request("10.0.0.1")).table, 10000);
  configs.push({ table_offset: 20000, num_tables: 5 });
  assertEquals(await h.daemon.reload(), {
    config: "/etc/x.json",
    pools: 1,
    reservations: 0,
    outputs: 1,
  });
  assertEquals((await client.request("10.0.0.2")).table, 20000, "the new pool serves");
  assertEquals((await client.request("10.0.0.1")).table, 10000, "the live lease stays");
  assertEquals(h.daemon.allocation.outside, 1);
  configs.push(new Error("Cannot load config: no"), {
    table_offset: 30000,
    num_tables: 1,
    socket_path: "x",
  });
  for (const reason of [/^Cannot load config: no$/, /^"socket_path" changed/]) {
    const error = await h.daemon.reload().then(() => undefined, (e) => e);
    assertEquals(error?.code, "bad_config");
    assertMatch(error.message, reason);
  }
  assertEquals((await client.request("10.0.0.3")).table, 20001, "the running config stays");
  assertEquals(h.log.matching(/reload refused/).length, 2);
});

Deno.test("Daemon tells the observers of a pass only once its replies are sent", async () => {
  // Each observer call looks whether the client already holds its reply.
  const delivered: Array<[string, boolean]> = [];
  const the: { client?: WireClient } = {};
  const replyWaiting = () => the.client!.socket.readableNow(0);
  await using h = await startDaemon({
    observers: [{
      onLease: (e) => delivered.push([e.kind, replyWaiting()]),
      onErrorReply: (e) => delivered.push([e.code, replyWaiting()]),
    }],
  });
  const client = the.client = h.client();
  assertEquals((await client.request("10.0.0.1")).table, 10000);
  assertEquals((await client.request("2001:db8::1", { family: 10 })).error, "family_disabled");
  assertEquals(delivered, [["granted", true], ["family_disabled", true]]);
});

/**
 * One pass's crowd (as many requests as the kernel holds) meets `watch`'s
 * hook, which the daemon calls once per request of the pass somewhere in
 * its work (`during` says where): at the first call the kernel's queue is
 * filled again until it refuses, and each later call tries one send more,
 * which must find room before the pass's calls are over (the daemon
 * drained its socket in between).
 */
async function assertDrainsDuring(
  during: string,
  watch: (hook: () => void) => Partial<HarnessOptions>,
): Promise<void> {
  let calls = 0;
  let filled = 0;
  /** The call during which the kernel first took the probe (numbered from 0). */
  let probeTaken: number | undefined;
  await using h = await startDaemon({
    start: false,
    config: { num_tables: 2048 },
    ...watch(() => {
      const n = calls++;
      if (n === 0) { while (send(1, filled)) filled++; }
      else if (probeTaken === undefined && send(2, 0)) probeTaken = n;
    }),
  });
  const filler = h.client();
  const send = (net: number, i: number) =>
    filler.socket.sendToName(
      new TextEncoder().encode(requestBody(`10.${net}.${i >> 8}.${i & 255}`)),
      h.socketName,
    );
  let crowd = 0;
  while (send(0, crowd)) crowd++; // one pass's batch: as many as the kernel holds
  assert(crowd > 2, `the kernel held ${crowd} datagrams`);
  h.run();
  const served = () => probeTaken !== undefined && h.daemon.stats.requests === crowd + filled + 1;
  const deadline = Date.now() + 10_000;
  while (!served() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  assert(served(), "every datagram was received, the probe among them");
  assert(filled >= crowd - 1, `the queue was filled again during the first call (${filled})`);
  assert(
    probeTaken !== undefined && probeTaken < crowd,
    `a send during the pass's ${crowd} ${during} found room (taken at call ${probeTaken})`,
  );
}

Deno.test("Daemon drains its socket while a crowd's lookups run, so the kernel's queue does not stay full", async () => {
  await assertDrainsDuring("lookups", (hook) => ({
    wrap: (store) =>
      new class extends ForwardingStore {
        override lookup = (clientId: string) => {
          hook();
          return this.inner.lookup(clientId);
        };
      }(store),
  }));
});

Deno.test("Daemon drains its socket while the observers hear a crowd's leases, so the kernel's queue does not stay full", async () => {
  // The pass's replies are sent before its events: each client answered sends again meanwhile.
  await assertDrainsDuring("lease events", (hook) => ({
    observers: [{ onLease: hook, onErrorReply() {} }],
  }));
});
