/**
 * End-to-end: the NetworkManager and networkd-dispatcher hooks, run the way
 * their dispatchers run them: as executables, with nothing in the
 * environment but the variables they document (no PATH either), in a
 * network namespace with our server. The daemons need D-Bus and their
 * network managers, so here the test puts the routes into the main table
 * as NetworkManager or systemd-networkd would; networkd-dispatcher itself,
 * with systemd-networkd, runs the installed hook in `deb_test.ts` (under a
 * systemd booted in a container).
 *
 * @module
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { etcOverlay, HOOKS, hookSettings, hookTest, tableRoutes } from "./helpers/hooks.ts";
import { heldOn } from "./helpers/agent.ts";
import { createNetns, type Netns, NETNS_ADDRESSES as A, waitFor } from "./helpers/netns.ts";
import { type ServerHandle, startServer } from "./helpers/server.ts";

/** A namespace with the server and the hooks' settings; gateways on the link in main. */
async function setUp(dir: string) {
  const ns = await createNetns();
  const server = await startServer({ netns: ns.name });
  const overlay = await etcOverlay(ns.name, {
    "default/table-allocator": hookSettings(
      server.socketName,
      `${dir}/client.log`,
      undefined,
      ns.env,
    ),
  });
  await ns.ip("-4", "route", "add", "default", "via", "192.0.2.1", "dev", A.ifname);
  await ns.ip("-4", "route", "add", "198.51.100.0/24", "via", "192.0.2.1", "dev", A.ifname);
  await ns.ip("-6", "route", "add", "default", "via", "2001:db8:1:2::1", "dev", A.ifname);
  return {
    ns,
    server,
    async [Symbol.asyncDispose]() {
      await server[Symbol.asyncDispose]();
      await overlay[Symbol.asyncDispose]();
      await ns[Symbol.asyncDispose]();
    },
  };
}

/** Runs a hook as an executable with exactly `env`. */
async function dispatch(ns: Netns, hook: string, env: Record<string, string>, ...args: string[]) {
  const vars = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  const result = await ns.run(["/usr/bin/env", "-i", ...vars, `${HOOKS}${hook}`, ...args]);
  assertEquals(result.code, 0, `${result.stdout}${result.stderr}`);
}

/** After a release: no client, no rules, no lease, nothing left in table 10000. */
async function assertReleased(ns: Netns, server: ServerHandle) {
  await waitFor("the clients end", async () => (await heldOn(ns, A.ifname)).length === 0);
  assertEquals(await tableRoutes(ns, "-4", 10000), []);
  assertEquals(await tableRoutes(ns, "-6", 10000), []);
  assert(!(await ns.ip("-4", "rule", "show")).includes("lookup 10000"));
  assert(!(await ns.ip("-6", "rule", "show")).includes("lookup 10000"));
  assertEquals(server.leases(), []);
}

const short = (routes: string[]) => routes.map((r) => r.replace(/ (metric|pref) \S+/g, ""));

