import { assertEquals, assertMatch, assertThrowsType } from "../../tests/helpers/assert.ts";
import { UsageError } from "../cli/cli.ts";
import { parseCtlArgs, parseFamily, USAGE } from "./args.ts";

const run = (...args: string[]) => {
  const invocation = parseCtlArgs(args);
  if (invocation.kind !== "run") throw new Error(`expected a command, got ${invocation.kind}`);
  return invocation;
};

const refuse = (args: string[], message: RegExp) => {
  const error = assertThrowsType(() => parseCtlArgs(args), UsageError);
  assertMatch(error.message, message);
};

Deno.test("parseCtlArgs() defaults to socket tas_socket, human output and a 2000 ms timeout", () => {
  assertEquals(run("status"), {
    kind: "run",
    options: { socket: "tas_socket", json: false, timeoutMs: 2000 },
    command: { name: "status", op: "status", args: {} },
  });
});

Deno.test("parseCtlArgs() reads metrics and reload, which take nothing", () => {
  assertEquals(run("metrics").command, { name: "metrics", op: "metrics", args: {} });
  assertEquals(run("--json", "reload").command, { name: "reload", op: "reload", args: {} });
  refuse(["metrics", "now"], /metrics takes no operand, got "now"/);
  refuse(["reload", "--family", "inet"], /reload does not take --family/);
});

Deno.test("parseCtlArgs() takes the global options before or after the command", () => {
  const expected = { socket: "other", json: true, timeoutMs: 150 };
  assertEquals(run("-d", "other", "--json", "--timeout", "150", "pools").options, expected);
  assertEquals(run("pools", "--socket=other", "--timeout=150", "--json").options, expected);
});

Deno.test("parseCtlArgs() maps leases onto list with its filters, and --all", () => {
  assertEquals(run("leases").command, { name: "leases", op: "list", args: {}, all: false });
  assertEquals(
    run(
      "leases",
      "--family",
      "inet6",
      "--ifname",
      "eth1",
      "--state",
      "released",
      "--limit",
      "7",
      "--all",
      "--after",
      "10/eth1/2001:db8::1",
    ).command,
    {
      name: "leases",
      op: "list",
      args: {
        family: 10,
        ifname: "eth1",
        state: "released",
        limit: 7,
        after: "10/eth1/2001:db8::1",
      },
      all: true,
    },
  );
});

Deno.test("parseFamily() accepts names, IP versions and AF numbers", () => {
  for (
    const [text, family] of [
      ["inet", 2],
      ["INET", 2],
      ["4", 2],
      ["2", 2],
      ["inet6", 10],
      ["6", 10],
      ["10", 10],
      ["unspec", 0],
      ["0", 0],
    ] as const
  ) {
    assertEquals(parseFamily(text), family, text);
  }
  for (const text of ["ipv4", "", "3", "02", "toString", "__proto__"]) {
    assertMatch(
      assertThrowsType(() => parseFamily(text), UsageError).message,
      new RegExp(
        `--family must be inet \\(4, 2\\), inet6 \\(6, 10\\) or unspec \\(0\\), got "${text}"`,
      ),
    );
  }
});

Deno.test("parseCtlArgs() selects a lease for show and release by table or by identity", () => {
  for (const name of ["show", "release"] as const) {
    assertEquals(run(name, "--family", "inet", "10005").command, {
      name,
      op: name,
      args: { family: 2, table: 10005 },
    });
    assertEquals(
      run(name, "--family", "6", "--ifname", "eth1", "--address", "2001:DB8:0::1").command,
      { name, op: name, args: { family: 10, ifname: "eth1", address: "2001:db8::1" } },
      "the address is sent in canonical form",
    );
    assertEquals(
      run(name, "--family", "unspec", "--ifname", "ppp0", "--address", "any id").command.args,
      { family: 0, ifname: "ppp0", address: "any id" },
    );
  }
});

