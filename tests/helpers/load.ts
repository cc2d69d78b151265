/**
 * A load generator: many v1 clients driven from one poll(2) loop on the
 * calling thread (it blocks the event loop while it runs), each sending
 * its next message as soon as the reply to the last one came. Used by the
 * benchmark and by tests that need a server kept busy by another process:
 *
 *     deno run -A tests/helpers/load.ts SOCKET CLIENTS SECONDS
 *
 * prints the {@link DriveResult} as JSON when the time is up.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { Errno, ErrnoError, pollBlocking, POLLIN } from "../../ffi/libc.ts";
import { AbstractDatagramSocket } from "../../src/unix/abstract_socket.ts";
import { requestBody } from "./wire.ts";

/** A load generator running in a process of its own. */
export interface LoadProcess extends AsyncDisposable {
  /** What it measured, once its time is up (rejects if it failed, e.g. the server went away). */
  result: Promise<DriveResult>;
  /** Whether it is still running. */
  running(): boolean;
}

/**
 * Starts {@link drive} in a process of its own, so that the server is kept
 * busy by a sender that does not share the test's event loop. Disposing
 * kills it (and waits for it) if it still runs.
 */
export function startLoad(socketName: string, clients: number, seconds: number): LoadProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      fileURLToPath(import.meta.url),
      socketName,
      String(clients),
      String(seconds),
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { DENO_NO_UPDATE_CHECK: "1" },
  }).spawn();
  let done = false;
  const output = child.output().finally(() => done = true);
  const result = output.then((out) => {
    const text = new TextDecoder().decode(out.stdout);
    if (!out.success) {
      throw new Error(
        `load generator failed (${out.code}): ${new TextDecoder().decode(out.stderr)}`,
      );
    }
    return JSON.parse(text) as DriveResult;
  });
  result.catch(() => {/* read by the test when it wants the figures */});
  return {
    result,
    running: () => !done,
    async [Symbol.asyncDispose]() {
      if (!done) {
        try {
          child.kill("SIGKILL");
        } catch { /* already gone */ }
      }
      await output;
    },
  };
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

const encoder = new TextEncoder();
const ERROR_REPLY = encoder.encode('"cmd":3');

/** Whether a reply is an error reply (cmd 3), without decoding it. */
function isError(data: Uint8Array): boolean {
  search: for (let i = 0; i + ERROR_REPLY.length <= data.length; i++) {
    for (let j = 0; j < ERROR_REPLY.length; j++) {
      if (data[i + j] !== ERROR_REPLY[j]) continue search;
    }
    return true;
  }
  return false;
}

/**
 * Each client cycles through this many identities, as a host's interfaces
 * and addresses come back: a returning identity replaces its history row,
 * so the store holds about clients x identities rows, as in a deployment.
 */
const IDENTITIES_PER_CLIENT = 64;

/**
 * A request unanswered this long is sent again. The server answers every
 * request it receives, so this happens only once it has gone.
 */
const RESEND_MS = 3000;

/** What {@link drive} measured. */
export interface DriveResult {
  clients: number;
  /** Answered messages (requests and releases) per second. */
  opsPerSecond: number;
  p50: number;
  p99: number;
  /** Sends that found the server's queue full and were retried. */
  eagain: number;
  /** Error replies (cmd 3). */
  errors: number;
  /** The server went away (nobody bound on its name) before the time was up. */
  serverGone: boolean;
}

/**
 * Runs `clients` clients for `seconds`, each looping request then release
 * of its own identities, each next message sent as soon as the reply came.
 * A send the server's queue refused is tried again at the next wake-up (a
 * reply to any client, or 1 ms), or, with `retryMs`, that long after it:
 * the host agent waits 20 ms (`QUEUE_FULL_RETRY_MS`).
 */
export function drive(
  server: { socketName: string },
  clients: number,
  seconds: number,
  retryMs = 0,
): DriveResult {
  const sockets = Array.from({ length: clients }, () => AbstractDatagramSocket.bind(null));
  const fds = new Uint8Array(8 * clients);
  const view = new DataView(fds.buffer);
  sockets.forEach((s, i) => {
    view.setInt32(8 * i, s.fd, true);
    view.setInt16(8 * i + 4, POLLIN, true);
  });
  const bodies = sockets.map((_, i) =>
    Array.from({ length: 2 * IDENTITIES_PER_CLIENT }, (_, k) => {
      const n = k >> 1;
      const address = `10.${i & 255}.${(i >> 8) * 64 + (n >> 8)}.${n & 255}`;
      return encoder.encode(requestBody(address, { ifname: `b${i}`, cmd: k & 1 }));
    })
  );
  let latencies = new Float64Array(1 << 16);
  let answered = 0;
  const sentAt = new Float64Array(clients);
  const step = new Uint32Array(clients); // even: request next, odd: release next
  const waiting = new Uint8Array(clients); // 1: a send is due (queue was full)
  const retryAt = new Float64Array(clients); // when a refused send is tried again
  let waitingCount = 0;
  let errors = 0;
  let eagain = 0;

  let serverGone = false;
  const send = (i: number) => {
    if (waiting[i] === 0) sentAt[i] = performance.now();
    let sent: boolean;
    try {
      sent = sockets[i].sendToName(
        bodies[i][step[i] % (2 * IDENTITIES_PER_CLIENT)],
        server.socketName,
      );
    } catch (error) {
      if (!(error instanceof ErrnoError && error.errno === Errno.ECONNREFUSED)) throw error;
      serverGone = true;
      return;
    }
    if (sent) {
      if (waiting[i]) waitingCount--;
      waiting[i] = 0;
    } else {
      eagain++;
      if (!waiting[i]) waitingCount++;
      waiting[i] = 1;
      retryAt[i] = performance.now() + retryMs;
    }
  };

  const start = performance.now();
  const end = start + seconds * 1000;
  for (let i = 0; i < clients; i++) send(i);
  while (!serverGone && performance.now() < end) {
    for (let i = 6; i < fds.length; i += 8) fds[i] = fds[i + 1] = 0;
    const ready = pollBlocking(fds, waitingCount > 0 ? 1 : 100);
    const now = performance.now();
    for (let i = 0; i < clients; i++) {
      if (waiting[i]) {
        if (now >= retryAt[i]) send(i);
        continue;
      }
      if (ready <= 0 || (fds[8 * i + 6] | fds[8 * i + 7]) === 0) {
        // No answer for a long while: the server may have gone; asking again tells.
        if (now - sentAt[i] > RESEND_MS) send(i);
        continue;
      }
      const datagram = sockets[i].receive();
      if (!datagram) continue;
      if (answered === latencies.length) {
        const grown = new Float64Array(latencies.length * 2);
        grown.set(latencies);
        latencies = grown;
      }
      latencies[answered++] = performance.now() - sentAt[i];
      if (isError(datagram.data)) errors++;
      step[i]++;
      send(i);
    }
  }
  const elapsed = (performance.now() - start) / 1000;
  for (const s of sockets) s.close();
  const sorted = latencies.subarray(0, answered).sort();
  return {
    clients,
    opsPerSecond: Math.round(answered / elapsed),
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    eagain,
    errors,
    serverGone,
  };
}

if (import.meta.main) {
  const [socketName, clients, seconds] = Deno.args;
  console.log(JSON.stringify(drive({ socketName }, Number(clients), Number(seconds))));
}
