/**
 * What the daemon is built from and what it counts: its parts (config,
 * store, socket, log, observers), its clocks, and the hooks through which
 * the server wires in metrics, systemd, reloads and the readiness delay.
 *
 * @module
 */

import type { ServerConfig } from "../../config/config.ts";
import type { Logger } from "../log/logger.ts";
import type { ServerMetrics } from "../metrics/server_metrics.ts";
import type { LeaseStore } from "../store/lease_store.ts";
import type { AbstractDatagramSocket } from "../unix/abstract_socket.ts";
import type { LeaseObserver } from "./events.ts";
import type { RoutedTable } from "./kernel_rules.ts";
import type { SystemdNotifier } from "./notify.ts";
import type { MessageAuth } from "./intake.ts";

/** With a store shared with other servers, rebuild the allocation this often. */
export const RESYNC_INTERVAL_MS = 5000;

/** What the daemon needs; the caller owns (and closes) each part. */
export interface DaemonOptions {
  config: ServerConfig;
  store: LeaseStore;
  socket: AbstractDatagramSocket;
  logger: Logger;
  /** Outputs that follow the leases, told after the log (which is always first). */
  observers?: LeaseObserver[];
  /** Wall clock in ms. */
  now?: () => number;
  /**
   * How many datagrams the kernel queues for the socket (default:
   * `net.unix.max_dgram_qlen`, read at start; the server passes what
   * `bindServerSocket` gave its socket): with half of it waiting at
   * a commit, the daemon waits for the sync off the main thread, and while
   * a pass works it drains the socket after every quarter of it
   * (`BatchReceiver.pumpEvery`).
   */
  kernelQueue?: number;
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
  /** The log writes lease events (the default); false when the `eventlog` output does. */
  logLeaseEvents?: boolean;
  /** The counters of `ctl metrics`: passes and commits (events and errors come as an observer). */
  metrics?: ServerMetrics;
  /** systemd's notifications: the loop pings the watchdog and keeps the status line. */
  notifier?: SystemdNotifier;
  /** Reads the config file again, for a reload; without it a reload is refused. */
  readConfig?: () => Promise<ServerConfig>;
  /** The config file, as `reload` results name it. */
  configPath?: string;
  /** Switches the log to a config's settings (a reload); throws when they cannot be opened. */
  reconfigureLog?: (config: ServerConfig) => void;
  /** Hears of the config in effect after each reload (the first config is the caller's own). */
  onConfig?: (config: ServerConfig) => Promise<void> | void;
  /** The tables the kernel's rules route through at start (default: a netlink dump). */
  routedTables?: () => Promise<RoutedTable[]>;
  /**
   * Message authentication (`auth` in the config): requests are checked,
   * the replies to signed ones signed; with `require`, unsigned lease
   * requests are refused (`unauthenticated`).
   */
  auth?: MessageAuth | undefined;
}

/** Counters for the status line and for tests. */
export interface DaemonStats {
  /** Passes (transactions) run. */
  batches: number;
  /** Datagrams received. */
  requests: number;
  /** Error replies sent. */
  errors: number;
}
