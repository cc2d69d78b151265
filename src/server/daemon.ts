/**
 * The server's loop: drain every datagram waiting on the socket, look up
 * their identities, decide (refresh, allocate, release), write every change
 * in one transaction, commit once, then send the replies. A reply is sent
 * only after the commit that holds its lease; an error reply (cmd 3) says
 * why a request could not be served.
 *
 * @module
 */

import { TablePool } from "../allocator/table_pool.ts";
import { clockSeconds } from "../../ffi/libc.ts";
import type { ServerConfig } from "../../config/config.ts";
import type { Logger } from "../log/logger.ts";
import { AddrFamily } from "../net/ip.ts";
import {
  Command,
  decodeRequest,
  encodeError,
  encodeReply,
  type ErrorCode,
  ProtocolError,
  type Request,
} from "../protocol/v1.ts";
import {
  type AbstractDatagramSocket,
  type Credentials,
  type Datagram,
  describeAddress,
} from "../unix/abstract_socket.ts";
import {
  clientIdOf,
  ConcurrencyError,
  type Lease,
  type LeaseStore,
  type LeaseToken,
} from "../store/lease_store.ts";

/** Most datagrams handled in one pass (one transaction). */
export const MAX_BATCH = 512;
/**
 * After a pass, how long to keep trying a non-blocking receive before
 * parking in poll(2). Waking from poll costs a thread hand-off (about
 * 100 µs here); a client that answers quickly (the next request after a
 * reply) is caught by the spin instead. An idle server spins once, then sleeps.
 */
export const SPIN_MICROSECONDS = 150;
/** A request that loses an optimistic-concurrency race is retried this often. */
const MAX_ATTEMPTS = 3;
/** The lease owner the server writes. */
export const SERVER_OWNER = "table-allocator-server";

const FAMILY_NAMES: Record<number, keyof ServerConfig["addrFamilies"]> = {
  [AddrFamily.INET]: "inet",
  [AddrFamily.INET6]: "inet6",
  [AddrFamily.UNSPEC]: "unspec",
};

/** What the daemon needs; the caller owns (and closes) each part. */
export interface DaemonOptions {
  config: ServerConfig;
  store: LeaseStore;
  socket: AbstractDatagramSocket;
  logger: Logger;
  /** Wall clock in ms. */
  now?: () => number;
  /** Seconds on the clock the C client reads (CLOCK_MONOTONIC_RAW). */
  monotonicSeconds?: () => number;
}

interface Job {
  datagram: Datagram;
  request: Request;
  clientId: string;
  attempt: number;
}

type Event = "granted" | "refreshed" | "released" | "expired" | "rejected";

/** Counters for the status line and for tests. */
export interface DaemonStats {
  batches: number;
  requests: number;
  errors: number;
}

/** The allocation daemon. */
export class Daemon {
  #config: ServerConfig;
  #store: LeaseStore;
  #socket: AbstractDatagramSocket;
  #log: Logger;
  #now: () => number;
  #monotonic: () => number;
  #pools = new Map<AddrFamily, TablePool>();
  #carry: Array<{ datagram: Datagram; attempt: number }> = [];
  #stopping = false;
  #justServed = false;
  #unsubscribe: () => void = () => {};
  /** Work counters. */
  readonly stats: DaemonStats = { batches: 0, requests: 0, errors: 0 };

