/**
 * The receive side of the daemon's loop over a real abstract socket
 * (random names, no root needed).
 */

import { assert, assertEquals } from "../../tests/helpers/assert.ts";
import { MemoryLogger } from "../../tests/helpers/log.ts";
import { AbstractDatagramSocket } from "../unix/abstract_socket.ts";
import { datagramQueueLength } from "../unix/datagram_queue.ts";
import {
  BatchReceiver,
  HOT_SPIN_MS,
  QUEUE_FULL_REPORT_MS,
  QueueFullReports,
  RECEIVE_BATCH,
} from "./receiver.ts";

function pair(kernelQueue?: number) {
  const name = `ta-recv-${crypto.randomUUID().slice(0, 8)}`;
  const server = AbstractDatagramSocket.bind(name, {
    passCredentials: true,
    receiveBatch: RECEIVE_BATCH,
  });
  const client = AbstractDatagramSocket.bind(null);
  const log = new MemoryLogger();
  const receiver = new BatchReceiver(server, log, undefined, kernelQueue);
  const send = (text: string) => client.sendToName(new TextEncoder().encode(text), name);
  return {
    receiver,
    server,
    send,
    log,
    [Symbol.dispose]() {
      client.close();
      server.close();
    },
  };
}

const texts = (batch: Array<{ datagram: { data: Uint8Array } }>) =>
  batch.map((c) => new TextDecoder().decode(c.datagram.data));

Deno.test("BatchReceiver: a batch is what was carried over, then every datagram waiting", async () => {
  using p = pair();
  p.send("a");
  p.send("b");
  assertEquals(p.receiver.pump(), 2, "both moved into the receiver's queue");
  const first = await p.receiver.next();
  assertEquals(texts(first), ["a", "b"]);
  p.receiver.carry(first[1]);
  p.send("c");
  assertEquals(texts(await p.receiver.next()), ["b", "c"]);
  assertEquals(p.receiver.received, 3);
});

Deno.test("BatchReceiver: the socket counts as crowded once its kernel queue was found full", () => {
  using p = pair();
  p.send("one");
  p.receiver.pump();
  assertEquals(p.receiver.crowded, false);
  let sent = 0;
  while (p.send(`n${sent}`)) sent++; // until the kernel refuses (EAGAIN)
  assert(sent >= 2, `the kernel queued ${sent} datagrams`);
  assertEquals(p.receiver.pump(), 1 + sent);
  assertEquals(p.receiver.crowded, true);
});

