/**
 * End-to-end: `table-allocator-ctl` as a process against the real server
 * process, with leases made over the wire the way the C client makes
 * them. The server answers control requests only to root, so the tests
 * that talk to it skip when not run as root.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { NOBODY, stageAsUser } from "./helpers/as_user.ts";
import { ctl, type CtlResult } from "./helpers/ctl.ts";
import { e2eTest } from "./helpers/e2e.ts";
import { type ServerHandle, startServer } from "./helpers/server.ts";
import { WireClient } from "./helpers/wire.ts";
import { VERSION } from "../src/version.ts";

// The server answers control requests only to root: the tests that talk to it need root.

/** Runs ctl against `server`. */
function ctlOn(server: ServerHandle, ...args: string[]): Promise<CtlResult> {
  return ctl(["-d", server.socketName, ...args]);
}

/** Runs ctl against `server`, expects success, and returns stdout. */
async function ok(server: ServerHandle, ...args: string[]): Promise<string> {
  const result = await ctlOn(server, ...args);
  assertEquals(
    { code: result.code, stderr: result.stderr },
    { code: 0, stderr: "" },
    `ctl ${args.join(" ")}:\n${result.stdout}`,
  );
  return result.stdout;
}

/** Runs ctl with --json, expects success and one JSON object on one line. */
async function json(server: ServerHandle, ...args: string[]): Promise<Record<string, unknown>> {
  const stdout = await ok(server, "--json", ...args);
  assert(stdout.endsWith("\n") && stdout.indexOf("\n") === stdout.length - 1, "one line");
  const parsed = JSON.parse(stdout);
  assert(typeof parsed === "object" && parsed !== null && !Array.isArray(parsed), "an object");
  return parsed;
}

/** Data rows of a human-readable table (header and footer lines left out). */
function rows(stdout: string): string[][] {
  const lines = stdout.trimEnd().split("\n");
  assertMatch(lines[0], /^FAMILY +IFNAME +ADDRESS +TABLE +STATE +EXPIRES +TAG +OWNER +UID$/);
  return lines.slice(1).filter((l) => !l.startsWith("more leases")).map((l) =>
    // EXPIRES is "ISO (in 59m 3s)": keep it one cell.
    l.replace(/ \((in [^)]*|expired)\)/, (m) => m.replaceAll(" ", "_")).split(/ +/)
  );
}

e2eTest("ctl status reports version, pid, socket, store, families, lease counts and pools", {
  root: true,
}, async () => {
  await using server = await startServer();
  using client = new WireClient(server.socketName);
  await client.request("192.0.2.1");
  await client.request("192.0.2.2");
  await client.request("2001:db8::1", { family: 10 });

  const text = await ok(server, "status");
  const lines = text.split("\n");
  assertEquals(lines.slice(0, 7).map((l) => l.replace(/ +/, " ")), [
    `version ${VERSION}`,
    `pid ${server.process.pid}`,
    lines[2].replace(/ +/, " "),
    `socket @${server.socketName}`,
    `store sqlite:${server.dbPath}`,
    "families inet, inet6, unspec",
    "leases 3 bound, 0 reserved, 0 held, 0 outside the pools",
  ]);
  assertMatch(lines[2], /^uptime +\d+s$/);
  assertEquals(lines[7], "");
  assertMatch(lines[8], /^POOL +FAMILY +RANGES +SELECTORS +SIZE +BOUND +RESERVED +HELD +FREE$/);
  assertEquals(lines.slice(9, 12).map((l) => l.split(/ +/)), [
    ["default", "inet", "10000-10039", "any", "40", "2", "0", "0", "38"],
    ["default", "inet6", "10000-10039", "any", "40", "1", "0", "0", "39"],
    ["default", "unspec", "10000-10039", "any", "40", "0", "0", "0", "40"],
  ]);

  const status = await json(server, "status");
  assertEquals(status.pid, server.process.pid);
  assertEquals(status.version, VERSION);
  assertEquals([...(status.families as number[])].sort((a, b) => a - b), [0, 2, 10]);
  assertEquals(status.leases, { bound: 3, reserved: 0, outside_pools: 0, held: 0 });
});

