/**
 * End-to-end: the host agent, each case in a fresh network namespace with
 * a veth pair, the real server and the real kernel. One agent holds 16
 * identities (48 rules); a rule deleted by hand comes back; a table two
 * identities share keeps its rules until both leave; deleting every
 * address leaves no rule and no lease; `kill -9` of the agent loses
 * nothing; concurrent first calls start one agent; `-f` and `-r`;
 * notifications lost to a full socket (ENOBUFS) are made up for.
 *
 * @module
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { agentPids, boundNames, startPeer, waitUnbound } from "./helpers/agent.ts";
import { clientCommand, type Netns, NETNS_ADDRESSES as A, waitFor } from "./helpers/netns.ts";
import { e2eTest } from "./helpers/e2e.ts";
import { type ServerHandle, startServer } from "./helpers/server.ts";

/** Every test: a fresh namespace (root), and helpers that outlive a test step. */
const NEEDS = { netns: true, sanitize: false } as const;

/** 16 more IPv4 addresses of veth0's network. */
const ADDRESSES = Array.from({ length: 16 }, (_, i) => `192.0.2.${20 + i}`);
const nameOf = (address: string) => `${A.ifname}-${address}-2`;

async function addAddresses(ns: Netns, addresses = ADDRESSES): Promise<void> {
  for (const address of addresses) await ns.ip("addr", "add", `${address}/24`, "dev", A.ifname);
}

/** A hook-style call for `address` (IPv4, /24); returns the printed table. */
async function hook(ns: Netns, server: string, address: string, extra: string[] = []) {
  const result = await ns.run(
    clientCommand("-4", "-a", address, "-n", "24", "-i", A.ifname, "-d", server, ...extra),
  );
  assertEquals(result.code, 0, `${result.stderr}\n${ns.agentLog()}`);
  return Number(result.stdout);
}

/** Our rules (priorities 10000, 20000, 91000) of a family in `ip rule` notation, sorted. */
async function ourRules(ns: Netns, family: 4 | 6 = 4): Promise<string[]> {
  return (await ns.ip(`-${family}`, "rule", "show")).split("\n")
    .filter((l) => /^(10000|20000|91000):/.test(l)).toSorted();
}

function expectedRules(address: string, table: number): string[] {
  return [
    `10000:\tfrom ${address} lookup ${table}`,
    `20000:\tfrom all to ${A.ipv4Network} lookup ${table}`,
    `91000:\tfrom all iif lo lookup ${table}`,
  ];
}

/** Hands ADDRESSES to the agent; returns address -> table. */
async function holdAll(ns: Netns, server: ServerHandle): Promise<Map<string, number>> {
  await addAddresses(ns);
  const tables = new Map<string, number>();
  for (const address of ADDRESSES) tables.set(address, await hook(ns, server.socketName, address));
  return tables;
}

e2eTest(
  "one agent holds 16 identities: distinct tables, 48 rules, every name bound",
  NEEDS,
  async ({ netns: ns }) => {
    await using server = await startServer({ netns: ns.name, config: { num_tables: 64 } });
    const tables = await holdAll(ns, server);
    assertEquals(new Set(tables.values()).size, 16, "distinct tables");
    assertEquals((await agentPids(ns)).length, 1, "one agent process");
    assertEquals(
      await ourRules(ns),
      [...tables].flatMap(([address, table]) => expectedRules(address, table)).toSorted(),
    );
    assertEquals((await ourRules(ns)).length, 48);
    const names = await boundNames(ns);
    for (const address of ADDRESSES) assert(names.includes(nameOf(address)), nameOf(address));
    assert(names.includes("table-allocator-agent"));
    assertEquals(server.leases().length, 16);
    // A second call for a held identity prints its table at once.
    assertEquals(await hook(ns, server.socketName, ADDRESSES[3]), tables.get(ADDRESSES[3]));
  },
);

e2eTest(
  "a rule deleted by hand is back within 5 s, and every address deleted leaves nothing",
  NEEDS,
  async ({ netns: ns }) => {
    await using server = await startServer({ netns: ns.name, config: { num_tables: 64 } });
    const tables = await holdAll(ns, server);
    const table = tables.get(ADDRESSES[0])!;
    const before = await ourRules(ns);
    await ns.ip("rule", "del", "priority", "91000", "iif", "lo", "lookup", String(table));
    await ns.ip(
      "rule",
      "del",
      "priority",
      "10000",
      "from",
      ADDRESSES[1],
      "lookup",
      String(tables.get(ADDRESSES[1])),
    );
    assertEquals((await ourRules(ns)).length, 46);
    await waitFor(
      "the deleted rules are back",
      async () => (await ourRules(ns)).length === 48,
      5000,
    );
    assertEquals(await ourRules(ns), before);
    assert(/a rule of this lease was deleted; putting it back/.test(ns.agentLog()), ns.agentLog());

    for (const address of ADDRESSES) {
      await ns.ip("addr", "del", `${address}/24`, "dev", A.ifname);
    }
    await waitFor("no lease is held", async () => {
      const names = await boundNames(ns);
      return ADDRESSES.every((a) => !names.includes(nameOf(a)));
    });
    assertEquals(await ourRules(ns), [], "no rule left");
    assertEquals(server.leases(), [], "no bound lease left");
    assertEquals((await agentPids(ns)).length, 1, "the agent keeps running");
  },
);

