/**
 * The daemon's passes overlap by one: while a pass waits for its sync off
 * the main thread (half the kernel's queue waiting, here a queue of two),
 * the next is prepared and committed; with room in the queue, one at a
 * time. A store whose syncs end when the test says (each flush commits at
 * once and gets a gate) shows that no reply goes out before its own sync,
 * in order, that a failed sync acknowledges nothing of either pass, and
 * that a stop waits for both.
 */

import { assert, assertEquals } from "../../tests/helpers/assert.ts";
import { ForwardingStore, kinds, startDaemon } from "../../tests/helpers/daemon.ts";
import { requestBody, type WireClient } from "../../tests/helpers/wire.ts";
import {
  type FlushOptions,
  type Lease,
  type LeaseStore,
  type LeaseToken,
  syncInBackground,
  TransientError,
} from "../store/lease_store.ts";

/** The end of one flush's sync, opened (or failed) by the test. */
interface Gate {
  promise: Promise<void>;
  open(): void;
  fail(error: Error): void;
}

function gate(): Gate {
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  promise.catch(() => {/* the flush's caller hears of it */});
  return { promise, open: () => resolve(), fail: reject };
}

/**
 * The real store, whose flushes commit at once but whose syncs end when
 * the test opens their gate: an update resolves once the flush that holds
 * it has. Commits are in order, as a WAL's: a failed sync fails every
 * later one.
 */
class GatedStore extends ForwardingStore {
  readonly commitsInOrder = true;
  /** One gate per flush, in order. */
  readonly gates: Gate[] = [];
  /** Called before each update (numbered from 1). */
  onUpdate: (n: number) => void = () => {};
  #updates = 0;
  #unflushed: Array<{ write: Promise<void> } & PromiseWithResolvers<void>> = [];
  #failure: Error | undefined;
  #open = false;

