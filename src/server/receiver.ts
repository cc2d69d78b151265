/**
 * The receive side of the daemon's loop. Datagrams move from the kernel's
 * queue into one of ours as soon as the daemon has a moment ({@link
 * BatchReceiver.pump}): the kernel holds only `net.unix.max_dgram_qlen`
 * datagrams (10 by default) and refuses senders beyond that, so draining it
 * while a commit waits for the disk is what keeps a crowd of clients from
 * an EAGAIN storm. Each pass's batch is what the last pass carried over,
 * then what is queued.
 *
 * Waiting: right after a pass, a client that answers quickly (the next
 * request after a reply) is waited for on the main thread: after a pass
 * that answered one client, for {@link HOT_SPIN_MS} by asking the socket
 * again and again (no sleep, so no wake-up to pay), then with poll(2) for
 * at most {@link HOT_WAIT_MS}; that wake-up costs nothing but the kernel's.
 * Before that spin the daemon gets its store ready for the request (the
 * SQLite store opens the next pass's transaction): that work is done while
 * the client works, not while it waits for its reply.
 * After that the daemon parks in poll(2) on a worker thread, which keeps
 * the event loop (timers, signals, other outputs) running and costs a
 * hand-off between threads on wake-up, paid only after a quiet moment.
 *
 * A busy loop never parks, and Deno runs due timers and signal listeners
 * only when its event loop parks: {@link BatchReceiver.starving} tells the
 * daemon to wait for its next sync off the main thread (which parks the
 * loop for the disk's time anyway), and after {@link MAX_BUSY_MS} without
 * one the receiver yields to the loop itself.
 *
 * Crowded ({@link BatchReceiver.crowded}: the kernel's queue was found
 * full, so senders are being refused), or with half the kernel's queue
 * waiting at a commit ({@link BatchReceiver.mayOverflow}), the daemon
 * also waits for its syncs off the main thread, so that it can drain the
 * socket and prepare the next pass meanwhile. With fewer waiting it syncs
 * on the main thread and the datagrams wait in the kernel's queue, which
 * has room for them: the hand-off to a worker thread, and that thread's
 * turn on a busy CPU, cost more than the next pass's head start saves.
 *
 * Draining while a sync runs costs a poll(2) on a worker thread, and
 * waking it once the sync ends: tens of microseconds a pass on a virtual
 * machine, more than a fast disk's sync lets arrive. It is done only while
 * the syncs are long enough to fill the kernel's queue ({@link
 * BatchReceiver.drainsSyncs}: one lasted a millisecond or more and left it
 * half full, and none since was shorter); else the datagrams wait in the
 * kernel until the sync ends, and are taken in one receive then.
 *
 * @module
 */

import { mallocTrim } from "../../ffi/libc.ts";
import type { Logger } from "../log/logger.ts";
import type { AbstractDatagramSocket, Datagram } from "../unix/abstract_socket.ts";
import { datagramQueueLength } from "../unix/datagram_queue.ts";
import { errorMessage } from "../util/errors.ts";
import { after, sleep, type Timer } from "../util/timer.ts";
import type { Races } from "./decide.ts";

/** Most datagrams the daemon's socket takes from the kernel in one system call (recvmmsg(2)). */
export const RECEIVE_BATCH = 32;
/**
 * While a pass works, the socket is drained after every this many
 * requests and replies at least ({@link BatchReceiver.pumpEvery}): the
 * kernel queues only `net.unix.max_dgram_qlen` datagrams (10 by default)
 * and refuses further senders (EAGAIN), and each reply brings its client's
 * next request.
 */
export const PUMP_EVERY = 2;
/** Most datagrams handled in one pass (one transaction). */
export const MAX_BATCH = 512;
/**
 * Most datagrams held in our queue (give or take one {@link RECEIVE_BATCH});
 * beyond it the kernel's queue fills and pushes back on senders (EAGAIN),
 * as it would without ours.
 */
export const MAX_QUEUE = 4096;
/**
 * After a pass, how long to wait on the main thread before parking. A
 * client's next request comes within tens of microseconds of its reply;
 * timers and signals wait at most this long.
 */
