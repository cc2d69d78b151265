/**
 * End-to-end: mixed deployments. The agent speaks plain v1 to a server
 * like the original C one (no error replies, no notices) and keeps its
 * lease across that server's restart; a C client keeps working against
 * our server next to the agent, and cannot start twice for an identity
 * the agent holds; the original hook line works unchanged.
 *
 * @module
 */

import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";
import { boundNames, startPeer } from "./helpers/agent.ts";
import { CLIENT_PATH, clientCommand, type Netns, NETNS_ADDRESSES as A } from "./helpers/netns.ts";
import { e2eTest } from "./helpers/e2e.ts";
import { startServer } from "./helpers/server.ts";

/** Every test: a fresh namespace (root), and helpers that outlive a test step. */
const NEEDS = { netns: true, sanitize: false } as const;

const NAME = `${A.ifname}-${A.ipv4}-2`;

async function ourRules(ns: Netns): Promise<string[]> {
  return (await ns.ip("-4", "rule", "show")).split("\n")
    .filter((l) => /^(10000|20000|91000):/.test(l));
}

e2eTest(
  "the agent holds a lease of a C-like server and keeps it across that server's restart",
  NEEDS,
  async ({ netns: ns }) => {
    // Leases of 4 s: the agent refreshes every 2 s.
    const first = await startPeer(ns, ["c-server", "c-server", "10000", "40", "--timeout", "4"]);
    const hook = await ns.run(
      clientCommand("-4", "-a", A.ipv4, "-n", "24", "-i", A.ifname, "-d", "c-server"),
    );
    assertEquals(hook.stdout, "10000\n", hook.stderr);
    const rules = await ourRules(ns);
    assertEquals(rules.length, 3);
    await first.next((dg) => first.received.indexOf(dg) >= 1, 5000); // a refresh
    await first.stop();
    // Down for more than a retransmission: everything stays.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    assertEquals(await ourRules(ns), rules);
    const second = await startPeer(ns, ["c-server", "c-server", "10000", "40", "--timeout", "4"]);
    const refresh = await second.next((dg) => dg.from === `@${NAME}`, 5000);
    assertEquals(JSON.parse(refresh.data).cmd, 0);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assertEquals(await ourRules(ns), rules, "the restarted server gave the same table");
    assert(!/ERROR/.test(ns.agentLog()), ns.agentLog());
  },
);

e2eTest(
  "a C client works against our server next to the agent, and not on a name the agent holds",
  NEEDS,
  async ({ netns: ns }) => {
    await using server = await startServer({ netns: ns.name });
    const hook = await ns.run(
      clientCommand("-4", "-a", A.ipv4, "-n", "24", "-i", A.ifname, "-d", server.socketName),
    );
    assertEquals(hook.stdout, "10000\n", hook.stderr);
    // A C client binds its padded identity name and sends the C client's exact request.
    const other = "veth0-192.0.2.20-2";
    const cClient = await startPeer(ns, [other, "silent"]);
    await cClient.send(
      server.socketName,
      '{"address":"192.0.2.20","ifname":"veth0","addr_family":2,"cmd":0,"version":1}',
    );
    const reply = await cClient.next((dg) => dg.from === `@${server.socketName}`);
    assertEquals(JSON.parse(reply.data).table, 10001);
    assertEquals(server.leases().map((l) => [l.address, l.table]), [[A.ipv4, 10000], [
      "192.0.2.20",
      10001,
    ]]);
    // The agent binds the name of the identity it holds: a second holder cannot start.
    assert((await boundNames(ns)).includes(NAME));
    await assertRejects(() => startPeer(ns, [NAME, "silent"]));
  },
);

e2eTest("the original hook line works unchanged", NEEDS, async ({ netns: ns }) => {
  await using _server = await startServer({ netns: ns.name, socketName: "tas_socket" });
  const bin = `${ns.dir}/bin`;
  await Deno.mkdir(bin);
  await Deno.writeTextFile(
    `${bin}/table_allocator_client`,
    `#!/bin/sh\nexec '${Deno.execPath()}' run --allow-all '${CLIENT_PATH}' "$@"\n`,
    { mode: 0o755 },
  );
  const script = `ip=${A.ipv4}; mask=${A.ipv4Netmask}; if=${A.ifname}
rt_table=$(table_allocator_client -4 -s -a "$ip" -n "$mask" -i "$if" -d tas_socket)
echo "rt_table=$rt_table"`;
  const result = await ns.run(["sh", "-c", script], {
    env: { PATH: `${bin}:${Deno.env.get("PATH")}` },
  });
  assertEquals(result.stdout, "rt_table=10000\n", result.stderr);
  assertEquals(await ourRules(ns), [
    `10000:\tfrom ${A.ipv4} lookup 10000`,
    `20000:\tfrom all to ${A.ipv4Network} lookup 10000`,
    `91000:\tfrom all iif lo lookup 10000`,
  ]);
});
