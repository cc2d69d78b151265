/**
 * End-to-end: `--check` of configs; the server's log lines for journald
 * (`JOURNAL_STREAM`) and at each `log_level`; what systemd hears
 * (READY=1, STATUS=, WATCHDOG=1 with WATCHDOG_USEC, RELOADING=1 at a
 * reload).
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { SERVER_PATH, startServer } from "./helpers/server.ts";
import { WireClient } from "./helpers/wire.ts";
import { waitFor } from "./helpers/netns.ts";
import { denoRun, run, type RunResult } from "./helpers/spawn.ts";
import { AbstractDatagramSocket } from "../src/unix/abstract_socket.ts";

/** Whether a padded abstract name is bound in this network namespace. */
async function socketBound(name: string): Promise<boolean> {
  return (await Deno.readTextFile("/proc/net/unix")).includes(` @${name}@`);
}

/** Runs the server with `args` to completion. */
function runServer(args: string[]): Promise<RunResult> {
  return run(denoRun(SERVER_PATH, ...args));
}

Deno.test("--check exits 0 on a valid config and 1 with the start's message on a bad one", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-check-" });
  try {
    const good = `${dir}/good.json`, bad = `${dir}/bad.json`;
    await Deno.writeTextFile(
      good,
      `{ // comments are fine
        "socket_path": "ta-check", "table_offset": 10000, "num_tables": 4, "table_timeout": 60,
        "db_path": "${dir}/never/created.db", "addr_families": { "inet": true },
        "outputs": [{ "kind": "rt_tables", "path": "${dir}/ta.conf" }], "log_level": "debug" }`,
    );
    await Deno.writeTextFile(
      bad,
      JSON.stringify({
        socket_path: "ta-check",
        table_offset: 10000,
        num_tables: 4,
        table_timeout: 60,
        db_path: `${dir}/x.db`,
        addr_families: { inet: true },
        outputs: [{ kind: "command", command: ["/bin/true"], timeout: 0 }],
      }),
    );
    for (const flag of ["--check", "-t"]) {
      const ok = await runServer([flag, "-c", good]);
      assertEquals(ok.code, 0, ok.stderr);
      assertEquals(ok.stdout, `table_allocator_server: config "${good}" is valid\n`);
      assertEquals(ok.stderr, "");
    }
    // A key the original would ignore is valid, and the check says it is ignored.
    const typo = `${dir}/typo.json`;
    await Deno.writeTextFile(
      typo,
      (await Deno.readTextFile(good)).replace('"log_level"', '"tabel_timeout": 5, "log_level"'),
    );
    const warned = await runServer(["--check", "-c", typo]);
    assertEquals(warned.code, 0, warned.stderr);
    assertMatch(
      warned.stderr,
      /^table_allocator_server: warning: "tabel_timeout" is not a known key \(ignored\); did you mean "table_timeout"\?\n$/,
    );
    // Checking writes nothing: no database directory, no rt_tables file.
    assertEquals(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["bad.json", "good.json", "typo.json"],
    );
    const refused = await runServer(["--check", "-c", bad]);
    const started = await runServer(["-c", bad]);
    assertEquals(refused.code, 1);
    assertEquals(started.code, 1);
    assertEquals(refused.stdout, "");
    assertEquals(
      refused.stderr,
      `table_allocator_server: Cannot load config "${bad}": outputs[0].timeout must be an integer from 1 to 3600, got 0\n`,
    );
    assertEquals(refused.stderr, started.stderr);
    const missing = await runServer(["-t", "-c", `${dir}/none.json`]);
    assertEquals(missing.code, 1);
    assertMatch(missing.stderr, /Cannot load config ".*none\.json": No such file/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("under journald (JOURNAL_STREAM names stderr) lines carry <N> and no timestamp", async () => {
  // The shell sets JOURNAL_STREAM to the device and inode of the stderr it hands on, as systemd does.
  await using server = await startServer({
    wrap: ["sh", "-c", 'JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec "$@"', "sh"],
    config: { log_level: "debug" },
    ready: (s) => s.waitForLog(/^<6>ready /),
  });
  using client = new WireClient(server.socketName);
  assertEquals((await client.request("10.0.0.1")).table, 10000);
  assertEquals((await client.request("bad", { family: 2 })).error, "bad_request");
  await client.release("10.0.0.9");
  assertMatch(
    await server.waitForLog(/granted/),
    /^<6>granted family=inet ifname=eth1 address=10\.0\.0\.1 table=10000 /,
  );
  assertMatch(await server.waitForLog(/rejected/), /^<4>rejected error=bad_request /);
  assertMatch(await server.waitForLog(/no lease held/), /^<7>released family=inet /);
  for (const line of server.output().trim().split("\n")) {
    assertMatch(line, /^<[3467]>[a-z]/, "every line starts with its priority, no timestamp");
  }
});

Deno.test("a JOURNAL_STREAM that names another file keeps timestamps; log_level hides lower lines", async () => {
  await using server = await startServer({
    env: { JOURNAL_STREAM: "1:1" },
    config: { log_level: "warn" },
    // The ready line is info, below the level: wait for the bound socket instead.
    ready: (s) => waitFor("the server's socket", () => socketBound(s.socketName)),
  });
  using client = new WireClient(server.socketName);
  assertEquals((await client.request("10.0.0.1")).table, 10000);
  assertEquals((await client.request("bad", { family: 2 })).error, "bad_request");
  const line = await server.waitForLog(/rejected/);
  assertMatch(line, /^\d{4}-\d\d-\d\dT\S+Z WARN rejected error=bad_request /);
  assert(!/ INFO /.test(server.output()), `no info lines at log_level warn:\n${server.output()}`);
});

Deno.test("systemd hears READY=1, STATUS= with the counts, WATCHDOG=1 from the loop, RELOADING=1", async () => {
  // systemd's abstract notify addresses are not padded: an autobound name is one.
  using notify = AbstractDatagramSocket.bind(null);
  const name = new TextDecoder().decode(notify.address.subarray(3));
  await using server = await startServer({
    config: { addr_families: { inet: true }, num_tables: 10 },
    env: { NOTIFY_SOCKET: `@${name}`, WATCHDOG_USEC: "400000" },
  });
  const heard: string[] = [];
  const listen = async (until: (lines: string[]) => boolean, what: string) => {
    const deadline = Date.now() + 5000;
    while (!until(heard)) {
      if (Date.now() > deadline) {
        throw new Error(`systemd did not hear ${what}: ${JSON.stringify(heard)}`);
      }
      if (await notify.readable(100)) {
        for (let d = notify.receive(); d; d = notify.receive()) {
          heard.push(...new TextDecoder().decode(d.data).split("\n"));
        }
      }
    }
  };
  await listen((l) => l.includes("STATUS=0 bound, 10 free, 0 held of 10 tables"), "the status");
  assertEquals(heard[0], "READY=1");
  using client = new WireClient(server.socketName);
  assertEquals((await client.request("10.0.0.1")).table, 10000);
  await listen((l) => l.includes("STATUS=1 bound, 9 free, 0 held of 10 tables"), "the new status");
  // Every 200 ms (half of WATCHDOG_USEC) while the loop runs, also when idle.
  const pings = heard.filter((l) => l === "WATCHDOG=1").length;
  await listen((l) => l.filter((x) => x === "WATCHDOG=1").length >= pings + 3, "pings");
  server.process.kill("SIGHUP");
  await listen((l) => l.some((x) => x === "RELOADING=1"), "RELOADING=1");
  assertMatch(heard.find((l) => l.startsWith("MONOTONIC_USEC="))!, /^MONOTONIC_USEC=\d+$/);
  await listen(
    (l) => l.lastIndexOf("READY=1") > l.indexOf("RELOADING=1"),
    "READY=1 after the reload",
  );
});
