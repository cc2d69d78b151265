/**
 * The server's metrics: counters the daemon bumps as it works, and a
 * snapshot of its pools taken when the metrics are read, written as
 * Prometheus text (`table-allocator-ctl metrics`, the `prometheus_textfile`
 * output). Every name starts with `table_allocator_`.
 *
 * @module
 */

import { LEASE_EVENT_KINDS, type LeaseEventKind } from "../../config/operations.ts";
import { type AddrFamily, familyName } from "../net/family.ts";
import type { ErrorReplyEvent, LeaseEvent, LeaseObserver } from "../server/events.ts";
import { formatExposition, Histogram, type MetricFamily } from "./exposition.ts";

/** Upper bounds (seconds) of the commit latency buckets: fsync on SSD to a slow shared store. */
export const COMMIT_BUCKETS: readonly number[] = [
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
];

/** One pool at the time of a snapshot. */
export interface PoolSnapshot {
  name: string;
  family: AddrFamily;
  size: number;
  free: number;
  /** Tables bound to an identity. */
  bound: number;
  /** Tables held by a reservation and not bound. */
  reserved: number;
  /** Tables held back for an identity (after an admin release or a start). */
  held: number;
}

/** What the metrics read from the server's state when they are written. */
export interface MetricsSnapshot {
  pools: PoolSnapshot[];
  /** Bound leases whose table no pool holds (after a config change). */
  outside: number;
  uptimeSeconds: number;
  version: string;
  /**
   * The server's socket: its kernel queue (`socket_queue_length` or the
   * namespace's `net.unix.max_dgram_qlen`, whichever is longer), and
   * the drains that found the kernel's queue full (while full, it refuses senders).
   */
  socketQueue: { limit: number; full: number };
}

/**
 * Counters and the commit histogram of one server run. It observes the
 * daemon's lease events and error replies; the daemon counts passes and
 * commits itself.
 */
export class ServerMetrics implements LeaseObserver {
  readonly #events = new Map<LeaseEventKind, number>(LEASE_EVENT_KINDS.map((k) => [k, 0]));
  readonly #errors = new Map<string, number>();
  readonly #outputFailures = new Map<string, number>();
  readonly #reloads = { ok: 0, refused: 0 };
  readonly #commits = new Histogram(COMMIT_BUCKETS);
  #passes = 0;
  #datagrams = 0;

  /** Counts a lease event (a release of nothing changes no lease and is not one). */
  onLease(event: LeaseEvent): void {
    if (event.lease) this.leaseEvent(event.kind);
  }

  /** Counts an error reply by its code. */
  onErrorReply(event: ErrorReplyEvent): void {
    this.errorReply(event.code);
  }

  /** A lease event happened. */
  leaseEvent(kind: LeaseEventKind): void {
    this.#events.set(kind, this.#events.get(kind)! + 1);
  }

  /** An error reply with this code was sent. */
  errorReply(code: string): void {
    this.#errors.set(code, (this.#errors.get(code) ?? 0) + 1);
  }

  /** A pass (one transaction over the datagrams waiting) ran over `datagrams` datagrams. */
  pass(datagrams: number): void {
    this.#passes++;
    this.#datagrams += datagrams;
  }

  /** A commit took this long. */
  commitSeconds(seconds: number): void {
    this.#commits.observe(seconds);
  }

  /** A reload was applied (`ok`) or refused. */
  reload(ok: boolean): void {
    if (ok) this.#reloads.ok++;
    else this.#reloads.refused++;
  }

  /** An output (named as in the config, `outputs[N]`) failed once. */
  outputFailure(output: string): void {
    this.#outputFailures.set(output, (this.#outputFailures.get(output) ?? 0) + 1);
  }