e2eTest(
  "two identities on one table share its rules: the first to leave keeps what the second needs",
  NEEDS,
  async ({ netns: ns }) => {
    // A server that gives every identity table 10001 (as after an admin release gone wrong).
    await startPeer(ns, ["same-table", "table", "10001"]);
    await addAddresses(ns, ADDRESSES.slice(0, 2));
    const [a, b] = ADDRESSES;
    assertEquals(await hook(ns, "same-table", a), 10001);
    assertEquals(await hook(ns, "same-table", b), 10001);
    assertEquals(await ourRules(ns), [
      `10000:\tfrom ${a} lookup 10001`,
      `10000:\tfrom ${b} lookup 10001`,
      `20000:\tfrom all to ${A.ipv4Network} lookup 10001`,
      `91000:\tfrom all iif lo lookup 10001`,
    ]);
    await ns.ip("addr", "del", `${a}/24`, "dev", A.ifname);
    await waitUnbound(ns, nameOf(a));
    assertEquals(await ourRules(ns), expectedRules(b, 10001).toSorted(), "b's rules stay");
    await ns.ip("addr", "del", `${b}/24`, "dev", A.ifname);
    await waitUnbound(ns, nameOf(b));
    assertEquals(await ourRules(ns), []);
  },
);

e2eTest(
  "kill -9 of the agent: the next client call brings every lease back within 5 s",
  NEEDS,
  async ({ netns: ns }) => {
    await using server = await startServer({ netns: ns.name, config: { num_tables: 64 } });
    const tables = await holdAll(ns, server);
    const rules = await ourRules(ns);
    const [agent] = await agentPids(ns);
    Deno.kill(agent, "SIGKILL");
    await waitFor("the agent is gone", async () => (await agentPids(ns)).length === 0);
    assertEquals(await ourRules(ns), rules, "a crash removes nothing");
    const logged = server.output().split("\n").length;

    const started = performance.now();
    // Any call does it; this one is for a held identity, which gets its own table back.
    assertEquals(await hook(ns, server.socketName, ADDRESSES[5]), tables.get(ADDRESSES[5]));
    await waitFor("every lease is refreshed by the new agent", () => {
      const lines = server.output().split("\n").slice(logged - 1);
      return ADDRESSES.every((a) =>
        lines.some((l) =>
          / (refreshed|granted) family=inet /.test(l) && l.includes(`address=${a} `)
        )
      );
    }, 5000);
    const names = await boundNames(ns);
    assert(ADDRESSES.every((a) => names.includes(nameOf(a))), "every name bound again");
    assert(performance.now() - started < 5000, "within 5 s");
    assertEquals(await ourRules(ns), rules);
    assertEquals((await agentPids(ns)).length, 1);
    assertEquals(
      server.leases().map((l) => [l.address, l.table]).toSorted(),
      [...tables].toSorted(),
    );
  },
);

e2eTest(
  "an agent started after a crash takes back what is still there and releases the rest",
  NEEDS,
  async ({ netns: ns }) => {
    await using server = await startServer({ netns: ns.name, config: { num_tables: 64 } });
    const tables = await holdAll(ns, server);
    const [agent] = await agentPids(ns);
    Deno.kill(agent, "SIGKILL");
    await waitFor("the agent is gone", async () => (await agentPids(ns)).length === 0);
    const gone = ADDRESSES.slice(0, 4);
    for (const address of gone) await ns.ip("addr", "del", `${address}/24`, "dev", A.ifname);

    // As the unit starts it: --agent, reporting ready on NOTIFY_SOCKET.
    const notifySocket = `${ns.dir}/notify.sock`;
    const notify = await startPeer(ns, [notifySocket, "silent"]);
    const child = ns.spawn(
      clientCommand("--agent", "-l", `${ns.dir}/agent.log`),
      { env: { NOTIFY_SOCKET: notifySocket } },
    );
    const ready = await notify.next((dg) => dg.data.startsWith("READY=1"), 5000);
    assert(ready.data.includes("holding 12 identities"), ready.data);
    const kept = ADDRESSES.slice(4);
    assertEquals(
      await ourRules(ns),
      kept.flatMap((a) => expectedRules(a, tables.get(a)!)).toSorted(),
    );
    await waitFor(
      "the leases of the gone addresses are released",
      () => server.leases().length === 12,
    );
    assertEquals(
      server.leases().map((l) => l.address).toSorted(),
      kept.toSorted(),
    );
    child.kill("SIGTERM");
    assertEquals((await child.status).code, 0);
    assertEquals(await ourRules(ns), [], "SIGTERM removes every rule");
    assertEquals(server.leases(), [], "and releases every lease");
  },
);

