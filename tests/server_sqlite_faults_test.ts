/**
 * End-to-end: the SQLite store's faults against the real server. A
 * database file deleted or replaced under it, a full filesystem (a small
 * tmpfs), a read-only file or filesystem: the server never acknowledges a
 * lease it could not make durable, says why, and never reports ready on a
 * database it cannot write.
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { NOBODY, stageAsUser } from "./helpers/as_user.ts";
import { e2eTest } from "./helpers/e2e.ts";
import { readLeases, type ServerHandle, startServer } from "./helpers/server.ts";
import { requestBody, WireClient } from "./helpers/wire.ts";
import { AbstractDatagramSocket } from "../src/unix/abstract_socket.ts";

const decoder = new TextDecoder();

async function sh(...args: string[]): Promise<void> {
  const out = await new Deno.Command(args[0], { args: args.slice(1), stderr: "piped" }).output();
  if (!out.success) throw new Error(`${args.join(" ")}: ${decoder.decode(out.stderr)}`);
}

/** A tmpfs of `size` mounted on a new directory; unmounted and removed on dispose. */
async function tmpfs(size: string): Promise<{ dir: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "ta-tmpfs-" });
  await sh("mount", "-t", "tmpfs", "-o", `size=${size},mode=0755`, "tmpfs", dir);
  return {
    dir,
    async [Symbol.asyncDispose]() {
      await sh("umount", "-l", dir).catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** Fills the filesystem of `dir` with one file until it is full. */
async function fill(path: string): Promise<void> {
  const chunk = new Uint8Array(64 * 1024).fill(7);
  using file = await Deno.open(path, { create: true, write: true });
  try {
    for (;;) await file.write(chunk);
  } catch (error) {
    assertMatch(String(error), /No space left|ENOSPC|os error 28/);
  }
  // Small writes until not even a byte fits.
  try {
    for (;;) await file.write(new Uint8Array(512));
  } catch { /* full */ }
}

/** Requests until the server stops answering with a lease; returns what was acknowledged. */
async function requestMany(
  server: ServerHandle,
  count: number,
  prefix: string,
): Promise<{ granted: Map<string, number>; errors: Map<string, number> }> {
  using client = new WireClient(server.socketName);
  const granted = new Map<string, number>();
  const errors = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const address = `${prefix}.${i >> 8}.${i & 255}`;
    const reply = await client.request(address);
    if (reply.cmd === 2) granted.set(address, reply.table as number);
    else errors.set(String(reply.error), (errors.get(String(reply.error)) ?? 0) + 1);
  }
  return { granted, errors };
}

e2eTest(
  "a database directory deleted under the server is noticed within a second: " +
    "no acknowledgement, an error, a non-zero exit, and no second server on the path meanwhile",
  { root: true },
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "ta-del-" });
    try {
      const dbPath = `${dir}/db/leases.db`;
      await using server = await startServer({ config: { db_path: dbPath } });
      using client = new WireClient(server.socketName);
      assertEquals((await client.request("10.0.0.1")).table, 10000);

      // Frozen, it cannot notice: the deletion happens "between two checks".
      Deno.kill(server.process.pid, "SIGSTOP");
      let resumed = false;
      try {
        await Deno.remove(`${dir}/db`, { recursive: true });
        const second = await startServer({ config: { db_path: dbPath } }).then(
          async (s) => {
            await s[Symbol.asyncDispose]();
            return "started";
          },
          (error) => String(error),
        );
        assertMatch(second, /Cannot open database ".*leases\.db": another process holds its lock/);
        client.send(requestBody("10.0.0.2"));
        Deno.kill(server.process.pid, "SIGCONT");
        resumed = true;
      } finally {
        if (!resumed) Deno.kill(server.process.pid, "SIGCONT");
      }
      const reply = await client.receive(3000);
      assert(reply === null || reply.cmd === 3, `not acknowledged: ${JSON.stringify(reply)}`);
      const status = await server.process.status;
      assert(!status.success, "exits non-zero, so that systemd restarts it");
      assertMatch(server.output(), / ERROR .*the database file ".*leases\.db" was deleted/);
      assert(!server.output().includes("address=10.0.0.2 table="), "10.0.0.2 was never granted");

      // After it exited, a new server may start on the path (fresh, empty).
      await using next = await startServer({ config: { db_path: dbPath } });
      using c2 = new WireClient(next.socketName);
      assertEquals((await c2.request("10.0.0.2")).table, 10000);
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
);

