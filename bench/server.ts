/**
 * Server benchmarks over the real socket with durable commits:
 * request/release throughput and latency for 1, 8 and 32 concurrent
 * clients; time from start to the first answered request with 0, 10,000
 * and 100,000 stored leases; the server's RSS.
 *
 * The load generator drives all its client sockets from one poll(2) loop,
 * so it costs little of the two cores it shares with the server.
 *
 * @module
 */

import { pollBlocking, POLLIN } from "../ffi/libc.ts";
import { SqliteLeaseStore } from "../src/store/sqlite_store.ts";
import { AbstractDatagramSocket } from "../src/unix/abstract_socket.ts";
import { requestBody } from "../tests/helpers/wire.ts";
import { type ServerHandle, startServer } from "../tests/helpers/server.ts";

/** One row of a result table. */
export interface Row {
  [column: string]: string | number;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

function rssMiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kib = Number(status.match(/VmRSS:\s+(\d+) kB/)?.[1] ?? NaN);
  return Math.round(kib / 102.4) / 10;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Each client cycles through this many identities, as a host's interfaces
 * and addresses come back: a returning identity replaces its history row,
 * so the store holds about clients x identities rows, as in a deployment.
 */
const IDENTITIES_PER_CLIENT = 64;

/**
 * Runs `clients` clients for `seconds`, each looping request then release
 * of its own identity. Returns operations (messages answered) per second
 * and per-operation latencies in ms.
 */
export function drive(server: ServerHandle, clients: number, seconds: number): Row {
  const sockets = Array.from({ length: clients }, () => AbstractDatagramSocket.bind(null));
  const fds = new Uint8Array(8 * clients);
  const view = new DataView(fds.buffer);
  sockets.forEach((s, i) => {
    view.setInt32(8 * i, s.fd, true);
    view.setInt16(8 * i + 4, POLLIN, true);
  });
  const latencies: number[] = [];
  const sentAt = new Float64Array(clients);
  const step = new Uint32Array(clients); // even: request next, odd: release next
  const waiting = new Uint8Array(clients); // 1: a send is due (queue was full)
  let errors = 0;

  const send = (i: number) => {
    const n = (step[i] >> 1) % IDENTITIES_PER_CLIENT;
    const address = `10.${i}.${(n >> 8) & 255}.${n & 255}`;
    const body = requestBody(address, { ifname: `b${i}`, cmd: step[i] & 1 });
    sentAt[i] = performance.now();
    waiting[i] = sockets[i].sendToName(encoder.encode(body), server.socketName) ? 0 : 1;
  };

  const start = performance.now();
  const end = start + seconds * 1000;
  for (let i = 0; i < clients; i++) send(i);
  let answered = 0;
  while (performance.now() < end) {
    const retry = waiting.includes(1);
    pollBlocking(fds, retry ? 1 : 100);
    for (let i = 0; i < clients; i++) {
      if (waiting[i]) {
        send(i);
        continue;
      }
      const datagram = sockets[i].receive();
      if (!datagram) continue;
      latencies.push(performance.now() - sentAt[i]);
      answered++;
      if (decoder.decode(datagram.data).includes('"cmd":3')) errors++;
      step[i]++;
      send(i);
    }
  }
  const elapsed = (performance.now() - start) / 1000;
  for (const s of sockets) s.close();
  latencies.sort((a, b) => a - b);
  return {
    clients,
    "ops/s": Math.round(answered / elapsed),
    "request+release pairs/s": Math.round(answered / 2 / elapsed),
    "p50 ms": Number(percentile(latencies, 0.5).toFixed(2)),
    "p99 ms": Number(percentile(latencies, 0.99).toFixed(2)),
    errors,
  };
}

/** Throughput and latency for 1, 8 and 32 clients, plus the server's RSS. */
export async function benchThroughput(seconds = 5): Promise<{ rows: Row[]; rss: number }> {
  // Log lines go to a file: the blocking load generator does not drain a pipe.
  const dir = await Deno.makeTempDir({ prefix: "ta-bench-" });
  await using server = await startServer({
    config: { num_tables: 100_000, log_path: `${dir}/server.log` },
  });
  const rows: Row[] = [];
  drive(server, 4, 1); // warm-up
  for (const clients of [1, 8, 32]) rows.push(drive(server, clients, seconds));
  const rss = rssMiB(server.process.pid);
  await server.stop();

  await Deno.remove(dir, { recursive: true });
  return { rows, rss };
}

async function seed(dbPath: string, count: number): Promise<void> {
  const store = SqliteLeaseStore.open(dbPath);
  try {
    const expiresAt = Date.now() + 24 * 3600_000;
    for (let i = 0; i < count; i++) {
      const address = `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`;
      const clientId = `2/eth${i % 100}/${address}`;
      const { token } = await store.lookup(clientId);
      void store.update(clientId, [{
        family: 2,
        ifname: `eth${i % 100}`,
        address,
        table: 10000 + i,
        expiresAt,
        tag: undefined,
        owner: "bench",
        uid: 0,
        state: "bound",
      }], token);
      if (i % 10_000 === 9_999) await store.flush();
    }
    await store.flush();
  } finally {
    await store.close();
  }
}

/** Milliseconds from spawning the server to the first answered request. */
async function timeToFirstAnswer(
  dir: string,
  socketName: string,
): Promise<{ ms: number; rss: number }> {
  using client = AbstractDatagramSocket.bind(null);
  const body = encoder.encode(requestBody("192.0.2.1", { ifname: "first" }));
  const started = performance.now();
  const server = startServer({ dir, socketName, config: { num_tables: 200_000 } });
  let ms = NaN;
  for (;;) {
    try {
      client.sendToName(body, socketName);
    } catch { /* not bound yet */ }
    if (await client.readable(1) && client.receive()) {
      ms = performance.now() - started;
      break;
    }
  }
  const handle = await server;
  const rss = rssMiB(handle.process.pid);
  await handle.stop();
  // Forget the probe lease so every run starts from the same data.
  return { ms, rss };
}

/** Start-up time with 0, 10,000 and 100,000 stored leases (median of 5). */
export async function benchStartup(): Promise<Row[]> {
  const rows: Row[] = [];
  for (const count of [0, 10_000, 100_000]) {
    const dir = await Deno.makeTempDir({ prefix: "ta-bench-" });
    try {
      await seed(`${dir}/leases.db`, count);
      const socketName = `ta-bench-${crypto.randomUUID().slice(0, 8)}`;
      const runs: Array<{ ms: number; rss: number }> = [];
      for (let i = 0; i < 5; i++) runs.push(await timeToFirstAnswer(dir, socketName));
      runs.sort((a, b) => a.ms - b.ms);
      rows.push({
        "stored leases": count,
        "start to first answer, median ms": Math.round(runs[2].ms),
        "min ms": Math.round(runs[0].ms),
        "RSS MiB": runs[2].rss,
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
  return rows;
}
