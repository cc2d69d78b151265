/**
 * Client figures: time from exec to the table on stdout in a real
 * hook-style run (no `-f`: the client moves to the background, which is
 * then ended with `-r`), time until stdout closes (when `$(...)` returns),
 * the resident memory of a background client, and the floor: Deno's own
 * start-up (`deno run` of an empty script).
 *
 * As root it runs in a fresh network namespace with an IPv4 address, so
 * the rules are installed as in production; otherwise it uses family
 * unspec on `lo` (no rules) in the current namespace.
 *
 * @module
 */

import { CLIENT_PATH, createNetns, IS_ROOT, NETNS_ADDRESSES as A } from "../tests/helpers/netns.ts";
import { startServer } from "../tests/helpers/server.ts";

const RUNS = 20;

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const ms = (value: number) => `${value.toFixed(1)} ms`;

/** One hook-style run: milliseconds to the first line and to the end of stdout. */
async function timedRun(prefix: string[], args: string[]) {
  const started = performance.now();
  const child = new Deno.Command(prefix[0], {
    args: [...prefix.slice(1), Deno.execPath(), "run", "--allow-all", CLIENT_PATH, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
    env: { DENO_NO_UPDATE_CHECK: "1" },
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
  if (!status.success || !/^[1-9]\d*\n$/.test(text)) {
    throw new Error(`client run failed (${status.code}): stdout ${JSON.stringify(text)}`);
  }
  return { firstLine, closed };
}

async function pidsOf(listPids: () => Promise<number[]>, text: string): Promise<number[]> {
  return (await listPids()).filter((pid) => {
    try {
      return Deno.readTextFileSync(`/proc/${pid}/cmdline`).includes(text);
    } catch {
      return false;
    }
  });
}

function vmRssKiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]);
}

async function denoStartup(): Promise<number> {
  const empty = await Deno.makeTempFile({ prefix: "ta-bench-empty-", suffix: ".ts" });
  try {
    const times: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const started = performance.now();
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", empty],
        stdin: "null",
        stdout: "null",
        stderr: "null",
        env: { DENO_NO_UPDATE_CHECK: "1" },
      }).output();
      if (!out.success) throw new Error("deno run of an empty script failed");
      times.push(performance.now() - started);
    }
    return median(times);
  } finally {
    await Deno.remove(empty);
  }
}

/** Runs the client benchmarks and returns one row per figure. */
export async function benchClient(): Promise<Array<{ metric: string; value: string }>> {
  await using ns = IS_ROOT ? await createNetns() : null;
  await using server = await startServer(ns ? { netns: ns.name } : {});
  const prefix = ns ? ["ip", "netns", "exec", ns.name] : ["env"];
  const identity = ns
    ? ["-4", "-a", A.ipv4, "-n", String(A.ipv4Prefix), "-i", A.ifname]
    : ["-a", `bench-${crypto.randomUUID().slice(0, 8)}`, "-i", "lo"];
  const args = [...identity, "-d", server.socketName];
  const listPids = ns ? () => ns.pids() : async () => {
    const out = await new Deno.Command("pgrep", { args: ["-f", CLIENT_PATH], stdout: "piped" })
      .output();
    return new TextDecoder().decode(out.stdout).split(/\s+/).filter(Boolean).map(Number);
  };

  const firstLines: number[] = [];
  const closes: number[] = [];
  let rss = 0;
  for (let i = 0; i < RUNS; i++) {
    const { firstLine, closed } = await timedRun(prefix, args);
    firstLines.push(firstLine);
    closes.push(closed);
    const [pid] = await pidsOf(listPids, CLIENT_PATH);
    if (pid === undefined) throw new Error("no background client after a hook-style run");
    if (i === RUNS - 1) {
      // Let the background client settle after its start-up before reading its memory.
      await new Promise((resolve) => setTimeout(resolve, 500));
      rss = vmRssKiB(pid);
    }
    const release = await new Deno.Command(prefix[0], {
      args: [...prefix.slice(1), Deno.execPath(), "run", "--allow-all", CLIENT_PATH, ...args, "-r"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
      env: { DENO_NO_UPDATE_CHECK: "1" },
    }).output();
    if (!release.success) throw new Error("client -r failed");
  }
  const floor = await denoStartup();
  const where = ns ? "IPv4 with rules, in a netns" : "unspec on lo, no rules (not root)";
  return [
    {
      metric: `client: exec to table on stdout, median of ${RUNS} (${where})`,
      value: ms(median(firstLines)),
    },
    {
      metric: `client: exec to stdout closed ($(...) returns), median of ${RUNS}`,
      value: ms(median(closes)),
    },
    {
      metric: "client: RSS of a background client (VmRSS)",
      value: `${(rss / 1024).toFixed(1)} MiB`,
    },
    { metric: `deno run of an empty script (floor), median of ${RUNS}`, value: ms(floor) },
  ];
}

if (import.meta.main) {
  for (const row of await benchClient()) console.log(`${row.metric}\t${row.value}`);
}