e2eTest(
  "concurrent first calls start exactly one agent and every call gets its table",
  NEEDS,
  async ({ netns: ns }) => {
    await using server = await startServer({ netns: ns.name, config: { num_tables: 64 } });
    const addresses = ADDRESSES.slice(0, 8);
    await addAddresses(ns, addresses);
    const tables = await Promise.all(addresses.map((a) => hook(ns, server.socketName, a)));
    assertEquals(new Set(tables).size, 8, `distinct tables: ${tables}`);
    assert(tables.every((t) => t >= 10000));
    // The losers of the race exit at once; give them a moment before counting.
    await waitFor("one agent is left", async () => (await agentPids(ns)).length === 1);
    await new Promise((resolve) => setTimeout(resolve, 500));
    assertEquals((await agentPids(ns)).length, 1);
    assertEquals((await ourRules(ns)).length, 24);
  },
);

e2eTest(
  "-f holds one identity in the foreground; -r releases from the agent and from -f",
  NEEDS,
  async ({ netns: ns }) => {
    await using server = await startServer({ netns: ns.name });
    await addAddresses(ns, ADDRESSES.slice(0, 2));
    const [held, foreground] = ADDRESSES;
    const agentTable = await hook(ns, server.socketName, held);
    const front = ns.spawn(
      clientCommand(
        "-4",
        "-a",
        foreground,
        "-n",
        "24",
        "-i",
        A.ifname,
        "-d",
        server.socketName,
        "-f",
      ),
    );
    const reader = front.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const frontTable = Number((await reader.read()).value);
    assertEquals(
      await ourRules(ns),
      [
        ...expectedRules(held, agentTable),
        ...expectedRules(foreground, frontTable),
      ].toSorted(),
    );
    assert((await boundNames(ns)).includes(nameOf(foreground)));
    // A hook call for the foreground identity prints its table (the holder is root).
    assertEquals(await hook(ns, server.socketName, foreground), frontTable);

    const release = (address: string) =>
      ns.run(clientCommand("-4", "-a", address, "-i", A.ifname, "-d", server.socketName, "-r"));
    const r1 = await release(held);
    assertEquals([r1.code, r1.stdout], [0, ""], r1.stderr);
    assertEquals(await ourRules(ns), expectedRules(foreground, frontTable).toSorted());
    const r2 = await release(foreground);
    assertEquals([r2.code, r2.stdout], [0, ""], r2.stderr);
    assertEquals((await front.status).code, 0, "the foreground holder exits");
    reader.releaseLock();
    assertEquals(await ourRules(ns), []);
    assertEquals(server.leases(), []);
    assertEquals((await agentPids(ns)).length, 1, "the agent stays for the next hand-off");
  },
);

e2eTest(
  "notifications lost to a full socket (ENOBUFS) are made up for: a rule deleted meanwhile is back",
  NEEDS,
  async ({ netns: ns }) => {
    await using server = await startServer({ netns: ns.name });
    await addAddresses(ns, ADDRESSES.slice(0, 1));
    const table = await hook(ns, server.socketName, ADDRESSES[0]);
    const before = await ourRules(ns);
    assertEquals(before, expectedRules(ADDRESSES[0], table));
    const [agent] = await agentPids(ns);
    // Stopped, the agent reads nothing: a flood of unrelated rule changes
    // fills its netlink socket, and the deletion of its own rule after it
    // is dropped by the kernel, not queued.
    Deno.kill(agent, "SIGSTOP");
    try {
      const flood = Array.from(
        { length: 5000 },
        (_, i) => `rule add priority 30000 from 198.51.${100 + (i >> 8)}.${i & 255} lookup 5000`,
      );
      const batch = `${ns.dir}/flood.batch`;
      await Deno.writeTextFile(
        batch,
        [...flood, ...flood.map((l) => l.replace("add", "del"))].join("\n") + "\n",
      );
      await ns.ip("-batch", batch);
      await ns.ip("rule", "del", "priority", "91000", "iif", "lo", "lookup", String(table));
    } finally {
      Deno.kill(agent, "SIGCONT");
    }
    await waitFor("the deleted rule is back", async () => (await ourRules(ns)).length === 3, 5000);
    assertEquals(await ourRules(ns), before);
    assert(/netlink notifications were lost/.test(ns.agentLog()), ns.agentLog());
    assertEquals(await agentPids(ns), [agent], "the same agent holds on");
  },
);
