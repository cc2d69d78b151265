/**
 * End-to-end: reloading the config with SIGHUP and `ctl reload` while
 * leases live: a pool added and one removed, an invalid file, a change
 * that needs a restart.
 *
 * @module
 */

import { assertEquals, assertMatch } from "./helpers/assert.ts";
import { ctl } from "./helpers/ctl.ts";
import { e2eTest } from "./helpers/e2e.ts";
import { parsePrometheusText } from "./helpers/prometheus.ts";
import { startServer } from "./helpers/server.ts";
import { WireClient } from "./helpers/wire.ts";

const pool = (name: string, first: number, tags?: string[]) => ({
  name,
  family: "inet",
  ranges: [{ first, last: first + 9 }],
  ...(tags ? { tags } : {}),
});

e2eTest(
  "a reload adds and removes pools; live leases stay on their tables; bad files are refused",
  {
    root: true, // ctl
  },
  async () => {
    const base = {
      table_offset: undefined,
      num_tables: undefined,
      addr_families: { inet: true },
      // As startServer writes it: a file written anew below must not change the socket's queue.
      socket_queue_length: 0,
    };
    await using server = await startServer({
      config: { ...base, pools: [pool("b", 20000, ["b"]), pool("a", 10000)] },
    });
    const rewrite = async (change: Record<string, unknown>) => {
      const config = JSON.parse(await Deno.readTextFile(server.configPath));
      await Deno.writeTextFile(server.configPath, JSON.stringify({ ...config, ...change }));
    };
    const control = (...args: string[]) => ctl(["-d", server.socketName, ...args]);
    using client = new WireClient(server.socketName);
    assertEquals((await client.request("10.0.0.1")).table, 10000);
    assertEquals((await client.request("10.0.0.2", { tag: "b" })).table, 20000);

    // SIGHUP: pool b is gone, pool c is new.
    await rewrite({ pools: [pool("c", 30000, ["c"]), pool("a", 10000)] });
    server.process.kill("SIGHUP");
    assertMatch(await server.waitForLog(/ INFO reloaded /), /pools=2 /);
    assertMatch(
      server.output(),
      /WARN stored lease outside the configured pools is kept .*table=20000/,
    );
    assertEquals((await client.request("10.0.0.3", { tag: "c" })).table, 30000);
    assertEquals((await client.request("10.0.0.2", { tag: "b" })).table, 20000, "kept on refresh");
    assertEquals((await client.request("10.0.0.1")).table, 10000, "never moved");
    assertEquals((await client.request("10.0.0.4", { tag: "b" })).table, 10001, "b is served by a");
    const status = await control("--json", "status");
    assertEquals(JSON.parse(status.stdout).leases, {
      bound: 4,
      reserved: 0,
      outside_pools: 1,
      held: 0,
    });
    assertEquals(JSON.parse(status.stdout).pools.map((p: { name: string }) => p.name), ["c", "a"]);
    assertEquals((await client.release("10.0.0.2")).table, 0);
    await server.waitForLog(/lease outside the configured pools ended family=inet table=20000/);

    // ctl reload of a file that is not valid: refused, the running config stays.
    await rewrite({ pools: [pool("c", 30000, ["c"]), { ...pool("a", 10000), ranges: [] }] });
    const refused = await control("reload");
    assertEquals(refused.code, 1);
    assertMatch(
      refused.stderr,
      /^table-allocator-ctl: reload: bad_config: Cannot load config ".*": pools\[1\]/,
    );
    assertMatch(
      await server.waitForLog(/reload refused/),
      /ERROR reload refused: Cannot load config .*; the running config is kept/,
    );
    await Deno.writeTextFile(server.configPath, "{ not json");
    server.process.kill("SIGHUP");
    await server.waitForLog(/reload refused: Cannot load config .*not valid JSON/);
    assertEquals((await client.request("10.0.0.5", { tag: "c" })).table, 30001, "still serving");

    // The socket cannot change while running.
    await Deno.writeTextFile(server.configPath, "{}");
    await rewrite({
      ...base,
      socket_path: "elsewhere",
      table_timeout: 60,
      db_path: server.dbPath,
      pools: [pool("a", 10000)],
    });
    const socket = await control("reload");
    assertEquals(socket.code, 1);
    assertMatch(
      socket.stderr,
      /bad_config: "socket_path" changed from .* to "elsewhere": restart the server/,
    );

    // A good file again, by ctl: applied.
    await rewrite({ socket_path: server.socketName, pools: [pool("a", 10000)] });
    const ok = await control("reload");
    assertEquals(ok.code, 0, ok.stderr);
    assertEquals(ok.stdout, `reloaded ${server.configPath}: 1 pool, 0 reservations, 1 output\n`);
    assertEquals((await client.request("10.0.0.6", { tag: "c" })).table, 10002);
    assertEquals((await client.request("10.0.0.5", { tag: "c" })).table, 30001, "kept on refresh");

    const m = parsePrometheusText((await control("metrics")).stdout);
    assertEquals(m.value("table_allocator_reloads_total", { result: "ok" }), 2);
    assertEquals(m.value("table_allocator_reloads_total", { result: "refused" }), 3);
    // SIGHUP never ended the server (it used to exit 129).
    assertEquals((await server.stop()).code, 0);
  },
);