hookTest(
  "NetworkManager dispatcher: up copies every address's routes, IP4_ROUTE_n and IP6_ROUTE_n included; pre-down empties and releases",
  [],
  async (dir) => {
    await using t = await setUp(dir);
    const env = {
      NM_DISPATCHER_ACTION: "up",
      CONNECTION_ID: "wired",
      DEVICE_IFACE: A.ifname,
      DEVICE_IP_IFACE: A.ifname,
      IP4_NUM_ADDRESSES: "1",
      IP4_ADDRESS_0: `${A.ipv4}/${A.ipv4Prefix} 192.0.2.1`,
      IP4_GATEWAY: "192.0.2.1",
      IP4_NUM_ROUTES: "2",
      IP4_ROUTE_0: "198.51.100.0/24 192.0.2.1 100",
      IP4_ROUTE_1: "203.0.113.0/24 0.0.0.0 100",
      IP6_NUM_ADDRESSES: "1",
      IP6_ADDRESS_0: `${A.ipv6}/${A.ipv6Prefix} 2001:db8:1:2::1`,
      IP6_GATEWAY: "2001:db8:1:2::1",
      IP6_NUM_ROUTES: "1",
      IP6_ROUTE_0: "2001:db8:99::/48 2001:db8:1:2::1 100",
    };
    await dispatch(t.ns, "networkmanager-dispatcher", env, A.ifname, "up");
    assertEquals(await tableRoutes(t.ns, "-4", 10000), [
      `default via 192.0.2.1 dev ${A.ifname} src ${A.ipv4}`,
      `${A.ipv4Network} dev ${A.ifname} scope link src ${A.ipv4}`,
      `198.51.100.0/24 via 192.0.2.1 dev ${A.ifname} src ${A.ipv4}`,
      `203.0.113.0/24 dev ${A.ifname} scope link src ${A.ipv4}`,
    ]);
    assertEquals(short(await tableRoutes(t.ns, "-6", 10000)), [
      `${A.ipv6Network} dev ${A.ifname}`,
      `2001:db8:99::/48 via 2001:db8:1:2::1 dev ${A.ifname}`,
      `default via 2001:db8:1:2::1 dev ${A.ifname}`,
    ]);
    // NetworkManager's own routes stay in the main table.
    assert((await tableRoutes(t.ns, "-4", "main")).some((r) => r.startsWith("default via")));
    assertEquals(t.server.leases().map((l) => [l.family, l.table]), [[2, 10000], [10, 10000]]);

    // A DHCP change runs the hook again: the running clients answer, nothing doubles.
    await dispatch(t.ns, "networkmanager-dispatcher", env, A.ifname, "dhcp4-change");
    assertEquals((await tableRoutes(t.ns, "-4", 10000)).length, 4);
    assertEquals((await heldOn(t.ns, A.ifname)).length, 2);

    await dispatch(t.ns, "networkmanager-dispatcher", env, A.ifname, "pre-down");
    await assertReleased(t.ns, t.server);
  },
);

hookTest(
  "networkd-dispatcher: routable copies networkd's routes of both families; no-carrier and off empty and release",
  [],
  async (dir) => {
    await using t = await setUp(dir);
    const state = (STATE: string, OperationalState = STATE) => ({
      IFACE: A.ifname,
      STATE,
      ADDR: A.ipv4,
      IP_ADDRS: A.ipv4,
      IP6_ADDRS: `${A.ipv6} fe80::1:2`,
      AdministrativeState: "configured",
      OperationalState,
      ESSID: "",
      json: "{}",
    });
    const routable = async () => {
      await dispatch(t.ns, "networkd-dispatcher", state("routable"));
      assertEquals(await tableRoutes(t.ns, "-4", 10000), [
        `default via 192.0.2.1 dev ${A.ifname} src ${A.ipv4}`,
        `${A.ipv4Network} dev ${A.ifname} scope link src ${A.ipv4}`,
        `198.51.100.0/24 via 192.0.2.1 dev ${A.ifname} src ${A.ipv4}`,
      ]);
      assertEquals(short(await tableRoutes(t.ns, "-6", 10000)), [
        `${A.ipv6Network} dev ${A.ifname}`,
        `fe80::/64 dev ${A.ifname}`,
        `default via 2001:db8:1:2::1 dev ${A.ifname}`,
      ]);
      assertEquals(t.server.leases().map((l) => [l.family, l.address]), [
        [2, A.ipv4],
        [10, A.ipv6],
      ], "no lease for the link-local address");
    };
    await routable();
    await dispatch(t.ns, "networkd-dispatcher", state("no-carrier"));
    await assertReleased(t.ns, t.server);
    await routable();
    await dispatch(t.ns, "networkd-dispatcher", state("off"));
    await assertReleased(t.ns, t.server);
    // Other states are not ours.
    await dispatch(t.ns, "networkd-dispatcher", state("degraded"));
    assertEquals(t.server.leases(), []);
  },
);