Deno.test("parseCtlArgs() reserves for an interface in every family, one family, or one address", () => {
  assertEquals(run("reserve", "10005", "--ifname", "eth0").command, {
    name: "reserve",
    op: "reserve",
    args: { table: 10005, ifname: "eth0" },
  });
  assertEquals(run("reserve", "10005", "--ifname", "eth0", "--family", "inet6").command.args, {
    table: 10005,
    ifname: "eth0",
    family: 10,
  });
  assertEquals(
    run("reserve", "7", "--ifname", "eth0", "--address", "192.0.2.1", "--family", "4").command
      .args,
    { table: 7, ifname: "eth0", address: "192.0.2.1", family: 2 },
  );
  assertEquals(run("unreserve", "7").command, {
    name: "unreserve",
    op: "unreserve",
    args: { table: 7 },
  });
  assertEquals(run("unreserve", "7", "--family", "inet").command.args, { table: 7, family: 2 });
});

Deno.test("parseCtlArgs() refuses to reserve the kernel's tables, like the config", () => {
  for (const table of ["253", "254", "255"]) {
    assertMatch(
      assertThrowsType(() => parseCtlArgs(["reserve", table, "--ifname", "eth0"]), UsageError)
        .message,
      new RegExp(`^table ${table} is one of the kernel's tables .* cannot be reserved$`),
    );
  }
  assertMatch(
    assertThrowsType(() => parseCtlArgs(["reserve", "0", "--ifname", "eth0"]), UsageError).message,
    /TABLE must be an integer from 1/,
  );
  assertEquals(run("reserve", "256", "--ifname", "eth0").command.args, {
    table: 256,
    ifname: "eth0",
  });
});

Deno.test("parseCtlArgs() reads genpsk, which takes no operand and no option", () => {
  assertEquals(parseCtlArgs(["genpsk"]), { kind: "genpsk" });
  assertThrowsType(() => parseCtlArgs(["genpsk", "x"]), UsageError);
  assertThrowsType(() => parseCtlArgs(["genpsk", "--family", "inet"]), UsageError);
});

Deno.test("parseCtlArgs() gives help before anything else, and the version", () => {
  assertEquals(parseCtlArgs(["-h"]), { kind: "help" });
  assertEquals(parseCtlArgs(["leases", "--bogus", "--help"]), { kind: "help" });
  assertEquals(parseCtlArgs(["--version"]), { kind: "version" });
  assertEquals(parseCtlArgs(["-V"]), { kind: "version" });
  assertMatch(
    USAGE,
    /^Usage: table-allocator-ctl \[-d SOCKET\] \[--json\] \[--timeout MS\] COMMAND/,
  );
});

