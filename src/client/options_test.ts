import { assertEquals, assertThrows } from "../../tests/helpers/assert.ts";
import { identityName } from "../protocol/v1.ts";
import { UsageError } from "../cli/usage.ts";
import { parseClientArgs } from "./options.ts";

const BASE = ["-a", "192.0.2.10", "-i", "eth1", "-d", "tas_socket"];

function run(args: string[]) {
  const invocation = parseClientArgs(args);
  if (invocation.kind !== "run") throw new Error(`expected run, got ${invocation.kind}`);
  return invocation.options;
}

Deno.test("parseClientArgs() reads the hook scripts' command line", () => {
  const options = run([
    "-4",
    "-s",
    "-a",
    "192.0.2.10",
    "-n",
    "255.255.255.0",
    "-i",
    "eth1",
    "-d",
    "tas_socket",
  ]);
  assertEquals(options.family, 2);
  assertEquals(options.address, "192.0.2.10");
  assertEquals(options.prefix, 24);
  assertEquals(options.syslog, true);
  assertEquals(options.foreground, false);
  assertEquals(options.release, false);
  assertEquals(identityName(options), "eth1-192.0.2.10-2");
});

Deno.test("parseClientArgs() takes long options, a prefix length and plain -r and -f flags", () => {
  const options = run([
    "--address=2001:DB8::0:10",
    "--netmask",
    "64",
    "--ifname",
    "eth1",
    "--destination",
    "tas",
    "-6",
    "-r",
    "-f",
    "--tag",
    "wan",
    "--log_path",
    "/tmp/x.log",
  ]);
  assertEquals(options.family, 10);
  assertEquals(options.address, "2001:db8::10", "canonical IPv6 text");
  assertEquals(options.prefix, 64);
  assertEquals([options.release, options.foreground, options.tag, options.logPath], [
    true,
    true,
    "wan",
    "/tmp/x.log",
  ]);
  assertEquals(identityName(options), "eth1-2001:db8::10-10");
});

Deno.test("parseClientArgs() accepts an IPv6 netmask and needs no netmask for unspec or -r", () => {
  assertEquals(
    run(["-6", "-n", "ffff:ffff:ffff:ffff::", ...BASE.slice(2), "-a", "2001:db8::1"]).prefix,
    64,
  );
  assertEquals(run(["-a", "anything", "-i", "eth1", "-d", "s"]).family, 0);
  assertEquals(run(["-4", "-r", ...BASE]).prefix, null);
});

Deno.test("parseClientArgs() gives help and version", () => {
  assertEquals(parseClientArgs(["-h"]).kind, "help");
  assertEquals(parseClientArgs(["--bogus", "--help"]).kind, "help");
  assertEquals(parseClientArgs(["--version"]).kind, "version");
});

const BAD: Array<[string, string[], RegExp]> = [
  ["no arguments", [], /missing required argument -a\/--address, -i\/--ifname, -d\/--destination/],
  ["no netmask with -4", ["-4", ...BASE], /missing required argument -n\/--netmask/],
  ["no netmask with -6", ["-6", "-a", "2001:db8::1", "-i", "e", "-d", "s"], /-n\/--netmask/],
  ["-4 and -6", ["-4", "-6", "-n", "24", ...BASE], /exclude each other/],
  ["an unknown option", ["--bogus", ...BASE], /Unknown option '--bogus'/],
  ["a positional argument", [...BASE, "extra"], /positional/],
  ["-r with an argument", ["-r", "yes", ...BASE], /positional/],
  [
    "a bad IPv4 address",
    ["-4", "-n", "24", "-a", "192.0.2.300", "-i", "e", "-d", "s"],
    /not a valid IPv4/,
  ],
  [
    "a bad IPv6 address",
    ["-6", "-n", "64", "-a", "2001:db8::g", "-i", "e", "-d", "s"],
    /not a valid IPv6/,
  ],
  [
    "a non-contiguous netmask",
    ["-4", "-n", "255.0.255.0", ...BASE],
    /netmask must be a dotted netmask/,
  ],
  ["a prefix too long", ["-4", "-n", "33", ...BASE], /netmask must be/],
  ["prefix 0", ["-4", "-n", "0.0.0.0", ...BASE], /prefix length 0/],
  [
    "a long interface name",
    ["-a", "x", "-i", "a".repeat(16), "-d", "s"],
    /interface name must be 1 to 15 bytes/,
  ],
  [
    "a slash in the interface name",
    ["-a", "x", "-i", "a/b", "-d", "s"],
    /not a valid interface name/,
  ],
  [
    "a long destination",
    ["-a", "x", "-i", "e", "-d", "s".repeat(106)],
    /destination must be 1 to 105/,
  ],
  ["a long tag", ["-a", "x", "-i", "e", "-d", "s", "-t", "t".repeat(128)], /tag must be 1 to 127/],
  [
    "a long unspec identifier",
    ["-a", "x".repeat(46), "-i", "e", "-d", "s"],
    /address must be 1 to 45/,
  ],
  ["a missing option value", ["-a"], /argument missing/],
  [
    "a --server-uid that is not a uid",
    [...BASE, "--server-uid", "nobody"],
    /--server-uid must be uids/,
  ],
  ["a negative --server-uid", [...BASE, "--server-uid=0,-1"], /got "-1"/],
  ["a --server-uid of (uid_t) -1", [...BASE, "--server-uid", "4294967295"], /--server-uid/],
  ["identity flags with --agent", ["--agent", ...BASE], /--agent takes only -l and -s/],
];

for (const [what, args, message] of BAD) {
  Deno.test(`parseClientArgs() refuses ${what}`, () => {
    assertThrows(() => parseClientArgs(args), (error: unknown) => {
      return error instanceof UsageError && message.test(error.message);
    });
  });
}

Deno.test("parseClientArgs() takes --server-uid repeated or as a comma list", () => {
  assertEquals(run(BASE).serverUids, undefined, "none given: the default");
  assertEquals(
    run([...BASE, "--server-uid", "998,65534", "--server-uid=998", "--server-uid", "0"]).serverUids,
    [998, 65534, 0],
  );
});

Deno.test("parseClientArgs() reads --agent with the agent's own log", () => {
  assertEquals(parseClientArgs(["--agent"]), { kind: "agent", logPath: undefined, syslog: false });
  assertEquals(parseClientArgs(["--agent", "-s", "-l", "/var/log/agent.log"]), {
    kind: "agent",
    logPath: "/var/log/agent.log",
    syslog: true,
  });
});
