/**
 * How the daemon's pass carries out its decisions (`decide.ts`): a write
 * claims its table and goes to the store; the pass's writes are committed
 * at once (`flush`), and once that commit is durable (`settle`) a durable
 * write frees the tables it ended, is told to the observers and answered,
 * and a failed one gives its table back and is retried or answered. A
 * retry is carried to the next pass (or to the end of a rebuild), with its
 * twins and the races it lost.
 *
 * @module
 */

import { type Allocation, choiceFamily, type Hold } from "../allocator/allocation.ts";
import type { Logger } from "../log/logger.ts";
import type { ServerMetrics } from "../metrics/server_metrics.ts";
import { Command } from "../protocol/v1.ts";
import type { Lease, LeaseStore, LeaseToken } from "../store/lease_store.ts";
import type { Datagram } from "../unix/abstract_socket.ts";
import { decideFailure, type Decision, type DecisionPolicy, type Races } from "./decide.ts";
import type { LeaseEvent } from "./events.ts";
import type { Job, MessageAuth } from "./intake.ts";
import type { Resync } from "./rebuild.ts";
import type { BatchReceiver, Carried } from "./receiver.ts";
import type { Replies } from "./replies.ts";
import { logHoldEnded } from "./upkeep.ts";

/** A reply to send at the end of the pass. */
export type Outgoing = [Uint8Array<ArrayBuffer>, Datagram];

/** A write issued in this pass, waiting for the commit. */
export interface Write {
  job: Job;
  decision: Extract<Decision, { kind: "write" }>;
  done: Promise<void>;
  /** Answered the moment its commit was durable ({@link PassWrites.flush}). */
  answered?: boolean;
}

/** A pass's commit, made; its sync may still run. */
export interface Flushed {
  /** Settles (never rejects) once the commit is durable or has failed. */
  synced: Promise<void>;
  /** Whether the sync runs off the main thread, so that other work may go on meanwhile. */
  background: boolean;
}

/** What the writes work with: the daemon's parts and its state now. */
export interface PassWritesContext {
  store: LeaseStore;
  receiver: BatchReceiver;
  replies: Replies;
  resync: Resync;
  log: Logger;
  /** The daemon's allocation now (replaced when it is rebuilt). */
  allocation: () => Allocation;
  /** The decision policy now (replaced by a reload). */
  policy: () => DecisionPolicy;
  /** Whether requests are signed: a carried message keeps its verdict. */
  auth: MessageAuth | undefined;
  metrics: ServerMetrics | undefined;
  /** Returns an ended lease's table to its reservation or pool. */
  free: (lease: Lease) => void;
  /** Tells the observers of lease events once the pass's replies are sent. */
  tell: (events: readonly LeaseEvent[]) => void;
}

/** The decisions of the daemon's passes, carried out. */
export class PassWrites {
  readonly #c: PassWritesContext;

  /** Writes over the daemon's parts. */
  constructor(context: PassWritesContext) {
    this.#c = context;
  }

  /** Puts a job and its twins into the next pass (or `into`), with the races they lost. */
  carry(job: Job, races: Races, into?: Carried[]): void {
    for (const j of [job, ...job.twins]) {
      const carried: Carried = {
        datagram: j.datagram,
        ...races,
        verdict: this.#c.auth ? (j.signed ? "authentic" : "unsigned") : undefined,
      };
      if (into) into.push(carried);
      else this.#c.receiver.carry(carried);
    }
  }