  override update(clientId: string, leases: Lease[], token: LeaseToken): Promise<void> {
    this.onUpdate(++this.#updates);
    const write = this.inner.update(clientId, leases, token);
    write.catch(() => {});
    const settled = { write, ...Promise.withResolvers<void>() };
    this.#unflushed.push(settled);
    return settled.promise;
  }

  override flush(options?: FlushOptions): Promise<void> {
    const writes = this.#unflushed;
    this.#unflushed = [];
    const synced = gate();
    if (this.#failure) synced.fail(this.#failure);
    else if (this.#open) synced.open();
    this.gates.push(synced);
    // Every flush of this store has a sync to place (its gate): it asks where.
    const committed = this.inner.flush({ background: syncInBackground(options) });
    const durable = Promise.all([committed, synced.promise]);
    for (const w of writes) durable.then(() => w.write).then(w.resolve, w.reject);
    return durable.then(() => {});
  }

  /** Opens every gate, now and later (a failed test must not leave the daemon waiting). */
  [Symbol.dispose](): void {
    this.#open = true;
    for (const g of this.gates) g.open();
  }

  /** The sync of flush `i` fails, and every later one with it. */
  fail(i: number, error: Error): void {
    this.#failure = error;
    for (const g of this.gates.slice(i)) g.fail(error);
  }
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `condition` holds (an event, not a duration); fails after 5 s. */
async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await pause(5);
  }
}

/**
 * A kernel queue of two datagrams for the daemon's socket: one request
 * waiting at a commit is half of it, so the sync runs off the main thread
 * and the next pass may start meanwhile.
 */
const SMALL_QUEUE = { kernelQueue: 2 };

/** The client asks for 10.0.0.1; while that pass writes, its request for 10.0.0.2 arrives. */
function askTwice(gated: GatedStore, client: WireClient, socketName: string): Promise<void> {
  gated.onUpdate = (n) => {
    if (n === 1) {
      client.socket.sendToName(new TextEncoder().encode(requestBody("10.0.0.2")), socketName);
    }
  };
  return client.send(requestBody("10.0.0.1"));
}

/**
 * Two passes in flight ({@link askTwice}, with {@link SMALL_QUEUE}): the
 * second pass commits while the first pass's sync is held. Both requests
 * come from one socket, so the order of the replies shows.
 */
async function twoPassesInFlight(gated: GatedStore, client: WireClient, socketName: string) {
  await askTwice(gated, client, socketName);
  await until(() => gated.gates.length === 2, "the second pass's commit");
}

/** The tables of the bound leases the real store holds for 10.0.0.1 and 10.0.0.2. */
async function stored(store: LeaseStore): Promise<number[][]> {
  return await Promise.all(
    ["10.0.0.1", "10.0.0.2"].map(async (address) =>
      (await store.peek(`2/eth1/${address}`)).filter((l) => l.state === "bound").map((l) => l.table)
    ),
  );
}

Deno.test("Daemon commits the next pass while one waits for its sync; each reply waits for its own sync, in order", async () => {
  let gated!: GatedStore;
  await using h = await startDaemon({
    wrap: (s) => (gated = new GatedStore(s)),
    daemon: SMALL_QUEUE,
  });
  using _ = gated;
  const client = h.client();
  await twoPassesInFlight(gated, client, h.socketName);
  assertEquals(await stored(h.store), [[10000], [10001]], "both passes committed");
  assert(!client.socket.readableNow(0), "no reply before its sync");
  gated.gates[1].open();
  await pause(50);
  assert(!client.socket.readableNow(0), "the second pass's replies wait for the first's");
  assertEquals(h.events, [], "nothing told before the replies");
  gated.gates[0].open();
  assertEquals((await client.receive())?.table, 10000);
  assertEquals((await client.receive())?.table, 10001);
  assertEquals(kinds(h.events), ["granted 10000", "granted 10001"]);
  assertEquals(h.daemon.stats.batches, 2);
});

Deno.test("Daemon: a failed sync fails the pass committed after it too, and acknowledges nothing", async () => {
  let gated!: GatedStore;
  await using h = await startDaemon({
    wrap: (s) => (gated = new GatedStore(s)),
    daemon: SMALL_QUEUE,
  });
  using _ = gated;
  const client = h.client();
  await twoPassesInFlight(gated, client, h.socketName);
  gated.fail(0, new TransientError("cannot make the WAL durable (fdatasync failed)"));
  for (let i = 0; i < 2; i++) {
    const reply = await client.receive();
    assertEquals([reply?.cmd, reply?.error], [3, "store_failure"]);
  }
  assertEquals(h.events, [], "no lease told");
  assertEquals(h.daemon.stats.errors, 2);
  const next = h.daemon.allocation.propose({ family: 2, ifname: "eth1", address: "10.0.0.3" }, "");
  assert("table" in next && next.table === 10000, "both tables went back to the pool");
});

Deno.test("Daemon.stop() with two passes in flight answers both once durable, and loses nothing", async () => {
  let gated!: GatedStore;
  await using h = await startDaemon({
    wrap: (s) => (gated = new GatedStore(s)),
    daemon: SMALL_QUEUE,
    start: false,
  });
  let stopped = false;
  const running = h.daemon.run().then(() => (stopped = true));
  using _ = gated;
  const client = h.client();
  await twoPassesInFlight(gated, client, h.socketName);
  h.daemon.stop();
  await pause(50);
  assert(!stopped, "the loop waits for the syncs in flight");
  gated.gates[0].open();
  gated.gates[1].open();
  await running;
  assertEquals((await client.receive())?.table, 10000);
  assertEquals((await client.receive())?.table, 10001);
  assertEquals(await stored(h.store), [[10000], [10001]], "every acknowledged lease is stored");
});

Deno.test("Daemon runs one pass at a time while the kernel's queue has room: a request that came during the commit waits for its sync", async () => {
  let gated!: GatedStore;
  await using h = await startDaemon({
    wrap: (s) => (gated = new GatedStore(s)),
    daemon: { kernelQueue: 512 },
  });
  using _ = gated;
  const client = h.client();
  await askTwice(gated, client, h.socketName);
  await until(() => gated.gates.length === 1, "the first pass's commit");
  await pause(50);
  assertEquals(gated.gates.length, 1, "no second pass while the first waits for its sync");
  gated.gates[0].open();
  assertEquals((await client.receive())?.table, 10000);
  await until(() => gated.gates.length === 2, "the second pass's commit");
  gated.gates[1].open();
  assertEquals((await client.receive())?.table, 10001);
  assertEquals(h.daemon.stats.batches, 2);
});