e2eTest(
  "ctl pools shows each pool's size, bound, reserved and free tables",
  { root: true },
  async () => {
    await using server = await startServer({
      config: { addr_families: { inet: true, inet6: false, unspec: false } },
    });
    using client = new WireClient(server.socketName);
    await client.request("192.0.2.1");
    await ok(server, "reserve", "10030", "--ifname", "eth7", "--family", "inet");
    assertEquals(
      (await ok(server, "pools")).split("\n").map((l) => l.split(/ +/)),
      [
        ["POOL", "FAMILY", "RANGES", "SELECTORS", "SIZE", "BOUND", "RESERVED", "HELD", "FREE"],
        ["default", "inet", "10000-10039", "any", "40", "1", "1", "0", "38"],
        [""],
      ],
    );
    assertEquals(await json(server, "pools"), {
      pools: [{
        name: "default",
        family: 2,
        ranges: [{ first: 10000, last: 10039 }],
        tags: [],
        ifnames: [],
        size: 40,
        bound: 1,
        reserved: 1,
        held: 0,
        free: 38,
      }],
    });
  },
);

e2eTest("ctl leases pages with --limit, follows every cursor with --all, and filters", {
  root: true,
}, async () => {
  await using server = await startServer();
  using client = new WireClient(server.socketName);
  for (let i = 1; i <= 7; i++) await client.request(`192.0.2.${i}`);
  await client.request("192.0.2.8", { ifname: "eth2" });
  await client.request("2001:db8::1", { family: 10 });
  await client.request("2001:db8::2", { family: 10, ifname: "eth2" });
  await client.release("192.0.2.7");

  // One page by default, with a hint how to go on.
  const page = await ok(server, "leases", "--limit", "3");
  assertEquals(rows(page).length, 3);
  assertMatch(page, /\nmore leases follow: add --after \S+, or --all\n$/);
  const first = await json(server, "leases", "--limit", "3");
  assertEquals((first.leases as unknown[]).length, 3);
  assertEquals(typeof first.next, "string");
  const second = await json(server, "leases", "--limit", "3", "--after", first.next as string);
  assertEquals((second.leases as unknown[]).length, 3);

  // --all: 10 leases (9 bound, 1 released) in pages of 3.
  const all = rows(await ok(server, "leases", "--all", "--limit", "3"));
  assertEquals(all.length, 10);
  const allJson = await json(server, "leases", "--all", "--limit", "3");
  assertEquals(allJson.next, null);
  const leases = allJson.leases as Array<Record<string, unknown>>;
  assertEquals(leases.length, 10);
  assertEquals(
    new Set(leases.map((l) => `${l.family}/${l.ifname}/${l.address}`)).size,
    10,
    "every lease once",
  );

  const v6 = rows(await ok(server, "leases", "--family", "inet6", "--all"));
  assertEquals(v6.map((r) => [r[0], r[2]]).sort(), [["inet6", "2001:db8::1"], [
    "inet6",
    "2001:db8::2",
  ]]);
  const eth2 = rows(await ok(server, "leases", "--ifname", "eth2", "--all"));
  assertEquals(eth2.map((r) => r[2]).sort(), ["192.0.2.8", "2001:db8::2"]);
  const released = rows(await ok(server, "leases", "--state", "released"));
  assertEquals(released.map((r) => [r[2], r[4]]), [["192.0.2.7", "released"]]);
  const bound4 = rows(
    await ok(server, "leases", "--state", "bound", "--family", "4", "--ifname", "eth1"),
  );
  assertEquals(bound4.map((r) => r[2]).sort(), [
    "192.0.2.1",
    "192.0.2.2",
    "192.0.2.3",
    "192.0.2.4",
    "192.0.2.5",
    "192.0.2.6",
  ]);
});

