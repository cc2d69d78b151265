/**
 * End-to-end: the server kept busy by a load generator in another process
 * (the loop then waits on its own thread between passes and rarely parks),
 * and still its timers and signals are served: expiry on time, a clean stop
 * on SIGTERM; and a crowd's acknowledged leases survive kill -9.
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { startLoad } from "./helpers/load.ts";
import { assertAllStored, stopUnderCrowd } from "./helpers/crowd.ts";
import { startServer } from "./helpers/server.ts";
import { WireClient } from "./helpers/wire.ts";

for (const clients of [1, 32]) {
  Deno.test(`under a load of ${clients} busy client(s), an expired lease is still reclaimed on time`, async () => {
    await using server = await startServer({ config: { num_tables: 4000, table_timeout: 2 } });
    using holder = new WireClient(server.socketName);
    assertEquals((await holder.request("10.250.0.1", { ifname: "held" })).table, 10000);
    const expiresAt = server.leases()[0].expiresAt;
    await using load = startLoad(server.socketName, clients, 6);
    const expired = await server.waitForLog(/ INFO expired .*address=10\.250\.0\.1 /, 10_000);
    assert(load.running(), "the load was still on when the lease expired");
    const late = Date.parse(expired.split(" ")[0]) - expiresAt;
    // Without load it is exact to a few ms; a busy loop yields to its timers within 100 ms.
    assert(late < 1000, `reclaimed ${late} ms after expiry under load`);
    const result = await load.result;
    assert(result.opsPerSecond > 0 && result.errors === 0, JSON.stringify(result));
  });
}

Deno.test("SIGTERM under a load of 32 busy clients stops the server at once, cleanly", async () => {
  await using server = await startServer({ config: { num_tables: 4000 } });
  await using load = startLoad(server.socketName, 32, 20);
  await server.waitForLog(/ INFO granted .*ifname=b31 /);
  assert(load.running(), "the load is on when SIGTERM is sent");
  const status = await server.stop("SIGTERM");
  // The load ends early when the server has gone: it did not wait for the load's 20 s.
  assert((await load.result).serverGone, "the server stopped only once the load was over");
  assertEquals(status.code, 0);
  assertMatch(server.output(), /INFO stopped batches=\d+ requests=\d+/);
});

Deno.test("kill -9 under a crowd of 24 clients: every acknowledged lease is in the database", async () => {
  // More senders than the kernel queues (10): the server is crowded, so its
  // commits wait for the disk off the main thread while it keeps receiving.
  await using server = await startServer({ config: { num_tables: 100_000 } });
  const { acknowledged } = await stopUnderCrowd(server, 24, 1000, "SIGKILL");
  assertAllStored(server, acknowledged);
});