  private constructor(options: DaemonOptions) {
    this.#config = options.config;
    this.#store = options.store;
    this.#socket = options.socket;
    this.#log = options.logger;
    this.#now = options.now ?? Date.now;
    this.#monotonic = options.monotonicSeconds ?? (() => clockSeconds());
    for (const [family, name] of Object.entries(FAMILY_NAMES)) {
      if (options.config.addrFamilies[name]) {
        this.#pools.set(
          Number(family) as AddrFamily,
          new TablePool(options.config.tableOffset, options.config.numTables),
        );
      }
    }
  }

  /**
   * Builds a daemon whose pools are rebuilt from the store: every stored
   * lease marks its table taken. Leases outside the configured pools
   * (after a config change) are kept and reported, never dropped.
   */
  static async create(options: DaemonOptions): Promise<Daemon> {
    const daemon = new Daemon(options);
    daemon.#unsubscribe = options.store.onExpire((lease) => daemon.#expired(lease));
    let outside = 0;
    for (const [family, table] of await options.store.usedTables()) {
      const pool = daemon.#pools.get(family);
      if (pool?.take(table)) continue;
      if (outside++ < 10) {
        options.logger.warn(
          "stored lease outside the configured pools is kept until it expires or is released",
          {
            family,
            table,
            reason: pool
              ? `table not in ${pool.first}-${pool.first + pool.size - 1}`
              : "family disabled",
          },
        );
      }
    }
    if (outside > 10) {
      options.logger.warn("more stored leases outside the configured pools are kept", {
        count: outside - 10,
      });
    }
    return daemon;
  }

  /** Per-family pools, for status and tests. */
  get pools(): ReadonlyMap<AddrFamily, TablePool> {
    return this.#pools;
  }

  /** Serves until {@link stop} is called; in-flight work is committed before it returns. */
  async run(): Promise<void> {
    while (!this.#stopping) {
      const batch = this.#carry;
      this.#carry = [];
      try {
        while (batch.length < MAX_BATCH) {
          const datagram = this.#socket.receive();
          if (!datagram) break;
          batch.push({ datagram, attempt: 1 });
        }
        if (batch.length === 0) {
          const datagram = this.#spinForDatagram();
          if (!datagram) {
            await this.#socket.readable(-1);
            continue;
          }
          batch.push({ datagram, attempt: 1 });
        }
      } catch (error) {
        this.#log.error("cannot receive from the socket", { error: (error as Error).message });
        await new Promise((r) => setTimeout(r, 100));
        if (batch.length === 0) continue;
      }
      await this.#process(batch);
      this.#justServed = true;
    }
    this.#unsubscribe();
  }

  /**
   * Right after a pass, tries a non-blocking receive for
   * {@link SPIN_MICROSECONDS}; otherwise returns null at once.
   */
  #spinForDatagram(): Datagram | null {
    if (!this.#justServed) return null;
    this.#justServed = false;
    const until = performance.now() + SPIN_MICROSECONDS / 1000;
    do {
      const datagram = this.#socket.receive();
      if (datagram) return datagram;
    } while (performance.now() < until);
    return null;
  }

  /** Stops receiving; {@link run} returns after the current pass is committed and answered. */
  stop(): void {
    this.#stopping = true;
    this.#socket.wake();
  }

  async #process(batch: Array<{ datagram: Datagram; attempt: number }>): Promise<void> {
    this.stats.batches++;
    const replies: Array<[Uint8Array<ArrayBuffer>, Datagram]> = [];
    const jobs: Job[] = [];
    const seen = new Set<string>();
    for (const { datagram, attempt } of batch) {
      this.stats.requests++;
      let request: Request;
      try {
        request = decodeRequest(datagram.data, datagram.length);
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error;
        replies.push([this.#reject(error.code, error.message, datagram), datagram]);
        continue;
      }
      if (!this.#pools.has(request.identity.family) && request.cmd === Command.REQUEST) {
        const message = `address family ${request.identity.family} is not enabled on this server`;
        replies.push([this.#reject("family_disabled", message, datagram, request), datagram]);
        continue;
      }
      const clientId = clientIdOf(request.identity);
      // A second message for the same identity waits for the next pass, so
      // it sees this one's committed result instead of racing it.
      if (seen.has(clientId)) {
        this.#carry.push({ datagram, attempt });
        continue;
      }
      seen.add(clientId);
      jobs.push({ datagram, request, clientId, attempt });
    }

    const lookups = await Promise.allSettled(jobs.map((job) => this.#store.lookup(job.clientId)));
    const updates: Array<Promise<() => Uint8Array<ArrayBuffer>>> = [];
    const updateJobs: Job[] = [];
    lookups.forEach((lookup, i) => {
      const job = jobs[i];
      if (lookup.status === "rejected") {
        replies.push([this.#storeFailure(job, lookup.reason), job.datagram]);
        return;
      }
      const { leases, token } = lookup.value;
      const outcome = job.request.cmd === Command.REQUEST
        ? this.#grant(job, leases, token)
        : this.#release(job, leases, token);
      if (outcome instanceof Uint8Array) replies.push([outcome, job.datagram]);
      else {
        updates.push(outcome);
        updateJobs.push(job);
      }
    });

    if (updates.length > 0) {
      await this.#store.flush().catch(() => {/* each update's promise carries the failure */});
      const results = await Promise.allSettled(updates);
      results.forEach((result, i) => {
        const job = updateJobs[i];
        if (result.status === "fulfilled") replies.push([result.value(), job.datagram]);
        else if (result.reason instanceof ConcurrencyError && job.attempt < MAX_ATTEMPTS) {
          this.#carry.push({ datagram: job.datagram, attempt: job.attempt + 1 });
        } else replies.push([this.#storeFailure(job, result.reason), job.datagram]);
      });
    }
    for (const [data, datagram] of replies) this.#send(data, datagram);
  }

  /**
   * A request: refresh the identity's lease (same table) or allocate the
   * lowest free table. Returns an error reply, or the pending update whose
   * value, once durable, builds the reply.
   */
  #grant(
    job: Job,
    leases: Lease[],
    token: LeaseToken,
  ): Uint8Array<ArrayBuffer> | Promise<() => Uint8Array<ArrayBuffer>> {
    const { identity, tag } = job.request;
    const pool = this.#pools.get(identity.family)!;
    const expiresAt = this.#now() + this.#config.tableTimeout * 1000;
    const existing = leases.find((l) => l.state === "bound");
    let table: number;
    let allocated = false;
    if (existing) {
      table = existing.table;
    } else {
      if (pool.free === 0) {
        this.#store.releaseToken(token);
        const message = `all ${pool.size} tables from ${pool.first} are leased`;
        return this.#reject("pool_exhausted", message, job.datagram, job.request);
      }
      table = pool.allocate();
      allocated = true;
    }
    const lease: Lease = {
      ...identity,
      table,
      expiresAt,
      tag: tag ?? existing?.tag,
      owner: SERVER_OWNER,
      state: "bound",
    };
    return this.#store.update(job.clientId, [lease], token).then(
      () => () => {
        this.#event(existing ? "refreshed" : "granted", job, {
          table,
          expires: new Date(expiresAt).toISOString(),
        });
        return encodeReply(table, this.#monotonic() + (expiresAt - this.#now()) / 1000);
      },
      (error) => {
        if (allocated) pool.release(table);
        throw error;
      },
    );
  }

  /** A release: delete the identity's leases; acknowledged even when it has none. */
  #release(
    job: Job,
    leases: Lease[],
    token: LeaseToken,
  ): Uint8Array<ArrayBuffer> | Promise<() => Uint8Array<ArrayBuffer>> {
    const bound = leases.filter((l) => l.state === "bound");
    if (bound.length === 0) {
      this.#store.releaseToken(token);
      this.#event("released", job, { table: 0, note: "no lease held" }, "debug");
      return encodeReply(0, 0);
    }
    // The released lease stays as history (state "released") until the retention passes.
    const history = bound.map((l): Lease => ({ ...l, state: "released", owner: SERVER_OWNER }));
    return this.#store.update(job.clientId, history, token).then(() => () => {
      for (const lease of bound) {
        this.#free(lease);
        this.#event("released", job, { table: lease.table });
      }
      return encodeReply(0, 0);
    });
  }

  #expired(lease: Lease): void {
    this.#free(lease);
    this.#log.info("expired", {
      family: lease.family,
      ifname: lease.ifname,
      address: lease.address,
      table: lease.table,
      expired: new Date(lease.expiresAt).toISOString(),
    });
  }

  /** Returns a lease's table to its pool; a table outside every pool is just logged. */
  #free(lease: Lease): void {
    const pool = this.#pools.get(lease.family);
    if (pool?.contains(lease.table) && !pool.isFree(lease.table)) pool.release(lease.table);
    else {this.#log.info("lease outside the configured pools ended", {
        family: lease.family,
        table: lease.table,
      });}
  }

  #storeFailure(job: Job, reason: unknown): Uint8Array<ArrayBuffer> {
    const message = `lease store failure: ${
      reason instanceof Error ? reason.message : String(reason)
    }`;
    return this.#reject("store_failure", message, job.datagram, job.request);
  }

  #reject(
    code: ErrorCode,
    message: string,
    datagram: Datagram,
    request?: Request,
  ): Uint8Array<ArrayBuffer> {
    this.stats.errors++;
    this.#log.warn("rejected", {
      error: code,
      reason: message,
      ...(request ? identityFields(request) : {}),
      from: describeAddress(datagram.sender),
      ...credentialFields(datagram.credentials),
    });
    return encodeError(code, message);
  }

  #event(
    event: Event,
    job: Job,
    fields: Record<string, string | number>,
    level: "info" | "debug" = "info",
  ): void {
    this.#log.log(level, event, {
      ...identityFields(job.request),
      ...fields,
      from: describeAddress(job.datagram.sender),
      ...credentialFields(job.datagram.credentials),
    });
  }

  #send(data: Uint8Array<ArrayBuffer>, datagram: Datagram): void {
    try {
      if (!this.#socket.send(data, datagram.sender)) {
        this.#log.warn("reply dropped: the client's queue is full", {
          to: describeAddress(datagram.sender),
        });
      }
    } catch (error) {
      // The client may have gone; its lease stays correct and reclaimable.
      this.#log.debug("reply not delivered", {
        to: describeAddress(datagram.sender),
        error: (error as Error).message,
      });
    }
  }
}

function identityFields(request: Request): Record<string, string | number> {
  const { family, ifname, address } = request.identity;
  return request.tag === undefined
    ? { family, ifname, address }
    : { family, ifname, address, tag: request.tag };
}

function credentialFields(credentials: Credentials | undefined): Record<string, number> {
  return credentials ? { pid: credentials.pid, uid: credentials.uid, gid: credentials.gid } : {};
}
