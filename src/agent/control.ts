/**
 * The agent's socket: clients hand identities over (`hold`), ask for a
 * release (`-r`), give up waiting (`cancel`, on a signal) or ask what is
 * held (`status`). Only kernel-verified root (SCM_CREDENTIALS uid 0) is
 * served; anything malformed or refused gets an error reply naming why,
 * and changes nothing. Replies never block: a client whose queue is full
 * misses one and gets it on its next retry.
 *
 * @module
 */

import { ifNameToIndex } from "../../ffi/libc.ts";
import type { Logger } from "../log/logger.ts";
import {
  type AbstractDatagramSocket,
  type Datagram,
  describeAddress,
} from "../unix/abstract_socket.ts";
import type { HoldingCore } from "./core.ts";
import { holdOrAsk } from "./foreign.ts";
import { PskFileError } from "../../config/psk_file.ts";
import { Holding } from "./holding.ts";
import type { HoldOutcome } from "./lease.ts";
import { identityName } from "../protocol/v1.ts";
import { LimitedLog } from "../log/rate_limit.ts";
import {
  AgentProtocolError,
  type AgentReply,
  decodeAgentRequest,
  encodeAgentReply,
  type HoldSpec,
} from "./protocol.ts";
import { errorMessage } from "../util/errors.ts";

/**
 * How long the answer to a hold is remembered for its client: a repeat
 * sent while the answer was on its way gets the same answer, not a second
 * acquisition. Longer than the client's resend interval.
 */
const ANSWER_MEMORY_MS = 5000;

/** Serves the agent's socket for a {@link HoldingCore}. */
export class AgentControl {
  #core: HoldingCore;
  #socket: AbstractDatagramSocket;
  #log: Logger;
  #stopping = false;
  #refusals: LimitedLog;
  #answered = new Map<string, { reply: AgentReply; at: number }>();

  /** Serves `socket` (bound to the agent's name, with SO_PASSCRED). */
  constructor(core: HoldingCore, socket: AbstractDatagramSocket, log: Logger) {
    this.#core = core;
    this.#socket = socket;
    this.#log = log;
    this.#refusals = new LimitedLog(log, { burst: 1 });
  }

  /** From now on every request is answered `stopping`. */
  stopping(): void {
    this.#stopping = true;
  }

