/**
 * The agent's systemd unit: `systemd-analyze verify` accepts it (with
 * ExecStart pointed at a program that exists here), and it runs the agent
 * as the hooks expect: `Type=notify`, the client with `--agent -s` (its
 * own log to syslog, where the hooks' identities log),
 * `DENO_NO_UPDATE_CHECK=1`, a state directory that outlives a restart.
 * That the agent reports ready on `NOTIFY_SOCKET` is shown in
 * `agent_test.ts`.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { run } from "./helpers/spawn.ts";

const UNIT = new URL("../packaging/table-allocator-agent.service", import.meta.url).pathname;
const HAS_ANALYZE = (await run(["sh", "-c", "command -v systemd-analyze"])).code === 0;

Deno.test({
  name: "the agent's unit is valid systemd and runs the client as the agent, Type=notify",
  ignore: !HAS_ANALYZE,
  fn: async () => {
    const text = await Deno.readTextFile(UNIT);
    const values = (key: string) =>
      text.split("\n").filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));
    assertEquals(values("Type"), ["notify"]);
    assertEquals(values("ExecStart"), ["/usr/sbin/table_allocator_client --agent -s"]);
    assertEquals(values("Environment"), ["DENO_NO_UPDATE_CHECK=1"]);
    assertEquals(values("RuntimeDirectory"), ["table-allocator"]);
    assertEquals(values("RuntimeDirectoryPreserve"), ["yes"]);
    const dir = await Deno.makeTempDir({ prefix: "ta-unit-" });
    try {
      const copy = `${dir}/table-allocator-agent.service`;
      await Deno.writeTextFile(
        copy,
        text.replaceAll("/usr/sbin/table_allocator_client", "/bin/true"),
      );
      const result = await run(["systemd-analyze", "verify", copy]);
      assertEquals(result.code, 0, result.stderr);
      assert(!/table-allocator-agent\.service:\d+/.test(result.stderr), result.stderr);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
    assertMatch(text, /Restart=always/);
  },
});
