import { assertEquals, assertMatch, assertThrowsType } from "../tests/helpers/assert.ts";
import { VALID_CONFIG } from "../tests/helpers/config.ts";
import { ConfigError, validateConfig } from "./config.ts";
import { DEFAULT_RT_TABLES_PATH } from "./operations.ts";

const VALID = VALID_CONFIG;

const parse = (change: Record<string, unknown>) => validateConfig({ ...VALID, ...change });

function rejects(change: Record<string, unknown>, key: string, message: RegExp): void {
  const error = assertThrowsType(() => parse(change), ConfigError);
  assertEquals(error.key, key);
  assertMatch(error.message, message);
}

Deno.test("outputs default to the event log alone, so old configs log as before", () => {
  assertEquals(parse({}).outputs, [{ kind: "eventlog" }]);
  assertEquals(parse({ outputs: [] }).outputs, []);
});

Deno.test("every output kind gets its documented defaults", () => {
  const { outputs } = parse({
    outputs: [
      { kind: "eventlog" },
      { kind: "rt_tables" },
      { kind: "command", command: ["/bin/true"] },
      { kind: "command", command: ["/bin/echo", "x"], events: ["refreshed", "granted", "granted"] },
      { kind: "log" },
      { kind: "prometheus_textfile", path: "/var/lib/node_exporter/ta.prom" },
    ],
  });
  assertEquals(outputs, [
    { kind: "eventlog" },
    { kind: "rt_tables", path: DEFAULT_RT_TABLES_PATH, name: "{ifname}-{family}" },
    {
      kind: "command",
      command: ["/bin/true"],
      events: ["granted", "moved", "released", "expired"],
      timeout: 30,
      retries: 0,
    },
    {
      kind: "command",
      command: ["/bin/echo", "x"],
      events: ["refreshed", "granted"],
      timeout: 30,
      retries: 0,
    },
    { kind: "log", interval: 300 },
    { kind: "prometheus_textfile", path: "/var/lib/node_exporter/ta.prom", interval: 15 },
  ]);
});

Deno.test("an invalid output is refused with its position, option and value", () => {
  const cases: Array<[unknown, string, RegExp]> = [
    ["x", "outputs", /"outputs" must be a list like \[\{"kind": "eventlog"\}\], got "x"/],
    [[7], "outputs[0]", /outputs\[0\] must be an object like \{"kind": "eventlog"\}, got 7/],
    [[{ kind: "dns" }], "outputs[0].kind", /outputs\[0\]\.kind must be one of eventlog, rt_tables/],
    [[{}], "outputs[0].kind", /must be one of .*, got nothing/],
    [
      [{ kind: "eventlog", only: 1 }],
      "outputs[0].only",
      /"only" is not an option of kind eventlog; its options: none/,
    ],
    [
      [{ kind: "rt_tables", path: "/etc/iproute2/rt_tables.d/x" }],
      "outputs[0].path",
      /must name a file ending in "\.conf" \(iproute2 reads only \*\.conf files/,
    ],
    [
      [{ kind: "rt_tables", name: "{ifname}-{fam}" }],
      "outputs[0].name",
      /unknown placeholder \{fam\}; known: \{ifname\}, \{family\}, \{address\}, \{table\}, \{tag\}/,
    ],
    [[{ kind: "rt_tables", name: "{ifname" }], "outputs[0].name", /unmatched "\{" or "\}"/],
    [[{ kind: "command" }], "outputs[0].command", /command is required/],
    [[{ kind: "command", command: [] }], "outputs[0].command", /non-empty list of strings/],
    [
      [{ kind: "command", command: "ls -l" }],
      "outputs[0].command",
      /the program first \(no shell\)/,
    ],
    [
      [{ kind: "command", command: ["x"], events: ["bound"] }],
      "outputs[0].events",
      /non-empty list of granted, refreshed, moved, released, expired, got \["bound"\]/,
    ],
    [
      [{ kind: "command", command: ["x"], timeout: 0 }],
      "outputs[0].timeout",
      /outputs\[0\]\.timeout must be an integer from 1 to 3600, got 0/,
    ],
    [
      [{ kind: "command", command: ["x"], retries: -1 }],
      "outputs[0].retries",
      /from 0 to 10, got -1/,
    ],
    [[{ kind: "log", interval: 1.5 }], "outputs[0].interval", /from 1 to 86400, got 1\.5/],
    [[{ kind: "prometheus_textfile" }], "outputs[0].path", /path is required/],
    [
      [{ kind: "prometheus_textfile", path: "/tmp/metrics.txt" }],
      "outputs[0].path",
      /ending in "\.prom" \(node_exporter's textfile collector reads only \*\.prom files\)/,
    ],
    [
      [{ kind: "log" }, { kind: "eventlog" }, { kind: "log" }],
      "outputs[2].kind",
      /outputs\[2\]: kind log may appear once \(it is outputs\[0\] too\)/,
    ],
  ];
  for (const [outputs, key, message] of cases) rejects({ outputs }, key, message);
});

Deno.test("several command outputs may run, each with its own options", () => {
  const { outputs } = parse({
    outputs: [
      { kind: "command", command: ["a"], timeout: 5, retries: 2 },
      { kind: "command", command: ["b"], events: ["expired"] },
    ],
  });
  assertEquals(outputs.map((o) => o.kind === "command" && [o.command[0], o.timeout, o.retries]), [
    ["a", 5, 2],
    ["b", 30, 0],
  ]);
});

Deno.test("log_level and readiness_delay: defaults, values, refusals", () => {
  assertEquals(parse({}).logLevel, "info");
  assertEquals(parse({ log_level: "debug" }).logLevel, "debug");
  rejects(
    { log_level: "verbose" },
    "log_level",
    /"log_level" must be one of error, warn, info, debug, got "verbose"/,
  );
  assertEquals(parse({}).readinessDelay, 3600);
  assertEquals(parse({ table_timeout: 60 }).readinessDelay, 60);
  assertEquals(parse({ readiness_delay: 0 }).readinessDelay, 0);
  rejects(
    { readiness_delay: -1 },
    "readiness_delay",
    /"readiness_delay" must be an integer from 0 to 315360000, got -1/,
  );
});
