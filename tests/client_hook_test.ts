/**
 * End-to-end: the client as hook scripts use it. `t=$(client ...)`
 * returns at once with the table while the client stays in the background;
 * a second client for a held identity answers at once. The hook scripts
 * themselves are tested with their callers in tests/hooks_*_test.ts.
 *
 * @module
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import {
  clientCommand,
  createNetns,
  IS_ROOT,
  NETNS_ADDRESSES as A,
  ROOT_SKIP_REASON,
  waitFor,
} from "./helpers/netns.ts";
import { startServer } from "./helpers/server.ts";

if (!IS_ROOT) console.warn(`client_hook_test.ts skipped: ${ROOT_SKIP_REASON}`);

const V4_ARGS = ["-4", "-s", "-a", A.ipv4, "-n", A.ipv4Netmask, "-i", A.ifname];

const e2e = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, ignore: !IS_ROOT, sanitizeResources: false, sanitizeOps: false, fn });

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
    const granted = Date.parse((await server.waitForLog(/ granted family=inet /)).split(" ")[0]);
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
