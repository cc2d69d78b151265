/**
 * End-to-end: the dhclient hooks with their real caller. dhclient (ISC,
 * with Debian's dhclient-script and its rfc3442-classless-routes exit hook)
 * gets a lease from dnsmasq across a veth pair between two network
 * namespaces; dnsmasq sends option 121 (RFC 3442 classless static routes).
 * Our server runs in the client's namespace.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { etcOverlay, HOOKS, hookSettings, hookTest, tableRoutes } from "./helpers/hooks.ts";
import { heldOn } from "./helpers/agent.ts";
import { createNetns, createPeerNetns, type Netns, waitFor } from "./helpers/netns.ts";
import { startServer } from "./helpers/server.ts";

/** What the tests run: dhclient with Debian's dhclient-script, dnsmasq as the DHCP server. */
const PROGRAMS = ["/usr/sbin/dhclient", "/sbin/dhclient-script", "/usr/sbin/dnsmasq"];

/** Debian's exit hook that adds option 121 routes (into our table, through the enter hook). */
const RFC3442_HOOK = "/etc/dhcp/dhclient-exit-hooks.d/rfc3442-classless-routes";
const LEASED = "192.0.2.50";
const IF = "veth0";

/** A DHCP server on the peer end of the link: one address, a 2 minute lease, option 121. */
function dnsmasq(peer: Netns, dir: string): Deno.ChildProcess {
  return peer.spawn([
    "dnsmasq",
    "--keep-in-foreground",
    "--conf-file=/dev/null",
    "--port=0",
    "--user=root",
    "--group=root",
    "--interface=veth1",
    "--bind-interfaces",
    `--dhcp-range=${LEASED},${LEASED},255.255.255.0,2m`,
    "--dhcp-option=option:router,192.0.2.1",
    "--dhcp-option=121,198.51.100.0/24,192.0.2.1,0.0.0.0/0,192.0.2.1",
    "--dhcp-option=option:dns-server",
    "--dhcp-authoritative",
    `--dhcp-leasefile=${dir}/dnsmasq.leases`,
    `--pid-file=${dir}/dnsmasq.pid`,
    "--log-facility=-",
    "--log-dhcp",
  ]);
}

/** The two namespaces, the server, the DHCP server and the /etc overlay of the client side. */
async function setUp(dir: string, client?: string) {
  const ns = await createNetns();
  const peer = await createPeerNetns(ns, "192.0.2.1/24");
  await ns.ip("-4", "addr", "flush", "dev", IF);
  const server = await startServer({ netns: ns.name });
  const overlay = await etcOverlay(ns.name, {
    "default/table-allocator": hookSettings(server.socketName, `${dir}/client.log`, client, ns.env),
    "dhcp/dhclient.conf": { copy: "/etc/dhcp/dhclient.conf" },
    "dhcp/dhclient-enter-hooks.d/table-allocator": { link: `${HOOKS}dhclient-enter-hook` },
    "dhcp/dhclient-exit-hooks.d/rfc3442-classless-routes": { copy: RFC3442_HOOK },
    "dhcp/dhclient-exit-hooks.d/table-allocator": { link: `${HOOKS}dhclient-exit-hook` },
    "resolv.conf": "",
  });
  const dhcpd = dnsmasq(peer, dir);
  const dhclient = (...args: string[]) =>
    ns.run([
      "dhclient",
      "-4",
      "-1",
      "-v",
      "-pf",
      `${dir}/dhclient.pid`,
      "-lf",
      `${dir}/dhclient.leases`,
      ...args,
      IF,
    ]);
  return {
    ns,
    peer,
    server,
    dhclient,
    async [Symbol.asyncDispose]() {
      try {
        dhcpd.kill("SIGTERM");
      } catch { /* already gone */ }
      await dhcpd.output();
      await server[Symbol.asyncDispose]();
      await overlay[Symbol.asyncDispose]();
      await peer[Symbol.asyncDispose]();
      await ns[Symbol.asyncDispose]();
    },
  };
}

const routes = (ns: Netns, table: string) => tableRoutes(ns, "-4", table);

