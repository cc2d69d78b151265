import { assert, assertEquals, assertMatch } from "../../tests/helpers/assert.ts";
import { Logger } from "../log/logger.ts";
import { leaseEvent } from "../../tests/helpers/events.ts";
import { ServerMetrics } from "../metrics/server_metrics.ts";
import { parsePrometheusText } from "../../tests/helpers/prometheus.ts";
import { commandEnv, CommandOutput } from "./command.ts";

const event = leaseEvent;

/** Whether a process ends (or is a zombie) within 3 s. */
async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 60; i++) {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`).catch(() => null);
    if (stat === null || / Z /.test(stat.slice(stat.lastIndexOf(")")))) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

function existsSync(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

async function withDir(fn: (dir: string, log: Logger) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  const log = new Logger({ program: "t", logPath: `${dir}/log`, level: "debug" });
  try {
    await fn(dir, log);
  } finally {
    log.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("commandEnv() passes the event and hides the server's systemd variables", () => {
  const moved = event("moved", 10001, { previousTable: 10000, tag: "wan" });
  const env = commandEnv({ kind: "moved", lease: moved.lease!, previousTable: 10000 }, {
    PATH: "/bin",
    NOTIFY_SOCKET: "/run/systemd/notify",
    WATCHDOG_USEC: "1",
    WATCHDOG_PID: "1",
    JOURNAL_STREAM: "1:2",
  });
  assertEquals(env, {
    PATH: "/bin",
    EVENT: "moved",
    TABLE: "10001",
    PREVIOUS_TABLE: "10000",
    FAMILY: "2",
    IFNAME: "eth1",
    ADDRESS: "192.0.2.10",
    TAG: "wan",
  });
  const granted = { kind: "granted" as const, lease: event("granted", 1).lease!, previousTable: 0 };
  assertEquals(commandEnv(granted, {}).TAG, "");
  assertEquals(commandEnv(granted, {}).PREVIOUS_TABLE, "0");
});

Deno.test("CommandOutput runs the chosen events one at a time, in order, and logs output", async () => {
  await withDir(async (dir, log) => {
    const script = `${dir}/hook.sh`;
    // Each run notes its start and end: overlapping runs would interleave them.
    await Deno.writeTextFile(
      script,
      `#!/bin/sh\necho "start $EVENT $TABLE" >> ${dir}/runs\nsleep 0.05\necho "end $EVENT $TABLE" >> ${dir}/runs\necho "out $TABLE"\necho "err $TABLE" >&2\n`,
    );
    await Deno.chmod(script, 0o755);
    const out = new CommandOutput("outputs[1]", {
      command: [script],
      events: ["granted", "released"],
      timeout: 10,
      retries: 0,
    }, log);
    out.onLease(event("granted", 10000));
    out.onLease(event("refreshed", 10000));
    out.onLease(event("granted", 10001));
    out.onLease(event("released", 10000));
    // Queuing returns at once: nothing has run yet.
    assertEquals(existsSync(`${dir}/runs`), false);
    await out.settled();
    assertEquals((await Deno.readTextFile(`${dir}/runs`)).trim().split("\n"), [
      "start granted 10000",
      "end granted 10000",
      "start granted 10001",
      "end granted 10001",
      "start released 10000",
      "end released 10000",
    ]);
    const logged = await Deno.readTextFile(`${dir}/log`);
    assertMatch(
      logged,
      /INFO command output output=outputs\[1\] event=granted table=10000 stream=stdout line="out 10000"/,
    );
    assertMatch(logged, /WARN command output .*stream=stderr line="err 10001"/);
  });
});

Deno.test("CommandOutput logs a failure and a timeout, retries, and stops a hung script's children", async () => {
  await withDir(async (dir, log) => {
    const metrics = new ServerMetrics();
    const failing = new CommandOutput(
      "outputs[0]",
      {
        command: ["/bin/sh", "-c", `echo x >> ${dir}/tries; exit 3`],
        events: ["granted"],
        timeout: 5,
        retries: 1,
      },
      log,
      metrics,
    );
    failing.onLease(event("granted", 10000));
    await failing.settled();
    assertEquals((await Deno.readTextFile(`${dir}/tries`)).trim().split("\n").length, 2);

    const hung = new CommandOutput(
      "outputs[2]",
      {
        command: ["/bin/sh", "-c", `sleep 60 & echo $! > ${dir}/child; wait`],
        events: ["granted"],
        timeout: 1,
        retries: 0,
      },
      log,
      metrics,
    );
    hung.onLease(event("granted", 10001));
    await hung.settled();
    const child = Number((await Deno.readTextFile(`${dir}/child`)).trim());
    assert(await gone(child), `the script's child ${child} still runs`);

    const missing = new CommandOutput(
      "outputs[3]",
      {
        command: [`${dir}/no-such-program`],
        events: ["granted"],
        timeout: 1,
        retries: 0,
      },
      log,
      metrics,
    );
    missing.onLease(event("granted", 10002));
    await missing.settled();

    const logged = await Deno.readTextFile(`${dir}/log`);
    assertMatch(
      logged,
      /ERROR command failed output=outputs\[0\] event=granted table=10000 attempt=1\/2 code=3/,
    );
    assertMatch(logged, /ERROR command failed output=outputs\[0\] .*attempt=2\/2 code=3/);
    assertMatch(logged, /ERROR command timed out and was stopped output=outputs\[2\] .*timeout=1s/);
    assertMatch(logged, /ERROR command cannot start output=outputs\[3\] .*no-such-program/);
    const m = parsePrometheusText(
      metrics.render({
        pools: [],
        outside: 0,
        uptimeSeconds: 0,
        version: "t",
        socketQueue: { limit: 10, full: 0 },
      }),
    );
    assertEquals(m.value("table_allocator_output_failures_total", { output: "outputs[0]" }), 2);
    assertEquals(m.value("table_allocator_output_failures_total", { output: "outputs[2]" }), 1);
  });
});

Deno.test("CommandOutput.stop() delivers what is queued until the deadline, then drops the rest", async () => {
  await withDir(async (dir, log) => {
    const out = new CommandOutput("outputs[0]", {
      command: ["/bin/sh", "-c", `echo $TABLE >> ${dir}/runs; sleep 0.3`],
      events: ["granted"],
      timeout: 10,
      retries: 0,
    }, log);
    for (let t = 1; t <= 20; t++) out.onLease(event("granted", t));
    await out.stop(performance.now() + 450, false);
    const runs = (await Deno.readTextFile(`${dir}/runs`)).trim().split("\n");
    assert(runs.length >= 1 && runs.length < 20, `ran ${runs.length}`);
    assertEquals(runs[0], "1");
    assertMatch(
      await Deno.readTextFile(`${dir}/log`),
      /command output stopped with events left undelivered output=outputs\[0\] dropped=\d+/,
    );
    // Once stopped, events are ignored.
    out.onLease(event("granted", 99));
    await out.settled();
    assert(!(await Deno.readTextFile(`${dir}/runs`)).includes("99"));
  });
});