  /** Carries out a decision up to its write, which it returns. */
  enact(job: Job, decision: Decision, token: LeaseToken, out: Outgoing[]): Write | undefined {
    const { store, resync } = this.#c;
    if (decision.kind !== "write") {
      store.releaseToken(token);
      if (decision.kind === "retry") {
        if (decision.rebuild) {
          // It looks again once the store is read anew.
          const carried: Carried[] = [];
          this.carry(job, decision.races, carried);
          resync.wait(carried);
        } else this.carry(job, decision.races);
        return undefined;
      }
      this.#c.tell(decision.events);
      this.#endHolds(decision.endHolds, job);
      out.push([this.#c.replies.answer(decision.answer, job), job.datagram]);
      return undefined;
    }
    const claim = decision.claim;
    if (claim) {
      const family = choiceFamily(claim);
      this.#c.allocation().apply(claim);
      resync.record((a) => a.markTaken(family, claim.table));
    }
    const done = store.update(job.clientId, decision.leases, token);
    // Settled in settle(); the event loop may turn before (a sync off the main thread).
    done.catch(() => {});
    return { job, decision, done };
  }

  /**
   * Commits the pass's `writes` at once (the COMMIT runs before this
   * returns); the returned sync settles once that commit is durable or
   * failed, and each write's own promise says which. {@link settle} them
   * after it.
   *
   * When the kernel's queue might overflow meanwhile (half of it waits, or
   * it was found full: `BatchReceiver.mayOverflow`), the event loop has
   * not run for a while, or an earlier pass is still waiting for its sync
   * (`overlapping`), the sync runs off the main thread and the daemon
   * keeps working meanwhile; otherwise the commit syncs on this thread,
   * which is quicker than a hand-off, and the requests that come meanwhile
   * wait in the kernel's queue for the next pass. A commit durable before
   * this returns (synced here, or a pass of releases, which needs no sync)
   * has its writes answered there and then, unless an earlier pass's
   * replies are still to go out: the rest of their work waits for
   * {@link settle}.
   */
  flush(writes: Write[], overlapping: boolean): Flushed {
    const { receiver } = this.#c;
    const started = performance.now();
    let background = false;
    let returned = false;
    // Asked only when the commit is to be synced: a release's pass spares the receive.
    const ask = () => background = receiver.mayOverflow() || receiver.starving || overlapping;
    const durable = (updates: ReadonlySet<Promise<void>>) => {
      if (returned || overlapping) return;
      for (const w of writes) if (updates.has(w.done)) this.#answerNow(w);
    };
    const synced = this.#c.store.flush({ background: ask, durable }).then(
      () => {},
      () => {/* each write's promise carries the failure */},
    );
    returned = true;
    // Timed when the sync ends, not when the daemon gets round to the replies.
    synced.then(() => this.#c.metrics?.commitSeconds((performance.now() - started) / 1000));
    return { synced, background };
  }

  /** Sends a durable write's reply to its client and twins, before its promise's reactions. */
  #answerNow(write: Write): void {
    const { replies } = this.#c;
    const reply = replies.answer(write.decision.answer, write.job);
    replies.sendWithTwins(reply, write.job.datagram, write.job.twins);
    write.answered = true;
  }

  /**
   * After the pass's sync ({@link flush}): a durable write frees its ended
   * tables, is told to the observers and answered; a failed one gives its
   * table back and is retried or answered.
   */
  async settle(writes: Write[], out: Outgoing[]): Promise<void> {
    const { replies, resync } = this.#c;
    const results = await Promise.allSettled(writes.map((w) => w.done));
    results.forEach((result, i) => {
      const { job, decision } = writes[i];
      if (result.status === "fulfilled") {
        for (const lease of decision.ended) this.#c.free(lease);
        this.#c.tell(decision.events);
        this.#endHolds(decision.endHolds, job);
        if (!writes[i].answered) out.push([replies.answer(decision.answer, job), job.datagram]);
        return;
      }
      const { claim } = decision;
      const failure = decideFailure(result.reason, job, claim, this.#c.policy().sharedStore);
      if (claim) {
        const family = choiceFamily(claim);
        const allocation = this.#c.allocation();
        allocation.undo(claim);
        resync.record((a) => a.free(family, claim.table));
        if (failure.markTaken) {
          allocation.markTaken(family, claim.table);
          resync.record((a) => a.markTaken(family, claim.table));
        }
      }
      if (failure.rebuild) resync.ask();
      if (failure.kind === "retry") this.carry(job, failure.races);
      else out.push([replies.answer(failure.answer, job), job.datagram]);
    });
  }

  /** Ends the holds a decision names: a release confirms; a request needs them no more. */
  #endHolds(holds: Hold[] | undefined, job: Job): void {
    for (const hold of holds ?? []) {
      if (this.#c.allocation().endHold(hold.family, hold.table)) {
        logHoldEnded(
          this.#c.log,
          hold,
          job.origin.request.cmd === Command.RELEASE ? "confirmed" : "superseded",
        );
      }
    }
  }
}
