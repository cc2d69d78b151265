/**
 * End-to-end: the shared store's faults. A throwaway PostgreSQL cluster is
 * stopped and started under load three times, and is down when the server
 * starts. While it is down, requests get `store_failure` at once (no
 * stall); once it is back, grants resume within 5 s, every time.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { e2eTest } from "./helpers/e2e.ts";
import { startPostgres } from "./helpers/postgres.ts";
import { startServer } from "./helpers/server.ts";
import { WireClient } from "./helpers/wire.ts";
import { AbstractDatagramSocket } from "../src/unix/abstract_socket.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const CLIENTS = 8;

e2eTest(
  "PostgreSQL stopped and started under load three times: store_failure while down, " +
    "no stall, and grants resume within 5 s of each start",
  { postgres: true, sanitize: false },
  async () => {
    await using pg = await startPostgres();
    await using server = await startServer({
      config: { store: pg.storeKey, num_tables: 2000, addr_families: { inet: true } },
    });
    let stop = false;
    let lastGrant = 0;
    let slowest = 0;
    const acknowledged = new Map<string, number>();
    const errors = new Map<string, number>();
    const load = Array.from({ length: CLIENTS }, (_, c) =>
      (async () => {
        using client = new WireClient(server.socketName);
        for (let i = 0; !stop; i = (i + 1) % 64) {
          const address = `10.${c}.0.${i}`;
          const sent = performance.now();
          await client.send(
            JSON.stringify({ address, ifname: "eth1", addr_family: 2, cmd: 0, version: 1 }),
          );
          const reply = await client.receive(30_000);
          slowest = Math.max(slowest, performance.now() - sent);
          if (reply?.cmd === 2) {
            acknowledged.set(address, reply.table as number);
            lastGrant = performance.now();
          } else {
            const code = String(reply?.error ?? "no reply");
            errors.set(code, (errors.get(code) ?? 0) + 1);
            await sleep(20);
          }
        }
      })());
    try {
      await sleep(1000);
      assert(lastGrant > 0, "grants before the first stop");
      for (let round = 1; round <= 3; round++) {
        await pg.stop();
        const downAt = performance.now();
        slowest = 0;
        await sleep(2000);
        assert(lastGrant < downAt + 500, `round ${round}: no grant while the database is down`);
        assert(slowest < 2500, `round ${round}: a reply took ${slowest.toFixed(0)} ms while down`);
        await pg.start();
        const upAt = performance.now();
        while (lastGrant < upAt && performance.now() - upAt < 15_000) await sleep(10);
        const resumed = lastGrant - upAt;
        console.log(`round ${round}: grants resumed ${resumed.toFixed(0)} ms after the start`);
        assert(lastGrant > upAt && resumed < 5000, `round ${round}: resumed after ${resumed} ms`);
        await sleep(1000);
      }
    } finally {
      stop = true;
      await Promise.all(load);
    }
    assert((errors.get("store_failure") ?? 0) > 0, `errors: ${JSON.stringify([...errors])}`);
    assertEquals([...errors.keys()].filter((k) => k !== "store_failure"), []);
    const sql = pg.connect();
    const rows = await sql`SELECT address, table_id FROM leases WHERE state = 'bound'`;
    await sql.end();
    const stored = new Map(rows.map((r) => [r.address as string, Number(r.table_id)]));
    for (const [address, table] of acknowledged) assertEquals(stored.get(address), table, address);
  },
);

e2eTest(
  "started while PostgreSQL is down, the server keeps retrying with a clear log line " +
    "and reports ready only once it can serve",
  { postgres: true, sanitize: false },
  async () => {
    await using pg = await startPostgres();
    await pg.stop();
    using notify = AbstractDatagramSocket.bind(null);
    const own = new TextDecoder().decode(notify.address.subarray(3));
    await using server = await startServer({
      config: { store: pg.storeKey, addr_families: { inet: true } },
      env: { NOTIFY_SOCKET: `@${own}` },
      ready: (s) => s.waitForLog(/ WARN cannot open the lease store, retrying /),
    });
    assertMatch(
      server.output(),
      /cannot open the lease store, retrying every \d+ s until it can serve: Cannot open PostgreSQL at /,
    );
    await sleep(2500);
    assertEquals(notify.receive(), null, "no READY=1 while the store is down");
    assertEquals(server.output().includes(" INFO ready "), false);
    await pg.start();
    assert(await notify.readable(10_000), "READY=1 once the store is back");
    assertEquals(new TextDecoder().decode(notify.receive()!.data), "READY=1");
    await server.waitForLog(/ INFO ready /);
    using client = new WireClient(server.socketName);
    assertEquals((await client.request("10.0.0.1")).table, 10000);
    const lines = server.output().split("\n").filter((l) => l.includes("retrying"));
    assert(lines.length <= 3, `the retry is logged, not every attempt: ${lines.length} lines`);
  },
);
