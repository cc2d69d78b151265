/**
 * Client figures, in a fresh network namespace (root only): hook-style
 * calls (IPv4 with its three rules) handed to the host agent, timed from
 * exec to the table on stdout and to stdout closed (when `$(...)`
 * returns); the first call, which starts the agent, apart; the resident
 * memory of every holder process (the one agent) with 16 identities and
 * with 160, and what each further identity costs; and the floor: Deno's own
 * start-up (`deno run` of an empty script), measured the same way.
 *
 * Calls run with the working directory `/`, as DHCP and interface hooks
 * do (under `deno run` a working directory with a `deno.json` would add
 * its config discovery to every call; a compiled client has none).
 *
 * @module
 */

import {
  CLIENT_PATH,
  createNetns,
  type Netns,
  NETNS_ADDRESSES as A,
} from "../tests/helpers/netns.ts";
import { startServer } from "../tests/helpers/server.ts";
import { median } from "./stats.ts";
import { askAgent, type Peer, startPeer } from "../tests/helpers/agent.ts";

/**
 * Identities handed over before the memory of 16 is read, and then up to
 * 160: V8 commits heap pages in steps, so the cost of one more identity is
 * averaged over 144 of them.
 */
const FIRST_SET = 16;
const ALL = 160;
/** Timed calls with the agent running. */
const TIMED = 16;

const ms = (value: number) => `${value.toFixed(1)} ms`;
const addressOf = (i: number) => `198.51.100.${10 + i}`;

/**
 * The agent's state directory: on a tmpfs, as `/run/table-allocator` is on
 * Debian (the namespace's own directory is on this VM's disk, where each
 * state file's two fsyncs would be timed too).
 */
const RUN_DIR = `/dev/shm/ta-bench-${crypto.randomUUID().slice(0, 8)}`;

/** One call as a hook makes it: milliseconds to the first line and to the end of stdout. */
async function timedRun(ns: Netns, args: string[], expect: RegExp) {
  const started = performance.now();
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", ns.name, Deno.execPath(), "run", "--allow-all", ...args],
    cwd: "/",
    env: { DENO_NO_UPDATE_CHECK: "1", ...ns.env, TABLE_ALLOCATOR_RUN_DIR: RUN_DIR },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  let text = "";
  let firstLine = NaN;
  const decoder = new TextDecoder();
  for await (const chunk of child.stdout) {
    text += decoder.decode(chunk, { stream: true });
    if (Number.isNaN(firstLine) && text.includes("\n")) firstLine = performance.now() - started;
  }
  const closed = performance.now() - started;
  const status = await child.status;
  if (!status.success || !expect.test(text)) {
    throw new Error(`run ${args.join(" ")} failed (${status.code}): ${JSON.stringify(text)}`);
  }
  return { firstLine, closed };
}

function hook(ns: Netns, server: string, i: number) {
  const args = [CLIENT_PATH, "-4", "-a", addressOf(i), "-n", "24", "-i", A.ifname, "-d", server];
  return timedRun(ns, args, /^[1-9]\d*\n$/);
}

/**
 * The resident memory of the namespace's agents together, and the agent's
 * V8 heap in use (from its `status` answer), in KiB, once it settled.
 */
async function holdersMemory(ns: Netns, asker: Peer): Promise<{ rss: number; heap: number }> {
  await new Promise((resolve) => setTimeout(resolve, 1000));
  let rss = 0;
  for (const pid of await ns.pidsOf("--agent")) {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    if (!match) throw new Error(`no VmRSS for pid ${pid}`);
    rss += Number(match[1]);
  }
  const status = await askAgent(asker, { version: 1, op: "status" });
  return { rss, heap: Number(status.heap_used) / 1024 };
}

/** Runs the client benchmarks and returns one row per figure. */
export async function benchClient(): Promise<Array<{ metric: string; value: string }>> {
  await using _runDir = {
    [Symbol.asyncDispose]: () => Deno.remove(RUN_DIR, { recursive: true }).catch(() => {}),
  };
  await using ns = await createNetns();
  await using server = await startServer({ netns: ns.name, config: { num_tables: 200 } });
  await ns.ip("addr", "add", "198.51.100.1/24", "dev", A.ifname);
  for (let i = 0; i <= ALL; i++) await ns.ip("addr", "add", `${addressOf(i)}/24`, "dev", A.ifname);
  const name = server.socketName;

  const first = await hook(ns, name, 0);
  const asker = await startPeer(ns, ["-", "silent"]);
  const empty = await Deno.makeTempFile({ prefix: "ta-bench-empty-", suffix: ".ts" });
  const firstLines: number[] = [];
  const closes: number[] = [];
  const floors: number[] = [];
  let at16 = { rss: 0, heap: 0 };
  try {
    for (let i = 1; i <= TIMED; i++) {
      if (i === FIRST_SET) at16 = await holdersMemory(ns, asker);
      const { firstLine, closed } = await hook(ns, name, i);
      firstLines.push(firstLine);
      closes.push(closed);
      // The floor right after each call: the machine's load varies from second to second.
      floors.push((await timedRun(ns, [empty], /^$/)).closed);
    }
  } finally {
    await Deno.remove(empty);
  }
  for (let i = TIMED + 1; i < ALL; i++) await hook(ns, name, i);
  const atAll = await holdersMemory(ns, asker);
  const holders = (await ns.pidsOf("--agent")).length;
  if (server.leases().length !== ALL) {
    throw new Error(`expected ${ALL} leases, the server has ${server.leases().length}`);
  }

  // The agent's own time for a hand-off, from its log: the request, then the client's answer.
  const agentMs: number[] = [];
  const log = ns.agentLog().split("\n");
  for (let i = 1; i <= TIMED; i++) {
    const at = (what: string) =>
      Date.parse(
        log.find((l) => l.includes(` ${what} identity=${A.ifname}-${addressOf(i)}-2`))!
          .split(" ")[0],
      );
    agentMs.push(at("moved to the background") - at("requesting a lease"));
  }
  const further = (kib: number) => `${Math.round(kib / (ALL - FIRST_SET))} KiB`;
  return [
    {
      metric: `exec to table on stdout, median of ${TIMED} calls with the agent running`,
      value: ms(median(firstLines)),
    },
    {
      metric: `exec to stdout closed ($(...) returns), median of ${TIMED}`,
      value: ms(median(closes)),
    },
    {
      metric: `the agent's part (its log: request to answer), median of ${TIMED}`,
      value: ms(median(agentMs)),
    },
    { metric: "the first call, which starts the agent: exec to table", value: ms(first.firstLine) },
    {
      metric: `RSS of every holder process (${holders} agent), ${FIRST_SET} identities`,
      value: `${(at16.rss / 1024).toFixed(1)} MiB`,
    },
    {
      metric: `RSS of every holder process, ${ALL} identities`,
      value: `${(atAll.rss / 1024).toFixed(1)} MiB`,
    },
    { metric: "RSS per further identity", value: further(atAll.rss - at16.rss) },
    { metric: "V8 heap in use per further identity", value: further(atAll.heap - at16.heap) },
    {
      metric: `deno run of an empty script (floor), median of ${TIMED}, run after each call`,
      value: ms(median(floors)),
    },
  ];
}

if (import.meta.main) {
  for (const row of await benchClient()) console.log(`${row.metric}\t${row.value}`);
}
