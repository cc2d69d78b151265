/**
 * End-to-end: the server's life: exact expiry, restarts, shutdown under
 * load, bad configs, a second server, systemd readiness, log sinks.
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { assertAllStored, stopUnderCrowd } from "./helpers/crowd.ts";
import { SERVER_PATH, startServer } from "./helpers/server.ts";
import { WireClient } from "./helpers/wire.ts";
import { AbstractDatagramSocket } from "../src/unix/abstract_socket.ts";
import { DatabaseSync } from "node:sqlite";
import { errorMessage } from "../src/util/errors.ts";
import { IS_ROOT } from "./helpers/privilege.ts";
import { denoRun, run, type RunResult } from "./helpers/spawn.ts";

/** Runs the server with `args` to completion. */
function runServer(args: string[]): Promise<RunResult> {
  return run(denoRun(SERVER_PATH, ...args));
}

Deno.test("an expired lease's table comes back exactly when the lease expires", async () => {
  await using server = await startServer({ config: { num_tables: 1, table_timeout: 2 } });
  using holder = new WireClient(server.socketName);
  using waiter = new WireClient(server.socketName);
  assertEquals((await holder.request("10.0.0.1")).table, 10000);
  const expiresAt = server.leases()[0].expiresAt;
  assertEquals((await waiter.request("10.0.0.2")).error, "pool_exhausted");
  // Shortly before the expiry, the table is still taken.
  await new Promise((r) => setTimeout(r, expiresAt - Date.now() - 300));
  assertEquals((await waiter.request("10.0.0.2")).error, "pool_exhausted");
  // Shortly after, it is free (no 5-minute sweep).
  await new Promise((r) => setTimeout(r, expiresAt - Date.now() + 100));
  assertEquals((await waiter.request("10.0.0.2")).table, 10000);
  const expired = await server.waitForLog(/ INFO expired /);
  assertMatch(expired, /family=inet ifname=eth1 address=10\.0\.0\.1 table=10000/);
  const loggedAt = Date.parse(expired.split(" ")[0]);
  assert(loggedAt - expiresAt < 250, `reclaimed ${loggedAt - expiresAt} ms after expiry`);
  assertEquals(server.leases().map((l) => l.address), ["10.0.0.2"]);
});

Deno.test("leases survive a restart and a refreshing client keeps its table", async () => {
  const first = await startServer({ config: { num_tables: 10 } });
  const { dir, socketName } = first;
  try {
    {
      using client = new WireClient(socketName);
      for (let i = 1; i <= 4; i++) {
        assertEquals((await client.request(`10.0.0.${i}`)).table, 9999 + i);
      }
      await client.release("10.0.0.2");
    }
    assertEquals((await first.stop()).code, 0);
    await using second = await startServer({ dir, socketName, config: { num_tables: 10 } });
    assertMatch(await second.waitForLog(/ready/), /leased=3/);
    using client = new WireClient(socketName);
    assertEquals(
      (await client.request("10.0.0.3")).table,
      10002,
      "refresh after restart keeps the table",
    );
    assertEquals(
      (await client.request("10.0.0.9")).table,
      10001,
      "a newcomer gets the lowest free table",
    );
    assertEquals((await client.request("10.0.0.10")).table, 10004);
  } finally {
    await first[Symbol.asyncDispose]();
  }
});

Deno.test("leases that expired while the server was down are reclaimed at start", async () => {
  const first = await startServer({ config: { num_tables: 1, table_timeout: 1 } });
  try {
    {
      using client = new WireClient(first.socketName);
      assertEquals((await client.request("10.0.0.1")).table, 10000);
    }
    await first.stop("SIGKILL");
    await new Promise((r) => setTimeout(r, 1200));
    await using second = await startServer({
      dir: first.dir,
      socketName: first.socketName,
      config: { num_tables: 1, table_timeout: 1 },
    });
    await second.waitForLog(/ INFO expired .*address=10\.0\.0\.1 /);
    using client = new WireClient(first.socketName);
    assertEquals((await client.request("10.0.0.2")).table, 10000);
  } finally {
    await first[Symbol.asyncDispose]();
  }
});

Deno.test("a lease outside the pools after a config change is kept, logged, and never crashes", async () => {
  const first = await startServer({ config: { table_offset: 10000, num_tables: 10 } });
  try {
    {
      using client = new WireClient(first.socketName);
      for (let i = 1; i <= 6; i++) await client.request(`10.0.0.${i}`);
    }
    await first.stop();
    await using second = await startServer({
      dir: first.dir,
      socketName: first.socketName,
      config: { table_offset: 10000, num_tables: 3 },
    });
    assertMatch(
      second.output(),
      /WARN stored lease outside the configured pools is kept .*table=10005/,
    );
    using client = new WireClient(first.socketName);
    assertEquals((await client.request("10.0.0.6")).table, 10005, "its holder keeps it on refresh");
    assertEquals((await client.release("10.0.0.6")).table, 0);
    await second.waitForLog(/lease outside the configured pools ended family=inet table=10005/);
    assertEquals((await client.request("10.0.0.7")).error, "pool_exhausted");
    assertEquals(second.leases().length, 5);
  } finally {
    await first[Symbol.asyncDispose]();
  }
});

