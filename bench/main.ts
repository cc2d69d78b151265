/**
 * `make bench`: prints the benchmark tables (Markdown, for the README).
 *
 * `BENCH_SECONDS` sets the length of each throughput run (default 5);
 * `BENCH_ONLY=server` prints only the SQLite server's figures (floor,
 * throughput, memory, start-up).
 *
 * @module
 */

import { benchClient } from "./client.ts";
import { loadAverage, nodeSqliteFloor, pythonFloor } from "./floor.ts";
import { benchPostgres } from "./postgres.ts";
import { benchResync } from "./resync.ts";
import { SYSTEMD_DGRAM_QLEN } from "./queue_length.ts";
import { datagramQueueLength, KERNEL_DGRAM_QLEN } from "../src/unix/datagram_queue.ts";
import {
  benchMemory,
  benchStartup,
  benchThroughput,
  benchThroughputWithQueue,
  type Row,
} from "./server.ts";
import { pgAvailable } from "../tests/helpers/postgres.ts";

/** The queue lengths the throughput rows run with, and whose they are. */
const QUEUE_LENGTHS: Array<[number, string]> = [
  [
    SYSTEMD_DGRAM_QLEN,
    "what systemd sets at boot, and what the server gives its socket by default where it may",
  ],
  [
    KERNEL_DGRAM_QLEN,
    "the kernel's default, kept (socket_queue_length 0, or a server that may not write /proc/sys)",
  ],
];

/** Prints one throughput table under its heading, and the server's RSS after it. */
function printThroughput(heading: string, { rows, rss }: { rows: Row[]; rss: number }): void {
  console.log(`${heading}\n`);
  console.log(table(rows));
  console.log(`\nServer RSS after the load: ${rss} MiB\n`);
}

/** Formats rows as a Markdown table. */
export function table(rows: Row[]): string {
  if (rows.length === 0) return "(no rows)";
  const columns = Object.keys(rows[0]);
  const cells = [columns, ...rows.map((r) => columns.map((c) => String(r[c])))];
  const widths = columns.map((_, i) => Math.max(...cells.map((row) => row[i].length)));
  const line = (row: string[]) => `| ${row.map((cell, i) => cell.padEnd(widths[i])).join(" | ")} |`;
  return [
    line(cells[0]),
    `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`,
    ...cells.slice(1).map(line),
  ].join("\n");
}

/** The floor for 3 s each, through `node:sqlite` and (when installed) Python's `sqlite3`. */
async function floorRows(): Promise<Row[]> {
  const dir = await Deno.makeTempDir({ prefix: "ta-bench-" });
  try {
    const rows: Row[] = [{
      "one-row WAL/FULL commits": "node:sqlite",
      "per second": nodeSqliteFloor(dir, 3000),
    }];
    const python = await pythonFloor(dir, 3000);
    if (python !== undefined) {
      rows.push({ "one-row WAL/FULL commits": "Python sqlite3", "per second": python });
    }
    return rows;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const seconds = Number(Deno.env.get("BENCH_SECONDS") ?? 5);
  const serverOnly = Deno.env.get("BENCH_ONLY") === "server";
  console.log(
    `table-allocator benchmarks (${Deno.build.target}, ${navigator.hardwareConcurrency} cores, ` +
      `load average ${loadAverage()})\n`,
  );
  console.log("fsync floor, in the same temporary directory as the server's database\n");
  console.log(`${table(await floorRows())}\n`);
  console.log(
    "Server: request/release over the real socket, each answered after its durable commit;",
  );
  console.log(
    "each row beside a 1 s floor (node:sqlite) on the same disk: 1 client in 1 s rounds alternated\n" +
      "with it (medians; x floor is the median of the rounds' ratios), crowds right after it;\n" +
      "load = 1-minute load average\n",
  );
  if (Deno.uid() === 0) {
    for (const [qlen, what] of QUEUE_LENGTHS) {
      printThroughput(
        `net.unix.max_dgram_qlen = ${qlen}: ${what}`,
        await benchThroughputWithQueue(qlen, seconds),
      );
    }
  } else {
    printThroughput(
      `net.unix.max_dgram_qlen = ${datagramQueueLength()} (this machine's; both need root)`,
      await benchThroughput(seconds),
    );
  }
  console.log("Server memory with 100,000 bound leases\n");
  const memory = await benchMemory();
  const last = memory.at(-1)!;
  console.log(table(memory));
  console.log(`\ntarget RSS <= 64 MiB: ${Number(last["RSS MiB"]) <= 64 ? "met" : "missed"}\n`);
  console.log("Server start-up: spawn to first answered request\n");
  console.log(`${table(await benchStartup())}\n`);
  if (!serverOnly) {
    if (pgAvailable()) {
      console.log(
        "PostgreSQL backend: the same load, one server on a local PostgreSQL (fsync on)\n",
      );
      console.log(`${table(await benchPostgres(seconds))}\n`);
      console.log(
        "PostgreSQL backend: answers while the allocation is rebuilt every 5 s from 335,000 leases\n",
      );
      console.log(`${table(await benchResync(Math.max(seconds, 20)))}\n`);
    } else {
      console.log("PostgreSQL backend: skipped (needs root and Debian's postgresql package)\n");
    }
    if (Deno.uid() === 0) {
      console.log("Client: hook-style run in a network namespace (IPv4, with rules)\n");
      console.log(table(await benchClient()));
    } else {
      console.log("Client: skipped (needs root for a network namespace)");
    }
  }
  console.log(`\nload average at the end: ${loadAverage()}`);
}
