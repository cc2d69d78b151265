/**
 * A stand-in process for the end-to-end tests, run inside a network
 * namespace (as root, or as uid 65534 through `setpriv`): it binds a
 * padded abstract name and plays one part.
 *
 *     peer.ts NAME silent           receives only
 *     peer.ts NAME table T          answers every request with table T (a squatter)
 *     peer.ts NAME c-server FIRST N a server like the original C one: lowest free
 *                                   table of FIRST..FIRST+N-1 per identity, a
 *                                   release with table 0, silence for anything
 *                                   else (no error replies, no notices)
 *     peer.ts - silent              autobound (a client)
 *     peer.ts /PATH silent          bound to a file-system path (a NOTIFY_SOCKET)
 *
 * Every datagram received is printed on stdout as one JSON line
 * `{"from","uid","pid","data","at"}` (`at` in epoch ms); a stdin line
 * `{"to": NAME, "data": TEXT}` is sent from the bound socket, and
 * confirmed with a line `{"sent": NAME}` (the datagram is in the
 * receiver's queue then) or `{"sendError": ...}`. The first stdout line
 * is `{"ready": true}` once the name is bound. Leases last
 * `--timeout S` seconds (default 3600).
 *
 * @module
 */

import { clockSeconds } from "../../ffi/libc.ts";
import { Command, decodeRequest, encodeReply, identityName } from "../../src/protocol/v1.ts";
import { AbstractDatagramSocket, describeAddress } from "../../src/unix/abstract_socket.ts";

const [name, mode, ...rest] = Deno.args;
const timeoutAt = rest.indexOf("--timeout");
const timeout = timeoutAt >= 0 ? Number(rest[timeoutAt + 1]) : 3600;
const bindOptions = { passCredentials: true, receiveBufferSize: 65536 };
const socket = name.startsWith("/")
  ? AbstractDatagramSocket.bindPath(name, bindOptions)
  : AbstractDatagramSocket.bind(name === "-" ? null : name, bindOptions);
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const print = (obj: unknown) => Deno.stdout.writeSync(encoder.encode(`${JSON.stringify(obj)}\n`));

const leases = new Map<string, number>();
function answer(data: Uint8Array): Uint8Array<ArrayBuffer> | null {
  if (mode === "silent") return null;
  let request;
  try {
    request = decodeRequest(data);
  } catch {
    return null; // the C server stays silent on anything it cannot parse
  }
  const expires = clockSeconds() + timeout;
  if (mode === "table") {
    return request.cmd === Command.REQUEST
      ? encodeReply(Number(rest[0]), expires)
      : encodeReply(0, 0);
  }
  const key = identityName(request.identity);
  if (request.cmd === Command.RELEASE) {
    leases.delete(key);
    return encodeReply(0, 0);
  }
  const [first, count] = [Number(rest[0]), Number(rest[1])];
  let table = leases.get(key);
  if (table === undefined) {
    const taken = new Set(leases.values());
    for (let t = first; t < first + count; t++) {
      if (!taken.has(t)) {
        table = t;
        break;
      }
    }
    if (table === undefined) return null; // pool exhausted: silence, as the original
    leases.set(key, table);
  }
  return encodeReply(table, expires);
}

async function readCommands(): Promise<void> {
  let buffer = "";
  for await (const chunk of Deno.stdin.readable) {
    buffer += decoder.decode(chunk, { stream: true });
    for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      if (!line.trim()) continue;
      const { to, data } = JSON.parse(line);
      try {
        if (socket.sendToName(encoder.encode(data), to)) print({ sent: to });
        else print({ sendError: "the receiver's queue is full", to });
      } catch (error) {
        print({ sendError: (error as Error).message, to });
      }
    }
  }
  Deno.exit(0);
}

print({ ready: true, name: describeAddress(socket.address) });
void readCommands();
for (;;) {
  await socket.readable(-1);
  for (let dg = socket.receive(); dg !== null; dg = socket.receive()) {
    print({
      from: describeAddress(dg.sender),
      uid: dg.credentials?.uid,
      pid: dg.credentials?.pid,
      data: decoder.decode(dg.data),
      at: Date.now(),
    });
    const reply = dg.sender.byteLength > 2 ? answer(dg.data) : null;
    if (reply) {
      try {
        socket.send(reply, dg.sender);
      } catch {
        // The asker is gone.
      }
    }
  }
}