export const HOT_WAIT_MS = 2;
/**
 * Right after a pass that answered one client, how long to keep asking
 * the socket before sleeping in poll(2). A thread that sleeps pays for
 * being woken: tens of microseconds on a virtual machine, where the kernel
 * halts an idle CPU and the host must schedule it again. A lone client's
 * next request comes well within this (its reply, then its next send), and
 * spinning this long after a pass costs a sporadic client's server nothing
 * worth counting. After a larger pass there is no spin: the wake-up's delay
 * lets the crowd's next requests gather into one pass, where a spin would
 * start a pass for each of the first to come.
 */
export const HOT_SPIN_MS = 0.2;
/**
 * Busy this long without parking, the daemon's next sync parks the event
 * loop (it runs on a worker thread, and due timers and signal listeners
 * run meanwhile). Each such sync costs a lone client's request a hand-off
 * between threads and the wake-ups after it, so under a steady load the
 * loop's timers (metrics, checkpoints, expiry, SIGTERM) run this late at
 * most: 50 ms. With 20, one client got 3 to 6% fewer operations a second.
 */
export const STARVING_MS = 50;
/**
 * A wait for a sync at least this long, which left the kernel's queue half
 * full, makes the next waits drain the socket ({@link
 * BatchReceiver.drainsSyncs}) until one is shorter. A drain's poll(2) on a
 * worker thread wakes the daemon tens of microseconds after a datagram
 * comes, so during a shorter sync it takes in little that the receive
 * after the sync would not.
 */
export const DRAIN_SYNC_MS = 1;
/** Busy this long without parking, the receiver yields to the event loop itself. */
export const MAX_BUSY_MS = 100;
/** After the kernel's queue was found full (or nearly), the socket counts as crowded this long. */
export const CROWDED_MS = 1000;
/**
 * After a warning that the kernel's queue was found full, the next comes
 * this much later at the earliest: a crowd that stays finds it full
 * thousands of times a minute.
 */
export const QUEUE_FULL_REPORT_MS = 60_000;
/**
 * When the receiver parks after work, malloc's free memory goes back to
 * the kernel this much later (once the runtime's idle collection has
 * freed the buffers of the burst), at most once per this interval.
 */
export const TRIM_DELAY_MS = 15_000;

/** A datagram waiting for its pass, with the races it lost so far. */
export interface Carried extends Races {
  datagram: Datagram;
  /**
   * How its authentication turned out, once checked: a carried signed
   * datagram is not checked again (its nonce is already spent).
   */
  verdict?: "authentic" | "unsigned" | undefined;
}

/**
 * When to warn that the kernel's queue was found full: the first time,
 * then at most once per {@link QUEUE_FULL_REPORT_MS}, each warning with
 * the times since the one before. Pure: the caller passes the clock.
 */
export class QueueFullReports {
  #reportedAt = -Infinity;
  #unreported = 0;

  /**
   * The queue was found full at `now` (ms): returns the times since the
   * last warning (this one included) when a warning is due.
   */
  found(now: number): number | undefined {
    this.#unreported++;
    if (now - this.#reportedAt < QUEUE_FULL_REPORT_MS) return undefined;
    this.#reportedAt = now;
    const times = this.#unreported;
    this.#unreported = 0;
    return times;
  }
}

/** Batches of datagrams for the daemon's passes. */
export class BatchReceiver {
  #socket: AbstractDatagramSocket;
  #log: Logger;
  #carry: Carried[] = [];
  #queue: Carried[] = [];
  #justServed = false;
  /** The next wait right after a pass starts with a spin. */
  #spinNext = false;
  /** A wait for the socket in {@link receiveWhile} is in progress. */
  #polling = false;
  /** When the event loop last parked (performance.now()). */
  #parkedAt = performance.now();
  /** The kernel's queue for the socket, in datagrams. */
  #kernelQueue: number;
  /**
   * While a pass works, the socket is drained after every this many
   * requests and replies: a quarter of the kernel's queue, so that the
   * next requests the replies bring find room, and at least {@link
   * PUMP_EVERY}. A drain that finds the queue nearly empty is a system call
   * for nothing: with systemd's 512 this is 128, with the kernel's 10 it
   * is 2 (with 4, 32 clients were refused a fifth more often, and served
   * as fast or slower: docs/performance.md).
   */
  readonly pumpEvery: number;
  /** Until when the socket counts as crowded (performance.now()). */
  #crowdedUntil = 0;
  /** The next wait for a sync drains the socket ({@link drainsSyncs}). */
  #drainSyncs = false;
  /** The last {@link pump} failed (and logged why): a spin stops asking. */
  #pumpFailed = false;
  #trimTimer: Timer | undefined;
  #receivedAtTrim = 0;
  #fullReports = new QueueFullReports();
  /** Datagrams received so far. */
  received = 0;
  /**
   * Drains that found the kernel's queue full (it holds one datagram more
   * than {@link kernelQueue}): while full, the kernel refuses senders.
   */
  queueFull = 0;

