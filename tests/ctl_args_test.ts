/**
 * End-to-end: ctl's command line as a shell sees it. Bad arguments give a
 * message and the usage on stderr, exit status 2 and nothing on stdout
 * (every command's required arguments); `-h` prints the usage on stdout.
 * No server and no root needed: nothing is sent on bad arguments.
 *
 * @module
 */

import { assertEquals, assertMatch } from "./helpers/assert.ts";
import { ctl } from "./helpers/ctl.ts";

const BAD: Array<[string, string[], RegExp]> = [
  ["no command", [], /missing COMMAND/],
  ["an unknown command", ["frobnicate"], /unknown command "frobnicate"/],
  ["an unknown option", ["--bogus", "status"], /Unknown option '--bogus'/],
  ["a bad timeout", ["--timeout", "soon", "status"], /--timeout must be an integer/],
  ["an unknown family for leases", ["leases", "--family", "ipx"], /--family must be inet/],
  ["an unknown state for leases", ["leases", "--state", "gone"], /--state must be one of/],
  ["show without --family", ["show", "10000"], /show needs --family/],
  ["show without a table or identity", ["show", "--family", "inet"], /show needs a TABLE/],
  ["release without --family", ["release", "10000"], /release needs --family/],
  [
    "release with --ifname but no --address",
    ["release", "--family", "inet", "--ifname", "eth1"],
    /release needs a TABLE, or --ifname and --address/,
  ],
  ["reserve without a table", ["reserve", "--ifname", "eth0"], /reserve needs a TABLE/],
  ["reserve without --ifname", ["reserve", "10005"], /reserve needs --ifname/],
  [
    "reserve --address without --family",
    ["reserve", "10005", "--ifname", "eth0", "--address", "192.0.2.1"],
    /reserve --address needs --family/,
  ],
  ["unreserve without a table", ["unreserve"], /unreserve needs a TABLE/],
];

Deno.test("ctl refuses bad arguments with exit 2, a message and usage on stderr, nothing on stdout", async () => {
  const results = await Promise.all(BAD.map(([, args]) => ctl(["-d", "ctl-never-bound", ...args])));
  BAD.forEach(([what, , message], i) => {
    const result = results[i];
    assertEquals(result.code, 2, `${what}: exit status`);
    assertEquals(result.stdout, "", `${what}: stdout`);
    assertMatch(result.stderr, /^table-allocator-ctl: /, what);
    assertMatch(result.stderr, message, what);
    assertMatch(result.stderr, /\nUsage: table-allocator-ctl /, `${what}: usage`);
  });
});

Deno.test("ctl -h and --help print the usage on stdout and exit 0", async () => {
  for (const flag of ["-h", "--help"]) {
    const result = await ctl([flag]);
    assertEquals(result.code, 0);
    assertMatch(
      result.stdout,
      /^Usage: table-allocator-ctl \[-d SOCKET\] \[--json\] \[--timeout MS\]/,
    );
    for (
      const command of ["status", "pools", "leases", "show", "release", "reserve", "unreserve"]
    ) {
      assertMatch(result.stdout, new RegExp(`\\n  ${command} `));
    }
    assertEquals(result.stderr, "");
  }
});

Deno.test("ctl --version prints the version on stdout and exits 0", async () => {
  const { VERSION } = await import("../src/version.ts");
  const result = await ctl(["--version"]);
  assertEquals(result, { code: 0, stdout: `table-allocator-ctl ${VERSION}\n`, stderr: "" });
});
