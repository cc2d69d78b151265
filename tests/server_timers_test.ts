/**
 * End-to-end: the server keeps off Deno's global timers, whose first use
 * loads `node:timers` (6 to 10 ms, once paid before the first answer).
 * A preloaded trap (`helpers/global_timer_trap.ts`) reports every touch.
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { TRAP_MARK } from "./helpers/global_timer_trap.ts";
import { startServer } from "./helpers/server.ts";
import { run } from "./helpers/spawn.ts";
import { WireClient } from "./helpers/wire.ts";

const TRAP = new URL("./helpers/global_timer_trap_preload.ts", import.meta.url).pathname;

Deno.test("the trap reports a program's first touch of a global timer", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-trap-" });
  try {
    const script = `${dir}/touch.ts`;
    await Deno.writeTextFile(script, "clearTimeout(setTimeout(() => {}, 10));\n");
    const { code, stderr } = await run([Deno.execPath(), "run", `--preload=${TRAP}`, script]);
    assertEquals(code, 0, stderr);
    assertMatch(stderr, new RegExp(`${TRAP_MARK} setTimeout\\n.*touch\\.ts`, "s"));
    assertMatch(stderr, new RegExp(`${TRAP_MARK} clearTimeout`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the server starts, serves, expires, runs its timed outputs and stops without the global timers", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-timers-" });
  const metricsPath = `${dir}/server.prom`;
  try {
    await using server = await startServer({
      dir,
      runFlags: [`--preload=${TRAP}`],
      config: {
        num_tables: 4,
        table_timeout: 1,
        outputs: [
          { kind: "eventlog" },
          { kind: "log", interval: 1 },
          { kind: "prometheus_textfile", path: metricsPath, interval: 1 },
        ],
      },
    });
    using client = new WireClient(server.socketName);
    assertEquals((await client.request("10.0.0.1")).table, 10000);
    assertEquals((await client.request("10.0.0.2")).table, 10001);
    await client.release("10.0.0.2");
    // The store's expiry timer, the log output's interval; the file check and
    // the checkpoint (every 250 and 200 ms) run meanwhile.
    assertMatch(await server.waitForLog(/ INFO expired /), /address=10\.0\.0\.1 table=10000/);
    await server.waitForLog(/ INFO summary /);
    assert((await Deno.stat(metricsPath)).isFile);
    assertEquals((await server.stop()).code, 0);
    assert(
      !server.output().includes(TRAP_MARK),
      `the server touched a global timer:\n${server.output()}`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
