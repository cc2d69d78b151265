/**
 * End-to-end: the ifupdown hooks with their real caller. `ifup` and
 * `ifdown` bring up and down an interfaces file of the test's own (an inet
 * and an inet6 static stanza) in a network namespace, running the hooks of
 * this tree from /etc/network/if-up.d and if-down.d; our server runs there.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { etcOverlay, HOOKS, hookSettings, hookTest, tableRoutes } from "./helpers/hooks.ts";
import { heldOn } from "./helpers/agent.ts";
import { createNetns, waitFor } from "./helpers/netns.ts";
import { startServer } from "./helpers/server.ts";

/** The callers: ifup and ifdown of ifupdown. */
const IFUPDOWN = ["/usr/sbin/ifup", "/usr/sbin/ifdown"];
const IF = "veth0";
const INTERFACES = `
iface ${IF} inet static
    address 192.0.2.10/24
    gateway 192.0.2.1

iface ${IF} inet6 static
    address 2001:db8:1:2::10/64
    gateway 2001:db8:1:2::1
    dad-attempts 0
`;

/** A namespace with veth0 bare, the server, and ifup/ifdown running the hooks of this tree. */
async function setUp(dir: string, client?: string) {
  const ns = await createNetns();
  await ns.ip("addr", "flush", "dev", IF, "scope", "global");
  const server = await startServer({ netns: ns.name });
  await Deno.writeTextFile(`${dir}/interfaces`, INTERFACES);
  const overlay = await etcOverlay(ns.name, {
    "default/table-allocator": hookSettings(server.socketName, `${dir}/client.log`, client, ns.env),
    "network/if-pre-up.d/": "",
    "network/if-up.d/table-allocator": { link: `${HOOKS}ifupdown-if-up` },
    "network/if-down.d/table-allocator": { link: `${HOOKS}ifupdown-if-down` },
    "network/if-post-down.d/": "",
  });
  return {
    ns,
    server,
    async ifupdown(command: "ifup" | "ifdown") {
      const result = await ns.run([command, "-i", `${dir}/interfaces`, "--state-dir", dir, IF]);
      assertEquals(result.code, 0, `${result.stdout}${result.stderr}`);
    },
    async [Symbol.asyncDispose]() {
      await server[Symbol.asyncDispose]();
      await overlay[Symbol.asyncDispose]();
      await ns[Symbol.asyncDispose]();
    },
  };
}

hookTest(
  "ifup keeps the routes in the main table when the client prints 0",
  IFUPDOWN,
  async (dir) => {
    // A stand-in client that prints 0 at once, as the real one does after 10 s without a server.
    await using t = await setUp(dir, "echo 0");
    await t.ifupdown("ifup");
    assertEquals(await tableRoutes(t.ns, "-4", "main"), [
      `default via 192.0.2.1 dev ${IF} onlink`,
      `192.0.2.0/24 dev ${IF} proto kernel scope link src 192.0.2.10`,
    ]);
    assertEquals(await tableRoutes(t.ns, "-4", 10000), []);
    await t.ifupdown("ifdown");
  },
);

hookTest(
  "ifup moves the connected and default routes of both families into the leased tables; ifdown empties them and releases",
  IFUPDOWN,
  async (dir) => {
    await using t = await setUp(dir);
    const { ns, server } = t;
    await t.ifupdown("ifup");
    assertEquals(await tableRoutes(ns, "-4", 10000), [
      `default via 192.0.2.1 dev ${IF} src 192.0.2.10`,
      `192.0.2.0/24 dev ${IF} scope link src 192.0.2.10`,
    ]);
    assertEquals(await tableRoutes(ns, "-4", "main"), []);
    const v6 = await tableRoutes(ns, "-6", 10000);
    assertEquals(v6.map((r) => r.split(" ").slice(0, 3).join(" ")), [
      `2001:db8:1:2::/64 dev ${IF}`,
      `default via 2001:db8:1:2::1`,
    ]);
    const main6 = (await tableRoutes(ns, "-6", "main")).join("\n");
    assert(!/2001:db8:1:2::\/64|default/.test(main6), main6);
    assertMatch(await ns.ip("-4", "rule", "show"), /from 192\.0\.2\.10 lookup 10000/);
    assertMatch(await ns.ip("-6", "rule", "show"), /from 2001:db8:1:2::10 lookup 10000/);
    assertEquals(server.leases().map((l) => [l.family, l.table]), [[2, 10000], [10, 10000]]);
    assertEquals((await heldOn(ns, IF)).length, 2);

    await t.ifupdown("ifdown");
    await waitFor("the clients end", async () => (await heldOn(ns, IF)).length === 0);
    assertEquals(await tableRoutes(ns, "-4", 10000), []);
    assertEquals(await tableRoutes(ns, "-6", 10000), []);
    assert(!(await ns.ip("rule", "show")).includes("lookup 10000"));
    assert(!(await ns.ip("-6", "rule", "show")).includes("lookup 10000"));
    assertEquals(server.leases(), []);
  },
);