Deno.test("BatchReceiver: a drain that finds the kernel's queue full is counted, and warned of once", () => {
  using p = pair(); // the kernel's own queue length, as the daemon reads it
  const qlen = datagramQueueLength();
  const warnings = () => p.log.matching(/^WARN the socket's kernel queue was full/);
  const fill = () => {
    let sent = 0;
    while (p.send(`n${sent}`)) sent++; // until the kernel refuses (EAGAIN)
    return sent;
  };
  assertEquals(fill(), qlen + 1, "the kernel queues one datagram beyond its limit");
  p.receiver.pump();
  assertEquals(p.receiver.queueFull, 1);
  assertEquals(warnings().length, 1);
  assert(warnings()[0].includes(` times=1 queue=${qlen} `), warnings()[0]);
  assert(warnings()[0].includes("raise socket_queue_length"), warnings()[0]);
  // As many as the limit: nobody was refused, so it was not full.
  for (let i = 0; i < qlen; i++) assert(p.send(`m${i}`));
  p.receiver.pump();
  assertEquals(p.receiver.queueFull, 1);
  fill();
  p.receiver.pump();
  assertEquals(p.receiver.queueFull, 2, "counted every time");
  assertEquals(warnings().length, 1, "warned of once a minute at most");
});

Deno.test("QueueFullReports: the first time, then once per interval with the times since the last", () => {
  const reports = new QueueFullReports();
  assertEquals(reports.found(1_000), 1);
  assertEquals(reports.found(2_000), undefined);
  assertEquals(reports.found(1_000 + QUEUE_FULL_REPORT_MS - 1), undefined);
  assertEquals(reports.found(1_000 + QUEUE_FULL_REPORT_MS), 3);
  assertEquals(reports.found(1_000 + QUEUE_FULL_REPORT_MS + 1), undefined);
  assertEquals(reports.found(10 * QUEUE_FULL_REPORT_MS), 2);
});

Deno.test("BatchReceiver: the queue may overflow during a sync once half of it waits", () => {
  using p = pair(6);
  p.send("a");
  p.send("b");
  assertEquals(p.receiver.mayOverflow(), false, "two of six waiting");
  p.send("c");
  assertEquals(p.receiver.mayOverflow(), true, "three of six waiting");
  assertEquals(p.receiver.queued, 3, "it drained the socket");
});

Deno.test("BatchReceiver: the queue may overflow during a sync while it counts as crowded, even with none waiting", async () => {
  using p = pair();
  let sent = 0;
  while (p.send(`n${sent}`)) sent++; // until the kernel refuses (EAGAIN)
  assertEquals((await p.receiver.next()).length, sent);
  assertEquals([p.receiver.queued, p.receiver.crowded], [0, true]);
  assertEquals(p.receiver.mayOverflow(), true);
});

Deno.test("BatchReceiver: an idle wait ends with an empty batch when the socket is woken", async () => {
  using p = pair();
  const waiting = p.receiver.next();
  setTimeout(() => p.server.wake(), 20);
  assertEquals(await waiting, []);
});

Deno.test("BatchReceiver: the wait right after a pass still ends for a datagram, and timers run after it", async () => {
  using p = pair();
  p.receiver.served(1);
  let fired = false;
  const timer = setTimeout(() => fired = true, 0);
  // Nothing waits: the short wait on this thread ends, then the receiver parks
  // (timers run) until the datagram sent from the timer below arrives.
  setTimeout(() => p.send("late"), 30);
  assertEquals(texts(await p.receiver.next().then((b) => b.length ? b : p.receiver.next())), [
    "late",
  ]);
  assert(fired, "a timer due during the wait ran");
  clearTimeout(timer);
});

/**
 * A receiver on a socket that has nothing for the first `emptyCalls`
 * receives, then one datagram; the socket counts the sleeping waits it is
 * asked for, and the receiver's hook notes when each spin starts.
 */
function scriptedReceiver(emptyCalls: number) {
  const datagram = { data: new TextEncoder().encode("next") };
  let receives = 0;
  const socket = {
    receiveBatch: RECEIVE_BATCH,
    sleeps: 0,
    receiveMany: () => ++receives === emptyCalls + 1 ? [datagram] : [],
    readableNow: () => {
      socket.sleeps++;
      return true;
    },
    readable: () => {
      socket.sleeps++;
      return Promise.resolve(true);
    },
  };
  /** How many receives had been asked for at each start of a spin. */
  const spins: number[] = [];
  const receiver = new BatchReceiver(
    socket as unknown as AbstractDatagramSocket,
    new MemoryLogger(),
    () => spins.push(receives),
  );
  return { socket, receiver, spins, receives: () => receives };
}

Deno.test("BatchReceiver: right after a pass, a request that comes within the spin is taken without sleeping", async () => {
  const { socket, receiver, receives } = scriptedReceiver(3);
  receiver.served(1);
  assertEquals(texts(await receiver.next()), ["next"]);
  assertEquals(socket.sleeps, 0, "no poll(2): a sleeping thread pays for its wake-up");
  assertEquals(receives(), 4, "the receive that found it was the last: no second look");
});

Deno.test("BatchReceiver: after a pass that answered several clients, the wait sleeps at once", async () => {
  const { socket, receiver, spins } = scriptedReceiver(1);
  receiver.served(2);
  // The poll(2) stand-in says "readable"; the datagram then comes with the next receive.
  assertEquals(texts(await receiver.next()), ["next"]);
  assertEquals(socket.sleeps, 1, "it slept first, so the crowd's requests gather meanwhile");
  assertEquals(spins, [], "no spin, so nothing got ready for one");
});

Deno.test("BatchReceiver: the hook before a spin runs once, after the queue was found empty", async () => {
  const { receiver, spins } = scriptedReceiver(3);
  receiver.served(1);
  assertEquals(texts(await receiver.next()), ["next"]);
  assertEquals(spins, [1], "once, after the one receive that found the socket empty");
  const { receiver: queued, spins: none } = scriptedReceiver(0);
  queued.served(1);
  assertEquals(texts(await queued.next()), ["next"], "a request was waiting already");
  assertEquals(none, [], "no spin for it");
});

Deno.test("BatchReceiver: a spin that finds nothing ends in poll(2), and only right after a pass", async () => {
  const { socket: late, receiver } = scriptedReceiver(Number.MAX_SAFE_INTEGER);
  receiver.served(1);
  const started = performance.now();
  assertEquals(await receiver.next(), []);
  assert(performance.now() - started >= HOT_SPIN_MS, "it asked for the spin's whole length");
  assert(late.sleeps >= 1, "then it slept in poll(2)");
  const { socket: idle, receiver: idleReceiver } = scriptedReceiver(1);
  assertEquals(await idleReceiver.next(), [], "not right after a pass: no spin");
  assertEquals(idle.sleeps, 1);
});

Deno.test("BatchReceiver: a sync's wait drains the socket after one of a millisecond or more left the kernel's queue half full, until one is shorter", async () => {
  using p = pair();
  const half = Math.ceil(datagramQueueLength() / 2);
  /** Waits for a 40 ms sync while `arrivals` datagrams come at 5 ms; returns what was queued at 20 ms. */
  const syncWith = async (arrivals: number) => {
    const sync = new Promise((resolve) => setTimeout(resolve, 40));
    setTimeout(() => {
      for (let i = 0; i < arrivals; i++) assert(p.send(`n${i}`), "the kernel took it");
    }, 5);
    let midway = -1;
    setTimeout(() => midway = p.receiver.queued, 20);
    assertEquals(await p.receiver.receiveWhile(sync), true);
    assertEquals(p.receiver.queued, arrivals, "all of them taken by the time the wait ends");
    await p.receiver.next();
    return midway;
  };
  assertEquals(p.receiver.drainsSyncs, false);
  // A sync that ends within microseconds (a chain of reactions) while the queue is half full.
  const quickSync = () => {
    let sync = Promise.resolve();
    for (let i = 0; i < 20; i++) sync = sync.then(() => {});
    return sync;
  };
  for (let i = 0; i < half; i++) assert(p.send(`early${i}`));
  assertEquals(await p.receiver.receiveWhile(quickSync()), true);
  assertEquals(p.receiver.queued, half, "taken once the sync ended");
  assertEquals(p.receiver.drainsSyncs, false, "a sync too short for a drain to take anything in");
  await p.receiver.next();
  assertEquals(await syncWith(1), 0, "left in the kernel's queue: no poll to start and wake");
  assertEquals(
    p.receiver.drainsSyncs,
    false,
    "one datagram in a sync's time: the next is not drained either",
  );
  assertEquals(await syncWith(half), 0);
  assertEquals(p.receiver.drainsSyncs, true, "half the kernel's queue came during a sync");
  assertEquals(await syncWith(1), 1, "drained while the sync ran");
  assertEquals(p.receiver.drainsSyncs, true, "the syncs are still long: the next is drained too");
  const ended = Promise.resolve();
  await ended;
  assertEquals(await p.receiver.receiveWhile(ended), true);
  assertEquals(p.receiver.drainsSyncs, true, "a sync that had ended before its wait tells nothing");
  assertEquals(await p.receiver.receiveWhile(quickSync()), true);
  assertEquals(p.receiver.drainsSyncs, false, "a short sync: the next is not drained");
});

Deno.test("BatchReceiver: a pass's loop drains the socket after every pumpEvery items", () => {
  using p = pair();
  p.send("waiting");
  for (let done = 1; done < p.receiver.pumpEvery; done++) p.receiver.pumpAfter(done);
  assertEquals(p.receiver.queued, 0, "not before pumpEvery items");
  p.receiver.pumpAfter(p.receiver.pumpEvery);
  assertEquals(p.receiver.queued, 1);
});
