/**
 * The first step of a pass: each datagram of the batch decoded, checked
 * (authentication, family) and sorted into the pass's jobs, control
 * requests, refusals to answer at once, and messages that wait for the next
 * pass. Pure but for the authenticator's memory of nonces.
 *
 * A second message for an identity waits for the next pass, so that it
 * sees this one's committed result instead of racing it. Copies of a
 * message (the same ask from the same uid) share one answer, and an
 * identity has at most one message waiting: a sender flooding one identity
 * costs one job per pass, instead of its backlog being decoded again every
 * pass while the others wait.
 *
 * @module
 */

import { ControlCommand } from "../control/protocol.ts";
import type { Authenticator } from "../protocol/auth.ts";
import { decodeRequestObject, parseDatagram, ProtocolError, type Request } from "../protocol/v1.ts";
import { clientIdOf } from "../store/lease_store.ts";
import type { Datagram } from "../unix/abstract_socket.ts";
import { admit, type Answer, type DecisionPolicy, refusal } from "./decide.ts";
import type { ClientOrigin } from "./events.ts";
import type { Carried } from "./receiver.ts";

/** Message authentication (`auth` in the config). */
export interface MessageAuth {
  /** Checks requests and signs the replies to signed ones. */
  authenticator: Authenticator;
  /** Unsigned lease requests are refused (`unauthenticated`). */
  require: boolean;
}

/** A lease request or release of this pass. */
export interface Job extends Carried {
  origin: ClientOrigin;
  clientId: string;
  /** The request carried a valid MAC: its reply is signed. */
  signed: boolean;
  /**
   * The same ask from other datagrams of this pass (retransmissions, or a
   * flood of copies): answered with this job's answer, not decided again.
   */
  twins: Job[];
}

/** A datagram refused before any lookup, with its answer. */
export interface Refused {
  answer: Extract<Answer, { kind: "error" }>;
  datagram: Datagram;
  /** The request, when the datagram decoded as one. */
  request: Request | undefined;
  /** The answer is signed (the request carried a valid MAC). */
  signed: boolean;
}

/** A batch, sorted. */
export interface Intake {
  /** The pass's requests and releases, one per identity. */
  jobs: Job[];
  /** Control requests (answered to root only, after the leases). */
  controls: Array<{ datagram: Datagram; message: Record<string, unknown> }>;
  refused: Refused[];
  /** Messages for the next pass (with their twins). */
  waiting: Job[];
}

/**
 * Whether two messages for one identity ask the same thing of the same
 * uid, so that one decision answers both.
 */
export function sameAsk(a: Job, b: Job): boolean {
  const [x, y] = [a.origin, b.origin];
  return x.request.cmd === y.request.cmd && x.request.tag === y.request.tag &&
    x.credentials?.uid === y.credentials?.uid && a.signed === b.signed;
}

/**
 * Decodes and sorts a batch. A datagram carried from an earlier pass keeps
 * its authentication verdict: its nonce is spent, it is not checked again.
 * `between` runs between two datagrams, with how many are sorted so far
 * (the daemon drains its socket there: sorting a crowd's batch takes
 * hundreds of microseconds).
 */
export function sortBatch(
  batch: readonly Carried[],
  policy: DecisionPolicy,
  auth: MessageAuth | undefined,
  between?: (sorted: number) => void,
): Intake {
  const intake: Intake = { jobs: [], controls: [], refused: [], waiting: [] };
  const heads = new Map<string, Job>();
  const waiting = new Map<string, Job>();
  let sorted = 0;
  for (const carried of batch) {
    if (sorted > 0) between?.(sorted);
    sorted++;
    const { datagram } = carried;
    let request: Request;
    let signed = carried.verdict === "authentic";
    try {
      const message = parseDatagram(datagram.data, datagram.length);
      if (message.cmd === ControlCommand.REQUEST) {
        // Root's by credentials: root can read the PSK anyway.
        intake.controls.push({ datagram, message });
        continue;
      }
      if (auth && carried.verdict === undefined) {
        const verdict = auth.authenticator.check(datagram.data, message);
        if (verdict.kind === "refused") throw new ProtocolError("unauthenticated", verdict.reason);
        if (verdict.kind === "unsigned" && auth.require) {
          throw new ProtocolError(
            "unauthenticated",
            `this server requires signed requests (auth.require): the message has no "hmac"`,
          );
        }
        signed = verdict.kind === "authentic";
      }
      request = decodeRequestObject(message);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      const answer = { kind: "error" as const, code: error.code, message: error.message };
      intake.refused.push({ answer, datagram, request: undefined, signed });
      continue;
    }
    const refusedFamily = admit(request, policy);
    if (refusedFamily?.kind === "error") {
      intake.refused.push({ answer: refusedFamily, datagram, request, signed });
      continue;
    }
    const origin: ClientOrigin = {
      kind: "client",
      request,
      sender: datagram.sender,
      credentials: datagram.credentials,
    };
    const clientId = clientIdOf(request.identity);
    const job: Job = { ...carried, origin, clientId, signed, twins: [] };
    const head = heads.get(clientId);
    if (!head) {
      heads.set(clientId, job);
      intake.jobs.push(job);
      continue;
    }
    const next = waiting.get(clientId);
    if (sameAsk(head, job)) head.twins.push(job);
    else if (next && sameAsk(next, job)) next.twins.push(job);
    else if (!next) waiting.set(clientId, job);
    else {
      const { ifname, address } = request.identity;
      const answer = refusal(
        "conflict",
        `two other messages for ${ifname} ${address} are being handled; send one at a time`,
      ) as Refused["answer"];
      intake.refused.push({ answer, datagram, request, signed });
    }
  }
  intake.waiting = [...waiting.values()];
  return intake;
}
