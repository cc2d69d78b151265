import { assertEquals, assertThrows } from "../../tests/helpers/assert.ts";
import { decodeHandover, encodeHandover, selfCommand } from "./background.ts";

Deno.test("a hand-over survives the trip through the environment", () => {
  const handover = { socketFd: 21, netlinkFd: 22, lease: { table: 10007, leaseExpires: 4321 } };
  assertEquals(decodeHandover(encodeHandover(handover)), handover);
});

Deno.test("decodeHandover() refuses standard descriptors, table 0 and junk", () => {
  const good = { socket_fd: 21, netlink_fd: 22, table: 1, lease_expires: 5 };
  assertThrows(() => decodeHandover(JSON.stringify({ ...good, socket_fd: 1 })), TypeError);
  assertThrows(() => decodeHandover(JSON.stringify({ ...good, table: 0 })), TypeError);
  assertThrows(() => decodeHandover(JSON.stringify({ ...good, lease_expires: "x" })), TypeError);
  assertThrows(() => decodeHandover("not json"), TypeError);
});

Deno.test("selfCommand() re-runs a compiled binary directly and a script through deno run", () => {
  assertEquals(selfCommand("file:///opt/ta/client.ts", ["-4"], true), {
    command: Deno.execPath(),
    args: ["-4"],
  });
  assertEquals(selfCommand("file:///opt/ta/client.ts", ["-4"], false, []), {
    command: Deno.execPath(),
    args: ["run", "--allow-all", "--no-prompt", "--quiet", "/opt/ta/client.ts", "-4"],
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
    selfCommand("file:///usr/lib/table-allocator/app/client.ts", ["-6"], false, launched).args,
    [
      "run",
      "--allow-all",
      "--cached-only",
      "--config",
      "/usr/lib/table-allocator/app/deno.json",
      "/usr/lib/table-allocator/app/client.ts",
      "-6",
    ],
  );
  // A relative module path on the command line is found too.
  const relative = [Deno.execPath(), "run", "-A", "client.ts", "-4"];
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
