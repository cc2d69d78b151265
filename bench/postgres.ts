/**
 * Server benchmark with the PostgreSQL store: a throwaway PostgreSQL
 * (unix socket, fsync on, as in `tests/helpers/postgres.ts`) and one server
 * on it, driven by the same load generator as the SQLite figures
 * (`drive()`: request then release, each answered after its commit).
 *
 * @module
 */

import { startPostgres } from "../tests/helpers/postgres.ts";
import { startServer } from "../tests/helpers/server.ts";
import { drive, driveRow, type Row } from "./server.ts";

/**
 * Throughput and latency for 1, 8 and 32 clients against one server on
 * PostgreSQL. Needs root and Debian's postgresql package (see
 * `pgAvailable()`).
 */
export async function benchPostgres(seconds: number): Promise<Row[]> {
  // Log lines go to a file: the blocking load generator does not drain a pipe.
  const dir = await Deno.makeTempDir({ prefix: "ta-bench-" });
  try {
    await using pg = await startPostgres({ sharedBuffers: "128MB" });
    await using server = await startServer({
      config: {
        num_tables: 100_000,
        log_path: `${dir}/server.log`,
        store: pg.storeKey,
      },
    });
    const rows: Row[] = [];
    drive(server, 4, 1); // warm-up: connections, prepared statements, plans
    for (const clients of [1, 8, 32]) rows.push(driveRow(drive(server, clients, seconds)));
    await server.stop();
    return rows;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