e2eTest("a database file replaced under a running server is noticed within a second and it exits", {
  root: true,
}, async () => {
  await using server = await startServer();
  using client = new WireClient(server.socketName);
  assertEquals((await client.request("10.0.0.1")).table, 10000);
  const started = performance.now();
  await Deno.writeTextFile(`${server.dbPath}.new`, "");
  await Deno.rename(`${server.dbPath}.new`, server.dbPath);
  const line = await server.waitForLog(/ ERROR .*was replaced by another file/, 3000);
  const noticedAfter = performance.now() - started;
  assert(noticedAfter < 1500, `noticed after ${noticedAfter.toFixed(0)} ms`);
  assertMatch(line, /stopping/);
  assertEquals((await server.process.status).success, false);
});

e2eTest("a full filesystem: no lease is acknowledged that is not on disk, and service resumes", {
  root: true,
}, async () => {
  await using fs = await tmpfs("4m");
  const dbPath = `${fs.dir}/leases.db`;
  let acknowledged = new Map<string, number>();
  {
    await using server = await startServer({ config: { db_path: dbPath, num_tables: 50000 } });
    assertEquals((await requestMany(server, 10, "10.1")).granted.size, 10);
    await fill(`${fs.dir}/filler`);
    const full = await requestMany(server, 3000, "10.2");
    acknowledged = full.granted;
    assert(
      (full.errors.get("store_failure") ?? 0) > 0,
      `errors ${JSON.stringify([...full.errors])}`,
    );
    assertMatch(server.output(), /store_failure .*(full|disk|space)/i);
    await Deno.remove(`${fs.dir}/filler`);
    const after = await requestMany(server, 10, "10.3");
    assertEquals(after.granted.size, 10, "grants resume once there is room");
    await server.stop();
  }
  const stored = new Map(readLeases(dbPath).map((l) => [l.address, l.table]));
  for (const [address, table] of acknowledged) assertEquals(stored.get(address), table, address);
});

e2eTest(
  "started on a full filesystem, the server exits with a clear message and never reports ready",
  { root: true },
  async () => {
    await using fs = await tmpfs("1m");
    await fill(`${fs.dir}/filler`);
    using notify = AbstractDatagramSocket.bind(null);
    const own = decoder.decode(notify.address.subarray(3));
    const result = await startServer({
      config: { db_path: `${fs.dir}/leases.db` },
      env: { NOTIFY_SOCKET: `@${own}` },
    }).then(() => "started", (error) => String(error));
    assertMatch(result, /server exited \(1\)/);
    assertMatch(result, /Cannot open database ".*leases\.db": .*(full|space)/i);
    assertEquals(notify.receive(), null, "no READY=1");
  },
);

e2eTest(
  "a read-only database file or file system is refused at start, before READY=1",
  { root: true },
  async () => {
    await using fs = await tmpfs("8m");
    const dbPath = `${fs.dir}/db/leases.db`;
    // A database another user owns: the server, as uid 65534, may only read it.
    {
      await using server = await startServer({ config: { db_path: dbPath } });
      await server.stop();
    }
    // Its directory and lock file are the server's; the database file (0644) is root's.
    await Deno.chown(`${fs.dir}/db`, NOBODY, NOBODY);
    await Deno.chown(`${dbPath}-lock`, NOBODY, NOBODY);
    await using nobody = await stageAsUser("server.ts", NOBODY, { withoutNpm: true });
    using notify = AbstractDatagramSocket.bind(null);
    const own = decoder.decode(notify.address.subarray(3));
    const config = `${fs.dir}/server.json`;
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        socket_path: `ta-ro-${crypto.randomUUID().slice(0, 8)}`,
        table_offset: 10000,
        num_tables: 10,
        table_timeout: 60,
        db_path: dbPath,
        addr_families: { inet: true },
      }),
    );
    await Deno.chmod(config, 0o644);
    // A server that (wrongly) starts is stopped after 15 s, so the test fails instead of hanging.
    const [program, ...args] = nobody.command("-c", config);
    const child = new Deno.Command(program, {
      args,
      cwd: nobody.runOptions.cwd,
      env: { ...nobody.runOptions.env, NOTIFY_SOCKET: `@${own}` },
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    const out = await child.output();
    clearTimeout(timer);
    const stderr = decoder.decode(out.stderr);
    assertEquals(out.code, 1, stderr);
    assertMatch(stderr, /Cannot open database ".*leases\.db": .*(read ?only|readonly)/i);
    assertEquals(notify.receive(), null, "no READY=1 for a database it cannot write");

    // A read-only file system (as root, whom file modes do not stop).
    await sh("mount", "-o", "remount,ro", fs.dir);
    try {
      const result = await startServer({
        config: { db_path: dbPath },
        env: { NOTIFY_SOCKET: `@${own}` },
      }).then(() => "started", (error) => String(error));
      assertMatch(result, /server exited \(1\)/);
      assertMatch(result, /Cannot open database ".*leases\.db": .*Read-only file system/);
      assertEquals(notify.receive(), null, "no READY=1 on a read-only file system");
    } finally {
      await sh("mount", "-o", "remount,rw", fs.dir);
    }
  },
);
