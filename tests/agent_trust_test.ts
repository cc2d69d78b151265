/**
 * End-to-end: whom the agent and the client believe (issue "Local
 * trust", client side), with squatters running as uid 65534 inside the
 * test's namespace. A datagram on the agent's socket from anyone but root,
 * or malformed, gets an error reply and changes nothing; a squatter on an
 * identity's name or on the server's name cannot make a client print its
 * table or move rules; kernel tables are never accepted, from anyone;
 * `--server-uid` makes another server user trusted.
 *
 * @module
 */

import { assert, assertEquals, assertMatch, assertRejects } from "./helpers/assert.ts";
import { askAgent, boundNames, PEER_MODULE, startPeer } from "./helpers/agent.ts";
import { stageAsUser } from "./helpers/as_user.ts";
import { clientCommand, type Netns, NETNS_ADDRESSES as A, waitFor } from "./helpers/netns.ts";
import { e2eTest } from "./helpers/e2e.ts";
import { startServer } from "./helpers/server.ts";

/** Every test: a fresh namespace (root), and helpers that outlive a test step. */
const NEEDS = { netns: true, sanitize: false } as const;

const NAME = `${A.ifname}-${A.ipv4}-2`;

function hookArgs(server: string, address: string = A.ipv4): string[] {
  return clientCommand("-4", "-a", address, "-n", "24", "-i", A.ifname, "-d", server);
}

async function ourRules(ns: Netns): Promise<string[]> {
  return (await ns.ip("-4", "rule", "show")).split("\n")
    .filter((l) => /^(10000|20000|91000):/.test(l));
}

