import { assertEquals } from "../../tests/helpers/assert.ts";
import { holdSpec, selfCommand } from "./handoff.ts";
import { parseClientArgs } from "./options.ts";

Deno.test("selfCommand() re-runs a compiled binary directly and a script through deno run", () => {
  assertEquals(selfCommand("file:///opt/ta/client.ts", ["--agent"], true), {
    command: Deno.execPath(),
    args: ["--agent"],
  });
  assertEquals(selfCommand("file:///opt/t%20a/client.ts", ["--agent"], false, []), {
    command: Deno.execPath(),
    args: ["run", "--allow-all", "--no-prompt", "--quiet", "/opt/t a/client.ts", "--agent"],
  });
});

Deno.test("selfCommand() keeps the runtime flags this process was started with", () => {
  // As the packaged launcher starts the client.
  const launched = [
    "/usr/lib/table-allocator/deno",
    "run",
    "--allow-all",
    "--cached-only",
    "--config",
    "/usr/lib/table-allocator/app/deno.json",
    "/usr/lib/table-allocator/app/client.ts",
    "-4",
    "-a",
    "192.0.2.1",
  ];
  assertEquals(
    selfCommand("file:///usr/lib/table-allocator/app/client.ts", ["--agent"], false, launched)
      .args,
    [
      "run",
      "--allow-all",
      "--cached-only",
      "--config",
      "/usr/lib/table-allocator/app/deno.json",
      "/usr/lib/table-allocator/app/client.ts",
      "--agent",
    ],
  );
  // A relative module path on the command line is found too.
  const relative = [Deno.execPath(), "run", "-A", "./client.ts", "-4"];
  assertEquals(
    selfCommand(`file://${Deno.cwd()}/client.ts`, [], false, relative).args,
    ["run", "-A", `${Deno.cwd()}/client.ts`],
  );
  // Another program (deno test importing the client): the defaults.
  assertEquals(
    selfCommand("file:///opt/ta/client.ts", [], false, ["deno", "test", "-A"]).args,
    ["run", "--allow-all", "--no-prompt", "--quiet", "/opt/ta/client.ts"],
  );
});

Deno.test("holdSpec() hands the agent every option a holder needs", () => {
  const invocation = parseClientArgs([
    "-6",
    "-a",
    "2001:DB8::10",
    "-n",
    "64",
    "-i",
    "eth1",
    "-d",
    "tas",
    "-t",
    "wan",
    "-s",
    "-l",
    "/var/log/c.log",
    "--server-uid",
    "998",
  ]);
  if (invocation.kind !== "run") throw new Error(invocation.kind);
  assertEquals(holdSpec(invocation.options), {
    identity: { family: 10, ifname: "eth1", address: "2001:db8::10" },
    prefix: 64,
    server: "tas",
    tag: "wan",
    logPath: "/var/log/c.log",
    syslog: true,
    serverUids: [998],
    pskFile: undefined,
  });
});
