/**
 * A test peer that speaks the v1 protocol over a real abstract socket, the
 * way the C client does (padded names).
 *
 * @module
 */

import { AbstractDatagramSocket } from "../../src/unix/abstract_socket.ts";

/** A reply as parsed JSON. */
export type WireReply = Record<string, unknown>;

/** A v1 request body; fields may be wrong on purpose. */
export function requestBody(
  address: string,
  options: { ifname?: string; family?: number; cmd?: number; tag?: string } = {},
): string {
  const body: Record<string, unknown> = { address, ifname: options.ifname ?? "eth1" };
  if (options.tag !== undefined) body.tag = options.tag;
  body.addr_family = options.family ?? 2;
  body.cmd = options.cmd ?? 0;
  body.version = 1;
  return JSON.stringify(body);
}

/** A client socket bound to a padded abstract name (or autobound). */
export class WireClient implements Disposable {
  readonly socket: AbstractDatagramSocket;
  readonly server: string;

  /** Binds `name` (null: autobind) and talks to the server's socket name. */
  constructor(server: string, name: string | null = `t-${crypto.randomUUID().slice(0, 12)}`) {
    this.server = server;
    this.socket = AbstractDatagramSocket.bind(name);
  }

  /**
   * Sends raw bytes or text to the server. When the server's queue is full
   * (the kernel holds net.unix.max_dgram_qlen datagrams, 10 by default) the
   * send is retried every millisecond, as a real client would retry.
   */
  async send(payload: string | Uint8Array<ArrayBuffer>): Promise<void> {
    const data = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
    while (!this.socket.sendToName(data, this.server)) await new Promise((r) => setTimeout(r, 1));
  }

  /** Waits for one reply; null after the timeout. */
  async receive(timeoutMs = 5000): Promise<WireReply | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const datagram = this.socket.receive();
      if (datagram) return JSON.parse(new TextDecoder().decode(datagram.data));
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await this.socket.readable(left);
    }
  }

  /** Sends and waits for the reply; throws when none comes. */
  async call(payload: string | Uint8Array<ArrayBuffer>, timeoutMs = 5000): Promise<WireReply> {
    this.send(payload);
    const reply = await this.receive(timeoutMs);
    if (!reply) {
      throw new Error(`no reply to ${String(payload).slice(0, 80)} within ${timeoutMs} ms`);
    }
    return reply;
  }

  /** Requests a lease for `address` and returns the reply. */
  request(
    address: string,
    options: { ifname?: string; family?: number; tag?: string } = {},
  ): Promise<WireReply> {
    return this.call(requestBody(address, { ...options, cmd: 0 }));
  }

  /** Releases the lease of `address` and returns the reply. */
  release(address: string, options: { ifname?: string; family?: number } = {}): Promise<WireReply> {
    return this.call(requestBody(address, { ...options, cmd: 1 }));
  }

  /** Closes the socket. */
  [Symbol.dispose](): void {
    this.socket.close();
  }
}