e2eTest(
  "ctl show finds a lease by table and by identity, with its expiry",
  { root: true },
  async () => {
    await using server = await startServer();
    using client = new WireClient(server.socketName);
    await client.request("192.0.2.1", { tag: "wan" });
    await client.request("2001:db8::5", { family: 10, ifname: "eth3" });

    const byTable = rows(await ok(server, "show", "--family", "inet", "10000"));
    assertEquals(byTable.length, 1);
    const [family, ifname, address, table, state, expires, tag, owner] = byTable[0];
    assertEquals([family, ifname, address, table, state, tag, owner], [
      "inet",
      "eth1",
      "192.0.2.1",
      "10000",
      "bound",
      "wan",
      "table-allocator-server",
    ]);
    assertMatch(expires, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ_\(in_(59m_\d+s|1h)\)$/);

    // By identity, the address in any spelling.
    const byIdentity = rows(
      await ok(server, "show", "--family", "6", "--ifname", "eth3", "--address", "2001:DB8:0::5"),
    );
    assertEquals(byIdentity.map((r) => r.slice(0, 5)), [[
      "inet6",
      "eth3",
      "2001:db8::5",
      "10000",
      "bound",
    ]]);

    const shown = await json(
      server,
      "show",
      "--family",
      "inet",
      "--ifname",
      "eth1",
      "--address",
      "192.0.2.1",
    );
    const [lease] = shown.leases as Array<Record<string, unknown>>;
    assert(
      Math.abs((lease.expires_at as number) - (Date.now() + 3600_000)) < 10_000,
      `expires_at ${lease.expires_at}`,
    );
    assertEquals(await ok(server, "show", "--family", "inet", "10039"), "no lease matches\n");
  },
);

e2eTest("ctl release ends a bound lease: it shows as released and a wire request gets the table", {
  root: true,
}, async () => {
  await using server = await startServer();
  using client = new WireClient(server.socketName);
  assertEquals((await client.request("192.0.2.1")).table, 10000);
  assertEquals((await client.request("192.0.2.2")).table, 10001);

  assertMatch(
    await ok(server, "release", "--family", "inet", "10000"),
    /^released table 10000 of inet eth1 192\.0\.2\.1\ntable 10000 of inet stays held for eth1 192\.0\.2\.1 until it confirms, at the latest \S+Z\n$/,
  );
  const shown = rows(
    await ok(server, "show", "--family", "inet", "--ifname", "eth1", "--address", "192.0.2.1"),
  );
  assertEquals(shown.map((r) => [r[3], r[4]]), [["10000", "released"]]);
  assertEquals(server.leases().map((l) => l.address), ["192.0.2.2"]);
  // The holder's rules may still use 10000: nobody else gets it until the holder confirms.
  assertEquals((await client.request("192.0.2.3")).table, 10002, "the table is held");
  assertEquals((await client.release("192.0.2.1")).table, 0);
  assertEquals((await client.request("192.0.2.4")).table, 10000, "confirmed: free again");

  // By identity; a second release is refused with the server's reason.
  assertMatch(
    await ok(server, "release", "--family", "inet", "--ifname", "eth1", "--address", "192.0.2.2"),
    /^released table 10001 of inet eth1 192\.0\.2\.2\n/,
  );
  const again = await ctlOn(server, "release", "--family", "inet", "10001");
  assertEquals(again.code, 1);
  assertEquals(again.stdout, "");
  assertEquals(
    again.stderr,
    "table-allocator-ctl: release: not_found: no bound lease on table 10001 of family inet\n",
  );
});