  /** Called right before a spin: the next request is expected within it. */
  #beforeSpin: (() => void) | undefined;

  /**
   * Receives from `socket`; failures to receive are logged to `log`.
   * `beforeSpin` runs each time the receiver starts a spin for the next
   * request of a client it has just answered ({@link HOT_SPIN_MS}).
   * `kernelQueue` is how many datagrams the kernel queues for the socket
   * (default: the namespace's `net.unix.max_dgram_qlen`, read now, which
   * is right only for a socket whose queue was not raised).
   */
  constructor(
    socket: AbstractDatagramSocket,
    log: Logger,
    beforeSpin?: () => void,
    kernelQueue = datagramQueueLength(),
  ) {
    this.#socket = socket;
    this.#log = log;
    this.#beforeSpin = beforeSpin;
    this.#kernelQueue = kernelQueue;
    this.pumpEvery = Math.max(PUMP_EVERY, Math.floor(kernelQueue / 4));
  }

  /** The kernel's queue for the socket, as given at start. */
  get kernelQueue(): number {
    return this.#kernelQueue;
  }

  /** Puts a datagram into the next batch (a request that waits for the next pass). */
  carry(carried: Carried): void {
    this.#carry.push(carried);
  }

  /**
   * The last batch was served (with `replies` replies): the next wait
   * starts on the main thread, with a spin when the pass answered one
   * client ({@link HOT_SPIN_MS}).
   */
  served(replies: number): void {
    this.#justServed = true;
    this.#spinNext = replies <= 1;
  }

  /** Datagrams received and waiting for a pass. */
  get queued(): number {
    return this.#queue.length;
  }

  /**
   * The event loop has not parked for {@link STARVING_MS}: timers and
   * signal listeners are waiting for it.
   */
  get starving(): boolean {
    return performance.now() - this.#parkedAt >= STARVING_MS;
  }

  /**
   * The kernel's queue was found full, or one datagram short of it, within
   * {@link CROWDED_MS}: senders are likely being refused (EAGAIN), so every
   * moment the daemon waits should be spent draining the socket.
   */
  get crowded(): boolean {
    return performance.now() < this.#crowdedUntil;
  }

  /**
   * Drains the socket and tells whether a sync on the main thread might
   * see senders refused: half the kernel's queue or more is waiting for a
   * pass (a crowd that size brings as many requests again while the disk
   * works), or the socket is {@link crowded}.
   */
  mayOverflow(): boolean {
    return this.#halfQueue(this.pump()) || this.crowded;
  }

  /**
   * Whether `datagrams` are half the kernel's queue or more: the threshold
   * of {@link mayOverflow} and of {@link drainsSyncs}.
   */
  #halfQueue(datagrams: number): boolean {
    return datagrams * 2 >= this.#kernelQueue;
  }

  /**
   * A wait for a sync lasted {@link DRAIN_SYNC_MS} or more and left the
   * kernel's queue at least half full (or, drained, received that many),
   * and every wait since lasted as long: the syncs last long enough for the
   * next to fill the queue, so its wait drains it. (Whether the last wait
   * alone filled it half does not decide: a drained wait takes in what
   * comes, so its count swings around the half, and a wait left undrained
   * every other time refused more senders in a measurement with 3 ms
   * syncs.) A fast disk's sync (a few hundred microseconds) ends before a
   * drain's wake-up would take in much (measured in docs/performance.md);
   * during a slow disk's, or a database's over the network, a crowd's
   * requests would be refused. A wait for a sync that had already ended
   * tells nothing and changes nothing.
   */
  get drainsSyncs(): boolean {
    return this.#drainSyncs;
  }