  /** The exposition text of the counters and `snapshot`. */
  render(snapshot: MetricsSnapshot): string {
    const pool = (p: PoolSnapshot) => ({ pool: p.name, family: familyName(p.family) });
    const families: MetricFamily[] = [
      {
        name: "table_allocator_info",
        help: "The server's version (always 1).",
        type: "gauge",
        samples: [{ labels: { version: snapshot.version }, value: 1 }],
      },
      {
        name: "table_allocator_uptime_seconds",
        help: "Seconds since the server started.",
        type: "gauge",
        samples: [{ value: snapshot.uptimeSeconds }],
      },
      {
        name: "table_allocator_leases",
        help: "Tables of each pool by state: bound to an identity, reserved and not bound, " +
          "held back for an identity.",
        type: "gauge",
        samples: snapshot.pools.flatMap((p) =>
          (["bound", "reserved", "held"] as const).map((state) => ({
            labels: { ...pool(p), state },
            value: p[state],
          }))
        ),
      },
      {
        name: "table_allocator_leases_outside_pools",
        help: "Bound leases whose table is in no configured pool (kept until they end).",
        type: "gauge",
        samples: [{ value: snapshot.outside }],
      },
      {
        name: "table_allocator_pool_tables",
        help: "Tables in each pool.",
        type: "gauge",
        samples: snapshot.pools.map((p) => ({ labels: pool(p), value: p.size })),
      },
      {
        name: "table_allocator_pool_free_tables",
        help: "Tables of each pool that the next request may get.",
        type: "gauge",
        samples: snapshot.pools.map((p) => ({ labels: pool(p), value: p.free })),
      },
      {
        name: "table_allocator_lease_events_total",
        help: "Lease events since the start: granted, refreshed, moved, released, expired.",
        type: "counter",
        samples: [...this.#events].map(([event, value]) => ({ labels: { event }, value })),
      },
      {
        name: "table_allocator_error_replies_total",
        help: "Error replies sent since the start, by error code.",
        type: "counter",
        samples: sortedEntries(this.#errors).map(([code, value]) => ({ labels: { code }, value })),
      },
      {
        name: "table_allocator_passes_total",
        help: "Passes (one transaction over every datagram waiting) since the start.",
        type: "counter",
        samples: [{ value: this.#passes }],
      },
      {
        name: "table_allocator_datagrams_total",
        help: "Datagrams received since the start.",
        type: "counter",
        samples: [{ value: this.#datagrams }],
      },
      {
        name: "table_allocator_socket_queue_limit",
        help: "Datagrams the kernel queues for the server's socket (socket_queue_length or " +
          "the namespace's net.unix.max_dgram_qlen, whichever is longer): the kernel " +
          "refuses senders once more datagrams than this wait.",
        type: "gauge",
        samples: [{ value: snapshot.socketQueue.limit }],
      },
      {
        name: "table_allocator_socket_queue_full_total",
        help: "Times the server found its socket's kernel queue full; while full, the kernel " +
          "refuses senders (EAGAIN).",
        type: "counter",
        samples: [{ value: snapshot.socketQueue.full }],
      },
      {
        name: "table_allocator_commit_duration_seconds",
        help: "Time from the start of a pass's commit until it is durable.",
        type: "histogram",
        bounds: this.#commits.bounds,
        series: [this.#commits.series()],
      },
      {
        name: "table_allocator_reloads_total",
        help: "Config reloads since the start: applied (ok) or refused.",
        type: "counter",
        samples: [
          { labels: { result: "ok" }, value: this.#reloads.ok },
          { labels: { result: "refused" }, value: this.#reloads.refused },
        ],
      },
      {
        name: "table_allocator_output_failures_total",
        help: "Failed runs of outputs (commands, file writes), by output.",
        type: "counter",
        samples: sortedEntries(this.#outputFailures).map(([output, value]) => ({
          labels: { output },
          value,
        })),
      },
    ];
    return formatExposition(families);
  }
}

/** A map's entries ordered by key, so the text is stable from one read to the next. */
function sortedEntries(map: Map<string, number>): Array<[string, number]> {
  return [...map].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}
