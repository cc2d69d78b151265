/**
 * `make bench`: prints the benchmark tables (Markdown, for the README).
 *
 * @module
 */

import { benchClient } from "./client.ts";
import { benchPostgres } from "./postgres.ts";
import { benchResync } from "./resync.ts";
import { benchStartup, benchThroughput, type Row } from "./server.ts";
import { pgAvailable } from "../tests/helpers/postgres.ts";

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

if (import.meta.main) {
  const seconds = Number(Deno.env.get("BENCH_SECONDS") ?? 5);
  console.log(
    `table-allocator benchmarks (${Deno.build.target}, ${navigator.hardwareConcurrency} cores)\n`,
  );
  console.log(
    "Server: request/release over the real socket, durable commits (WAL, synchronous=FULL)\n",
  );
  const { rows, rss } = await benchThroughput(seconds);
  console.log(table(rows));
  console.log(`\nServer RSS after the load: ${rss} MiB\n`);
  if (pgAvailable()) {
    console.log("PostgreSQL backend: the same load, one server on a local PostgreSQL (fsync on)\n");
    console.log(`${table(await benchPostgres(seconds))}\n`);
    console.log(
      "PostgreSQL backend: answers while the allocation is rebuilt every 5 s from 335,000 leases\n",
    );
    console.log(`${table(await benchResync(Math.max(seconds, 20)))}\n`);
  } else {
    console.log("PostgreSQL backend: skipped (needs root and Debian's postgresql package)\n");
  }
  console.log("Server start-up: spawn to first answered request\n");
  console.log(table(await benchStartup()));
  if (Deno.uid() === 0) {
    console.log("\nClient: hook-style run in a network namespace (IPv4, with rules)\n");
    console.log(table(await benchClient()));
  } else {
    console.log("\nClient: skipped (needs root for a network namespace)");
  }
}
