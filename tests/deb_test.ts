/**
 * End-to-end: the .deb. `make deb`, lintian, `dpkg -i` into this very
 * system (twice: install and reinstall), the installed launchers started
 * with no network and no module cache, the installed server (as its user,
 * the way its unit runs it) and client end to end in a network namespace,
 * the maintainer scripts and the server's and the agent's units under a
 * systemd booted in a container,
 * then `dpkg -P`, which must leave nothing behind. Idempotent: a package
 * left by an interrupted run is purged first, and always at the end.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import {
  createNetns,
  IS_ROOT,
  type Netns,
  NETNS_ADDRESSES as A,
  ROOT_SKIP_REASON,
  waitFor,
} from "./helpers/netns.ts";
import { bootContainer, type SystemdContainer } from "./helpers/systemd_container.ts";
import { startPostgres } from "./helpers/postgres.ts";
import { stripJsonComments } from "../config/jsonc.ts";
import { VERSION } from "../src/version.ts";

const TOP = fileURLToPath(new URL("..", import.meta.url));
const decoder = new TextDecoder();
const CACHE = "/var/cache/table-allocator/deno";
const PROGRAMS = [
  "/usr/sbin/table_allocator_server",
  "/usr/sbin/table_allocator_client",
  "/usr/bin/table-allocator-ctl",
];

const exists = (path: string) => {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
};
const SKIP = !IS_ROOT ||
  [
    "/usr/bin/dpkg-deb",
    "/usr/bin/lintian",
    "/usr/bin/systemd-nspawn",
    "/usr/bin/networkd-dispatcher",
  ]
    .some((path) => !exists(path));
if (SKIP) {
  console.warn(
    `deb_test.ts skipped: ${
      IS_ROOT
        ? "dpkg-deb, lintian, systemd-nspawn or networkd-dispatcher missing (make deps)"
        : ROOT_SKIP_REASON
    }`,
  );
}

async function run(
  command: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
) {
  const out = await new Deno.Command(command, {
    args,
    cwd: options.cwd ?? TOP,
    env: { DENO_NO_UPDATE_CHECK: "1", ...options.env },
    stdin: "null",
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** dpkg, waiting while another job (apt-get of a test's `make deps`) holds its lock. */
async function dpkg(...args: string[]) {
  const deadline = Date.now() + 300_000;
  for (;;) {
    const result = await run("dpkg", args);
    if (result.code === 0 || !/lock/i.test(result.stderr) || Date.now() > deadline) return result;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function purge() {
  const result = await dpkg("--purge", "table-allocator");
  assertEquals(result.code, 0, result.stderr);
}

/** The installed client asking the shipped server's socket for a table for an address of veth0. */
function requestTable(address: string): string[] {
  return [...installedClient(address), "-n", String(A.ipv4Prefix), "-d", "tas_socket"];
}

/** The installed client releasing that address's lease. */
function releaseTable(address: string): string[] {
  return [...installedClient(address), "-r", "-d", "tas_socket"];
}

/** The installed client for an IPv4 address of veth0 (the namespace's address, or one a test adds). */
function installedClient(address: string): string[] {
  return ["/usr/sbin/table_allocator_client", "-4", "-a", address, "-i", A.ifname];
}

/** Kills every process of the namespace (the server, background clients) and waits. */
async function stopAll(ns: Netns) {
  for (const pid of await ns.pids()) {
    try {
      Deno.kill(pid, "SIGTERM");
    } catch { /* gone */ }
  }
  await waitFor("the namespace's processes end", async () => (await ns.pids()).length === 0);
}

Deno.test({
  name:
    "make deb builds a lintian-clean package; installed, its server and client work offline in a namespace; purge removes it all",
  ignore: SKIP,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dist = await Deno.makeTempDir({ prefix: "ta-deb-" });
    try {
      const built = await run("make", ["-s", "deb", `DIST=${dist}`]);
      assertEquals(built.code, 0, built.stderr);
      const arch = (await run("dpkg", ["--print-architecture"])).stdout.trim();
      const deb = `${dist}/table-allocator_${VERSION}_${arch}.deb`;
      assert(exists(deb), `${deb} built: ${built.stderr}`);

      // lintian leaves a file in its TMPDIR at every run: in ours, removed with it.
      const lintTmp = `${dist}/lintian-tmp`;
      await Deno.mkdir(lintTmp);
      const lint = await run("lintian", ["--fail-on", "error,warning", "--pedantic", deb], {
        env: { TMPDIR: lintTmp },
      });
      console.log(`lintian:\n${lint.stdout}${lint.stderr}`);
      assertEquals(lint.code, 0, `lintian found errors or warnings:\n${lint.stdout}`);

      await purge();
      await checkMaintainerScripts(deb);
      try {
        const installed = await dpkg("-i", deb);
        assertEquals(installed.code, 0, installed.stderr);
        // Reinstalling runs postinst as an upgrade does.
        const again = await dpkg("-i", deb);
        assertEquals(again.code, 0, again.stderr);
        await checkInstalled();
        await checkUnderSystemd();
        await checkOffline();
        await checkEndToEnd();
      } finally {
        await purge();
      }
      for (
        const path of [
          ...PROGRAMS,
          "/usr/lib/table-allocator",
          "/etc/table-allocator",
          "/etc/default/table-allocator",
          "/etc/dhcp/dhclient-enter-hooks.d/table-allocator",
          "/var/lib/table-allocator",
          "/var/cache/table-allocator",
          "/etc/systemd/system/multi-user.target.wants/table-allocator-server.service",
        ]
      ) {
        assert(!exists(path), `purge removed ${path}`);
      }
    } finally {
      await Deno.remove(dist, { recursive: true });
    }
  },
});

/** What dpkg put where: version, conffiles, user, enabled unit, hooks, man pages. */
async function checkInstalled() {
  const status = await run("dpkg-query", ["-W", "-f=${Version} ${Conffiles}", "table-allocator"]);
  assertMatch(status.stdout, new RegExp(`^${VERSION.replaceAll(".", "\\.")} `));
  for (
    const conffile of [
      "/etc/table-allocator/server.json",
      "/etc/default/table-allocator",
      "/etc/dhcp/dhclient-enter-hooks.d/table-allocator",
      "/etc/dhcp/dhclient-exit-hooks.d/table-allocator",
      "/etc/network/if-up.d/table-allocator",
      "/etc/network/if-down.d/table-allocator",
    ]
  ) {
    assert(status.stdout.includes(` ${conffile} `), `${conffile} is a conffile`);
  }
  assertMatch(
    (await run("getent", ["passwd", "table-allocator"])).stdout,
    /:\/usr\/sbin\/nologin$/m,
  );
  const state = Deno.statSync("/var/lib/table-allocator");
  assertEquals(state.mode! & 0o777, 0o700);
  assertEquals(
    Deno.readLinkSync("/etc/systemd/system/multi-user.target.wants/table-allocator-server.service"),
    "/lib/systemd/system/table-allocator-server.service",
    "the unit is enabled",
  );
  const same = async (installed: string, source: string) =>
    assertEquals((await run("cmp", [installed, `${TOP}${source}`])).code, 0, installed);
  await same(
    "/lib/systemd/system/table-allocator-server.service",
    "packaging/table-allocator-server.service",
  );
  await same("/etc/table-allocator/server.json", "config/production.json");
  await same("/etc/default/table-allocator", "packaging/table-allocator.default");
  await same(
    "/etc/dhcp/dhclient-exit-hooks.d/table-allocator",
    "packaging/hooks/dhclient-exit-hook",
  );
  await same(
    "/usr/lib/networkd-dispatcher/no-carrier.d/50-table-allocator",
    "packaging/hooks/networkd-dispatcher",
  );
  await same(
    "/usr/lib/NetworkManager/dispatcher.d/pre-down.d/50-table-allocator",
    "packaging/hooks/networkmanager-dispatcher",
  );
  const manuals = await run("man", [
    "-w",
    "table_allocator_server",
    "table_allocator_client",
    "table-allocator-ctl",
    "5",
    "table-allocator.json",
  ]);
  assertEquals(manuals.code, 0, manuals.stderr);
  // systemd's own check of the installed unit: its program and its man pages exist.
  const verify = await run("systemd-analyze", [
    "verify",
    "/lib/systemd/system/table-allocator-server.service",
  ]);
  assert(!/table-allocator-server\.service:/.test(verify.stderr), verify.stderr);
}

const SERVER = "table-allocator-server.service";
const AGENT = "table-allocator-agent.service";

/**
 * The maintainer scripts where systemd runs, which installing on this
 * machine cannot show (no systemd here): in a container booting this
 * machine's own system (whatever dpkg writes stays in the container),
 * `dpkg -i` enables and starts both units and the server answers the
 * installed client; `dpkg -i` again (an upgrade) restarts both; `dpkg -r`
 * stops and masks them; `dpkg -P` removes the state directory and the
 * units' mask. This machine's policy-rc.d forbids starting services (as in
 * images built with Docker); a host has none, so it goes inside first.
 */
async function checkMaintainerScripts(deb: string) {
  await using ns = await createNetns();
  await using box = await bootContainer({
    name: ns.name,
    netnsPath: `/run/netns/${ns.name}`,
    hostSystem: true,
    readOnly: [deb],
    // This machine's own cluster: nothing here needs it.
    masked: ["postgresql.service"],
  });
  await succeeds("no policy-rc.d", box.exec(["rm", "-f", "/usr/sbin/policy-rc.d"]));
  const units = [SERVER, AGENT];
  const states = async (command: string) =>
    (await box.systemctl(command, ...units)).stdout.trim().split("\n");
  const pids = () => Promise.all(units.map((unit) => box.property(unit, "MainPID")));

  await succeeds("dpkg -i", box.exec(["dpkg", "-i", deb]));
  assertEquals(await states("is-enabled"), ["enabled", "enabled"]);
  assertEquals(await states("is-active"), ["active", "active"]);
  const got = await box.exec(requestTable(A.ipv4));
  assertEquals(got.stdout, "10000\n", got.stderr);

  const before = await pids();
  await succeeds("dpkg -i again (an upgrade)", box.exec(["dpkg", "-i", deb]));
  assertEquals(await states("is-active"), ["active", "active"]);
  const after = await pids();
  assert(after.every((pid, i) => pid !== before[i]), `both restarted: ${before} then ${after}`);

  await succeeds("dpkg -r", box.exec(["dpkg", "-r", "table-allocator"]));
  assertEquals(await states("is-active"), ["inactive", "inactive"]);
  assertEquals(await states("is-enabled"), ["masked", "masked"]);
  await succeeds("dpkg -P", box.exec(["dpkg", "-P", "table-allocator"]));
  for (const path of ["/var/lib/table-allocator", `/etc/systemd/system/${SERVER}`]) {
    assert((await box.exec(["test", "-e", path])).code !== 0, `purge removed ${path}`);
  }
}

/**
 * The installed units under a real systemd, booted in a container over
 * this machine's `/usr` in a network namespace (`systemd_container.ts`),
 * with the package's users, config and module cache bound in: the
 * server's unit starts (Type=notify) inside its sandbox (its own user, no
 * capabilities, no new privileges, a system call filter), in its state
 * directory, logs through syslog to the journal, serves the installed
 * client through the agent's unit, reloads and refuses a broken config
 * while it keeps serving, is started again after a kill -9 with its
 * leases and after its watchdog fires, needs the documented drop-in for a
 * PostgreSQL store over TCP, and stops cleanly; systemd-networkd and
 * networkd-dispatcher call the installed hook.
 */
async function checkUnderSystemd() {
  await using ns = await createNetns();
  const etc = await Deno.makeTempDir({ prefix: "ta-deb-etc-" });
  const network = await Deno.makeTempDir({ prefix: "ta-deb-network-" });
  try {
    // A copy of the config the test can break, readable by the server's user.
    await Deno.chmod(etc, 0o755);
    await Deno.copyFile("/etc/table-allocator/server.json", `${etc}/server.json`);
    await Deno.chmod(`${etc}/server.json`, 0o644);
    await Deno.chmod(network, 0o755);
    await Deno.writeTextFile(`${network}/10-${NETWORKD.ifname}.network`, NETWORKD.config);
    await ns.ip("link", "add", NETWORKD.ifname, "type", "veth", "peer", "name", NETWORKD.peer);
    await ns.ip("link", "set", NETWORKD.peer, "up");
    await using box = await bootContainer({
      name: ns.name,
      netnsPath: `/run/netns/${ns.name}`,
      readOnly: [
        "/etc/passwd",
        "/etc/group",
        "/etc/nsswitch.conf",
        // The alternatives' links: awk, which the hooks use.
        "/etc/alternatives",
        "/etc/default/table-allocator",
        // Debian's --run-startup-triggers.
        "/etc/default/networkd-dispatcher",
        "/var/cache/table-allocator",
      ],
      writable: [[etc, "/etc/table-allocator"], [network, "/etc/systemd/network"]],
    });
    await succeeds("the server's unit starts", box.systemctl("start", SERVER));
    assertEquals(await box.property(SERVER, "SubState"), "running");
    assertMatch(await box.property(SERVER, "StatusText"), /^\d+ bound, \d+ free/);
    const pid = await box.property(SERVER, "MainPID");
    const status = (await box.exec(["cat", `/proc/${pid}/status`])).stdout;
    const uid = (await run("id", ["-u", "table-allocator"])).stdout.trim();
    assertMatch(status, new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s`, "m"), "its own user");
    assertMatch(status, /^CapEff:\s+0+$/m, "no capabilities");
    assertMatch(status, /^CapBnd:\s+0+$/m, "none it could get back");
    assertMatch(status, /^NoNewPrivs:\s+1$/m);
    assertMatch(status, /^Seccomp:\s+2$/m, "a system call filter");
    assertEquals(
      (await box.exec(["stat", "-c", "%a %U", "/var/lib/table-allocator"])).stdout,
      "700 table-allocator\n",
      "its state directory, made by systemd",
    );
    await waitFor(
      "the ready line in the journal",
      async () => /^ready version=/m.test(await box.journal(SERVER)),
    );

    await succeeds("the agent's unit starts", box.systemctl("start", AGENT));
    const got = await box.exec(requestTable(A.ipv4));
    assertEquals(got.stdout, "10000\n", got.stderr);
    assertMatch((await box.exec(["ip", "-4", "rule", "show"])).stdout, /lookup 10000/);
    // The agent the unit runs holds the lease: the client started none of its own.
    assertEquals(
      (await box.exec(["pgrep", "-f", "--", "client.ts --agent"])).stdout.trim(),
      await box.property(AGENT, "MainPID"),
    );
    const db = await box.exec(["stat", "-c", "%a %U", "/var/lib/table-allocator/leases.db"]);
    assertEquals(db.stdout, "600 table-allocator\n");

    await checkNetworkdHook(box, ns);

    await succeeds("systemctl reload", box.systemctl("reload", SERVER));
    await waitFor(
      "the reload in the journal",
      async () => /^reloaded /m.test(await box.journal(SERVER)),
    );
    const good = await Deno.readTextFile(`${etc}/server.json`);
    await Deno.writeTextFile(`${etc}/server.json`, "{ broken");
    const refused = await box.systemctl("reload", SERVER);
    assert(refused.code !== 0, "a broken config fails systemctl reload");
    await Deno.writeTextFile(`${etc}/server.json`, good);
    assertEquals(await box.property(SERVER, "MainPID"), pid, "and the server goes on");
    assertEquals(await box.property(SERVER, "SubState"), "running");

    await succeeds("kill -9", box.systemctl("kill", "--signal=SIGKILL", SERVER));
    await waitFor(
      "systemd starts the server again",
      async () =>
        await box.property(SERVER, "NRestarts") === "1" &&
        await box.property(SERVER, "SubState") === "running",
      15_000,
    );
    assert(await box.property(SERVER, "MainPID") !== pid, "a new process");
    const leases = await box.exec(["/usr/bin/table-allocator-ctl", "leases"]);
    assertMatch(leases.stdout, /inet\s+veth0\s+192\.0\.2\.10\s+10000\s+bound/, leases.stderr);
    await checkWatchdog(box, SERVER);
    await checkPostgresDropIn(box, ns, etc, SERVER);

    await succeeds("the agent's unit stops", box.systemctl("stop", AGENT));
    await succeeds("the server's unit stops", box.systemctl("stop", SERVER));
    assertEquals(await box.property(SERVER, "Result"), "success");
    assertEquals(await box.property(SERVER, "ExecMainStatus"), "0");
    assertMatch(await box.journal(SERVER), /^stopped /m);
  } finally {
    await Deno.remove(etc, { recursive: true });
    await Deno.remove(network, { recursive: true });
  }
}

/** Asserts that a command run in the container exited 0, naming `what` and its stderr if not. */
async function succeeds(what: string, result: Promise<{ code: number; stderr: string }>) {
  const { code, stderr } = await result;
  assertEquals(code, 0, `${what}: ${stderr}`);
}

/**
 * The watchdog, shortened to 2 s by a drop-in: the server's pings keep it
 * running; stopped with SIGSTOP (a loop that no longer turns), it is
 * killed and started again by systemd. The drop-in goes again after.
 */
async function checkWatchdog(box: SystemdContainer, unit: string) {
  await using _dropIn = await box.dropIn(unit, "watchdog", "[Service]\nWatchdogSec=2s\n");
  await succeeds("restart with the drop-in", box.systemctl("restart", unit));
  assertEquals(await box.property(unit, "WatchdogUSec"), "2s");
  const pid = await box.property(unit, "MainPID");
  const restarts = Number(await box.property(unit, "NRestarts"));
  const pinged = await box.property(unit, "WatchdogTimestampMonotonic");
  await new Promise((resolve) => setTimeout(resolve, 5000));
  assertEquals(await box.property(unit, "MainPID"), pid, "pinging, it outlives 2 s watchdogs");
  assert(await box.property(unit, "WatchdogTimestampMonotonic") !== pinged, "its pings arrive");

  await succeeds("SIGSTOP", box.systemctl("kill", "--signal=SIGSTOP", unit));
  await waitFor(
    "the watchdog has the stopped server started again",
    async () =>
      Number(await box.property(unit, "NRestarts")) === restarts + 1 &&
      await box.property(unit, "SubState") === "running",
    20_000,
  );
  assertMatch(await box.journal(unit), /Watchdog timeout \(limit 2s\)/);
}

/**
 * The server's unit with a PostgreSQL store over TCP (127.0.0.1 of the
 * namespace), as docs/packaging.md says to run it: without the drop-in
 * the unit's `RestrictAddressFamilies=` refuses the server its IP socket
 * and it waits for the database, saying why; with the documented drop-in
 * it serves from PostgreSQL. (`IPAddressAllow=` of the drop-in is not
 * exercised: this container has no BPF firewall, so `IPAddressDeny=`
 * holds nothing back here.) The config and the drop-in go again after.
 */
async function checkPostgresDropIn(box: SystemdContainer, ns: Netns, etc: string, unit: string) {
  await using pg = await startPostgres({ tcpInNetns: ns.name });
  const sqlite = await Deno.readTextFile(`${etc}/server.json`);
  const shipped = JSON.parse(stripJsonComments(sqlite));
  const url = `postgres://${pg.user}@127.0.0.1:${pg.port}/${pg.database}`;
  await Deno.writeTextFile(
    `${etc}/server.json`,
    JSON.stringify({ ...shipped, store: { kind: "postgres", url } }),
  );
  try {
    await succeeds("restart on PostgreSQL", box.systemctl("restart", "--no-block", unit));
    await waitFor(
      "the server says that its IP socket is refused",
      async () =>
        /^cannot open the lease store, retrying every 1 s until it can serve: Cannot open PostgreSQL at 127\.0\.0\.1:5432 .*EAFNOSUPPORT.* needs RestrictAddressFamilies=AF_INET AF_INET6;/m
          .test(await box.journal(unit)),
      15_000,
    );
    await using _dropIn = await box.dropIn(
      unit,
      "postgres",
      "[Service]\nRestrictAddressFamilies=AF_INET AF_INET6\nIPAddressAllow=127.0.0.1\n",
    );
    await succeeds("restart with the drop-in", box.systemctl("restart", unit));
    // A new identity, so that the agent asks this server (it answers for the ones it holds).
    await ns.ip("addr", "add", `192.0.2.20/${A.ipv4Prefix}`, "dev", A.ifname);
    const got = await box.exec(requestTable("192.0.2.20"));
    // 10000 and 10001 are held back: the kernel rules of the SQLite store's leases route them.
    assertEquals(got.stdout, "10002\n", `${got.stderr}${await box.journal(unit)}`);
    const sql = pg.connect();
    try {
      const rows = await sql`SELECT table_id FROM leases WHERE address = '192.0.2.20'`;
      assertEquals(rows.map((r) => Number(r.table_id)), [10002], "the lease is PostgreSQL's");
    } finally {
      await sql.end();
    }
    await succeeds("the release", box.exec(releaseTable("192.0.2.20")));
  } finally {
    await Deno.writeTextFile(`${etc}/server.json`, sqlite);
  }
  await succeeds("restart on SQLite", box.systemctl("restart", unit));
}

/** The link systemd-networkd configures in {@link checkNetworkdHook}, and its .network file. */
const NETWORKD = {
  ifname: "veth2",
  peer: "veth3",
  address: "198.51.100.10",
  config: `[Match]
Name=veth2

[Network]
Address=198.51.100.10/24
Gateway=198.51.100.1
LinkLocalAddressing=no
IPv6AcceptRA=no
`,
};

/**
 * The networkd-dispatcher hook, called by its real callers: systemd-networkd
 * configures a link, networkd-dispatcher (started once it is routable, so
 * Debian's startup triggers run the hook) calls the installed hook, which
 * gets a table through the agent's unit and copies networkd's routes into
 * it; the peer's carrier lost, networkd drops the address and the lease
 * ends with its rules; the carrier back, the hook runs on the state change.
 * The agent's lines for the hook's identity reach the journal once.
 */
async function checkNetworkdHook(box: SystemdContainer, ns: Netns) {
  const { ifname, peer, address } = NETWORKD;
  const rules = async () => (await box.exec(["ip", "-4", "rule", "show"])).stdout;
  const routes = async (table: string) =>
    (await box.exec(["ip", "-4", "route", "show", "table", table])).stdout;
  const leased = async () => {
    await waitFor(
      `the hook's table for ${address}`,
      async () => new RegExp(`from ${address} lookup 10001`).test(await rules()),
      15_000,
    );
    await waitFor(
      "networkd's routes copied into table 10001",
      async () =>
        (await routes("10001")).includes(`default via 198.51.100.1 dev ${ifname} src ${address}`),
    );
    assertMatch(
      await routes("10001"),
      new RegExp(`^198\\.51\\.100\\.0/24 dev ${ifname} .*src ${address}`, "m"),
    );
  };
  const released = () =>
    waitFor(
      "the lease ends with the carrier",
      async () =>
        !(await rules()).includes("lookup 10001") && (await routes("10001")).trim() === "" &&
        /198\.51\.100\.10\s+10001\s+released/.test(
          (await box.exec(["/usr/bin/table-allocator-ctl", "leases"])).stdout,
        ),
      15_000,
    );

  const networkd = await box.systemctl("start", "systemd-networkd.service");
  assertEquals(networkd.code, 0, networkd.stderr);
  await waitFor(
    `networkd has made ${ifname} routable`,
    async () =>
      /State: routable/.test(
        (await box.exec(["networkctl", "status", "--no-pager", ifname])).stdout,
      ),
    15_000,
  );
  const dispatcher = await box.systemctl("start", "networkd-dispatcher.service");
  assertEquals(dispatcher.code, 0, dispatcher.stderr);
  await leased();

  await ns.ip("link", "set", peer, "down");
  await released();
  await ns.ip("link", "set", peer, "up");
  await leased();

  const journal = await box.journal("table-allocator-agent.service");
  const granted = journal.split("\n").filter((line) =>
    line.startsWith(`lease granted identity=${ifname}-${address}-2 `)
  );
  assertEquals(granted.length, 2, `once for each lease, in the journal:\n${journal}`);
}

/** The launchers with no network, no HOME, an empty environment; the shipped cache is used. */
async function checkOffline() {
  await using ns = await createNetns();
  await ns.ip("link", "set", "lo", "down");
  const version = async (program: string) => {
    const result = await ns.run(["/usr/bin/env", "-i", "HOME=/nonexistent", program, "--version"]);
    assertEquals(result.code, 0, `${program}: ${result.stderr}`);
    assertMatch(result.stdout, new RegExp(`^\\S+ ${VERSION.replaceAll(".", "\\.")}( |$)`, "m"));
    assertEquals(result.stderr, "", `${program} printed nothing else`);
  };
  const stamp = Date.now() - 1000;
  for (const program of PROGRAMS) await version(program);
  // Nothing had to be transpiled: the cache the package prepared was used.
  const fresh = (await run("find", [`${CACHE}/gen`, "-type", "f", "-newermt", `@${stamp / 1000}`]))
    .stdout.trim();
  assertEquals(fresh, "", "no module transpiled at run time");
  // Without any module cache, still nothing to fetch: they start from the package alone.
  await Deno.remove(CACHE, { recursive: true });
  for (const program of PROGRAMS) await version(program);
  // The PostgreSQL driver (npm) loads from the package too: the server gets
  // as far as connecting (nothing listens in the namespace).
  const dir = await Deno.makeTempDir({ prefix: "ta-deb-pg-" });
  try {
    await Deno.writeTextFile(
      `${dir}/pg.json`,
      JSON.stringify({
        socket_path: "tas_pg",
        table_offset: 10000,
        num_tables: 4,
        table_timeout: 60,
        addr_families: { inet: true },
        store: { kind: "postgres", url: "postgres://nobody@127.0.0.1:9/none" },
      }),
    );
    await ns.ip("link", "set", "lo", "up");
    // A database that cannot be reached is waited for (issue 8): the server
    // says so, and SIGTERM ends the wait.
    const pg = ns.spawn(["/usr/sbin/table_allocator_server", "-c", `${dir}/pg.json`]);
    pg.stdout.cancel();
    let stderr = "";
    const timer = setTimeout(() => pg.kill("SIGKILL"), 30_000);
    for await (const chunk of pg.stderr.pipeThrough(new TextDecoderStream())) {
      stderr += chunk;
      if (/retrying every/.test(stderr)) pg.kill("SIGTERM");
    }
    clearTimeout(timer);
    assertEquals((await pg.status).code, 0, stderr);
    assertMatch(
      stderr,
      /cannot open the lease store, retrying every 1 s until it can serve: Cannot open PostgreSQL at 127\.0\.0\.1:9/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * The installed server, as its unit runs it (user table-allocator, no
 * capabilities, no new privileges, umask 077, in /), with the shipped config
 * but its log on stderr (no syslog daemon here, and another test may stand
 * in for one on /dev/log), and the installed client and ctl, in a network
 * namespace.
 */
async function checkEndToEnd() {
  await using ns = await createNetns();
  const dir = await Deno.makeTempDir({ prefix: "ta-deb-e2e-" });
  try {
    await Deno.chmod(dir, 0o755);
    const shipped = JSON.parse(
      stripJsonComments(Deno.readTextFileSync("/etc/table-allocator/server.json")),
    );
    await Deno.writeTextFile(
      `${dir}/server.json`,
      JSON.stringify({ ...shipped, do_syslog: false }),
      { mode: 0o644 },
    );
    const server = ns.spawn([
      "setpriv",
      "--reuid=table-allocator",
      "--regid=table-allocator",
      "--clear-groups",
      "--no-new-privs",
      "--inh-caps=-all",
      "--bounding-set=-all",
      "sh",
      "-c",
      `cd / && umask 077 && exec /usr/sbin/table_allocator_server -c ${dir}/server.json`,
    ]);
    server.stdout.cancel();
    let log = "";
    const pump = (async () => {
      for await (const chunk of server.stderr.pipeThrough(new TextDecoderStream())) log += chunk;
    })();
    await waitFor(
      "the server is ready",
      () => / INFO ready .*socket=@tas_socket /.test(log),
      15_000,
    );

    const got = await ns.run(requestTable(A.ipv4));
    assertEquals(got.code, 0, got.stderr);
    assertEquals(got.stdout, "10000\n");
    assertMatch(await ns.ip("-4", "rule", "show"), /from 192\.0\.2\.10 lookup 10000/);
    // The background client runs as the launcher started the first one.
    const [pid] = await ns.pidsOf("/usr/lib/table-allocator/app/client.ts");
    assert(pid, "a background client");
    const cmdline = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
    assert(cmdline.includes("--cached-only"), cmdline.join(" "));
    assertEquals(Deno.readLinkSync(`/proc/${pid}/exe`), "/usr/lib/table-allocator/deno");

    const status = await ns.run(["/usr/bin/table-allocator-ctl", "status"]);
    assertEquals(status.code, 0, status.stderr);
    assertMatch(status.stdout, new RegExp(`^version +${VERSION.replaceAll(".", "\\.")}$`, "m"));
    const leases = await ns.run(["/usr/bin/table-allocator-ctl", "leases"]);
    assertMatch(leases.stdout, /inet\s+veth0\s+192\.0\.2\.10\s+10000\s+bound/);
    // The database is the server user's alone.
    const db = Deno.statSync("/var/lib/table-allocator/leases.db");
    assertEquals(db.mode! & 0o777, 0o600);
    assertEquals(
      db.uid,
      Number((await run("id", ["-u", "table-allocator"])).stdout.trim()),
    );

    const released = await ns.run(releaseTable(A.ipv4));
    assertEquals(released.code, 0, released.stderr);
    assert(!(await ns.ip("-4", "rule", "show")).includes("lookup 10000"));
    const after = await ns.run(["/usr/bin/table-allocator-ctl", "leases", "--state", "bound"]);
    assert(!after.stdout.includes("192.0.2.10"), after.stdout);

    server.kill("SIGTERM");
    assertEquals((await server.status).code, 0, "a clean stop on SIGTERM");
    await pump;
    assertMatch(log, / INFO stopped /);
  } finally {
    await stopAll(ns);
    await Deno.remove(dir, { recursive: true });
  }
}