const BAD: Array<[string, string[], RegExp]> = [
  [
    "no command",
    [],
    /missing COMMAND \(one of status, pools, leases, show, release, reserve, unreserve, metrics, reload, genpsk\)/,
  ],
  ["an unknown command", ["frobnicate"], /unknown command "frobnicate"/],
  ["an unknown option", ["status", "--bogus"], /Unknown option '--bogus'/],
  ["a missing option value", ["leases", "--family"], /--family/],
  [
    "an option the command does not take",
    ["status", "--family", "inet"],
    /status does not take --family/,
  ],
  ["--all on show", ["show", "--all", "--family", "inet", "1"], /show does not take --all/],
  ["an operand to status", ["status", "extra"], /status takes no operand, got "extra"/],
  ["an operand to leases", ["leases", "10000"], /leases takes no operand, got "10000"/],
  ["an empty socket name", ["-d", "", "status"], /-d\/--socket must be 1 to 106 bytes/],
  [
    "a too long socket name",
    ["-d", "s".repeat(107), "status"],
    /-d\/--socket must be 1 to 106 bytes/,
  ],
  [
    "a zero timeout",
    ["--timeout", "0", "status"],
    /--timeout must be an integer from 1 to 3600000, got "0"/,
  ],
  ["a timeout that is not a number", ["--timeout", "2s", "status"], /--timeout must be an integer/],
  ["an unknown family", ["leases", "--family", "ipx"], /--family must be inet/],
  [
    "an unknown state",
    ["leases", "--state", "gone"],
    /--state must be one of bound, released, expired, reserved, got "gone"/,
  ],
  [
    "a limit above the page maximum",
    ["leases", "--limit", "201"],
    /--limit must be an integer from 1 to 200, got "201"/,
  ],
  ["a negative limit", ["leases", "--limit=-1"], /--limit must be an integer/],
  ["an empty cursor", ["leases", "--after="], /--after needs a cursor/],
  [
    "a bad interface filter",
    ["leases", "--ifname", "eth/0"],
    /--ifname is not a valid interface name: "eth\/0"/,
  ],
  ["show without --family", ["show", "10000"], /show needs --family/],
  [
    "show without table or identity",
    ["show", "--family", "inet"],
    /show needs a TABLE, or --ifname and --address/,
  ],
  [
    "show with only --ifname",
    ["show", "--family", "inet", "--ifname", "eth1"],
    /show needs a TABLE, or --ifname and --address/,
  ],
  ["show with table and identity", [
    "show",
    "--family",
    "inet",
    "1",
    "--ifname",
    "eth1",
    "--address",
    "192.0.2.1",
  ], /by TABLE or by --ifname and --address, not both/],
  [
    "show with two tables",
    ["show", "--family", "inet", "1", "2"],
    /show takes one TABLE, got "1 2"/,
  ],
  [
    "show with table 0",
    ["show", "--family", "inet", "0"],
    /TABLE must be an integer from 1 to 4294967295, got "0"/,
  ],
  [
    "show with a table past 32 bits",
    ["show", "--family", "inet", "4294967296"],
    /TABLE must be an integer from 1 to 4294967295/,
  ],
  [
    "show with a table that is not a number",
    ["show", "--family", "inet", "main"],
    /TABLE must be an integer/,
  ],
  [
    "release without --family",
    ["release", "--ifname", "eth1", "--address", "192.0.2.1"],
    /release needs --family/,
  ],
  ["release of an invalid IPv4 address", [
    "release",
    "--family",
    "inet",
    "--ifname",
    "eth1",
    "--address",
    "192.0.2.256",
  ], /--address is not an IPv4 address: "192.0.2.256"/],
  ["release of an invalid IPv6 address", [
    "release",
    "--family",
    "inet6",
    "--ifname",
    "eth1",
    "--address",
    "::1::2",
  ], /--address is not an IPv6 address: "::1::2"/],
  ["a too long interface name", [
    "release",
    "--family",
    "inet",
    "--ifname",
    "x".repeat(16),
    "--address",
    "192.0.2.1",
  ], /--ifname must be 1 to 15 bytes/],
  ["reserve without a table", ["reserve", "--ifname", "eth0"], /reserve needs a TABLE/],
  ["reserve without --ifname", ["reserve", "10005"], /reserve needs --ifname/],
  ["reserve --address without --family", [
    "reserve",
    "10005",
    "--ifname",
    "eth0",
    "--address",
    "192.0.2.1",
  ], /reserve --address needs --family/],
  ["reserve of an address of the wrong family", [
    "reserve",
    "10005",
    "--ifname",
    "eth0",
    "--family",
    "inet",
    "--address",
    "2001:db8::1",
  ], /--address is not an IPv4 address/],
  ["unreserve without a table", ["unreserve"], /unreserve needs a TABLE/],
  [
    "unreserve with --ifname",
    ["unreserve", "7", "--ifname", "eth0"],
    /unreserve does not take --ifname/,
  ],
];

for (const [what, args, message] of BAD) {
  Deno.test(`parseCtlArgs() refuses ${what}, naming the argument`, () => refuse(args, message));
}
