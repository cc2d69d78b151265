/**
 * A held lease's timing and how its life ends, as the original client
 * runs it: a request every 2 s, 5 tries, a refresh at half the remaining
 * time, 1 s for a release's acknowledgement. Pure.
 *
 * @module
 */

import type { LinkEvent } from "../netlink/link.ts";
import { sameBytes } from "../util/bytes.ts";

/** Retransmission interval of requests, as in the original. */
export const RETRANSMIT_MS = 2000;
/** Unanswered requests before there is no lease. */
export const MAX_TRIES = 5;
/** How long a release waits for the server's acknowledgement. */
export const RELEASE_WAIT_MS = 1000;
/**
 * A send that found the server's queue full (net.unix.max_dgram_qlen, 10
 * by default: many identities refresh at once after a restart) is tried
 * again this soon, and does not count as a try.
 */
export const QUEUE_FULL_RETRY_MS = 20;

/** A lease as the server granted it. */
export interface Lease {
  table: number;
  /** Absolute seconds on this host's CLOCK_MONOTONIC_RAW. */
  leaseExpires: number;
}

/** How an acquisition ended, for whoever waits for it. */
export type HoldOutcome =
  | { kind: "lease"; table: number }
  | { kind: "none"; reason: string }
  | { kind: "refused"; error: string; message: string };

/**
 * Milliseconds until the refresh of a lease: half the remaining time, as
 * the original, but at least one second so that a lease already (nearly)
 * expired does not make the holder spin.
 */
export function refreshDelayMs(leaseExpires: number, nowSeconds: number): number {
  const remaining = leaseExpires - nowSeconds;
  return Math.min(Math.max(1000, (remaining / 2) * 1000), 2 ** 31 - 1);
}

/** Whether a netlink notification means this identity's address or link is gone. */
export function isDeparture(
  event: LinkEvent,
  watch: { ifindex: number; family: number; address: Uint8Array | null },
): boolean {
  if (event.kind === "link-deleted") return event.index === watch.ifindex;
  if (event.kind !== "address-deleted" || watch.address === null) return false;
  return event.index === watch.ifindex && event.family === watch.family &&
    sameBytes(event.address, watch.address);
}
