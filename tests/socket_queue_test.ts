/**
 * The server socket's kernel queue (`socket_queue_length`), in network
 * namespaces of its own: each starts with the kernel's default
 * `net.unix.max_dgram_qlen` of 10, which the server raises for its socket
 * alone and puts back.
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { ctl } from "./helpers/ctl.ts";
import { e2eTest } from "./helpers/e2e.ts";
import { addNetns, type Netns } from "./helpers/netns.ts";
import { parsePrometheusText } from "./helpers/prometheus.ts";
import { type ServerHandle, startServer } from "./helpers/server.ts";
import { denoRun } from "./helpers/spawn.ts";
import { MAX_DGRAM_QLEN_PATH } from "../src/unix/datagram_queue.ts";

const PROBE = new URL("./helpers/queue_probe.ts", import.meta.url).pathname;

/** Runs the queue probe in `ns`: how many datagrams the kernel accepted. */
async function probe(ns: Netns, ...args: string[]): Promise<number> {
  const out = await ns.run(denoRun(PROBE, ...args));
  assertEquals(out.code, 0, out.stderr);
  return JSON.parse(out.stdout).accepted;
}

/** Fills the frozen server's socket from `count` senders: how many the kernel queued. */
async function fillFrozen(ns: Netns, server: ServerHandle, count: number): Promise<number> {
  Deno.kill(server.process.pid, "SIGSTOP");
  try {
    return await probe(ns, "fill", server.socketName, String(count));
  } finally {
    Deno.kill(server.process.pid, "SIGCONT");
  }
}

/** The namespace's `net.unix.max_dgram_qlen`, as text. */
async function namespaceQueue(ns: Netns): Promise<string> {
  return (await ns.run(["cat", MAX_DGRAM_QLEN_PATH])).stdout.trim();
}

async function queueLimitMetric(ns: Netns, server: ServerHandle): Promise<number | undefined> {
  const out = await ctl(["-d", server.socketName, "metrics"], { netns: ns.name });
  assertEquals(out.code, 0, out.stderr);
  return parsePrometheusText(out.stdout).value("table_allocator_socket_queue_limit");
}

e2eTest(
  "the server's socket gets socket_queue_length; the namespace keeps its own value",
  { root: true },
  async () => {
    await using ns = await addNetns();
    assertEquals(await namespaceQueue(ns), "10");
    await using server = await startServer({ netns: ns.name, config: { socket_queue_length: 40 } });
    assertMatch(
      server.output(),
      / INFO raised the kernel queue of the server's socket above its namespace's queue=40 max_dgram_qlen=10\n/,
    );
    assertMatch(server.output(), / INFO ready .* queue=40 /);
    assertEquals(await namespaceQueue(ns), "10", "the value was put back");
    // The kernel queues one datagram beyond a socket's limit, then refuses.
    assertEquals(await fillFrozen(ns, server, 45), 41);
    assertEquals(await probe(ns, "fresh"), 11, "a socket made since has the namespace's queue");
    assertEquals(await queueLimitMetric(ns, server), 40);
  },
);

e2eTest(
  "a namespace whose queue is already longer keeps it, and the server's socket has it",
  { root: true },
  async () => {
    await using ns = await addNetns();
    assertEquals((await ns.run(["sysctl", "-qw", "net.unix.max_dgram_qlen=64"])).code, 0);
    await using server = await startServer({ netns: ns.name, config: { socket_queue_length: 40 } });
    assert(!server.output().includes("raised the kernel queue"), server.output());
    assertMatch(server.output(), / INFO ready .* queue=64 /);
    assertEquals(await namespaceQueue(ns), "64");
    assertEquals(await queueLimitMetric(ns, server), 64);
  },
);

e2eTest(
  "a server that may not raise the queue (read-only /proc/sys) warns and runs with the namespace's",
  { root: true },
  async () => {
    await using ns = await addNetns();
    // What systemd's ProtectKernelTunables= or a container does to /proc/sys.
    const readOnlyProcSys = [
      "unshare",
      "-m",
      "sh",
      "-c",
      'mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec "$@"',
      "sh",
    ];
    await using server = await startServer({
      netns: ns.name,
      wrap: readOnlyProcSys,
      config: { socket_queue_length: 40 },
    });
    assertMatch(
      server.output(),
      / WARN cannot raise the kernel queue of the server's socket to socket_queue_length socket_queue_length=40 max_dgram_qlen=10 error=.*[Rr]ead-only file system/,
    );
    assertMatch(server.output(), / INFO ready .* queue=10 /);
    assertEquals(await fillFrozen(ns, server, 15), 11);
    assertEquals(await queueLimitMetric(ns, server), 10);
  },
);

e2eTest(
  "socket_queue_length 0 keeps the namespace's queue without touching it",
  { root: true },
  async () => {
    await using ns = await addNetns();
    await using server = await startServer({ netns: ns.name, config: { socket_queue_length: 0 } });
    assert(!server.output().includes("kernel queue"), server.output());
    assertMatch(server.output(), / INFO ready .* queue=10 /);
    assertEquals(await fillFrozen(ns, server, 15), 11);
  },
);
