/**
 * End-to-end: tables held back for one identity. After `ctl release` of a
 * live lease: the notice to the holder, no other identity gets the table
 * until the holder confirms (our agent) or the old expiry passes (a C
 * client), and a holder that asks again gets it back. After a lost
 * database: in a network namespace with a real client holding a lease,
 * the server finds the table in the kernel's rules, a new identity never
 * gets it, and the holder does when it asks.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { ctl } from "./helpers/ctl.ts";
import { e2eTest } from "./helpers/e2e.ts";
import { clientCommand, NETNS_ADDRESSES as A, waitFor } from "./helpers/netns.ts";
import { parsePrometheusText } from "./helpers/prometheus.ts";
import { readLeases, startServer } from "./helpers/server.ts";
import { WireClient } from "./helpers/wire.ts";

e2eTest("ctl release of a live lease notifies the holder and holds the table until it confirms", {
  root: true, // ctl
}, async () => {
  await using server = await startServer({
    config: { num_tables: 2, addr_families: { inet: true } },
  });
  // The holder listens on the identity's name, as our agent and the C client do.
  using holder = new WireClient(server.socketName, "eth1-10.0.0.1-2");
  using other = new WireClient(server.socketName);
  assertEquals((await holder.request("10.0.0.1")).table, 10000);
  const released = await ctl(["-d", server.socketName, "release", "--family", "inet", "10000"]);
  assertEquals(released.code, 0, released.stderr);
  assertMatch(
    released.stdout,
    /^released table 10000 of inet eth1 10\.0\.0\.1\ntable 10000 of inet stays held for eth1 10\.0\.0\.1 until it confirms, at the latest \S+Z\n$/,
  );
  assertEquals(await holder.receive(), {
    version: 1,
    cmd: 4,
    notice: "revoked",
    table: 10000,
    addr_family: 2,
    ifname: "eth1",
    address: "10.0.0.1",
  });
  await server.waitForLog(
    /revoke notice sent family=inet ifname=eth1 address=10\.0\.0\.1 table=10000/,
  );
  // Nobody else gets 10000 while the holder's rules may still point at it.
  assertEquals((await other.request("10.0.0.2")).table, 10001);
  assertEquals((await other.request("10.0.0.3")).error, "pool_exhausted");
  const metrics = parsePrometheusText((await ctl(["-d", server.socketName, "metrics"])).stdout);
  assertEquals(metrics.value("table_allocator_leases", { pool: "default", state: "held" }), 1);
  const status = JSON.parse((await ctl(["-d", server.socketName, "--json", "pools"])).stdout);
  assertEquals(status.pools[0].free, 0);
  // The holder confirms with a plain release: the table is free again.
  assertEquals((await holder.release("10.0.0.1")).table, 0);
  await server.waitForLog(
    /hold ended family=inet ifname=eth1 address=10\.0\.0\.1 table=10000 reason=confirmed/,
  );
  assertEquals((await other.request("10.0.0.3")).table, 10000);
});

e2eTest("a held table comes back to a holder that asks again, or is free at the old expiry", {
  root: true,
}, async () => {
  await using server = await startServer({
    config: { num_tables: 1, table_timeout: 3, addr_families: { inet: true } },
  });
  using holder = new WireClient(server.socketName, "eth1-10.0.0.1-2");
  using other = new WireClient(server.socketName);
  const control = (...args: string[]) => ctl(["-d", server.socketName, ...args]);
  // A C client gets the notice, ignores it, and refreshes later: it gets its table back.
  assertEquals((await holder.request("10.0.0.1")).table, 10000);
  assertEquals((await control("release", "--family", "inet", "10000")).code, 0);
  assertEquals((await holder.receive())?.cmd, 4);
  assertEquals((await other.request("10.0.0.2")).error, "pool_exhausted");
  assertEquals((await holder.request("10.0.0.1")).table, 10000);
  assertMatch(await server.waitForLog(/ granted .*address=10\.0\.0\.1 .*held=yes/), /table=10000/);

  // One that never comes back: the table is free once its lease's old expiry passes.
  const before = readLeases(server.dbPath)[0].expiresAt;
  assertEquals((await control("release", "--family", "inet", "10000")).code, 0);
  assertEquals((await other.request("10.0.0.2")).error, "pool_exhausted");
  await server.waitForLog(/hold ended .*table=10000 reason=expired/, 6000);
  assert(Date.now() >= before, "not before the old expiry");
  assertEquals((await other.request("10.0.0.2")).table, 10000);
  // Nobody listens on the identity's name: the server says so and holds anyway.
  using gone = new WireClient(server.socketName);
  assertEquals((await gone.request("10.0.0.9", { ifname: "eth7" })).error, "pool_exhausted");
  assertEquals((await control("release", "--family", "inet", "10000")).code, 0);
  await server.waitForLog(/no holder listens on @eth1-10\.0\.0\.2-2/);
});

e2eTest(
  "after the database is lost, a table the kernel's rules still use goes back to its holder only",
  { netns: true, sanitize: false },
  async ({ netns: ns }) => {
    const config = { table_timeout: 8, addr_families: { inet: true, inet6: true } };
    const first = await startServer({ netns: ns.name, config });
    const { dir, socketName } = first;
    await using _dir = { [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
    const client = (address: string) =>
      ns.run(clientCommand("-4", "-a", address, "-n", "24", "-i", A.ifname, "-d", socketName));
    const holder = await client(A.ipv4);
    assertEquals(holder.stdout, "10000\n", holder.stderr);
    await waitFor(
      "the holder's rules",
      async () => (await ns.ip("-4", "rule", "show")).includes(`from ${A.ipv4} lookup 10000`),
    );
    await first.stop();
    // The database is gone (deleted, corrupted, replaced): every file of it.
    for (const entry of Deno.readDirSync(dir)) {
      if (entry.name.startsWith("leases.db")) Deno.removeSync(`${dir}/${entry.name}`);
    }
    await using second = await startServer({ netns: ns.name, dir, socketName, config });
    assertMatch(
      await second.waitForLog(/held for the address its kernel rule routes/),
      /family=inet address=192\.0\.2\.10 table=10000 until=/,
    );
    assertEquals(readLeases(second.dbPath), []);
    // A new identity asks first: it never gets 10000.
    await ns.ip("addr", "add", "192.0.2.11/24", "dev", A.ifname);
    const newcomer = await client("192.0.2.11");
    assertEquals(newcomer.stdout, "10001\n", newcomer.stderr);
    // The holder refreshes at half its lease (4 s) and gets its table back.
    await waitFor(
      "the holder's lease back on 10000",
      () => readLeases(second.dbPath).find((l) => l.address === A.ipv4)?.table === 10000,
      10_000,
    );
    await second.waitForLog(
      / granted family=inet ifname=veth0 address=192\.0\.2\.10 table=10000 .*held=yes/,
    );
    assert((await ns.ip("-4", "rule", "show")).includes(`from ${A.ipv4} lookup 10000`));
  },
);

e2eTest(
  "ctl release with the real agent: the rules go, the agent confirms, and no other identity gets the table before",
  { netns: true, sanitize: false },
  async ({ netns: ns }) => {
    await using server = await startServer({
      netns: ns.name,
      config: { num_tables: 2, addr_families: { inet: true } },
    });
    for (const address of ["192.0.2.11", "192.0.2.12"]) {
      await ns.ip("addr", "add", `${address}/24`, "dev", A.ifname);
    }
    const client = (address: string) =>
      ns.run(
        clientCommand("-4", "-a", address, "-n", "24", "-i", A.ifname, "-d", server.socketName),
      );
    const holderRule = `from ${A.ipv4} lookup 10000`;
    const rules = () => ns.ip("-4", "rule", "show");
    assertEquals((await client(A.ipv4)).stdout, "10000\n");
    assertEquals((await client("192.0.2.11")).stdout, "10001\n");
    assert((await rules()).includes(holderRule));

    // The admin release and a third identity's request at the same moment.
    const [released, asker] = await Promise.all([
      ctl(["-d", server.socketName, "release", "--family", "inet", "10000"], { netns: ns.name }),
      client("192.0.2.12"),
    ]);
    assertEquals(released.code, 0, released.stderr);
    // Whatever the order, the third identity got 10000 only once the holder's rules were gone.
    if (asker.stdout === "10000\n") assert(!(await rules()).includes(holderRule));
    else assertEquals(asker.stdout, "0\n", asker.stderr);

    await server.waitForLog(
      /hold ended family=inet ifname=veth0 address=192\.0\.2\.10 table=10000 reason=confirmed/,
    );
    const after = await rules();
    assert(!after.includes(holderRule), `the holder's rules are gone:\n${after}`);
    assert(after.includes(`from 192.0.2.11 lookup 10001`), "the other identity keeps its rules");
    assert(
      !readLeases(server.dbPath).some((l) => l.address === A.ipv4 && l.state === "bound"),
      "the agent does not ask again for the revoked identity",
    );
    const third = asker.stdout === "10000\n" ? asker : await client("192.0.2.12");
    assertEquals(third.stdout, "10000\n", third.stderr);
    assert((await rules()).includes(`from 192.0.2.12 lookup 10000`));
  },
);