Deno.test("SIGTERM under load: every acknowledged lease is in the database afterwards", async () => {
  await using server = await startServer({ config: { num_tables: 100_000 } });
  const { acknowledged, status } = await stopUnderCrowd(server, 8, 700, "SIGTERM");
  assertEquals(status.code, 0);
  assertMatch(server.output(), /INFO stopped /);
  assertAllStored(server, acknowledged);
});

Deno.test("a locked database is answered with store_failure, nothing is acknowledged, and service resumes", async () => {
  await using server = await startServer();
  using client = new WireClient(server.socketName);
  const other = new DatabaseSync(server.dbPath);
  // The server may be committing right now (its expiry at start): wait for it, not fail.
  other.exec("PRAGMA busy_timeout = 2000");
  other.exec("BEGIN IMMEDIATE");
  let replies;
  try {
    replies = await Promise.all(["10.0.0.1", "10.0.0.2", "10.0.0.3"].map(async (address) => {
      using c = new WireClient(server.socketName);
      return await c.request(address);
    }));
  } finally {
    other.exec("ROLLBACK");
    other.close();
  }
  for (const reply of replies) {
    assertEquals([reply.cmd, reply.error], [3, "store_failure"]);
    // Met at the lookup: lookups and updates share one transaction.
    assertMatch(
      String(reply.message),
      /lease store failure: cannot look up 2\/eth1\/10\.0\.0\.\d: database is locked/,
    );
  }
  assertEquals(server.leases(), []);
  assertEquals((await client.request("10.0.0.1")).table, 10000);
});

