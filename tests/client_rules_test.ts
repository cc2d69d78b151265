/**
 * End-to-end: the client against the real server, each case in a fresh
 * network namespace with a veth pair. The three rules appear with exact
 * selectors, priorities and table, for IPv4 and IPv6, and go away (with
 * the lease released at the server) when the address is deleted, the link
 * is deleted, on SIGTERM (of the host agent that holds the lease) and on
 * `-r`.
 *
 * @module
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import {
  clientCommand,
  createNetns,
  IS_ROOT,
  type Netns,
  NETNS_ADDRESSES as A,
  ROOT_SKIP_REASON,
  waitFor,
} from "./helpers/netns.ts";
import { type ServerHandle, startServer } from "./helpers/server.ts";
import { waitUnbound } from "./helpers/agent.ts";

if (!IS_ROOT) console.warn(`client_rules_test.ts skipped: ${ROOT_SKIP_REASON}`);

const PRIORITIES = ["10000:", "20000:", "91000:"];

/** Our rules in `ip rule show` notation, in priority order. */
async function ourRules(ns: Netns, family: 4 | 6): Promise<string[]> {
  const text = await ns.ip(`-${family}`, "rule", "show");
  return text.split("\n").filter((line) => PRIORITIES.some((p) => line.startsWith(p)));
}

const FAMILIES = [
  {
    family: 4 as const,
    number: 2,
    name: "inet",
    flag: "-4",
    address: A.ipv4,
    // A dotted netmask: the client must turn it into /24 and mask the address.
    netmask: A.ipv4Netmask,
    expected: (t: number) => [
      `10000:\tfrom ${A.ipv4} lookup ${t}`,
      `20000:\tfrom all to ${A.ipv4Network} lookup ${t}`,
      `91000:\tfrom all iif lo lookup ${t}`,
    ],
    deleteAddress: (ns: Netns) =>
      ns.ip("addr", "del", `${A.ipv4}/${A.ipv4Prefix}`, "dev", A.ifname),
  },
  {
    family: 6 as const,
    number: 10,
    name: "inet6",
    flag: "-6",
    address: A.ipv6,
    netmask: String(A.ipv6Prefix),
    expected: (t: number) => [
      `10000:\tfrom ${A.ipv6} lookup ${t}`,
      `20000:\tfrom all to ${A.ipv6Network} lookup ${t}`,
      `91000:\tfrom all iif lo lookup ${t}`,
    ],
    deleteAddress: (ns: Netns) =>
      ns.ip("-6", "addr", "del", `${A.ipv6}/${A.ipv6Prefix}`, "dev", A.ifname),
  },
];

type Family = typeof FAMILIES[number];

const ENDINGS: Array<{
  name: string;
  end: (ns: Netns, f: Family, server: ServerHandle, pid: number) => Promise<void>;
}> = [
  { name: "the address is deleted", end: (ns, f) => f.deleteAddress(ns).then(() => {}) },
  {
    name: "the link is deleted",
    end: (ns) => ns.ip("link", "del", A.ifname).then(() => {}),
  },
  {
    name: "it gets SIGTERM",
    end: (_ns, _f, _s, pid) => Promise.resolve(Deno.kill(pid, "SIGTERM")),
  },
  {
    name: "-r is run for its identity",
    end: async (ns, f, server) => {
      const r = await ns.run(
        clientCommand(f.flag, "-a", f.address, "-i", A.ifname, "-d", server.socketName, "-r"),
      );
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout, "");
    },
  },
];

/** The command line a hook runs for the family's address on the veth interface. */
function hookCommand(f: Family, server: ServerHandle): string[] {
  return clientCommand(
    f.flag,
    "-a",
    f.address,
    "-n",
    f.netmask,
    "-i",
    A.ifname,
    "-d",
    server.socketName,
  );
}

