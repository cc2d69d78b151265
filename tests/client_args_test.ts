/**
 * End-to-end: the client's command line as a shell sees it. Bad arguments
 * give a message and the usage on stderr, a non-zero status and nothing on
 * stdout (so `$(...)` in a hook never captures usage text); `-h` prints the
 * usage on stdout and exits 0. No root needed.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { clientCommand } from "./helpers/netns.ts";

async function client(...args: string[]) {
  const [command, ...rest] = clientCommand(...args);
  const out = await new Deno.Command(command, {
    args: rest,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { DENO_NO_UPDATE_CHECK: "1" },
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

const OK = ["-a", "127.0.0.1", "-i", "lo", "-d", "tas_socket"];

const BAD: Array<[string, string[], RegExp]> = [
  ["no arguments", [], /missing required argument/],
  ["no address", ["-i", "lo", "-d", "s"], /-a\/--address/],
  ["no interface", ["-a", "x", "-d", "s"], /-i\/--ifname/],
  ["no destination", ["-a", "x", "-i", "lo"], /-d\/--destination/],
  ["no netmask with -4", ["-4", ...OK], /-n\/--netmask/],
  ["-4 and -6 together", ["-4", "-6", "-n", "8", ...OK], /exclude each other/],
  ["an unknown option", ["-x", ...OK], /Unknown option '-x'/],
  ["an argument to -r", ["-r", "1", ...OK], /positional/],
  ["an argument to --foreground", ["--foreground=yes", ...OK], /does not take an argument/],
  [
    "an invalid IPv4 address",
    ["-4", "-n", "8", "-a", "127.0.0.256", "-i", "lo", "-d", "s"],
    /IPv4/,
  ],
  ["an invalid IPv6 address", ["-6", "-n", "64", "-a", "::1::2", "-i", "lo", "-d", "s"], /IPv6/],
  ["an invalid netmask", ["-4", "-n", "255.255.0.255", ...OK], /netmask/],
  ["a netmask of prefix 0", ["-4", "-n", "0", ...OK], /prefix length 0/],
  ["an interface that does not exist", ["-a", "x", "-i", "nosuchif0", "-d", "s"], /does not exist/],
  ["a too long interface name", ["-a", "x", "-i", "x".repeat(16), "-d", "s"], /interface name/],
  ["a too long destination", ["-a", "x", "-i", "lo", "-d", "d".repeat(106)], /destination/],
  ["a too long tag", [...OK, "-t", "t".repeat(128)], /tag/],
];

for (const [what, args, message] of BAD) {
  Deno.test(`client refuses ${what} with a message and usage on stderr and nothing on stdout`, async () => {
    const result = await client(...args);
    assert(result.code !== 0, `non-zero exit, got ${result.code}`);
    assertEquals(result.stdout, "");
    assertMatch(result.stderr, message);
    assertMatch(result.stderr, /Usage: table_allocator_client/);
  });
}

Deno.test("client -h prints the usage on stdout and exits 0", async () => {
  for (const flag of ["-h", "--help"]) {
    const result = await client(flag);
    assertEquals(result.code, 0);
    assertMatch(result.stdout, /^Usage: table_allocator_client/);
    assertMatch(result.stdout, /-r, --release/);
    assertEquals(result.stderr, "");
  }
});

Deno.test("client --version prints the version on stdout and exits 0", async () => {
  const result = await client("--version");
  assertEquals(result.code, 0);
  assertMatch(result.stdout, /^table-allocator-client \S+ \(protocol v1\)\n$/);
});

Deno.test("client says why it cannot open its log file, on stderr, with nothing on stdout", async () => {
  const result = await client(...OK, "-l", "/nonexistent-dir/client.log");
  assert(result.code !== 0);
  assertEquals(result.stdout, "");
  assertMatch(result.stderr, /Cannot open log file "\/nonexistent-dir\/client.log"/);
});
