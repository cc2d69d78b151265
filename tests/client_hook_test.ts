/**
 * End-to-end: the client as hook scripts use it. `t=$(client ...)`
 * returns at once with the table while the client stays in the background;
 * a second client for a held identity answers at once; and the three hook
 * scripts in packaging/hooks move the routes into the leased table.
 *
 * @module
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import {
  CLIENT_PATH,
  clientCommand,
  createNetns,
  IS_ROOT,
  type Netns,
  NETNS_ADDRESSES as A,
  ROOT_SKIP_REASON,
  waitFor,
} from "./helpers/netns.ts";
import { startServer } from "./helpers/server.ts";

if (!IS_ROOT) console.warn(`client_hook_test.ts skipped: ${ROOT_SKIP_REASON}`);

const HOOKS = new URL("../packaging/hooks/", import.meta.url).pathname;
const V4_ARGS = ["-4", "-s", "-a", A.ipv4, "-n", A.ipv4Netmask, "-i", A.ifname];
const TA_CLIENT = `${Deno.execPath()} run --allow-all ${CLIENT_PATH}`;

const e2e = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, ignore: !IS_ROOT, sanitizeResources: false, sanitizeOps: false, fn });

async function routes(ns: Netns, table: string | number): Promise<string[]> {
  return (await ns.ip("-4", "route", "show", "table", String(table)))
    .split("\n").map((l) => l.trim()).filter(Boolean);
}

e2e(
  "t=$(client ...) returns within a second of the server's reply and the client stays in the background",
  async () => {
    await using ns = await createNetns();
    await using server = await startServer({ netns: ns.name });
    const command = clientCommand(...V4_ARGS, "-d", server.socketName).map((a) => `'${a}'`).join(
      " ",
    );
    const result = await ns.run(["sh", "-c", `t=$(${command}); echo "t=$t"`]);
    const returned = Date.now();
    assertEquals(result.code, 0, result.stderr);
    assertEquals(result.stdout, "t=10000\n");
    const granted = Date.parse((await server.waitForLog(/ granted family=2 /)).split(" ")[0]);
    assert(returned - granted < 1000, `returned ${returned - granted} ms after the reply`);
    const pids = await ns.pidsOf("client.ts");
    assertEquals(pids.length, 1, "one background client");
    assertEquals((await ns.ip("-4", "rule", "show")).includes("lookup 10000"), true);
    // The background client is detached: its own session, not the shell's.
    const stat = Deno.readTextFileSync(`/proc/${pids[0]}/stat`).split(") ")[1].split(" ");
    assertEquals(Number(stat[3]), pids[0], "the background client leads its own session");
  },
);

e2e(
  "a second client for a held identity prints the same table at once and leaves the first running",
  async () => {
    await using ns = await createNetns();
    await using server = await startServer({ netns: ns.name });
    const first = await ns.run(clientCommand(...V4_ARGS, "-d", server.socketName));
    assertEquals(first.stdout, "10000\n");
    const [pid] = await waitFor("the first client runs", async () => {
      const pids = await ns.pidsOf("client.ts");
      return pids.length === 1 && pids;
    });
    const started = performance.now();
    const second = await ns.run(clientCommand(...V4_ARGS, "-d", server.socketName));
    const elapsed = performance.now() - started;
    assertEquals(second.code, 0, second.stderr);
    assertEquals(second.stdout, "10000\n");
    assert(elapsed < 1500, `answered at once, took ${Math.round(elapsed)} ms`);
    assertEquals(await ns.pidsOf("client.ts"), [pid]);
    assertEquals(server.leases().length, 1);
  },
);

e2e("a second client prints 0 at once while the first one has no lease yet", async () => {
  await using ns = await createNetns();
  // No server: the first client keeps trying for 10 s.
  const first = ns.spawn(clientCommand(...V4_ARGS, "-d", "nobody-listens"));
  await waitFor("the first client binds its name", async () => {
    const unix = (await ns.run(["cat", "/proc/net/unix"])).stdout;
    return unix.includes(`@${A.ifname}-${A.ipv4}-2`);
  });
  const started = performance.now();
  const second = await ns.run(clientCommand(...V4_ARGS, "-d", "nobody-listens"));
  const elapsed = performance.now() - started;
  assertEquals(second.code, 0, second.stderr);
  assertEquals(second.stdout, "0\n");
  assert(elapsed < 1500, `answered at once, took ${Math.round(elapsed)} ms`);
  first.kill("SIGTERM");
  const out = await first.output();
  assertEquals(new TextDecoder().decode(out.stdout), "0\n");
});

e2e(
  "the ifupdown if-up hook moves the connected and default routes into the leased table",
  async () => {
    await using ns = await createNetns();
    await using server = await startServer({ netns: ns.name });
    await ns.ip("-4", "route", "add", "default", "via", "192.0.2.1", "dev", A.ifname);
    const started = performance.now();
    const result = await ns.run(["sh", `${HOOKS}ifupdown-if-up`], {
      env: {
        TA_CLIENT,
        TA_SOCKET: server.socketName,
        METHOD: "static",
        ADDRFAM: "inet",
        IFACE: A.ifname,
        IF_ADDRESS: A.ipv4,
        IF_NETMASK: A.ipv4Netmask,
        IF_GATEWAY: "192.0.2.1",
      },
    });
    assertEquals(result.code, 0, result.stderr);
    assert(performance.now() - started < 3000, "the hook does not wait for the background client");
    assertEquals(await routes(ns, 10000), [
      `default via 192.0.2.1 dev ${A.ifname} src ${A.ipv4}`,
      `${A.ipv4Network} dev ${A.ifname} scope link src ${A.ipv4}`,
    ]);
    assertEquals(await routes(ns, "main"), []);
    assertEquals((await ns.pidsOf("client.ts")).length, 1);
  },
);

e2e(
  "the dhclient enter hook configures the leased table and keeps dhclient-script off the main table",
  async () => {
    await using ns = await createNetns();
    await using server = await startServer({ netns: ns.name });
    const result = await ns.run(
      ["sh", "-c", `. '${HOOKS}dhclient-enter-hook'; echo "reason=\${reason-unset}"`],
      {
        env: {
          TA_CLIENT,
          TA_SOCKET: server.socketName,
          reason: "BOUND",
          interface: A.ifname,
          new_ip_address: A.ipv4,
          new_subnet_mask: A.ipv4Netmask,
          new_network_number: "192.0.2.0",
          new_routers: "192.0.2.1",
        },
      },
    );
    assertEquals(result.code, 0, result.stderr);
    assertEquals(result.stdout, "reason=unset\n");
    assertEquals(await routes(ns, 10000), [
      `default via 192.0.2.1 dev ${A.ifname} src ${A.ipv4}`,
      `${A.ipv4Network} dev ${A.ifname} scope link src ${A.ipv4}`,
    ]);
    assertEquals(await routes(ns, "main"), []);
  },
);

e2e(
  "the NetworkManager dispatcher hook copies the routes into the leased table on up",
  async () => {
    await using ns = await createNetns();
    await using server = await startServer({ netns: ns.name });
    const result = await ns.run(["sh", `${HOOKS}networkmanager-dispatcher`, A.ifname, "up"], {
      env: {
        TA_CLIENT,
        TA_SOCKET: server.socketName,
        DEVICE_IP_IFACE: A.ifname,
        IP4_ADDRESS_0: `${A.ipv4}/${A.ipv4Prefix} 192.0.2.1`,
        IP4_GATEWAY: "192.0.2.1",
      },
    });
    assertEquals(result.code, 0, result.stderr);
    assertEquals(await routes(ns, 10000), [
      `default via 192.0.2.1 dev ${A.ifname} src ${A.ipv4}`,
      `${A.ipv4Network} dev ${A.ifname} scope link src ${A.ipv4}`,
    ]);
    assertEquals((await ns.pidsOf("client.ts")).length, 1);
  },
);

e2e("the hooks fall back to the main table when the client prints 0", async () => {
  await using ns = await createNetns();
  await ns.ip("-4", "route", "add", "default", "via", "192.0.2.1", "dev", A.ifname);
  const before = await routes(ns, "main");
  // A stand-in client that prints 0 at once, as the real one does after 10 s without a server.
  const result = await ns.run(["sh", `${HOOKS}ifupdown-if-up`], {
    env: {
      TA_CLIENT: "echo 0",
      METHOD: "static",
      ADDRFAM: "inet",
      IFACE: A.ifname,
      IF_ADDRESS: A.ipv4,
      IF_NETMASK: A.ipv4Netmask,
      IF_GATEWAY: "192.0.2.1",
    },
  });
  assertEquals(result.code, 0, result.stderr);
  assertEquals(await routes(ns, "main"), before);
});
