/**
 * The server's loop: drain every datagram waiting on the socket, look up
 * their identities, decide (refresh, allocate, release), write every change
 * in one transaction, commit once, then send the replies. A reply is sent
 * only after the commit that holds its lease; an error reply (cmd 3) says
 * why a request could not be served.
 *
 * @module
 */

import { clockSeconds } from "../../ffi/libc.ts";
import { enabledFamilies, type ServerConfig } from "../../config/config.ts";
import type { Logger } from "../log/logger.ts";
import { type AddrFamily, familyName } from "../net/family.ts";
import {
  Command,
  decodeRequestObject,
  encodeError,
  encodeReply,
  type ErrorCode,
  parseDatagram,
  ProtocolError,
  type Request,
} from "../protocol/v1.ts";
import { ControlCommand, decodeControlRequest } from "../control/protocol.ts";
import { Allocation, type Choice } from "./allocation.ts";
import { ControlHandler, syncConfigReservations } from "./control.ts";
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
  releasedAt,
} from "../store/lease_store.ts";
import { errorMessage } from "../util/errors.ts";

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
const MAX_ATTEMPTS = 5;
/**
 * With a shared store, a fresh table another server took meanwhile is not
 * the request's fault: such collisions are retried this often on top (each
 * retry follows a rebuild of the allocation, so they end quickly).
 */
const MAX_COLLISIONS = 32;
/** With a store shared with other servers, rebuild the allocation this often. */
export const RESYNC_INTERVAL_MS = 5000;
/** The lease owner the server writes. */
export const SERVER_OWNER = "table-allocator-server";

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
  /**
   * Other servers write to the same store (PostgreSQL): the allocation is
   * only a hint, rebuilt every {@link RESYNC_INTERVAL_MS} and when a pool
   * looks full; the store's unique indexes have the last word.
   */
  sharedStore?: boolean;
  /** How `status` describes the store. */
  storeDescription?: string;
}

/** A datagram waiting for its pass, with the races it lost so far. */
interface Carried {
  datagram: Datagram;
  attempt: number;
  collisions: number;
}

interface Job extends Carried {
  request: Request;
  clientId: string;
}

type Event = "granted" | "refreshed" | "moved" | "released" | "expired" | "rejected";