hookTest(
  "dhclient: the router and option 121 routes go into the leased table, the address keeps its lifetimes, and a release undoes it all",
  PROGRAMS,
  async (dir) => {
    await using t = await setUp(dir);
    const bound = await t.dhclient();
    assertEquals(bound.code, 0, bound.stderr);
    const log = () => Deno.readTextFileSync(`${dir}/client.log`);
    assertMatch(log(), /lease granted identity=veth0-192\.0\.2\.50-2 table=10000/);
    const table = [
      `default via 192.0.2.1 dev ${IF} src ${LEASED}`,
      `192.0.2.0/24 dev ${IF} scope link src ${LEASED}`,
      `198.51.100.0/24 via 192.0.2.1 dev ${IF} src ${LEASED}`,
    ];
    assertEquals(await routes(t.ns, "10000"), table);
    assertEquals(await routes(t.ns, "main"), [], "nothing of the lease in the main table");
    // dhclient-script added the address itself, with the lease's lifetimes (2 minutes).
    const address = await t.ns.ip("-4", "addr", "show", "dev", IF);
    assertMatch(
      address,
      new RegExp(`inet ${LEASED}/24 .*\\n\\s+valid_lft (\\d+)sec preferred_lft`),
    );
    const lifetime = Number(/valid_lft (\d+)sec/.exec(address)![1]);
    assert(lifetime > 0 && lifetime <= 120, `valid_lft ${lifetime}`);
    assertMatch(await t.ns.ip("-4", "rule", "show"), /10000:\s+from 192\.0\.2\.50 lookup 10000/);
    assertEquals(t.server.leases().map((l) => [l.address, l.table]), [[LEASED, 10000]]);

    // A renewal with the routes gone from the table (as after a new table)
    // fills it again: the real dhclient-script, with the variables dhclient passes.
    await t.ns.ip("-4", "route", "flush", "table", "10000");
    const renew = await t.ns.run(["/sbin/dhclient-script"], {
      env: {
        reason: "RENEW",
        interface: IF,
        old_ip_address: LEASED,
        new_ip_address: LEASED,
        new_subnet_mask: "255.255.255.0",
        new_network_number: "192.0.2.0",
        new_broadcast_address: "192.0.2.255",
        new_routers: "192.0.2.1",
        new_rfc3442_classless_static_routes: "24 198 51 100 192 0 2 1 0 192 0 2 1",
        new_dhcp_lease_time: "120",
      },
    });
    assertEquals(renew.code, 0, renew.stderr);
    assertEquals(await routes(t.ns, "10000"), table);
    assertEquals((await heldOn(t.ns, IF)).length, 1, "the running client answered");

    // RELEASE: the table is emptied, the client ends, the lease is released.
    const released = await t.dhclient("-r");
    assertEquals(released.code, 0, released.stderr);
    await waitFor("the client ends", async () => (await heldOn(t.ns, IF)).length === 0);
    assertEquals(await routes(t.ns, "10000"), []);
    assert(!(await t.ns.ip("-4", "rule", "show")).includes("lookup 10000"));
    assertEquals(t.server.leases(), []);
    assertEquals(await t.ns.pidsOf("dhclient"), [], "dhclient -r stopped the daemon");
  },
);

hookTest(
  "dhclient: when the client prints 0, dhclient-script configures the main table as usual",
  PROGRAMS,
  async (dir) => {
    // A stand-in client that prints 0 at once, as the real one does after 10 s without a server.
    await using t = await setUp(dir, "echo 0");
    const bound = await t.dhclient();
    assertEquals(bound.code, 0, bound.stderr);
    assertEquals(await routes(t.ns, "main"), [
      `default via 192.0.2.1 dev ${IF}`,
      `192.0.2.0/24 dev ${IF} proto kernel scope link src ${LEASED}`,
      `198.51.100.0/24 via 192.0.2.1 dev ${IF}`,
    ]);
    assertEquals(await routes(t.ns, "10000"), []);
    assertEquals((await t.dhclient("-r")).code, 0);
  },
);
