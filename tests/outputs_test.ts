/**
 * End-to-end: the server's outputs with the real server. The `rt_tables`
 * file through grants, moves, releases and a restart (and iproute2 reading
 * it, in a mount namespace of its own); a `command` output as a shell
 * script that records its environment: every event in order, one at a
 * time, a timeout, a failing command, and the allocation loop answering
 * while a command hangs.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { ctl } from "./helpers/ctl.ts";
import { e2eTest } from "./helpers/e2e.ts";
import { waitFor } from "./helpers/netns.ts";
import { run } from "./helpers/spawn.ts";
import { startServer } from "./helpers/server.ts";
import { WireClient } from "./helpers/wire.ts";

/** The `TABLE NAME` lines of an rt_tables file (comments left out). */
async function names(path: string): Promise<string[]> {
  const text = await Deno.readTextFile(path);
  assertMatch(text, /^# Written by table-allocator-server/);
  return text.split("\n").filter((l) => l !== "" && !l.startsWith("#"));
}

e2eTest("rt_tables names every bound lease through grants, moves, releases and a restart", {
  root: true, // ctl reserve
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-rt-" });
  const path = `${dir}/table-allocator.conf`;
  const config = {
    outputs: [{ kind: "eventlog" }, { kind: "rt_tables", path }],
  };
  const socketName = `ta-${crypto.randomUUID().slice(0, 8)}`;
  try {
    {
      await using server = await startServer({ dir, socketName, config });
      using client = new WireClient(server.socketName);
      // At start, with no lease, the file exists with its comment only.
      await waitFor("the rt_tables file", () => Deno.stat(path).then(() => true, () => false));
      assertEquals(await names(path), []);
      assertEquals((await client.request("10.0.0.1")).table, 10000);
      assertEquals((await client.request("10.0.0.2")).table, 10001);
      assertEquals((await client.request("10.0.0.3", { ifname: "eth2" })).table, 10002);
      assertEquals((await client.request("2001:db8::1", { family: 10 })).table, 10000);
      assertEquals((await client.request("x", { family: 0, ifname: "wg0" })).table, 10000);
      // In table order, then family (unspec 0, inet 2, inet6 10).
      const granted = [
        "10000 wg0-unspec",
        "10000 eth1-v4",
        "10000 eth1-v6",
        "10001 eth1-v4-10001",
        "10002 eth2-v4",
      ];
      await waitFor(
        "the grants in the file",
        async () => JSON.stringify(await names(path)) === JSON.stringify(granted),
      );

      // A reservation moves 10.0.0.1 at its next refresh; its name follows it.
      const reserve = await ctl([
        "-d",
        server.socketName,
        "reserve",
        "10005",
        "--ifname",
        "eth1",
        "--family",
        "inet",
        "--address",
        "10.0.0.1",
      ]);
      assertEquals(reserve.code, 0, reserve.stderr);
      assertEquals((await client.request("10.0.0.1")).table, 10005);
      assertEquals((await client.release("10.0.0.2")).table, 0);
      const after = ["10000 wg0-unspec", "10000 eth1-v6", "10002 eth2-v4", "10005 eth1-v4"];
      await waitFor(
        "the move and the release in the file",
        async () => JSON.stringify(await names(path)) === JSON.stringify(after),
      );
      assertEquals((await server.stop()).code, 0);
      // The leases live on while the server is down, and so do their names.
      assertEquals(await names(path), after);
    }
    // A restart rewrites the file from the store.
    await Deno.writeTextFile(path, "stale\n");
    await using again = await startServer({ dir, socketName, config });
    await waitFor(
      "the file rewritten at start",
      async () => (await Deno.readTextFile(path)).startsWith("# Written"),
    );
    assertEquals(await names(path), [
      "10000 wg0-unspec",
      "10000 eth1-v6",
      "10002 eth2-v4",
      "10005 eth1-v4",
    ]);
    assertEquals(again.output().includes("cannot write"), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

e2eTest(
  "iproute2 resolves the names of the rt_tables file to the leased tables",
  { netns: true },
  async ({ netns }) => {
    const dir = await Deno.makeTempDir({ prefix: "ta-rtd-" });
    try {
      const path = `${dir}/table-allocator.conf`;
      await using server = await startServer({
        netns: netns.name,
        config: { outputs: [{ kind: "rt_tables", path }] },
      });
      const asked = await netns.run([
        Deno.execPath(),
        "eval",
        `import { WireClient } from "${new URL("./helpers/wire.ts", import.meta.url)}";
         using c = new WireClient("${server.socketName}");
         console.log((await c.request("192.0.2.10", { ifname: "veth0" })).table);`,
      ]);
      assertEquals(asked.stdout.trim(), "10000", asked.stderr);
      await waitFor(
        "the name in the file",
        async () => (await Deno.readTextFile(path)).includes("10000 veth0-v4"),
      );
      // A private mount namespace shows our directory as rt_tables.d to ip(8) alone.
      const ip = await run([
        "unshare",
        "-m",
        "sh",
        "-ec",
        `mount --bind ${dir} /etc/iproute2/rt_tables.d
         ip -n ${netns.name} route add 198.51.100.0/24 dev veth0 table veth0-v4
         ip -n ${netns.name} route show table 10000`,
      ]);
      assertEquals(ip.code, 0, ip.stderr);
      assertMatch(ip.stdout, /^198\.51\.100\.0\/24 dev veth0/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

/** A hook that records each run's start, environment and end. */
async function recorder(dir: string, name: string, body = ""): Promise<string> {
  const script = `${dir}/${name}.sh`;
  await Deno.writeTextFile(
    script,
    `#!/bin/sh
echo "start $EVENT $TABLE $PREVIOUS_TABLE $FAMILY $IFNAME $ADDRESS tag=$TAG" >> ${dir}/${name}.runs
${body}
echo "end $EVENT $TABLE" >> ${dir}/${name}.runs
echo "stdout of $EVENT $TABLE"
`,
  );
  await Deno.chmod(script, 0o755);
  return script;
}

const runs = async (dir: string, name: string) =>
  (await Deno.readTextFile(`${dir}/${name}.runs`).catch(() => "")).trim().split("\n").filter(
    Boolean,
  );

Deno.test("command outputs get every event in order with its environment; timeouts and failures are logged", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-cmd-" });
  // A unique argument, to find the script's sleep among the processes afterwards.
  const marker = `60.${Math.floor(Math.random() * 1e6)}`;
  try {
    const all = await recorder(dir, "all", "sleep 0.05");
    const slow = await recorder(dir, "slow", `sleep ${marker}`);
    await using server = await startServer({
      config: {
        table_timeout: 3,
        outputs: [
          { kind: "eventlog" },
          {
            kind: "command",
            command: [all],
            events: ["granted", "refreshed", "moved", "released", "expired"],
          },
          { kind: "command", command: [slow], events: ["granted"], timeout: 1 },
          { kind: "command", command: ["/bin/sh", "-c", "echo broken >&2; exit 7"] },
        ],
      },
    });
    using client = new WireClient(server.socketName);
    assertEquals((await client.request("10.0.0.1", { tag: "wan" })).table, 10000);
    // While the slow command hangs, the server answers at once.
    await waitFor("the slow command to start", async () => (await runs(dir, "slow")).length > 0);
    for (let i = 2; i <= 6; i++) {
      assertEquals((await client.request(`10.0.0.${i}`)).table, 9999 + i);
    }
    assertEquals((await runs(dir, "slow")).some((l) => l.startsWith("end")), false);
    assertEquals((await client.request("10.0.0.1")).table, 10000);
    assertEquals((await client.release("10.0.0.2")).table, 0);
    assertEquals(
      (await client.request("2001:db8::5", { family: 10, ifname: "eth3" })).table,
      10000,
    );
    // 10.0.0.1 to 10.0.0.6 and the v6 one expire 3 s after their last request, 10.0.0.2 was released.
    await waitFor(
      "every expiry",
      async () => (await runs(dir, "all")).filter((l) => l.startsWith("end expired")).length === 6,
      10_000,
    );
    const lines = await runs(dir, "all");
    // One at a time: every start is followed by its own end.
    for (let i = 0; i < lines.length; i += 2) {
      const [, event, table] = lines[i].split(" ");
      assertEquals(lines[i + 1], `end ${event} ${table}`, `run ${i / 2} overlapped another`);
    }
    const starts = lines.filter((l) => l.startsWith("start "));
    assertEquals(starts.slice(0, 9), [
      "start granted 10000 0 2 eth1 10.0.0.1 tag=wan",
      "start granted 10001 0 2 eth1 10.0.0.2 tag=",
      "start granted 10002 0 2 eth1 10.0.0.3 tag=",
      "start granted 10003 0 2 eth1 10.0.0.4 tag=",
      "start granted 10004 0 2 eth1 10.0.0.5 tag=",
      "start granted 10005 0 2 eth1 10.0.0.6 tag=",
      "start refreshed 10000 0 2 eth1 10.0.0.1 tag=wan",
      "start released 10001 0 2 eth1 10.0.0.2 tag=",
      "start granted 10000 0 10 eth3 2001:db8::5 tag=",
    ]);
    assertEquals(
      starts.slice(9).sort(),
      [
        "start expired 10000 0 10 eth3 2001:db8::5 tag=",
        "start expired 10000 0 2 eth1 10.0.0.1 tag=wan",
        "start expired 10002 0 2 eth1 10.0.0.3 tag=",
        "start expired 10003 0 2 eth1 10.0.0.4 tag=",
        "start expired 10004 0 2 eth1 10.0.0.5 tag=",
        "start expired 10005 0 2 eth1 10.0.0.6 tag=",
      ],
    );
    await server.waitForLog(
      /INFO command output output=outputs\[1\] event=granted table=10000 stream=stdout line="stdout of granted 10000"/,
    );
    // The slow one: stopped after 1 s, each time; its events still come in order.
    await server.waitForLog(
      /command timed out and was stopped output=outputs\[2\] event=granted table=10000 timeout=1s/,
    );
    await waitFor(
      "the slow command's second run",
      async () => (await runs(dir, "slow")).some((l) => l.startsWith("start granted 10001 ")),
    );
    // The failing one: its stderr and its exit status.
    await server.waitForLog(
      /WARN command output output=outputs\[3\] event=granted table=10000 stream=stderr line=broken/,
    );
    await server.waitForLog(
      /ERROR command failed output=outputs\[3\] event=granted table=10000 code=7/,
    );
    assert(
      !/output=outputs\[3\] event=refreshed/.test(server.output()),
      "refreshed is not a default event",
    );
    // SIGTERM: the server stops what still runs, and exits in time.
    assertEquals((await server.stop()).code, 0);
    assertEquals(sleepers(marker), []);
  } finally {
    for (const pid of sleepers(marker)) Deno.kill(pid, "SIGKILL");
    await Deno.remove(dir, { recursive: true });
  }
});

/** Pids whose command line holds `marker`. */
function sleepers(marker: string): number[] {
  const out: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      if (Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).includes(marker)) {
        out.push(Number(entry.name));
      }
    } catch { /* gone */ }
  }
  return out;
}