e2eTest("ctl reserve holds a table for its interface: others never get it, the owner does", {
  root: true,
}, async () => {
  await using server = await startServer();
  using client = new WireClient(server.socketName);
  assertEquals(
    await ok(server, "reserve", "10000", "--ifname", "eth5", "--family", "inet"),
    "reserved table 10000 for inet eth5 (every address)\n",
  );
  for (let i = 1; i <= 3; i++) {
    assertEquals((await client.request(`192.0.2.${i}`)).table, 10000 + i, "others skip it");
  }
  // Only inet was reserved: the inet6 pool still gives 10000 away.
  assertEquals((await client.request("2001:db8::1", { family: 10 })).table, 10000);
  assertEquals((await client.request("192.0.2.50", { ifname: "eth5" })).table, 10000);
  const held = rows(await ok(server, "show", "--family", "inet", "10000"));
  assertEquals(held.map((r) => [r[1], r[2], r[4]]).sort(), [
    ["eth5", "*", "reserved"],
    ["eth5", "192.0.2.50", "bound"],
  ]);

  // One address only, in one family.
  assertEquals(
    await ok(
      server,
      "reserve",
      "10020",
      "--ifname",
      "eth6",
      "--family",
      "6",
      "--address",
      "2001:db8::60",
    ),
    "reserved table 10020 for inet6 eth6 2001:db8::60\n",
  );
  const other = await client.request("2001:db8::61", { family: 10, ifname: "eth6" });
  assert(other.table !== 10020, `another address of eth6 got ${other.table}`);
  assertEquals(
    (await client.request("2001:db8::60", { family: 10, ifname: "eth6" })).table,
    10020,
  );
});

e2eTest("ctl unreserve gives a reserved table back to everyone", { root: true }, async () => {
  await using server = await startServer();
  using client = new WireClient(server.socketName);
  assertEquals(
    await ok(server, "reserve", "10000", "--ifname", "eth5"),
    [
      "reserved table 10000 for inet eth5 (every address)",
      "reserved table 10000 for inet6 eth5 (every address)",
      "reserved table 10000 for unspec eth5 (every address)",
      "",
    ].join("\n"),
  );
  assertEquals((await client.request("192.0.2.1")).table, 10001);
  assertEquals(
    await ok(server, "unreserve", "10000", "--family", "inet"),
    "removed the reservation of table 10000 for inet eth5 (every address)\n",
  );
  assertEquals((await client.request("192.0.2.2")).table, 10000, "free for anyone now");
  assertEquals(
    (await client.request("2001:db8::1", { family: 10 })).table,
    10001,
    "inet6 still reserved",
  );
  const rest = await ok(server, "unreserve", "10000");
  assertEquals(rest.split("\n").length, 3, rest);

  const again = await ctlOn(server, "unreserve", "10000");
  assertEquals([again.code, again.stdout], [1, ""]);
  assertEquals(
    again.stderr,
    "table-allocator-ctl: unreserve: not_found: table 10000 is not reserved\n",
  );
});

e2eTest("ctl reserve of a table bound to another identity is refused with the server's reason", {
  root: true,
}, async () => {
  await using server = await startServer();
  using client = new WireClient(server.socketName);
  assertEquals((await client.request("192.0.2.1")).table, 10000);
  const refused = await ctlOn(server, "reserve", "10000", "--ifname", "eth9", "--family", "inet");
  assertEquals([refused.code, refused.stdout], [1, ""]);
  assertMatch(
    refused.stderr,
    /^table-allocator-ctl: reserve: conflict: table 10000 of family inet is leased to eth1 192\.0\.2\.1 until \S+; release it first\n$/,
  );
  assertEquals(server.allLeases().filter((l) => l.state === "reserved"), [], "nothing written");
});

e2eTest("ctl reserve refuses the kernel's tables 0 and 253 to 255, and so does the server", {
  root: true,
}, async () => {
  await using server = await startServer();
  for (const table of ["0", "253", "254", "255"]) {
    const refused = await ctlOn(server, "reserve", table, "--ifname", "eth0");
    assertEquals([refused.code, refused.stdout], [2, ""], table);
    assertMatch(
      refused.stderr,
      table === "0" ? /TABLE must be an integer from 1/ : /kernel's tables/,
    );
  }
  // A control client other than ctl is refused by the server itself.
  using client = new WireClient(server.socketName);
  const reply = await client.call(
    '{"version":1,"cmd":16,"op":"reserve","table":254,"ifname":"eth0","family":2}',
  );
  assertEquals(reply.error, "bad_request");
  assertMatch(
    String(reply.message),
    /table 254 is one of the kernel's tables .* cannot be reserved/,
  );
  assertEquals(server.allLeases().filter((l) => l.state === "reserved"), []);
});