e2eTest(
  "the agent answers bad and non-root messages with an error and changes nothing",
  NEEDS,
  async ({ netns: ns }) => {
    await using nobody = await stageAsUser(PEER_MODULE);
    await using server = await startServer({ netns: ns.name });
    const held = await ns.run(hookArgs(server.socketName));
    assertEquals(held.stdout, "10000\n", held.stderr);
    const root = await startPeer(ns, ["-", "silent"]);
    const before = await askAgent(root, { version: 1, op: "status" });
    assertEquals(
      (before.identities as unknown[]).length,
      1,
      `the agent holds the lease: ${JSON.stringify(before)}`,
    );
    const rules = await ourRules(ns);

    const hold = {
      version: 1,
      op: "hold",
      addr_family: 2,
      ifname: A.ifname,
      address: "192.0.2.77",
      prefix: 24,
      server: server.socketName,
    };
    const bad: Array<[string | Record<string, unknown>, string, RegExp]> = [
      ["{", "bad_json", /not a JSON object/],
      ["[1,2]", "bad_json", /not a JSON object/],
      [{ version: 2, op: "status" }, "bad_version", /"version" must be 1/],
      [{ version: 1, op: "steal" }, "unknown_op", /"op" must be/],
      [{ ...hold, prefix: 40 }, "bad_request", /"prefix" must be an integer from 1 to 32, got 40/],
      [{ ...hold, address: "192.0.2.777" }, "bad_request", /not an IPv4 address/],
      [{ ...hold, ifname: "nosuch0" }, "no_interface", /interface "nosuch0" does not exist/],
      [{ ...hold, log_path: "x.log" }, "bad_request", /"log_path" must be an absolute path/],
      ["x".repeat(9000), "oversize", /exceeds 8192/],
    ];
    for (const [message, code, reason] of bad) {
      const answer = await askAgent(root, message);
      assertEquals([answer.op, answer.error], ["error", code], JSON.stringify(answer));
      assertMatch(String(answer.message), reason);
    }

    const stranger = await startPeer(ns, ["-", "silent"], { as: nobody });
    for (
      const message of [
        hold,
        { version: 1, op: "release", addr_family: 2, ifname: A.ifname, address: A.ipv4 },
        { version: 1, op: "status" },
      ]
    ) {
      const answer = await askAgent(stranger, message);
      assertEquals([answer.op, answer.error], ["error", "not_permitted"], JSON.stringify(answer));
      assertMatch(String(answer.message), /only root may use the agent, not uid 65534/);
    }
    // A uid-65534 release sent to the identity's own name is refused too.
    await stranger.send(
      NAME,
      '{"address":"192.0.2.10","ifname":"veth0","addr_family":2,"cmd":1,"version":1}',
    );
    const refused = await stranger.next((dg) => dg.from === `@${NAME}`);
    assertEquals(JSON.parse(refused.data).error, "not_permitted");

    const after = await askAgent(root, { version: 1, op: "status" });
    assertEquals(after.identities, before.identities, "nothing changed");
    assertEquals(await ourRules(ns), rules);
    assertEquals(server.leases().map((l) => [l.address, l.table]), [[A.ipv4, 10000]]);
    assert(/refused a message on the agent's socket error=not_permitted/.test(ns.agentLog()));
  },
);

e2eTest(
  "a squatter of uid 65534 on the identity's name gets no request and moves nothing",
  NEEDS,
  async ({ netns: ns }) => {
    await using nobody = await stageAsUser(PEER_MODULE);
    await using server = await startServer({ netns: ns.name });
    const squatter = await startPeer(ns, [NAME, "table", "10007"], { as: nobody });
    const result = await ns.run(hookArgs(server.socketName));
    assertEquals([result.code, result.stdout], [0, "0\n"]);
    assertMatch(result.stderr, /no lease .*bound by uid 65534, not root/);
    assertEquals(await ourRules(ns), []);
    assertEquals(server.leases(), [], "the agent does not even ask the server");
    assertEquals(squatter.received, [], "nor the squatter");
    // -f does the same in the foreground.
    const foreground = await ns.run([...hookArgs(server.socketName), "-f"]);
    assertEquals([foreground.code, foreground.stdout], [0, "0\n"], foreground.stderr);
    // -r: the squatter's acknowledgement does not count; the lease is released with the server.
    const release = await ns.run(
      clientCommand("-4", "-a", A.ipv4, "-i", A.ifname, "-d", server.socketName, "-r"),
    );
    assertEquals(release.code, 0, release.stderr);
    assertMatch(release.stderr, /the running client did not answer the release request/);
    assertMatch(release.stderr, /lease released identity=veth0-192\.0\.2\.10-2/);
  },
);

e2eTest(
  "replies from an untrusted uid and kernel tables are never accepted: 0 after 5 tries",
  NEEDS,
  async ({ netns: ns }) => {
    await using nobody = await stageAsUser(PEER_MODULE);
    const second = "192.0.2.20";
    const third = "192.0.2.21";
    for (const a of [second, third]) await ns.ip("addr", "add", `${a}/24`, "dev", A.ifname);
    await startPeer(ns, ["fake-server", "c-server", "10000", "40"], { as: nobody });
    await startPeer(ns, ["kernel-tables", "table", "254"]);
    const started = performance.now();
    const [untrusted, kernel, foreground] = await Promise.all([
      ns.run(hookArgs("fake-server")),
      ns.run(hookArgs("kernel-tables", second)),
      ns.run([...hookArgs("kernel-tables", third), "-f"]),
    ]);
    for (const result of [untrusted, kernel, foreground]) {
      assertEquals([result.code, result.stdout], [0, "0\n"], result.stderr);
    }
    assert(performance.now() - started > 9500, "every try was made");
    assertEquals(await ourRules(ns), []);
    const log = ns.agentLog();
    assertMatch(
      log,
      /ignoring a datagram from the server's name: its uid is not trusted .*uid=65534/,
    );
    assertMatch(
      log,
      /not accepting a lease on a kernel table: treated as no lease .*offered_table=254/,
    );
    assertMatch(foreground.stderr, /not accepting a lease on a kernel table/);
  },
);

e2eTest("--server-uid makes a server of another uid trusted", NEEDS, async ({ netns: ns }) => {
  await using nobody = await stageAsUser(PEER_MODULE);
  await startPeer(ns, ["server-65534", "c-server", "10000", "40"], { as: nobody });
  const result = await ns.run([...hookArgs("server-65534"), "--server-uid", "998,65534"]);
  assertEquals([result.code, result.stdout], [0, "10000\n"], result.stderr);
  assertEquals((await ourRules(ns)).length, 3);
});

e2eTest(
  "a squatter of uid 65534 on the server's name during a restart moves no rule",
  NEEDS,
  async ({ netns: ns }) => {
    await using nobody = await stageAsUser(PEER_MODULE);
    const first = await startServer({ netns: ns.name, config: { table_timeout: 4 } });
    const { dir, socketName } = first;
    await using _dir = { [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
    const held = await ns.run(hookArgs(socketName));
    assertEquals(held.stdout, "10000\n", held.stderr);
    const rules = await ourRules(ns);
    await first.stop();
    const squatter = await startPeer(ns, [socketName, "table", "10007"], { as: nobody });
    // The lease of 4 s is refreshed every 2 s: the squatter hears the refreshes and answers them.
    await squatter.next((dg) => dg.from === `@${NAME}`, 5000);
    await squatter.next((dg) => dg.from === `@${NAME}` && squatter.received.indexOf(dg) > 0, 5000);
    assertEquals(await ourRules(ns), rules, "the rules stay on table 10000");
    await squatter.stop();
    await using second = await startServer({
      netns: ns.name,
      dir,
      socketName,
      config: { table_timeout: 4 },
    });
    await second.waitForLog(/(refreshed|granted) family=inet .*table=10000/, 5000);
    assertEquals(await ourRules(ns), rules);
    assert((await boundNames(ns)).includes(NAME));
  },
);

e2eTest(
  "a root holder of the identity's name is believed; one of another uid cannot start on a held name",
  NEEDS,
  async ({ netns: ns }) => {
    await using nobody = await stageAsUser(PEER_MODULE);
    await using server = await startServer({ netns: ns.name });
    // Root's holder (as our -f would be) answers with its table: a second client prints it.
    const holder = await startPeer(ns, [NAME, "table", "10003"]);
    const result = await ns.run(hookArgs(server.socketName));
    assertEquals([result.code, result.stdout], [0, "10003\n"], result.stderr);
    await holder.stop();
    await waitFor("the name is free", async () => !(await boundNames(ns)).includes(NAME));
    const taken = await ns.run(hookArgs(server.socketName));
    assertEquals(taken.stdout, "10000\n", taken.stderr);
    await assertRejects(() => startPeer(ns, [NAME, "silent"], { as: nobody }));
    await assertRejects(() => startPeer(ns, ["table-allocator-agent", "silent"], { as: nobody }));
  },
);