  /** Reads and answers every waiting message. */
  onReadable(): void {
    for (;;) {
      let dg: Datagram | null;
      try {
        dg = this.#socket.receive();
      } catch (error) {
        // One failed read loses at most that datagram (its sender retries); the
        // agent goes on: poll(2) reports the socket again while anything waits.
        this.#refusals.warn("receive", "kernel", "cannot read from the agent's socket", {
          reason: errorMessage(error),
        });
        return;
      }
      if (dg === null) return;
      this.#handle(dg);
    }
  }

  #handle(dg: Datagram): void {
    // An unbound sender cannot be answered; a client always binds.
    if (dg.sender.byteLength <= 2) return;
    let request;
    try {
      request = decodeAgentRequest(dg.data, dg.length);
    } catch (error) {
      if (!(error instanceof AgentProtocolError)) throw error;
      this.#refuse(dg, error.code, error.message);
      return;
    }
    const uid = dg.credentials?.uid;
    if (uid !== 0) {
      this.#refuse(dg, "not_permitted", `only root may use the agent, not uid ${uid}`);
      return;
    }
    if (this.#stopping) {
      this.#refuse(dg, "stopping", "the agent is stopping: it releases every lease");
      return;
    }
    const pid = dg.credentials?.pid;
    switch (request.op) {
      case "hold":
        void this.#hold(request.spec, dg.sender);
        return;
      case "release":
        this.#release(identityName(request.identity), dg.sender, pid);
        return;
      case "cancel": {
        const holding = this.#core.get(identityName(request.identity));
        const cancelled = holding?.cancelWaiter(keyOf(dg.sender)) ?? false;
        this.#reply(dg.sender, { op: "cancel", result: cancelled ? "cancelled" : "not_waiting" });
        return;
      }
      case "status": {
        const { rss, heapUsed } = Deno.memoryUsage();
        this.#reply(dg.sender, {
          op: "status",
          pid: Deno.pid,
          rss,
          heap_used: heapUsed,
          identities: this.#core.holdings.map((h) => h.status()),
        });
        return;
      }
    }
  }

  async #hold(spec: HoldSpec, sender: Uint8Array<ArrayBuffer>): Promise<void> {
    const name = identityName(spec.identity);
    const key = keyOf(sender);
    const now = performance.now();
    for (const [k, { at }] of this.#answered) {
      if (now - at > ANSWER_MEMORY_MS) this.#answered.delete(k);
    }
    const earlier = this.#answered.get(`${key} ${name}`);
    if (earlier) return this.#reply(sender, earlier.reply);
    const answer = (outcome: HoldOutcome) => {
      const reply = replyOf(outcome);
      this.#answered.set(`${key} ${name}`, { reply, at: performance.now() });
      this.#reply(sender, reply);
    };
    const existing = this.#core.get(name);
    if (existing) {
      if (existing.answering) return answer({ kind: "lease", table: existing.table });
      if (existing.state === "releasing") {
        return answer({ kind: "none", reason: "the lease of this identity is being released" });
      }
      // Granted, rules going in: the answer follows in a moment.
      if (existing.state === "held") return void existing.addWaiter(key, answer);
      // Acquiring for another client: that one gets the table; this one gets 0 at once.
      if (!existing.addWaiter(key, answer) || existing.waiters === 1) return;
      existing.cancelWaiter(key);
      return answer({ kind: "none", reason: "another client is asking for this identity's lease" });
    }
    const ifindex = ifNameToIndex(spec.identity.ifname);
    if (ifindex === 0) {
      return this.#reply(sender, {
        op: "error",
        error: "no_interface",
        message: `interface "${spec.identity.ifname}" does not exist in the agent's namespace`,
      });
    }
    let holding;
    try {
      holding = await holdOrAsk(this.#core, spec, ifindex, (l, m, f) => this.#log.log(l, m, f));
    } catch (error) {
      // Not EADDRINUSE: the identity's log file or PSK file cannot be used.
      const error_ = error instanceof PskFileError ? "bad_psk" : "bad_log";
      return this.#reply(sender, { op: "error", error: error_, message: errorMessage(error) });
    }
    if (!(holding instanceof Holding)) return answer(holding);
    holding.addWaiter(key, (outcome) => {
      answer(outcome);
      if (outcome.kind === "lease") {
        holding.log.log("info", "moved to the background", {
          ...holding.fields,
          agent_pid: Deno.pid,
        });
      }
    });
    holding.acquire();
    this.#core.wake();
  }

  #release(name: string, sender: Uint8Array<ArrayBuffer>, pid: number | undefined): void {
    const holding = this.#core.get(name);
    if (!holding) return this.#reply(sender, { op: "release", result: "not_held" });
    void holding.release(`release requested by pid ${pid}`).then((acknowledged) =>
      this.#reply(sender, {
        op: "release",
        result: acknowledged ? "released" : "unacknowledged",
      })
    );
  }

  /** Answers with an error, and logs it (one line per kind every 10 s). */
  #refuse(dg: Datagram, code: AgentProtocolError["code"], message: string): void {
    this.#reply(dg.sender, { op: "error", error: code, message });
    this.#refusals.warn(
      code,
      `uid=${dg.credentials?.uid}`,
      "refused a message on the agent's socket",
      {
        error: code,
        reason: message,
        from: describeAddress(dg.sender),
        uid: dg.credentials?.uid,
        pid: dg.credentials?.pid,
      },
    );
  }

  #reply(to: Uint8Array<ArrayBuffer>, reply: AgentReply): void {
    try {
      this.#socket.send(encodeAgentReply(reply), to);
    } catch {
      // The client is gone; a retry of its own gets the answer again.
    }
  }
}

/** A waiter's key: its socket address. */
function keyOf(address: Uint8Array): string {
  return Array.from(address, (b) => b.toString(16).padStart(2, "0")).join("");
}

function replyOf(outcome: HoldOutcome): AgentReply {
  if (outcome.kind === "lease") return { op: "hold", result: "lease", table: outcome.table };
  if (outcome.kind === "none") return { op: "hold", result: "none", reason: outcome.reason };
  return { op: "hold", result: "refused", error: outcome.error, message: outcome.message };
}
