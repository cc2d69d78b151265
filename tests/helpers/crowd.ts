/**
 * A crowd of wire clients, each asking for new identities as fast as its
 * replies come, until the server is stopped under it: what the durability
 * tests use to check that every acknowledged lease survives the stop.
 *
 * @module
 */

import { assert, assertEquals } from "./assert.ts";
import { readLeases, type ServerHandle } from "./server.ts";
import { requestBody, WireClient } from "./wire.ts";

/** What {@link stopUnderCrowd} saw. */
export interface CrowdStop {
  /** Address to table, for every grant the server acknowledged. */
  acknowledged: Map<string, number>;
  /** How the server exited. */
  status: Deno.CommandStatus;
}

/**
 * Runs `clients` clients (client `w` asks for `10.w.x.y`, one new address
 * after another) for `afterMs`, then stops the server with `signal` and
 * waits for the clients to notice.
 */
export async function stopUnderCrowd(
  server: ServerHandle,
  clients: number,
  afterMs: number,
  signal: Deno.Signal,
): Promise<CrowdStop> {
  const acknowledged = new Map<string, number>();
  let stop = false;
  const worker = async (w: number) => {
    using client = new WireClient(server.socketName);
    for (let i = 0; !stop; i++) {
      const address = `10.${w}.${i >> 8}.${i & 255}`;
      try {
        await client.send(requestBody(address));
      } catch {
        break; // the server is gone (ECONNREFUSED)
      }
      const reply = await client.receive(500);
      if (reply?.cmd === 2) acknowledged.set(address, reply.table as number);
    }
  };
  const workers = Array.from({ length: clients }, (_, w) => worker(w));
  await new Promise((r) => setTimeout(r, afterMs));
  const status = await server.stop(signal);
  stop = true;
  await Promise.all(workers);
  return { acknowledged, status };
}

/** Asserts that more than 50 grants were acknowledged and every one is in the server's database. */
export function assertAllStored(server: ServerHandle, acknowledged: Map<string, number>): void {
  assert(acknowledged.size > 50, `only ${acknowledged.size} leases acknowledged`);
  const stored = new Map(readLeases(server.dbPath).map((l) => [l.address, l.table]));
  for (const [address, table] of acknowledged) assertEquals(stored.get(address), table, address);
}