/** Counters for the status line and for tests. */
export interface DaemonStats {
  /** Passes (transactions) run. */
  batches: number;
  /** Datagrams received. */
  requests: number;
  /** Error replies sent. */
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
  #families: AddrFamily[];
  #allocation!: Allocation;
  #shared: boolean;
  #resyncAt = Infinity;
  #resyncDue = false;
  #control: ControlHandler;
  #carry: Carried[] = [];
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
    this.#families = enabledFamilies(options.config.addrFamilies);
    this.#shared = options.sharedStore ?? false;
    this.#control = new ControlHandler({
      config: options.config,
      store: options.store,
      allocation: () => this.#allocation,
      log: options.logger,
      startedAt: this.#now(),
      storeDescription: options.storeDescription ?? "sqlite",
      now: this.#now,
    });
  }

  /**
   * Builds a daemon whose state is rebuilt from the store: the config's
   * reservations are written, and every stored lease and reservation marks
   * its table taken. Leases outside the configured pools (after a config
   * change) are kept and reported, never dropped.
   */
  static async create(options: DaemonOptions): Promise<Daemon> {
    const daemon = new Daemon(options);
    daemon.#unsubscribe = options.store.onExpire((lease) => daemon.#expired(lease));
    await syncConfigReservations(options.config, options.store, options.logger);
    await daemon.#load(true);
    return daemon;
  }

  /** Rebuilds the allocation from the store; `report` logs leases outside the pools. */
  async #load(report: boolean): Promise<void> {
    let outside = 0;
    this.#allocation = await Allocation.load(this.#config, this.#store, (family, table) => {
      if (report && outside++ < 10) {
        this.#log.warn(
          "stored lease outside the configured pools is kept until it expires or is released",
          {
            family,
            table,
            reason: this.#families.includes(family) ? "table in no pool" : "family disabled",
          },
        );
      }
    });
    if (report && outside > 10) {
      this.#log.warn("more stored leases outside the configured pools are kept", {
        count: outside - 10,
      });
    }
    if (this.#shared) this.#resyncAt = this.#now() + RESYNC_INTERVAL_MS;
    this.#resyncDue = false;
  }

  /** The pools and reservations, for status and tests. */
  get allocation(): Allocation {
    return this.#allocation;
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
          batch.push({ datagram, attempt: 1, collisions: 0 });
          this.stats.requests++;
        }
        if (batch.length === 0) {
          const datagram = this.#spinForDatagram();
          if (!datagram) {
            await this.#socket.readable(-1);
            continue;
          }
          batch.push({ datagram, attempt: 1, collisions: 0 });
          this.stats.requests++;
        }
      } catch (error) {
        this.#log.error("cannot receive from the socket", { error: errorMessage(error) });
        await new Promise((r) => setTimeout(r, 100));
        if (batch.length === 0) continue;
      }
      if (this.#resyncDue || this.#now() >= this.#resyncAt) {
        await this.#load(false).catch((error) =>
          this.#log.error("cannot rebuild the allocation from the store", {
            error: errorMessage(error),
          })
        );
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

  async #process(batch: Carried[]): Promise<void> {
    this.stats.batches++;
    const replies: Array<[Uint8Array<ArrayBuffer>, Datagram]> = [];
    const jobs: Job[] = [];
    const controls: Array<{ datagram: Datagram; message: Record<string, unknown> }> = [];
    const seen = new Set<string>();
    for (const { datagram, attempt, collisions } of batch) {
      let request: Request;
      try {
        const message = parseDatagram(datagram.data, datagram.length);
        if (message.cmd === ControlCommand.REQUEST) {
          controls.push({ datagram, message });
          continue;
        }
        request = decodeRequestObject(message);
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error;
        replies.push([this.#reject(error.code, error.message, datagram), datagram]);
        continue;
      }
      if (!this.#families.includes(request.identity.family) && request.cmd === Command.REQUEST) {
        const message = `address family ${request.identity.family} (${
          familyName(request.identity.family)
        }) is not enabled on this server`;
        replies.push([this.#reject("family_disabled", message, datagram, request), datagram]);
        continue;
      }
      const clientId = clientIdOf(request.identity);
      // A second message for the same identity waits for the next pass, so
      // it sees this one's committed result instead of racing it.
      if (seen.has(clientId)) {
        this.#carry.push({ datagram, attempt, collisions });
        continue;
      }
      seen.add(clientId);
      jobs.push({ datagram, request, clientId, attempt, collisions });
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
      if (outcome === null) return;
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
        const reason = result.status === "rejected" ? result.reason : undefined;
        const { datagram, attempt, collisions } = job;
        if (result.status === "fulfilled") replies.push([result.value(), datagram]);
        else if (
          this.#shared && reason instanceof ConcurrencyError && reason.kind === "taken" &&
          collisions < MAX_COLLISIONS
        ) {
          this.#carry.push({ datagram, attempt, collisions: collisions + 1 });
        } else if (reason instanceof ConcurrencyError && attempt < MAX_ATTEMPTS) {
          this.#carry.push({ datagram, attempt: attempt + 1, collisions });
        } else replies.push([this.#storeFailure(job, reason), datagram]);
      });
    }
    for (const [data, datagram] of replies) this.#send(data, datagram);
    // Control requests are rare and not on the hot path: one at a time, after the leases.
    for (const { datagram, message } of controls) {
      this.#send(await this.#controlReply(datagram, message), datagram);
    }
  }

  async #controlReply(
    datagram: Datagram,
    message: Record<string, unknown>,
  ): Promise<Uint8Array<ArrayBuffer>> {
    const uid = datagram.credentials?.uid;
    if (uid !== 0) {
      return this.#reject(
        "not_permitted",
        `control requests are answered only to root (uid 0), got uid ${uid ?? "unknown"}`,
        datagram,
      );
    }
    try {
      return await this.#control.handle(decodeControlRequest(message), uid);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      return this.#reject(error.code, error.message, datagram);
    }
  }

  /**
   * A request: refresh the identity's lease (same table), or give it a
   * table: its reservation's, else the lowest free one of the first pool
   * that serves it. A reservation wins over a lease on another table: the
   * owner moves to its reserved table when it is free (the client moves
   * its rules). Returns an error reply, the pending update whose value,
   * once durable, builds the reply, or null when the request waits for
   * the next pass.
   */
  #grant(
    job: Job,
    leases: Lease[],
    token: LeaseToken,
  ): Uint8Array<ArrayBuffer> | Promise<() => Uint8Array<ArrayBuffer>> | null {
    const { identity, tag } = job.request;
    const allocation = this.#allocation;
    const expiresAt = this.#now() + this.#config.tableTimeout * 1000;
    const existing = leases.find((l) => l.state === "bound");
    const reservation = existing && allocation.reservationFor(identity);
    let choice: Choice | undefined;
    if (!existing) {
      const chosen = allocation.choose(identity, tag);
      if ("code" in chosen) {
        this.#store.releaseToken(token);
        if (chosen.code === "pool_exhausted" && this.#shared && job.attempt === 1) {
          // Another server may have freed tables: look again after a rebuild.
          this.#resyncDue = true;
          this.#carry.push({
            datagram: job.datagram,
            attempt: job.attempt + 1,
            collisions: job.collisions,
          });
          return null;
        }
        return this.#reject(chosen.code, chosen.message, job.datagram, job.request);
      }
      choice = chosen;
    } else if (
      reservation && reservation.table !== existing.table && allocation.claimReserved(reservation)
    ) {
      choice = { kind: "reservation", table: reservation.table, reservation };
    }
    const table = choice?.table ?? existing!.table;
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
        const moved = existing !== undefined && existing.table !== table;
        if (moved) allocation.ended(existing);
        this.#event(existing ? (moved ? "moved" : "refreshed") : "granted", job, {
          table,
          ...(moved ? { previous_table: existing.table } : {}),
          ...(choice?.kind === "pool" ? { pool: choice.pool.name } : {}),
          ...(choice?.kind === "reservation" ? { reserved: "yes" } : {}),
          expires: new Date(expiresAt).toISOString(),
        });
        return encodeReply(table, this.#monotonic() + (expiresAt - this.#now()) / 1000);
      },
      (error) => {
        if (choice) {
          allocation.undo(choice);
          // With a shared store the table may be another server's now: mark
          // it, and rebuild before the retry, since that server is likely
          // ahead on the next tables too.
          if (this.#shared && error instanceof ConcurrencyError) {
            allocation.markTaken(identity.family, choice.table);
            this.#resyncDue = true;
          }
        }
        throw error;
      },
    );
  }

  /** A release: the identity's bound leases become history; acknowledged even when it has none. */
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
    // The released lease stays as history until the retention passes.
    const endedAt = this.#now();
    const history = bound.map((l) => ({ ...releasedAt(l, endedAt), owner: SERVER_OWNER }));
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

  /** Returns a lease's table to its reservation or pool; a table outside every pool is just logged. */
  #free(lease: Lease): void {
    if (!this.#allocation.ended(lease)) {
      this.#log.info("lease outside the configured pools ended", {
        family: lease.family,
        table: lease.table,
      });
    }
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
        error: errorMessage(error),
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
