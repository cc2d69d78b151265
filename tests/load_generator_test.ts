/**
 * The benchmark's load generator (`tests/helpers/load.ts`) against a
 * socket whose kernel queue is full and never read: how often a refused
 * send is tried again.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { drive } from "./helpers/load.ts";
import { AbstractDatagramSocket } from "../src/unix/abstract_socket.ts";

Deno.test("drive() tries a refused send again at its next wake-up, or retryMs after it", () => {
  const name = `ta-load-${crypto.randomUUID().slice(0, 8)}`;
  using _server = AbstractDatagramSocket.bind(name);
  using filler = AbstractDatagramSocket.bind(null);
  while (filler.sendToName(new Uint8Array(1), name)) { /* until the kernel refuses (EAGAIN) */ }
  const clients = 4;
  const seconds = 0.3;
  // With 20 ms between tries, each client tries at most once every 20 ms, its first send included.
  const most = clients * (seconds * 1000 / 20 + 1);
  const patient = drive({ socketName: name }, clients, seconds, 20);
  assert(patient.eagain >= clients, `every client was refused: ${patient.eagain}`);
  assert(patient.eagain <= most, `${patient.eagain} refused sends, at most ${most} expected`);
  const eager = drive({ socketName: name }, clients, seconds);
  assert(
    eager.eagain > 2 * most,
    `${eager.eagain} refused sends: tried again within a millisecond`,
  );
  assertEquals([patient.opsPerSecond, eager.opsPerSecond, eager.serverGone], [0, 0, false]);
});
