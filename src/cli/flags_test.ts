import { parseArgs } from "node:util";
import { assertEquals } from "../../tests/helpers/assert.ts";
import { type FlagSpec, parseFlags } from "./flags.ts";

const OPTIONS: Record<string, FlagSpec> = {
  inet: { type: "boolean", short: "4" },
  address: { type: "string", short: "a" },
  release: { type: "boolean", short: "r" },
  foreground: { type: "boolean", short: "f" },
  "server-uid": { type: "string", multiple: true },
  agent: { type: "boolean" },
};

/** What node's parseArgs makes of `args`: its values, or its error's message. */
function node(args: string[]): unknown {
  try {
    const { values } = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: false });
    return { ...values };
  } catch (error) {
    return (error as Error).message;
  }
}

function ours(args: string[]): unknown {
  try {
    return parseFlags(args, OPTIONS);
  } catch (error) {
    return (error as Error).message;
  }
}

Deno.test("parseFlags() reads command lines exactly as node's parseArgs does", () => {
  const cases = [
    [],
    ["-4", "-a", "192.0.2.1"],
    ["-a192.0.2.1", "-r"],
    ["--address", "x", "--address=y"],
    ["-rf", "-4"],
    ["--server-uid", "1", "--server-uid=2,3"],
    ["--agent"],
    ["--", "-4"],
    ["--"],
  ];
  for (const args of cases) assertEquals(ours(args), node(args), JSON.stringify(args));
});

Deno.test("parseFlags() refuses what node's parseArgs refuses, with the same words", () => {
  const cases = [
    ["-x"],
    ["--bogus"],
    ["--bogus=1"],
    ["extra"],
    ["-r", "1"],
    ["--foreground=yes"],
    ["--agent=no"],
    ["-a"],
    ["--address"],
    ["-a", "-r"],
    ["--address", "-4"],
    ["-rx"],
  ];
  for (const args of cases) {
    const mine = ours(args);
    assertEquals(mine, node(args), JSON.stringify(args));
    assertEquals(typeof mine, "string", `${JSON.stringify(args)} is refused`);
  }
});
