/**
 * End-to-end: the client's lease over time. No server: 5 tries 2 s apart,
 * then `0`. An error reply: `0` at once, the reason on stderr. A server
 * restart: the client keeps its table and rules. A short lease: refreshed
 * at half its time and never expired while the client runs.
 *
 * The first two use family unspec (no rules) on `lo`; like every test
 * that runs the client, they run in a namespace of their own, because the
 * client hands its lease to the namespace's host agent.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { startPeer } from "./helpers/agent.ts";
import {
  clientCommand,
  createNetns,
  IS_ROOT,
  type Netns,
  NETNS_ADDRESSES as A,
  ROOT_SKIP_REASON,
  waitFor,
} from "./helpers/netns.ts";
import { startServer } from "./helpers/server.ts";
import { decodeRequest } from "../src/protocol/v1.ts";

if (!IS_ROOT) console.warn(`client_lifecycle_test.ts skipped: ${ROOT_SKIP_REASON}`);

const unique = (prefix: string) => `${prefix}-${crypto.randomUUID().slice(0, 8)}`;

Deno.test({
  name: "client prints 0 after 5 unanswered tries 2 s apart, and after 10 s when no server exists",
  ignore: !IS_ROOT,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await using ns = await createNetns();
    const silentName = unique("silent");
    const silent = await startPeer(ns, [silentName, "silent"]);
    const started = performance.now();
    const [quiet, absent] = await Promise.all([
      ns.run(clientCommand("-a", unique("id"), "-i", "lo", "-d", silentName)),
      ns.run(clientCommand("-a", unique("id"), "-i", "lo", "-d", unique("nobody"))),
    ]);
    const elapsed = performance.now() - started;
    for (const result of [quiet, absent]) {
      assertEquals(result.code, 0, result.stderr);
      assertEquals(result.stdout, "0\n");
    }
    const arrivals = silent.received.map((dg) => {
      const request = decodeRequest(new TextEncoder().encode(dg.data));
      assertEquals(request.cmd, 0);
      return dg.at;
    });
    // Every figure in a failure's message: a wrong gap is told apart from a late read by them.
    const timeline = `tries at ${arrivals.map((at) => at - arrivals[0])} ms, ` +
      `the clients done after ${Math.round(elapsed)} ms; the agent's log:\n${ns.agentLog()}`;
    assertEquals(arrivals.length, 5, `five tries: ${timeline}`);
    for (let i = 1; i < arrivals.length; i++) {
      const gap = arrivals[i] - arrivals[i - 1];
      assert(gap > 1800 && gap < 2600, `tries 2 s apart, got ${Math.round(gap)} ms: ${timeline}`);
    }
    assert(
      elapsed > 9500 && elapsed < 13000,
      `gives up after 10 s, took ${Math.round(elapsed)} ms`,
    );
  },
});

Deno.test({
  name: "client prints 0 at once and reports the reason on stderr when the server refuses",
  ignore: !IS_ROOT,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await using ns = await createNetns();
    await using server = await startServer({
      netns: ns.name,
      config: { addr_families: { inet: true, inet6: true, unspec: false } },
    });
    const started = performance.now();
    const result = await ns.run(
      clientCommand("-a", unique("id"), "-i", "lo", "-d", server.socketName),
    );
    const elapsed = performance.now() - started;
    assertEquals(result.code, 0);
    assertEquals(result.stdout, "0\n");
    assertMatch(result.stderr, /the server refused the lease .*error=family_disabled/);
    assert(elapsed < 1500, `no retries after an error reply, took ${Math.round(elapsed)} ms`);
  },
});

async function rulesOf(ns: Netns): Promise<string[]> {
  return (await ns.ip("-4", "rule", "show")).split("\n").filter((l) =>
    /^(10000|20000|91000):/.test(l)
  );
}

async function startHolder(ns: Netns, socketName: string): Promise<number> {
  const result = await ns.run(
    clientCommand("-4", "-a", A.ipv4, "-n", "24", "-i", A.ifname, "-d", socketName),
  );
  assertEquals(result.code, 0, result.stderr);
  return Number(result.stdout);
}

Deno.test({
  name: "client keeps its table and rules while the server restarts",
  ignore: !IS_ROOT,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await using ns = await createNetns();
    const first = await startServer({ netns: ns.name, config: { table_timeout: 6 } });
    const { dir, socketName } = first;
    // The first server's directory outlives it (the second one reuses it): remove it ourselves.
    await using _dir = { [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
    const table = await startHolder(ns, socketName);
    const rules = await rulesOf(ns);
    assertEquals(rules.length, 3);
    await first.stop();
    // Down for longer than one retransmission: the client keeps everything.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    assertEquals(await rulesOf(ns), rules);
    assertEquals((await ns.pidsOf("client.ts")).length, 1);
    await using second = await startServer({
      netns: ns.name,
      dir,
      socketName,
      config: { table_timeout: 6 },
    });
    await second.waitForLog(new RegExp(`(refreshed|granted) family=inet .*table=${table}`), 5000);
    assertEquals(await rulesOf(ns), rules);
    assertEquals(second.leases().map((l) => [l.address, l.table]), [[A.ipv4, table]]);
    Deno.kill((await ns.pidsOf("client.ts"))[0], "SIGTERM");
    await waitFor("the client exits", async () => (await ns.pidsOf("client.ts")).length === 0);
  },
});

Deno.test({
  name: "client refreshes at half the lease time and its lease never expires",
  ignore: !IS_ROOT,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await using ns = await createNetns();
    await using server = await startServer({ netns: ns.name, config: { table_timeout: 4 } });
    const table = await startHolder(ns, server.socketName);
    const granted = Date.parse((await server.waitForLog(/ granted family=inet /)).split(" ")[0]);
    const until = Date.now() + 7000;
    while (Date.now() < until) {
      const leases = server.leases();
      assertEquals(leases.length, 1, "the lease is always there");
      assert(leases[0].expiresAt > Date.now(), "the lease never expires");
      assertEquals(leases[0].table, table);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const refreshes = server.output().split("\n").filter((l) => / refreshed family=inet /.test(l))
      .map((l) => Date.parse(l.split(" ")[0]));
    assert(refreshes.length >= 3, `at least 3 refreshes in 7 s, got ${refreshes.length}`);
    const first = refreshes[0] - granted;
    // lease_expires is whole seconds, so half the remaining time is 1.5 to 2 s.
    assert(first > 1400 && first < 2600, `first refresh after ~2 s, got ${first} ms`);
    for (let i = 1; i < refreshes.length; i++) {
      const gap = refreshes[i] - refreshes[i - 1];
      assert(gap > 1400 && gap < 2600, `refresh every ~2 s, got ${gap} ms`);
    }
    assertEquals(await rulesOf(ns), [
      `10000:\tfrom ${A.ipv4} lookup ${table}`,
      `20000:\tfrom all to ${A.ipv4Network} lookup ${table}`,
      `91000:\tfrom all iif lo lookup ${table}`,
    ]);
  },
});