/** Starts a hook-style client (the agent holds the lease) and returns its table and the agent's pid. */
async function startClient(ns: Netns, server: ServerHandle, f: Family) {
  const result = await ns.run(hookCommand(f, server));
  assertEquals(result.code, 0, result.stderr);
  assert(/^\d+\n$/.test(result.stdout), `stdout is a table and a newline: ${result.stdout}`);
  const table = Number(result.stdout);
  assert(table >= 10000, `a table from the pool, got ${table}`);
  const pids = await waitFor("the host agent runs", async () => {
    const found = await ns.pidsOf("client.ts");
    return found.length === 1 && found;
  });
  return { table, pid: pids[0] };
}

for (const f of FAMILIES) {
  for (const ending of ENDINGS) {
    Deno.test({
      name: `client installs the three IPv${f.family} rules and removes them when ${ending.name}`,
      ignore: !IS_ROOT,
      sanitizeResources: false,
      sanitizeOps: false,
      fn: async () => {
        await using ns = await createNetns();
        await using server = await startServer({ netns: ns.name });
        const { table, pid } = await startClient(ns, server, f);
        assertEquals(
          await ourRules(ns, f.family),
          f.expected(table),
          `the rules once the hook printed the table; the agent's log:\n${ns.agentLog()}`,
        );
        assertEquals(
          server.leases().map((l) => [l.family, l.ifname, l.address, l.table]),
          [[f.number, A.ifname, f.address, table]],
        );

        await ending.end(ns, f, server, pid);

        // The agent lets the identity go (and, on SIGTERM, exits).
        await waitUnbound(ns, `${A.ifname}-${f.address}-${f.number}`);
        // Rules do not depend on the link, so they must be deleted in every case.
        assertEquals(await ourRules(ns, f.family), []);
        assertEquals(server.leases(), [], "the server shows the lease released");
        await server.waitForLog(new RegExp(`released family=${f.name} .*table=${table}`), 1000);
      },
    });
  }
}

Deno.test({
  name: "client with family unspec gets a lease and installs no rules",
  ignore: !IS_ROOT,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await using ns = await createNetns();
    await using server = await startServer({ netns: ns.name });
    const before = [await ns.ip("-4", "rule", "show"), await ns.ip("-6", "rule", "show")];
    const result = await ns.run(
      clientCommand("-a", "some-id", "-i", A.ifname, "-d", server.socketName),
    );
    assertEquals(result.code, 0, result.stderr);
    assertEquals(result.stdout, "10000\n");
    await waitFor(
      "the background client runs",
      async () => (await ns.pidsOf("client.ts")).length === 1,
    );
    assertEquals([await ns.ip("-4", "rule", "show"), await ns.ip("-6", "rule", "show")], before);
    assertEquals(server.leases().map((l) => [l.family, l.address]), [[0, "some-id"]]);
    Deno.kill((await ns.pidsOf("client.ts"))[0], "SIGTERM");
    await waitFor("the client exits", async () => (await ns.pidsOf("client.ts")).length === 0);
    assertEquals(server.leases(), []);
  },
});

Deno.test({
  name: "client appends log lines that name the identity and table to its -l file",
  ignore: !IS_ROOT,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await using ns = await createNetns();
    await using server = await startServer({ netns: ns.name });
    const log = await Deno.makeTempFile({ prefix: "ta-client-", suffix: ".log" });
    await using _log = { [Symbol.asyncDispose]: () => Deno.remove(log) };
    await Deno.writeTextFile(log, "earlier line\n");
    const args = ["-4", "-a", A.ipv4, "-n", "24", "-i", A.ifname, "-d", server.socketName];
    const result = await ns.run(clientCommand(...args, "-l", log));
    assertEquals(result.stdout, "10000\n");
    assertEquals(result.stderr, "", "with -l nothing goes to stderr");
    await FAMILIES[0].deleteAddress(ns);
    await waitUnbound(ns, `${A.ifname}-${A.ipv4}-2`);
    const lines = (await Deno.readTextFile(log)).split("\n");
    assertEquals(lines[0], "earlier line", "appended, not truncated");
    const id = `identity=${A.ifname}-${A.ipv4}-2`;
    for (
      const event of [
        "lease granted",
        "rules installed",
        "moved to the background",
        "stopping",
        "lease released",
      ]
    ) {
      assert(
        lines.some((l) => l.includes(` ${event} ${id} table=10000`)),
        `a line "${event} ${id} table=10000" in:\n${lines.join("\n")}`,
      );
    }
    assert(
      lines.some((l) => l.includes(`reason="address ${A.ipv4} was deleted from ${A.ifname}"`)),
    );
  },
});

