import { assertEquals, assertThrows } from "../../tests/helpers/assert.ts";
import { parseCommandLine, UsageError, writeAll } from "./cli.ts";

Deno.test("parseCommandLine() turns parseArgs failures into UsageErrors with their message", () => {
  const options = { verbose: { type: "boolean", short: "v" }, name: { type: "string" } } as const;
  const { values } = parseCommandLine({ args: ["-v", "--name", "x"], options });
  assertEquals(values, { verbose: true, name: "x" });
  assertThrows(
    () => parseCommandLine({ args: ["--nope"], options }),
    (error) => error instanceof UsageError && /Unknown option '--nope'/.test(error.message),
  );
  assertThrows(() => parseCommandLine({ args: ["--name"], options }), UsageError);
});

Deno.test("writeAll() keeps writing until every byte is out", () => {
  const written: number[] = [];
  // A file that takes at most 3 bytes per call, as a pipe under pressure may.
  const slow = {
    writeSync(p: Uint8Array) {
      const n = Math.min(3, p.byteLength);
      written.push(...p.subarray(0, n));
      return n;
    },
  };
  writeAll(slow, "hello, world");
  assertEquals(new TextDecoder().decode(new Uint8Array(written)), "hello, world");
});
