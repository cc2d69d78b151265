/**
 * The daemon in-process for unit tests: a real abstract socket (random
 * name, no root needed), an SQLite store in memory, optionally wrapped.
 *
 * @module
 */

import { validateConfig } from "../../config/config.ts";
import { MAX_REQUEST_BYTES } from "../../src/protocol/v1.ts";
import type { FlushOptions, Lease, LeaseStore, LeaseToken } from "../../src/store/lease_store.ts";
import { SqliteLeaseStore } from "../../src/store/sqlite_store.ts";
import { AbstractDatagramSocket } from "../../src/unix/abstract_socket.ts";
import { Daemon, type DaemonOptions } from "../../src/server/daemon.ts";
import type { LeaseEvent, LeaseObserver } from "../../src/server/events.ts";
import { MemoryLogger } from "./log.ts";
import { WireClient } from "./wire.ts";

/**
 * A store that hands every call to `inner`: tests extend it and override
 * the calls they make fail or wait.
 */
export class ForwardingStore implements LeaseStore {
  /** Wraps `inner`. */
  constructor(readonly inner: LeaseStore) {}
  lookup = (clientId: string) => this.inner.lookup(clientId);
  peek = (clientId: string) => this.inner.peek(clientId);
  update(clientId: string, leases: Lease[], token: LeaseToken): Promise<void> {
    return this.inner.update(clientId, leases, token);
  }
  releaseToken = (token: LeaseToken) => this.inner.releaseToken(token);
  flush(options?: FlushOptions): Promise<void> {
    return this.inner.flush(options);
  }
  list = (options?: Parameters<LeaseStore["list"]>[0]) => this.inner.list(options);
  usedTables = () => this.inner.usedTables();
  boundCount = (uid: number) => this.inner.boundCount(uid);
  boundTables = () => this.inner.boundTables();
  onExpire = (listener: Parameters<LeaseStore["onExpire"]>[0]) => this.inner.onExpire(listener);
  close = () => this.inner.close();
}

/** Lease events as `kind table`, for short assertions. */
export const kinds = (events: LeaseEvent[]): string[] =>
  events.map((e) => `${e.kind} ${e.lease?.table ?? 0}`);

/** A daemon serving in this process, stopped and closed on dispose. */
export interface Harness extends AsyncDisposable {
  daemon: Daemon;
  /** The real store under any wrapper. */
  store: SqliteLeaseStore;
  socketName: string;
  log: MemoryLogger;
  events: LeaseEvent[];
  /** Starts serving (unless started already). */
  run(): void;
  client(): WireClient;
}

/** How {@link startDaemon} sets the daemon up. */
export interface HarnessOptions {
  config?: Record<string, unknown>;
  /** Wraps the store the daemon uses. */
  wrap?: (store: LeaseStore) => LeaseStore;
  sharedStore?: boolean;
  /** Runs before the daemon is created (leases already stored). */
  before?: (store: SqliteLeaseStore) => Promise<void>;
  /** Start serving at once (default true). */
  start?: boolean;
  /** More daemon options (default: no kernel rules route anything at start). */
  daemon?: Partial<DaemonOptions>;
  /** More observers, after the one that fills `events`. */
  observers?: LeaseObserver[];
}

/** Starts a daemon over an in-memory store on a random socket name. */
export async function startDaemon(options: HarnessOptions = {}): Promise<Harness> {
  const socketName = `ta-unit-${crypto.randomUUID().slice(0, 8)}`;
  const config = validateConfig({
    socket_path: socketName,
    table_offset: 10000,
    num_tables: 4,
    table_timeout: 3600,
    db_path: ":memory:",
    addr_families: { inet: true },
    ...options.config,
  });
  const store = SqliteLeaseStore.open(":memory:");
  await options.before?.(store);
  const socket = AbstractDatagramSocket.bind(socketName, {
    passCredentials: true,
    receiveBufferSize: MAX_REQUEST_BYTES,
  });
  const log = new MemoryLogger();
  const events: LeaseEvent[] = [];
  const daemon = await Daemon.create({
    config,
    store: options.wrap?.(store) ?? store,
    socket,
    logger: log,
    sharedStore: options.sharedStore,
    observers: [
      { onLease: (e) => events.push(e), onErrorReply: () => {} },
      ...options.observers ?? [],
    ],
    // The test's own namespace may have rules of its own: the start sees none unless a test says so.
    routedTables: () => Promise.resolve([]),
    ...options.daemon,
  });
  let running: Promise<void> | undefined;
  const clients: WireClient[] = [];
  const harness: Harness = {
    daemon,
    store,
    socketName,
    log,
    events,
    run: () => void (running ??= daemon.run()),
    client() {
      const client = new WireClient(socketName);
      clients.push(client);
      return client;
    },
    async [Symbol.asyncDispose]() {
      daemon.stop();
      await running;
      for (const client of clients) client[Symbol.dispose]();
      socket.close();
      await store.close();
    },
  };
  if (options.start ?? true) harness.run();
  return harness;
}
