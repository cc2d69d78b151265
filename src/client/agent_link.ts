/**
 * A client's socket to the host agent: autobound, with sender
 * credentials, so that an answer is believed only from the agent's padded
 * name and from uid 0 (a squatter on the name can make a client print
 * `0`, never a table).
 *
 * @module
 */

import { Errno, ErrnoError } from "../../ffi/libc.ts";
import { AbstractDatagramSocket, paddedAbstractAddress } from "../unix/abstract_socket.ts";
import { sameBytes } from "../util/bytes.ts";
import {
  type AgentReply,
  type AgentRequest,
  agentSocketName,
  decodeAgentReply,
  encodeAgentRequest,
  MAX_AGENT_MESSAGE_BYTES,
} from "../agent/protocol.ts";

/** How a send to the agent went. */
export type AgentSend = "sent" | "queue-full" | "no-agent";

/** The socket a client talks to the agent from. */
export class AgentLink implements Disposable {
  #socket = AbstractDatagramSocket.bind(null, {
    passCredentials: true,
    receiveBufferSize: MAX_AGENT_MESSAGE_BYTES,
  });
  #agent = paddedAbstractAddress(agentSocketName());
  /** The uid of the last answer from the agent's name that was not root's. */
  untrusted: number | undefined;

  /** Sends a request; `no-agent` when nothing is bound on the agent's name (ECONNREFUSED). */
  send(request: AgentRequest): AgentSend {
    try {
      return this.#socket.send(encodeAgentRequest(request), this.#agent) ? "sent" : "queue-full";
    } catch (error) {
      if (error instanceof ErrnoError && error.errno === Errno.ECONNREFUSED) return "no-agent";
      throw error;
    }
  }

  /** Waits up to `timeoutMs` (or for {@link wake}) for something to read. */
  readable(timeoutMs: number): Promise<boolean> {
    return this.#socket.readable(timeoutMs);
  }

  /** Makes a pending {@link readable} return at once (a signal handler calls it). */
  wake(): void {
    this.#socket.wake();
  }

  /** Every waiting answer of the agent that is believed; the rest is dropped. */
  replies(): AgentReply[] {
    const out: AgentReply[] = [];
    for (let dg = this.#socket.receive(); dg !== null; dg = this.#socket.receive()) {
      if (!sameBytes(dg.sender, this.#agent)) continue;
      if (dg.credentials?.uid !== 0) {
        this.untrusted = dg.credentials?.uid;
        continue;
      }
      try {
        out.push(decodeAgentReply(dg.data, dg.length));
      } catch {
        // Not an answer of ours: ignore it.
      }
    }
    return out;
  }

  /** Closes the socket. */
  [Symbol.dispose](): void {
    this.#socket.close();
  }
}