Deno.test({
  name:
    "client deletes rules a killed client left behind, and keeps those of the table's new holder",
  ignore: !IS_ROOT,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await using ns = await createNetns();
    await using server = await startServer({ netns: ns.name, config: { table_timeout: 2 } });
    const f = FAMILIES[0];
    // A foreground holder (the agent would take the lease back after a crash): killed, it
    // cannot clean up.
    const first = ns.spawn([...hookCommand(f, server), "-f"]);
    const reader = first.stdout.pipeThrough(new TextDecoderStream()).getReader();
    assertEquals((await reader.read()).value, "10000\n");
    reader.releaseLock();
    await waitFor("its rules are in", async () => (await ourRules(ns, 4)).length === 3);
    first.kill("SIGKILL"); // no clean-up: its rules stay, its lease expires
    await first.status;
    await server.waitForLog(/ INFO expired .*table=10000/, 5000);

    // Another address of the interface now gets table 10000.
    const other = "192.0.2.20";
    await ns.ip("addr", "add", `${other}/${A.ipv4Prefix}`, "dev", A.ifname);
    const holder = await ns.run(
      clientCommand("-4", "-a", other, "-n", "24", "-i", A.ifname, "-d", server.socketName),
    );
    assertEquals(holder.stdout, "10000\n", holder.stderr);

    // The restarted client gets 10001, and its old from-rule must not shadow the new one.
    const again = await ns.run(hookCommand(f, server));
    assertEquals(again.stdout, "10001\n", again.stderr);
    await waitFor("the leftover rule is gone", async () => {
      const rules = await ourRules(ns, 4);
      return !rules.includes(`10000:\tfrom ${f.address} lookup 10000`) && rules;
    });
    assertEquals(
      (await ourRules(ns, 4)).toSorted(),
      [
        `10000:\tfrom ${f.address} lookup 10001`,
        `10000:\tfrom ${other} lookup 10000`,
        `20000:\tfrom all to ${A.ipv4Network} lookup 10000`,
        `20000:\tfrom all to ${A.ipv4Network} lookup 10001`,
        `91000:\tfrom all iif lo lookup 10000`,
        `91000:\tfrom all iif lo lookup 10001`,
      ].toSorted(),
    );
  },
});

Deno.test({
  name:
    "hasAddress() tells from the kernel's address dump whether an interface still has an address",
  ignore: !IS_ROOT,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await using ns = await createNetns();
    // The check runs inside the namespace, as the client does: a tiny script through the real FFI.
    const script = `
      import { hasAddress } from "${new URL("../src/agent/addresses.ts", import.meta.url).href}";
      import { ifNameToIndex } from "${new URL("../ffi/libc.ts", import.meta.url).href}";
      import { parseIPv4, parseIPv6 } from "${new URL("../src/net/ip.ts", import.meta.url).href}";
      const index = ifNameToIndex("${A.ifname}");
      console.log(JSON.stringify([
        await hasAddress(2, index, parseIPv4("${A.ipv4}")),
        await hasAddress(10, index, parseIPv6("${A.ipv6}")),
        await hasAddress(2, index, parseIPv4("198.51.100.1")),
      ]));`;
    const check = async () => {
      const result = await ns.run([Deno.execPath(), "eval", script]);
      assertEquals(result.code, 0, result.stderr);
      return JSON.parse(result.stdout);
    };
    assertEquals(await check(), [true, true, false]);
    await FAMILIES[0].deleteAddress(ns);
    assertEquals(await check(), [false, true, false]);
  },
});
