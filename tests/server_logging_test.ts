/**
 * End-to-end: `--check` of configs, and the server's log lines for
 * journald (`JOURNAL_STREAM`) and at each `log_level`.
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { SERVER_PATH, startServer } from "./helpers/server.ts";
import { WireClient } from "./helpers/wire.ts";
import { waitFor } from "./helpers/netns.ts";

/** Whether a padded abstract name is bound in this network namespace. */
async function socketBound(name: string): Promise<boolean> {
  return (await Deno.readTextFile("/proc/net/unix")).includes(` @${name}@`);
}

async function runServer(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", SERVER_PATH, ...args],
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
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
    }
    // Checking writes nothing: no database directory, no rt_tables file.
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["bad.json", "good.json"]);
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
