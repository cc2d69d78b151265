/**
 * One pass of the daemon up to its commit: sort the batch (`intake.ts`),
 * look up every identity, decide (`decide.ts`), write and commit
 * (`pass_writes.ts`).
 * What a pass holds between its commit and its replies is a {@link Pass}:
 * the daemon sends its replies once its sync ends, and may meanwhile
 * prepare the next pass (`daemon.ts`).
 *
 * @module
 */

import type { Allocation } from "../allocator/allocation.ts";
import { Command } from "../protocol/v1.ts";
import type { LeaseStore } from "../store/lease_store.ts";
import type { Datagram } from "../unix/abstract_socket.ts";
import { decide, type DecisionPolicy, storeFailure } from "./decide.ts";
import { type Intake, type Job, type MessageAuth, sortBatch } from "./intake.ts";
import type { Flushed, Outgoing, PassWrites, Write } from "./pass_writes.ts";
import type { BatchReceiver, Carried } from "./receiver.ts";
import type { Replies } from "./replies.ts";

/** A pass between its commit and its replies. */
export interface Pass extends Flushed {
  /** The replies known so far (the writes' come once their sync ends). */
  out: Outgoing[];
  writes: Write[];
  /** The twins of each job's datagram: they get its reply too. */
  twins: Map<Datagram, Job[]>;
  controls: Intake["controls"];
  /** What the observers hear of this pass, once its replies are sent. */
  told: Array<() => void>;
}

/** A pass with nothing in it yet (nothing to sync). */
export function emptyPass(): Pass {
  return {
    out: [],
    writes: [],
    twins: new Map(),
    controls: [],
    synced: Promise.resolve(),
    background: false,
    told: [],
  };
}

/** What a pass works with: the daemon's parts and its state now. */
export interface PassContext {
  store: LeaseStore;
  receiver: BatchReceiver;
  replies: Replies;
  writes: PassWrites;
  /** The daemon's allocation now (replaced when it is rebuilt). */
  allocation: () => Allocation;
  /** The decision policy now (replaced by a reload). */
  policy: () => DecisionPolicy;
  auth: MessageAuth | undefined;
  /** Wall clock, ms. */
  now: () => number;
}

/**
 * Sorts the batch, looks up, decides, writes and commits into `pass`: its
 * writes and their sync, the replies known already, its twins and its
 * control requests. `overlapping`: an earlier pass waits for its sync.
 */
export async function preparePass(
  c: PassContext,
  batch: Carried[],
  pass: Pass,
  overlapping: boolean,
): Promise<void> {
  const { out } = pass;
  const { jobs, controls } = sort(c, batch, out);
  pass.controls = controls;
  const [lookups, held] = await Promise.all([
    Promise.allSettled(jobs.map((job, i) => {
      const lookup = c.store.lookup(job.clientId);
      // The SQLite store reads at the call: without a drain among them, a crowd's lookups
      // let the kernel's queue fill (measured in docs/performance.md).
      c.receiver.pumpAfter(i + 1);
      return lookup;
    })),
    countHeld(c, jobs),
  ]);
  const policy = c.policy();
  lookups.forEach((lookup, i) => {
    const job = jobs[i];
    if (lookup.status === "rejected") {
      out.push([c.replies.answer(storeFailure(lookup.reason), job), job.datagram]);
      return;
    }
    const { leases, token } = lookup.value;
    const uid = job.origin.credentials?.uid;
    const count = uid === undefined ? undefined : held.get(uid);
    if (count instanceof Error && !leases.some((l) => l.state === "bound")) {
      c.store.releaseToken(token);
      out.push([c.replies.answer(storeFailure(count), job), job.datagram]);
      return;
    }
    const decision = decide({
      origin: job.origin,
      leases,
      allocation: c.allocation(),
      now: c.now(),
      attempt: job.attempt,
      collisions: job.collisions,
      uidLeases: typeof count === "number" ? count : undefined,
    }, policy);
    // The pass's own grants count against the cap of its later requests.
    if (
      typeof count === "number" && decision.kind === "write" &&
      decision.events[0]?.kind === "granted"
    ) held.set(uid!, count + 1);
    const write = c.writes.enact(job, decision, token, out);
    if (write) pass.writes.push(write);
    c.receiver.pumpAfter(i + 1);
  });
  for (const job of jobs) if (job.twins.length > 0) pass.twins.set(job.datagram, job.twins);
  // Right after the writes, before any await: else the store's own flush (on this thread) comes first.
  if (pass.writes.length > 0) Object.assign(pass, c.writes.flush(pass.writes, overlapping));
}

/**
 * The bound leases of each non-root uid that asks for a lease in this
 * pass (the cap), or the store's failure to count them. Root's requests,
 * nearly all of them, cost nothing here.
 */
async function countHeld(c: PassContext, jobs: Job[]): Promise<Map<number, number | Error>> {
  const uids = new Set<number>();
  for (const job of jobs) {
    const uid = job.origin.credentials?.uid;
    if (
      uid !== undefined && uid !== 0 && job.origin.request.cmd === Command.REQUEST &&
      c.policy().maxLeasesPerUid > 0
    ) uids.add(uid);
  }
  const held = new Map<number, number | Error>();
  await Promise.all([...uids].map(async (uid) => {
    try {
      held.set(uid, await c.store.boundCount(uid));
    } catch (error) {
      held.set(uid, error instanceof Error ? error : new Error(String(error)));
    }
  }));
  return held;
}

/**
 * Sorts the batch (`intake.ts`): what is refused at once is answered,
 * the messages that wait for the next pass are carried to it.
 */
function sort(
  c: PassContext,
  batch: Carried[],
  out: Outgoing[],
): Pick<Intake, "jobs" | "controls"> {
  const intake = sortBatch(batch, c.policy(), c.auth, (sorted) => c.receiver.pumpAfter(sorted));
  for (const { answer, datagram, request, signed } of intake.refused) {
    out.push([c.replies.reject(answer.code, answer.message, datagram, request, signed), datagram]);
  }
  for (const job of intake.waiting) c.writes.carry(job, job);
  return intake;
}