Deno.test("an invalid config exits non-zero with a message naming the key and the value", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-cfg-" });
  try {
    const path = `${dir}/bad.json`;
    await Deno.writeTextFile(
      path,
      `{ // comment
        "socket_path": "x", "table_offset": 10000, "num_tables": -3, "table_timeout": 60,
        "db_path": "${dir}/l.db", "addr_families": {"inet": true} }`,
    );
    const result = await runServer(["-c", path]);
    assertEquals(result.code, 1);
    assertMatch(
      result.stderr,
      /Cannot load config ".*bad\.json": "num_tables" must be an integer from 1 to \d+, got -3/,
    );
    assertEquals(result.stdout, "");
    const missing = await runServer(["-c", `${dir}/absent.json`]);
    assertEquals(missing.code, 1);
    assertMatch(missing.stderr, /Cannot load config ".*absent\.json": .*No such file/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad arguments print usage on stderr; --help and --version print to stdout", async () => {
  const cases: Array<[string[], number, "stdout" | "stderr", RegExp]> = [
    [[], 2, "stderr", /-c CONFIG is required[\s\S]*Usage:/],
    [["--bogus"], 2, "stderr", /bogus/],
    [["--help"], 0, "stdout", /Usage: table_allocator_server -c CONFIG/],
    [["--version"], 0, "stdout", /^table_allocator_server \d+\.\d+\.\d+/],
  ];
  const results = await Promise.all(cases.map(([args]) => runServer(args)));
  cases.forEach(([args, code, stream, text], i) => {
    assertEquals(results[i].code, code, `server ${args.join(" ")}`);
    assertMatch(results[i][stream], text);
  });
});

Deno.test("a second server on the same database or socket fails with a clear error", async () => {
  await using server = await startServer();
  const sameDb = await startServer({ dir: server.dir }).then(
    () => "started",
    (error) => errorMessage(error),
  );
  assertMatch(sameDb, /Cannot open database ".*leases\.db": it is locked by another process/);
  const sameSocket = await startServer({ socketName: server.socketName }).then(
    () => "started",
    (error) => errorMessage(error),
  );
  assertMatch(sameSocket, /Cannot bind socket @ta-\w+: the name is in use/);
  using client = new WireClient(server.socketName);
  assertEquals((await client.request("10.0.0.1")).table, 10000, "the first server is unharmed");
});

Deno.test("server tells systemd it is ready through NOTIFY_SOCKET", async () => {
  // systemd's abstract notify addresses are not padded: use an autobound name.
  using notify = AbstractDatagramSocket.bind(null);
  const own = new TextDecoder().decode(notify.address.subarray(3));
  await using _server = await startServer({ env: { NOTIFY_SOCKET: `@${own}` } });
  assert(await notify.readable(5000), "READY=1 was sent");
  assertEquals(new TextDecoder().decode(notify.receive()!.data), "READY=1");
});

Deno.test("log_path appends lease events to the file instead of stderr", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-log-" });
  try {
    const logPath = `${dir}/server.log`;
    await Deno.writeTextFile(logPath, "earlier line\n");
    const server = await startServer({ config: { log_path: logPath } });
    using client = new WireClient(server.socketName);
    assertEquals((await client.request("10.0.0.1")).table, 10000);
    await server.waitForLog(/ INFO granted /);
    await server.stop();
    assertMatch(
      await Deno.readTextFile(logPath),
      /^earlier line\n.* INFO ready [\s\S]* INFO granted [\s\S]* INFO stopped /,
    );
    await server[Symbol.asyncDispose]();
    assertEquals(server.output().split("\n")[0], "earlier line", "nothing went to stderr");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const devLogExists = (() => {
  try {
    Deno.lstatSync("/dev/log");
    return true;
  } catch {
    return false;
  }
})();

Deno.test({
  name:
    "do_syslog sends lease events to syslog, facility daemon, and never waits for a stuck daemon",
  // Only where no syslog daemon owns /dev/log: the test stands in for it.
  ignore: devLogExists || !IS_ROOT,
  async fn() {
    const syslog = AbstractDatagramSocket.bindPath("/dev/log", { receiveBufferSize: 4096 });
    const lines: string[] = [];
    // Drained from the bind to the close but while `stuck`: programs of the
    // tests running meanwhile may log here too, and glibc's syslog(3) (which
    // ours replaced) blocks its caller while this socket's queue is full.
    let open = true;
    let stuck = false;
    const drain = () => {
      for (let d = syslog.receive(); d; d = syslog.receive()) {
        lines.push(new TextDecoder().decode(d.data));
      }
    };
    const reading = (async () => {
      while (open) {
        if (stuck) {
          await new Promise((resolve) => setTimeout(resolve, 20));
          continue;
        }
        await syslog.readable(-1);
        drain();
      }
    })();
    const waitForLine = async (pattern: RegExp) => {
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline) {
        const line = lines.find((l) => pattern.test(l));
        if (line) return line;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      throw new Error(`no syslog line matched ${pattern}: ${JSON.stringify(lines)}`);
    };
    try {
      // Other tests' programs may log to /dev/log meanwhile: wait for this server's lines.
      const socketName = `ta-${crypto.randomUUID().slice(0, 8)}`;
      const ready = new RegExp(` ready .*socket=@${socketName} `);
      await using server = await startServer({
        socketName,
        config: { do_syslog: true },
        ready: () => waitForLine(ready),
      });
      using client = new WireClient(server.socketName);
      assertEquals((await client.request("10.0.0.1")).table, 10000);
      // <30> = facility daemon (3) * 8 + severity info (6); the ident carries the pid.
      assertMatch(
        await waitForLine(ready),
        /^<30>.*table_allocator_server\[\d+\]: ready version=/,
      );
      assertMatch(
        await waitForLine(/: granted family=inet ifname=eth1 address=10\.0\.0\.1 /),
        /^<30>.*: granted family=inet ifname=eth1 address=10\.0\.0\.1 table=10000 /,
      );
      assertEquals(server.output(), "", "nothing went to stderr");

      // A daemon that stops reading (journald on a slow disk, rsyslog stuck
      // on a remote target): the server answers every request all the same,
      // its lines beyond the socket's queue dropped, and says so afterwards.
      stuck = true;
      const crowd = Array.from({ length: 30 }, () => new WireClient(server.socketName));
      try {
        const tables = await Promise.all(crowd.map((c, i) => c.request(`10.0.2.${i}`)));
        assertEquals(tables.filter((r) => typeof r.table === "number" && r.table > 0).length, 30);
      } finally {
        for (const c of crowd) c[Symbol.dispose]();
      }
      stuck = false;
      drain(); // at once: the reader may still sleep, and the next line must find room
      assertEquals((await client.request("10.0.3.1")).table, 10031);
      assertMatch(
        await waitForLine(/ log lines dropped: the syslog daemon at \/dev\/log /),
        /^<28>.*table_allocator_server\[\d+\]: \d+ log lines dropped: /,
      );
      await waitForLine(/: granted family=inet ifname=eth1 address=10\.0\.3\.1 table=10031 /);
    } finally {
      open = false;
      syslog.wake();
      await reading;
      syslog.close();
      Deno.removeSync("/dev/log");
    }
  },
});
