/**
 * A v1 peer driven over stdin, for tests that must send from another uid
 * (run by `wire_peer.ts`, as that user): binds NAME (`-` autobinds),
 * then for each stdin line sends the line's bytes to SERVER and prints
 * the reply as one line (`null` when none came within 3 s). A line
 * `flood N JSON` sends JSON N times without waiting for replies and
 * prints `sent N`; several JSON payloads separated by tabs are sent in turn.
 *
 *     peer_cli.ts SERVER NAME
 *
 * @module
 */

import { AbstractDatagramSocket } from "../../src/unix/abstract_socket.ts";

const [server, name] = Deno.args;
const socket = AbstractDatagramSocket.bind(name === "-" ? null : name);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function send(data: Uint8Array<ArrayBuffer>): Promise<void> {
  // A full server queue: retry, as a real client would.
  while (!socket.sendToName(data, server)) await new Promise((r) => setTimeout(r, 1));
}

async function reply(timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const datagram = socket.receive();
    if (datagram) return decoder.decode(datagram.data);
    const left = deadline - Date.now();
    if (left <= 0) return "null";
    await socket.readable(left);
  }
}

let buffered = "";
for await (const chunk of Deno.stdin.readable) {
  buffered += decoder.decode(chunk, { stream: true });
  let newline;
  while ((newline = buffered.indexOf("\n")) >= 0) {
    const line = buffered.slice(0, newline);
    buffered = buffered.slice(newline + 1);
    const flood = /^flood (\d+) (.*)$/.exec(line);
    if (flood) {
      const payloads = flood[2].split("\t").map((p) => encoder.encode(p));
      for (let i = 0; i < Number(flood[1]); i++) await send(payloads[i % payloads.length]);
      console.log(`sent ${flood[1]}`);
      continue;
    }
    while (socket.receive()) { /* drop late replies of earlier lines */ }
    await send(encoder.encode(line));
    console.log(await reply(3000));
  }
}
socket.close();