e2eTest("ctl --json prints each command's result as one JSON object", { root: true }, async () => {
  await using server = await startServer();
  using client = new WireClient(server.socketName);
  await client.request("192.0.2.1");
  const cases: Array<[string[], string]> = [
    [["status"], "pools"],
    [["pools"], "pools"],
    [["leases"], "leases"],
    [["show", "--family", "inet", "10000"], "leases"],
    [["reserve", "10005", "--ifname", "eth0", "--family", "inet"], "reserved"],
    [["unreserve", "10005"], "removed"],
    [["release", "--family", "inet", "10000"], "released"],
  ];
  for (const [args, key] of cases) {
    const result = await json(server, ...args);
    assert(key in result, `${args[0]}: ${JSON.stringify(result)}`);
  }
});

Deno.test("ctl says the server is not running when no socket is bound, with exit 1", async () => {
  const socket = `ctl-none-${crypto.randomUUID().slice(0, 8)}`;
  const result = await ctl(["-d", socket, "status"]);
  assertEquals(result, {
    code: 1,
    stdout: "",
    stderr:
      `table-allocator-ctl: the server is not running on @${socket} (no socket bound in this network namespace)\n`,
  });
});

e2eTest(
  "ctl in another network namespace does not see the server",
  { netns: true },
  async ({ netns }) => {
    await using server = await startServer();
    const result = await ctl(["-d", server.socketName, "status"], { netns: netns.name });
    assertEquals(result.code, 1);
    assertMatch(
      result.stderr,
      /the server is not running on @ta-\S+ \(no socket bound in this network namespace\)/,
    );
    await ok(server, "status");
  },
);

e2eTest(
  "ctl gives up after --timeout when the server does not answer",
  { root: true },
  async () => {
    await using server = await startServer();
    Deno.kill(server.process.pid, "SIGSTOP");
    try {
      const started = performance.now();
      const result = await ctlOn(server, "--timeout", "300", "status");
      const elapsed = performance.now() - started;
      assertEquals([result.code, result.stdout], [1, ""]);
      assertMatch(
        result.stderr,
        new RegExp(
          `^table-allocator-ctl: no reply to status from @${server.socketName} within 300 ms `,
        ),
      );
      assert(elapsed >= 300, `returned after ${elapsed} ms`);
    } finally {
      Deno.kill(server.process.pid, "SIGCONT");
    }
    await ok(server, "status");
  },
);

e2eTest("the server refuses control requests from a non-root user with not_permitted", {
  root: true,
}, async () => {
  await using server = await startServer();
  using client = new WireClient(server.socketName);
  await client.request("192.0.2.1");
  // Copied where nobody may read it: the checkout itself may be readable by root only.
  await using nobody = await stageAsUser("ctl.ts", NOBODY);
  const asNobody = (...args: string[]) => ctl(["-d", server.socketName, ...args], { as: nobody });
  const status = await asNobody("status");
  assertEquals([status.code, status.stdout], [1, ""]);
  assertEquals(
    status.stderr,
    "table-allocator-ctl: status: not_permitted: control requests are answered only to root (uid 0), got uid 65534\n",
  );
  const release = await asNobody("release", "--family", "inet", "10000");
  assertEquals(release.code, 1);
  assertMatch(release.stderr, /^table-allocator-ctl: release: not_permitted: /);
  assertEquals(server.leases().map((l) => [l.address, l.state]), [["192.0.2.1", "bound"]]);
});
