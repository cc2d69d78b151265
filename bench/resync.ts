/**
 * The shared store's periodic rebuild of the allocation, measured: a server
 * on a PostgreSQL store holding 335,000 bound leases (every 5 s it rebuilds
 * its view of the pools from the store) answers one client's requests and
 * releases; the table gives the latency of each answer, the worst ones
 * included, since a rebuild that stalls the server shows as a slow answer
 * every 5 s.
 *
 * @module
 */

import { PostgresLeaseStore } from "../src/store/postgres_store.ts";
import { AbstractDatagramSocket } from "../src/unix/abstract_socket.ts";
import { startPostgres } from "../tests/helpers/postgres.ts";
import { startServer } from "../tests/helpers/server.ts";
import { requestBody } from "../tests/helpers/wire.ts";
import type { Row } from "./server.ts";

/** Leases in the store, as in the measurement. */
export const STORED_LEASES = 335_000;

const encoder = new TextEncoder();

/**
 * Latency of a request/release loop over `seconds` against a server whose
 * shared store holds {@link STORED_LEASES} bound leases.
 */
export async function benchResync(seconds = 20): Promise<Row[]> {
  const dir = await Deno.makeTempDir({ prefix: "ta-bench-" });
  try {
    await using pg = await startPostgres({ sharedBuffers: "128MB" });
    await (await PostgresLeaseStore.open(pg.config)).close(); // the schema
    const sql = pg.connect();
    const expires = Date.now() + 24 * 3600_000;
    // Client ids as the server writes them: family/ifname/address.
    await sql.unsafe(`
      INSERT INTO lease_clients (client_id, version, updated_at)
        SELECT '2/eth' || (i % 100) || '/10.' || (i >> 16) || '.' || ((i >> 8) & 255) || '.' || (i & 255), 1, 0
        FROM generate_series(0, ${STORED_LEASES - 1}) i;
      INSERT INTO leases (client_id, family, ifname, address, table_id, expires_at, tag, owner,
                          state, updated_at, uid)
        SELECT '2/eth' || (i % 100) || '/10.' || (i >> 16) || '.' || ((i >> 8) & 255) || '.' || (i & 255),
               2, 'eth' || (i % 100), '10.' || (i >> 16) || '.' || ((i >> 8) & 255) || '.' || (i & 255),
               10000 + i, ${expires}, NULL, 'bench', 'bound', 0, 0
        FROM generate_series(0, ${STORED_LEASES - 1}) i;
      ANALYZE leases;`);
    await sql.end();
    await using server = await startServer({
      config: {
        num_tables: 400_000,
        log_path: `${dir}/server.log`,
        store: pg.storeKey,
        addr_families: { inet: true },
      },
      ready: (s) => s.waitForLog(/ INFO ready /, 120_000),
    });
    using client = AbstractDatagramSocket.bind(null);
    const latencies: number[] = [];
    const end = performance.now() + seconds * 1000;
    for (let i = 0; performance.now() < end; i++) {
      const body = requestBody("192.0.2.1", { ifname: "bench", cmd: i & 1 });
      const sent = performance.now();
      while (!client.sendToName(encoder.encode(body), server.socketName)) { /* queue full */ }
      if (!await client.readable(30_000)) throw new Error("no answer within 30 s");
      client.receive();
      latencies.push(performance.now() - sent);
    }
    latencies.sort((a, b) => a - b);
    const at = (p: number) =>
      latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))];
    return [{
      "stored leases": STORED_LEASES,
      seconds,
      answers: latencies.length,
      "p50 ms": Number(at(0.5).toFixed(2)),
      "p99 ms": Number(at(0.99).toFixed(2)),
      "max ms": Number(latencies.at(-1)!.toFixed(1)),
      "answers > 50 ms": latencies.filter((l) => l > 50).length,
    }];
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  // bench/main.ts prints it as a Markdown table with the others.
  console.table(await benchResync(Number(Deno.args[0] ?? 20)));
}
