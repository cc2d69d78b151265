/**
 * Side by side: the server of several git revisions under the same load,
 * in one run, every server running throughout and runs of each interleaved
 * round by round so that a change of the machine's load hits every revision
 * alike; the fsync floor is measured before each run on the same disk.
 * Prints one row per revision and client count (medians over the rounds)
 * with the server's CPU time per operation and in how many rounds it beat
 * the first revision (paired round by round, which sees a small change
 * through this VM's noise better than the medians do), and start-up with
 * 100,000 stored leases. Many short rounds (`--seconds 1 --rounds 20`)
 * suit one client, whose figure moves most from one minute to the next.
 *
 *     deno run -A bench/compare.ts [--clients 1,32,256] [--seconds 3] [--rounds 3] [--qlen N]
 *       [--socket-queue-length N] [--retry-ms MS] [--startup no] REV...
 *
 * With `--qlen N`, everything runs in a network namespace of its own whose
 * `net.unix.max_dgram_qlen` is N (`queue_length.ts`; root). Each server
 * runs with its revision's default `socket_queue_length` (since ab39a2f
 * the server raises the namespace's value to 512 for its socket), unless
 * `--socket-queue-length N` writes N into every config (0: the namespace's
 * value; a revision without the key ignores it). With
 * `--retry-ms MS`, a send the server's queue refused is tried again MS
 * later, as the host agent does with 20 (else at the load generator's next
 * wake-up, within a millisecond: `drive` in `tests/helpers/load.ts`).
 *
 * Each revision is exported with `git archive` into a temporary directory
 * and started from there with this Deno; a revision's own store code seeds
 * its database. This is how the tables of what each change bought were
 * made (README, docs/performance.md).
 *
 * @module
 */

import { AbstractDatagramSocket } from "../src/unix/abstract_socket.ts";
import { datagramQueueLength } from "../src/unix/datagram_queue.ts";
import { drive, type DriveResult } from "../tests/helpers/load.ts";
import { SERVER_RUN_FLAGS } from "../tests/helpers/server.ts";
import { requestBody } from "../tests/helpers/wire.ts";
import { loadAverage, nodeSqliteFloor } from "./floor.ts";
import { median } from "./stats.ts";
import { insideQueueNamespace, onInterrupt, runWithQueueLength } from "./queue_length.ts";
import { table } from "./main.ts";
import type { Row } from "./server.ts";
import { rssMiB } from "./server.ts";

interface Tree {
  rev: string;
  /** Its place on the command line: a revision may be given twice (a run against itself). */
  id: number;
  dir: string;
}

async function exportRevision(rev: string, id: number, root: string): Promise<Tree> {
  const dir = `${root}/${id}-${rev.replace(/[^\w.-]/g, "_")}`;
  await Deno.mkdir(dir, { recursive: true });
  const archive = new Deno.Command("git", { args: ["archive", rev], stdout: "piped" }).spawn();
  const untar = new Deno.Command("tar", { args: ["-x", "-C", dir], stdin: "piped" }).spawn();
  await archive.stdout.pipeTo(untar.stdin);
  if (!(await archive.status).success || !(await untar.status).success) {
    throw new Error(`cannot export revision ${rev}`);
  }
  return { rev, id, dir };
}

interface Running {
  tree: Tree;
  socketName: string;
  process: Deno.ChildProcess;
  work: string;
}