  /** A sync waited for lasted `lasted` ms, and `arrived` datagrams came meanwhile. */
  #judgeSyncWait(lasted: number, arrived: number): void {
    const long = lasted >= DRAIN_SYNC_MS;
    this.#drainSyncs = long && (this.#drainSyncs || this.#halfQueue(arrived));
  }

  /** The event loop just parked (the daemon waited for an operation off the main thread). */
  parked(): void {
    this.#parkedAt = performance.now();
  }

  /**
   * Moves every datagram waiting in the kernel into our queue, without
   * blocking (up to {@link MAX_QUEUE}); returns how many are queued.
   */
  pump(): number {
    const queue = this.#queue;
    let drained = 0;
    let failed = false;
    try {
      while (queue.length < MAX_QUEUE) {
        const datagrams = this.#socket.receiveMany();
        for (const datagram of datagrams) queue.push({ datagram, attempt: 1, collisions: 0 });
        drained += datagrams.length;
        // Fewer than a full batch: the kernel's queue is empty now.
        if (datagrams.length < this.#socket.receiveBatch) break;
      }
    } catch (error) {
      failed = true;
      this.#log.error("cannot receive from the socket", { error: errorMessage(error) });
    }
    this.#pumpFailed = failed;
    this.received += drained;
    if (drained >= this.#kernelQueue) {
      this.#crowdedUntil = performance.now() + CROWDED_MS;
      // The kernel queues one datagram beyond its limit before it refuses the next sender.
      if (drained > this.#kernelQueue) this.#foundFull();
    }
    return queue.length;
  }

  /**
   * Counts a drain that found the kernel's queue full and warns of it
   * ({@link QueueFullReports}): a sender refused while it is full cannot
   * tell the server, and a C client refused tries again only 2 s later.
   */
  #foundFull(): void {
    this.queueFull++;
    const times = this.#fullReports.found(performance.now());
    if (times === undefined) return;
    this.#log.warn(
      "the socket's kernel queue was full: the kernel refuses senders until it is drained",
      {
        times,
        queue: this.#kernelQueue,
        hint: "raise socket_queue_length (the server raises net.unix.max_dgram_qlen for its " +
          "socket when it may) or the namespace's net.unix.max_dgram_qlen, and restart the " +
          "server (docs/operations.md, Many clients at once)",
      },
    );
  }

  /**
   * Called in a pass's loops (sorting, lookups, decisions, replies,
   * events) after `done` items: drains the socket after every {@link
   * pumpEvery} of them.
   */
  pumpAfter(done: number): void {
    if (done % this.pumpEvery === 0) this.pump();
  }

  /**
   * Drains the socket without sleeping until a datagram comes, `ms` pass
   * or receiving fails; returns whether one came.
   */
  #spin(ms: number): boolean {
    const until = performance.now() + ms;
    do {
      if (this.pump() > 0) return true;
    } while (!this.#pumpFailed && performance.now() < until);
    return false;
  }

  /** Datagrams waiting for a pass: carried over, or received and queued. */
  get waiting(): number {
    return this.#carry.length + this.#queue.length;
  }

  /**
   * Receives until `done` settles: while a commit waits for the disk on
   * another thread, the kernel's queue keeps being emptied into ours if
   * the syncs are long ({@link drainsSyncs}); else it is left alone until
   * `done` settles, then emptied once. With `untilWork`, returns as soon as
   * a datagram waits for a pass, so that the daemon can work on the next
   * pass meanwhile. Returns whether `done` has settled.
   */
  async receiveWhile(done: Promise<unknown>, untilWork = false): Promise<boolean> {
    let settled = false;
    /** When `done` settled: the sync's length, without the drain's wake-up after it. */
    let endedAt = 0;
    const stop = () => {
      settled = true;
      endedAt = performance.now();
      // Only a poll in progress needs waking; a wake-up left pending would end the next wait early.
      if (this.#polling) this.#socket.wake();
    };
    done.then(stop, stop);
    const since = performance.now();
    // Reactions to a promise already settled run once this function yields: let them.
    await Promise.resolve();
    if (!settled && !untilWork && !this.drainsSyncs) {
      // No poll to start and wake: the event loop parks until the sync ends.
      await done.catch(() => {});
      this.parked();
      const before = this.received;
      this.pump();
      this.#judgeSyncWait(endedAt - since, this.received - before);
      return true;
    }
    const before = this.received;
    let parked = false;
    while (!settled && !(untilWork && this.waiting > 0)) {
      this.#polling = true;
      try {
        await this.#socket.readable(-1);
      } catch (error) {
        this.#log.error("cannot wait for the socket", { error: errorMessage(error) });
        await done.catch(() => {});
        settled = true;
      } finally {
        this.#polling = false;
      }
      parked = true;
      this.pump();
    }
    if (parked) this.parked();
    if (!untilWork && parked) this.#judgeSyncWait(endedAt - since, this.received - before);
    return settled;
  }

  /**
   * About to park after work: in {@link TRIM_DELAY_MS}, malloc's free
   * memory goes back to the kernel (a burst of requests leaves megabytes
   * of freed buffers resident otherwise).
   */
  #trimLater(): void {
    if (this.#trimTimer !== undefined || this.received === this.#receivedAtTrim) return;
    this.#receivedAtTrim = this.received;
    this.#trimTimer = after(TRIM_DELAY_MS, () => {
      this.#trimTimer = undefined;
      try {
        mallocTrim();
      } catch { /* only memory: nothing to report */ }
    });
  }

  /** Stops the receiver's timer (the daemon has stopped). */
  close(): void {
    this.#trimTimer?.cancel();
    this.#trimTimer = undefined;
  }

  /**
   * The next batch: what was carried over, then what is queued (up to
   * {@link MAX_BATCH}). Empty after waiting until the socket became
   * readable, {@link AbstractDatagramSocket.wake} was called or `timeoutMs`
   * passed (-1: no timeout), so the loop can run its timers.
   */
  async next(timeoutMs = -1): Promise<Carried[]> {
    if (performance.now() - this.#parkedAt >= MAX_BUSY_MS) {
      // A timer's turn: the loop parks until it fires (about a millisecond).
      await sleep(0);
      this.parked();
    }
    if (this.#queue.length < MAX_BATCH) this.pump();
    const batch = this.#take();
    if (batch.length > 0) return batch;
    const hot = this.#justServed;
    this.#justServed = false;
    try {
      const hotWait = timeoutMs < 0 ? HOT_WAIT_MS : Math.min(HOT_WAIT_MS, timeoutMs);
      if (hot && this.#spinNext) {
        this.#beforeSpin?.();
        // What the spin found is queued already: no second receive, no second call.
        if (this.#spin(HOT_SPIN_MS)) return this.#take();
      }
      if (hot && this.#socket.readableNow(hotWait)) {
        this.pump();
        return this.#take(); // empty after a wake(): the loop looks at why
      }
      if (hot && timeoutMs >= 0 && timeoutMs <= HOT_WAIT_MS) return batch; // the loop's timer is due
      this.#trimLater();
      await this.#socket.readable(timeoutMs < 0 ? -1 : timeoutMs - (hot ? hotWait : 0));
      this.parked();
    } catch (error) {
      this.#log.error("cannot receive from the socket", { error: errorMessage(error) });
      await sleep(100);
      this.parked();
    }
    return batch;
  }

  /** What was carried over, then what is queued, up to {@link MAX_BATCH}. */
  #take(): Carried[] {
    const batch = this.#carry;
    this.#carry = [];
    const room = MAX_BATCH - batch.length;
    if (room > 0 && this.#queue.length > 0) {
      const taken = this.#queue.length <= room ? this.#queue : this.#queue.slice(0, room);
      this.#queue = taken === this.#queue ? [] : this.#queue.slice(room);
      for (const carried of taken) batch.push(carried);
    }
    return batch;
  }
}