/** Writes the server's config into `work` and spawns the revision's server; does not wait. */
async function spawnFrom(
  tree: Tree,
  work: string,
  numTables = 100_000,
  extra: Record<string, unknown> = {},
): Promise<Running> {
  const socketName = `ta-cmp-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.writeTextFile(
    `${work}/server.json`,
    JSON.stringify({
      socket_path: socketName,
      table_offset: 10000,
      num_tables: numTables,
      table_timeout: 3600,
      db_path: `${work}/leases.db`,
      log_path: `${work}/server.log`,
      addr_families: { inet: true, inet6: true, unspec: true },
      ...extra,
    }),
  );
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", ...SERVER_RUN_FLAGS, `${tree.dir}/server.ts`, "-c", `${work}/server.json`],
    env: { DENO_NO_UPDATE_CHECK: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  return { tree, socketName, process, work };
}

/** Spawns the revision's server (`extra` config keys) and waits for its `ready` line. */
async function startFrom(
  tree: Tree,
  work: string,
  extra: Record<string, unknown>,
): Promise<Running> {
  const server = await spawnFrom(tree, work, undefined, extra);
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      if ((await Deno.readTextFile(`${work}/server.log`)).includes(" ready ")) return server;
    } catch { /* not written yet */ }
    if (Date.now() > deadline) {
      await stop(server);
      throw new Error(`the server of ${tree.rev} did not start`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stop(server: Running): Promise<void> {
  try {
    server.process.kill("SIGTERM");
  } catch { /* gone */ }
  await server.process.status;
}

/** Seeds `count` bound leases with the revision's own store (its schema). */
async function seedWith(tree: Tree, dbPath: string, count: number): Promise<void> {
  const script = `
    const { SqliteLeaseStore } = await import(${
    JSON.stringify(`${tree.dir}/src/store/sqlite_store.ts`)
  });
    const store = SqliteLeaseStore.open(${JSON.stringify(dbPath)});
    const expiresAt = Date.now() + 24 * 3600_000;
    for (let i = 0; i < ${count}; i++) {
      const address = \`10.\${i >> 16}.\${(i >> 8) & 255}.\${i & 255}\`;
      const clientId = \`2/eth\${i % 100}/\${address}\`;
      const { token } = await store.lookup(clientId);
      void store.update(clientId, [{ family: 2, ifname: \`eth\${i % 100}\`, address, table: 10000 + i,
        expiresAt, tag: undefined, owner: "bench", state: "bound", uid: 0 }], token);
      if (i % 10000 === 9999) await store.flush();
    }
    await store.flush();
    await store.close();`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    env: { DENO_NO_UPDATE_CHECK: "1" },
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`seeding with ${tree.rev}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** Milliseconds from spawn to the first answered request. */
async function startupMs(tree: Tree, work: string): Promise<number> {
  using client = AbstractDatagramSocket.bind(null);
  const body = new TextEncoder().encode(requestBody("192.0.2.1", { ifname: "first" }));
  const started = performance.now();
  const server = await spawnFrom(tree, work, 200_000);
  try {
    for (;;) {
      try {
        client.sendToName(body, server.socketName);
      } catch { /* not bound yet */ }
      if (await client.readable(1) && client.receive()) return performance.now() - started;
    }
  } finally {
    await stop(server);
  }
}

/**
 * CPU time (user and system, every thread) a process has used, in seconds:
 * what an operation costs, less noisy on a shared machine than its rate.
 */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** sysconf(_SC_CLK_TCK) on Linux. */
const CLOCK_TICKS = 100;

if (import.meta.main) {
  const options: Record<string, string> = {
    clients: "1,32,256",
    seconds: "3",
    rounds: "3",
    qlen: "",
    "retry-ms": "0",
    "socket-queue-length": "",
    /** `no`: no start-up rows (seeding 100,000 leases takes minutes on a slow disk). */
    startup: "yes",
  };
  const revs: string[] = [];
  for (let i = 0; i < Deno.args.length; i++) {
    const arg = Deno.args[i];
    if (arg.startsWith("--") && arg.slice(2) in options) options[arg.slice(2)] = Deno.args[++i];
    else revs.push(arg);
  }
  if (revs.length === 0) {
    console.error(
      "usage: bench/compare.ts [--clients 1,32,256] [--seconds 3] [--rounds 3] [--qlen N] " +
        "[--socket-queue-length N] [--retry-ms MS] [--startup no] REV...",
    );
    Deno.exit(2);
  }
  if (options.qlen !== "" && !insideQueueNamespace()) {
    // Everything again, in a namespace of its own with that queue length (root).
    console.log(await runWithQueueLength(Number(options.qlen), import.meta.filename!, Deno.args));
    Deno.exit(0);
  }
  const clientCounts = options.clients.split(",").map(Number);
  const seconds = Number(options.seconds);
  const rounds = Number(options.rounds);
  const retryMs = Number(options["retry-ms"]);
  const extra = options["socket-queue-length"] === ""
    ? {}
    : { socket_queue_length: Number(options["socket-queue-length"]) };
  const root = await Deno.makeTempDir({ prefix: "ta-compare-" });
  const servers: Running[] = [];
  // Interrupted (a kill, or Ctrl-C), the servers are stopped and the tree removed, as at the end
  // (once the run in progress returns: the load generator's runs are synchronous).
  using _interrupt = onInterrupt(() => {
    for (const server of servers) {
      try {
        server.process.kill("SIGTERM");
      } catch { /* gone */ }
    }
    Deno.removeSync(root, { recursive: true });
    Deno.exit(130);
  });
  try {
    const trees = await Promise.all(revs.map((rev, i) => exportRevision(rev, i, root)));
    console.log(
      `load average at the start: ${loadAverage()}, ` +
        `net.unix.max_dgram_qlen ${datagramQueueLength()}\n`,
    );
    const results = new Map<string, DriveResult[]>();
    const floors: number[] = [];
    const cpuPerOp = new Map<string, number[]>();
    const rss = new Map<number, number>();
    try {
      for (const tree of trees) {
        const work = await Deno.makeTempDir({ dir: root, prefix: "work-" });
        const server = await startFrom(tree, work, extra);
        servers.push(server);
        drive(server, 4, 1); // warm-up
      }
      for (let round = 0; round < rounds; round++) {
        for (const clients of clientCounts) {
          const order = round % 2 ? [...servers].reverse() : servers;
          for (const server of order) {
            floors.push(nodeSqliteFloor(server.work, 300));
            const key = `${server.tree.id} ${clients}`;
            const cpuBefore = cpuSeconds(server.process.pid);
            const result = drive(server, clients, seconds, retryMs);
            const cpu = cpuSeconds(server.process.pid) - cpuBefore;
            results.set(key, [...results.get(key) ?? [], result]);
            cpuPerOp.set(key, [
              ...cpuPerOp.get(key) ?? [],
              (cpu * 1e6) / (result.opsPerSecond * seconds),
            ]);
          }
        }
      }
      for (const server of servers) rss.set(server.tree.id, rssMiB(server.process.pid));
    } finally {
      for (const server of servers) await stop(server);
    }
    const rows: Row[] = [];
    for (const tree of trees) {
      for (const clients of clientCounts) {
        const runs = results.get(`${tree.id} ${clients}`)!;
        const first = results.get(`${trees[0].id} ${clients}`)!;
        rows.push({
          revision: tree.rev,
          clients,
          "ops/s": median(runs.map((r) => r.opsPerSecond)),
          "p50 ms": Number(median(runs.map((r) => r.p50)).toFixed(3)),
          "p99 ms": Number(median(runs.map((r) => r.p99)).toFixed(2)),
          EAGAIN: median(runs.map((r) => r.eagain)),
          "server CPU µs/op": Math.round(median(cpuPerOp.get(`${tree.id} ${clients}`)!)),
          "rounds faster than the first": tree === trees[0]
            ? "-"
            : `${runs.filter((r, i) => r.opsPerSecond > first[i].opsPerSecond).length}/${rounds}`,
        });
      }
    }
    console.log(table(rows));
    console.log(
      `\nfsync floor (node:sqlite, one-row commits/s), median of the runs: ${median(floors)}`,
    );
    if (options.startup !== "no") {
      const startup: Row[] = [];
      const seeded = new Map<number, string>();
      for (const tree of trees) {
        const db = `${tree.dir}-seed.db`;
        await seedWith(tree, db, 100_000);
        seeded.set(tree.id, db);
      }
      const times = new Map<number, number[]>();
      for (let round = 0; round < 5; round++) {
        for (const tree of trees) {
          const work = await Deno.makeTempDir({ dir: root, prefix: "start-" });
          await Deno.copyFile(seeded.get(tree.id)!, `${work}/leases.db`);
          times.set(tree.id, [...times.get(tree.id) ?? [], await startupMs(tree, work)]);
          await Deno.remove(work, { recursive: true });
        }
      }
      for (const tree of trees) {
        startup.push({
          revision: tree.rev,
          "start with 100,000 leases, median ms": Math.round(median(times.get(tree.id)!)),
          "RSS after the load MiB": rss.get(tree.id) ?? "",
        });
      }
      console.log(`\n${table(startup)}\n\nload average at the end: ${loadAverage()}`);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}
