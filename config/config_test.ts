import { assertEquals, assertMatch, assertThrowsType } from "../tests/helpers/assert.ts";
import { VALID_CONFIG } from "../tests/helpers/config.ts";
import { ConfigError, parseConfig, validateConfig } from "./config.ts";
import { stripJsonComments } from "./jsonc.ts";

const VALID = VALID_CONFIG;

function rejects(change: Record<string, unknown>, key: string | undefined, message: RegExp): void {
  const error = assertThrowsType(() => validateConfig({ ...VALID, ...change }), ConfigError);
  assertEquals(error.key, key);
  assertMatch(error.message, message);
}

Deno.test("validateConfig() accepts the original's example and fills defaults", () => {
  assertEquals(validateConfig(VALID), {
    socketPath: "tas_socket",
    socketQueueLength: 512,
    pools: [{
      name: "default",
      family: 2,
      ranges: [{ first: 10000, last: 10039 }],
      tags: [],
      ifnames: [],
    }],
    reservations: [],
    tableTimeout: 3600,
    dbPath: "var/leases.db",
    store: { kind: "sqlite", path: "var/leases.db" },
    addrFamilies: { inet: true, inet6: false, unspec: false },
    doSyslog: false,
    logPath: undefined,
    warnings: [],
    outputs: [{ kind: "eventlog" }],
    logLevel: "info",
    readinessDelay: 3600,
    trust: { maxLeasesPerUid: 8, auth: undefined },
  });
});

Deno.test("validateConfig() accepts every valid extreme the original got wrong", () => {
  // num_tables < 32, a timeout past 16 bits, one family only: all fine here.
  const range = (change: Record<string, unknown>) =>
    validateConfig({ ...VALID, ...change }).pools[0].ranges[0];
  assertEquals(range({ num_tables: 1 }), { first: 10000, last: 10000 });
  assertEquals(validateConfig({ ...VALID, table_timeout: 100_000 }).tableTimeout, 100_000);
  assertEquals(range({ num_tables: 1 << 20 }), { first: 10000, last: 10000 + (1 << 20) - 1 });
  assertEquals(range({ table_offset: 256, num_tables: 1 }), { first: 256, last: 256 });
  assertEquals(
    validateConfig({ ...VALID, addr_families: { unspec: true } }).addrFamilies.unspec,
    true,
  );
  assertEquals(validateConfig({ ...VALID, do_syslog: true, log_path: "/tmp/x" }).logPath, "/tmp/x");
  for (const length of [0, 1, 65_536]) {
    assertEquals(
      validateConfig({ ...VALID, socket_queue_length: length }).socketQueueLength,
      length,
    );
  }
});

Deno.test("validateConfig() names the key, the expected form and the value for each error", () => {
  rejects({ socket_path: undefined }, "socket_path", /"socket_path" is required \(a string\)/);
  rejects(
    { socket_path: 5 },
    "socket_path",
    /"socket_path" must be a string of 1 to 106 characters, got 5/,
  );
  rejects({ socket_path: "" }, "socket_path", /got ""/);
  rejects(
    { socket_queue_length: 65_537 },
    "socket_queue_length",
    /"socket_queue_length" must be an integer from 0 to 65536, got 65537/,
  );
  rejects({ socket_queue_length: -1 }, "socket_queue_length", /got -1/);
  rejects({ socket_queue_length: "512" }, "socket_queue_length", /got "512"/);
  rejects({ socket_path: "x".repeat(107) }, "socket_path", /1 to 106 characters/);
  rejects({ table_offset: undefined }, "table_offset", /"table_offset" is required/);
  rejects(
    { table_offset: "10000" },
    "table_offset",
    /"table_offset" must be an integer from 1 to 4294967295, got "10000"/,
  );
  rejects({ table_offset: 1.5 }, "table_offset", /got 1\.5/);
  rejects(
    { table_offset: 250 },
    "table_offset",
    /include the kernel's reserved table\(s\) 253, 254, 255/,
  );
  rejects(
    { num_tables: -3 },
    "num_tables",
    /"num_tables" must be an integer from 1 to 16777216, got -3/,
  );
  rejects({ num_tables: 0 }, "num_tables", /got 0/);
  rejects(
    { table_offset: 4294967000, num_tables: 1000 },
    "num_tables",
    /ends at 4294967999, past the last table/,
  );
  rejects(
    { table_timeout: 0 },
    "table_timeout",
    /"table_timeout" must be an integer from 1 to \d+, got 0/,
  );
  rejects({ table_timeout: null }, "table_timeout", /got null/);
  rejects({ db_path: [] }, "db_path", /"db_path" must be a string/);
  rejects({ addr_families: undefined }, "addr_families", /"addr_families" is required/);
  rejects({ addr_families: true }, "addr_families", /must be an object like/);
  rejects(
    { addr_families: {} },
    "addr_families",
    /must enable at least one of "inet", "inet6", "unspec", got \{\}/,
  );
  rejects({ addr_families: { inet: false, inet6: false } }, "addr_families", /at least one/);
  rejects({ addr_families: { inet: "yes" } }, "inet", /"inet" must be true or false, got "yes"/);
  rejects({ do_syslog: 1 }, "do_syslog", /"do_syslog" must be true or false, got 1/);
  rejects({ log_path: "" }, "log_path", /"log_path" must be a string/);
  assertMatch(
    assertThrowsType(() => validateConfig([]), ConfigError).message,
    /must be a JSON object, got \[\]/,
  );
});

Deno.test("validateConfig() loads unknown keys of the original's objects with a warning each", () => {
  // The original ignored them (a "_comment" key is a common idiom).
  const config = validateConfig({
    ...VALID,
    _comment: "shipped by the C package",
    tabel_timeout: 60,
    addr_families: { inet: true, ipv4: true, inte6: true },
  });
  assertEquals(config.tableTimeout, 3600);
  assertEquals(config.addrFamilies, { inet: true, inet6: false, unspec: false });
  assertEquals(config.warnings, [
    `"_comment" is not a known key (ignored)`,
    `"tabel_timeout" is not a known key (ignored); did you mean "table_timeout"?`,
    `"addr_families.ipv4" is not a known key (ignored)`,
    `"addr_families.inte6" is not a known key (ignored); did you mean "addr_families.inet6"?`,
  ]);
  // A misspelt required key is still missing.
  rejects(
    { table_timeout: undefined, tabel_timeout: 60 },
    "table_timeout",
    /"table_timeout" is required/,
  );
  // Our own objects stay strict: a typo there would change what a pool serves.
  rejects({ store: { kind: "sqlite", knid: 1 } }, "store.knid", /"store.knid" is not a known key/);
});

Deno.test("validateConfig() takes a PostgreSQL store, and then no db_path", () => {
  const config = validateConfig({
    ...VALID,
    db_path: undefined,
    store: { kind: "postgres", url: "postgres://ta@db.example/leases", pool_size: 8 },
  });
  assertEquals(config.store, {
    kind: "postgres",
    url: "postgres://ta@db.example/leases",
    host: undefined,
    port: undefined,
    database: undefined,
    user: undefined,
    password: undefined,
    poolSize: 8,
  });
  assertEquals(config.dbPath, undefined);
  assertEquals(validateConfig({ ...VALID, store: { kind: "sqlite" } }).store, {
    kind: "sqlite",
    path: "var/leases.db",
  });
  rejects({ store: "postgres" }, "store", /"store" must be an object like/);
  rejects(
    { store: { kind: "mysql" } },
    "store.kind",
    /"store.kind" must be "sqlite" or "postgres", got "mysql"/,
  );
  rejects(
    { store: { kind: "postgres", url: "http://x" } },
    "url",
    /"url" must start with postgres:\/\//,
  );
  rejects(
    { store: { kind: "postgres", url: "postgres://u@/db?fallback=1" } },
    "url",
    /"url" parameter "fallback" is not supported; supported: host, port, dbname/,
  );
  rejects(
    { store: { kind: "postgres", url: "postgres://db.example:70000/x" } },
    "url",
    /"url" is not a valid URL/,
  );
  rejects(
    { store: { kind: "postgres", url: "postgres://db.example/x?port=0" } },
    "url",
    /"url" port must be an integer from 1 to 65535, got 0/,
  );
  rejects(
    { store: { kind: "postgres", url: "postgres://db.example/x?sslmode=always" } },
    "url",
    /"url" sslmode must be one of disable, allow, prefer, require, verify-full, got "always"/,
  );
  rejects(
    { store: { kind: "postgres", port: 0 } },
    "port",
    /"port" must be an integer from 1 to 65535, got 0/,
  );
  rejects(
    { store: { kind: "postgres", hostname: "x" } },
    "store.hostname",
    /"store.hostname" is not a known key/,
  );
  rejects({ store: { kind: "sqlite", url: "x" } }, "store", /takes no other keys/);
  rejects({ store: { kind: "sqlite" }, db_path: undefined }, "db_path", /"db_path" is required/);
});

Deno.test("parseConfig() accepts // and /* */ comments and reports bad JSON", () => {
  const text = `// the original's example
  { /* socket */ "socket_path": "tas_socket", "table_offset": 10000, "num_tables": 40,
    "table_timeout": 3600, "db_path": "/var/lib/x//y.db", "addr_families": {"inet": true} }`;
  assertEquals(parseConfig(text).dbPath, "/var/lib/x//y.db");
  assertMatch(assertThrowsType(() => parseConfig("{ nope"), ConfigError).message, /not valid JSON/);
  assertMatch(
    assertThrowsType(() => parseConfig("{} /* open"), ConfigError).message,
    /unterminated/,
  );
});

Deno.test("parseConfig() accepts configs of 1 KiB and more", () => {
  const padding = " ".repeat(4096);
  assertEquals(parseConfig(`${padding}${JSON.stringify(VALID)}${padding}`).pools[0].ranges, [{
    first: 10000,
    last: 10039,
  }]);
});

Deno.test("stripJsonComments() leaves comment markers inside strings alone", () => {
  assertEquals(stripJsonComments('{"a":"//x","b":"/*y*/"} // z'), '{"a":"//x","b":"/*y*/"}     ');
  assertEquals(stripJsonComments('{"a":"\\"//"}'), '{"a":"\\"//"}');
});

Deno.test("the shipped configs are valid", async () => {
  for (const name of ["default.json", "production.json"]) {
    const text = await Deno.readTextFile(new URL(name, import.meta.url));
    const config = parseConfig(text);
    assertEquals([config.socketPath, config.pools[0].ranges], ["tas_socket", [{
      first: 10000,
      last: 10039,
    }]]);
  }
});

Deno.test("validateConfig() builds pools: configured ones first, then the shorthand per family", () => {
  const config = validateConfig({
    ...VALID,
    addr_families: { inet: true, inet6: true },
    pools: [
      {
        name: "wan",
        family: "inet",
        ranges: [{ first: 20100, last: 20199 }, { first: 20000, last: 20009 }],
        tags: ["wan"],
        ifnames: ["eth*"],
      },
      { family: "inet6", ranges: [{ first: 30000, last: 30000 }] },
    ],
  });
  assertEquals(config.pools, [
    {
      name: "wan",
      family: 2,
      ranges: [{ first: 20000, last: 20009 }, { first: 20100, last: 20199 }],
      tags: ["wan"],
      ifnames: ["eth*"],
    },
    { name: "pool1", family: 10, ranges: [{ first: 30000, last: 30000 }], tags: [], ifnames: [] },
    { name: "default", family: 2, ranges: [{ first: 10000, last: 10039 }], tags: [], ifnames: [] },
    { name: "default", family: 10, ranges: [{ first: 10000, last: 10039 }], tags: [], ifnames: [] },
  ]);
  // With pools, the shorthand is optional.
  const only = validateConfig({
    ...VALID,
    table_offset: undefined,
    num_tables: undefined,
    pools: [{ family: "inet", ranges: [{ first: 500, last: 509 }] }],
  });
  assertEquals(only.pools.map((p) => p.name), ["pool0"]);
});

Deno.test("validateConfig() names what is wrong in pools", () => {
  const pool = (p: Record<string, unknown>) => ({
    pools: [{ family: "inet", ranges: [{ first: 500, last: 509 }], ...p }],
  });
  rejects({ pools: {} }, "pools", /"pools" must be an array of pools/);
  rejects({ pools: [5] }, "pools[0]", /pools\[0\] must be an object, got 5/);
  rejects(pool({ size: 3 }), "pools[0].size", /pools\[0\]: "size" is not a known key/);
  rejects(
    pool({ family: "ipx" }),
    "pools[0].family",
    /pools\[0\].family must be "inet", "inet6" or "unspec", got "ipx"/,
  );
  rejects(
    pool({ family: "inet6" }),
    "pools[0].family",
    /is "inet6", which "addr_families" does not enable/,
  );
  rejects(pool({ ranges: [] }), "pools[0].ranges", /must be a non-empty array/);
  rejects(
    pool({ ranges: [{ first: 600, last: 500 }] }),
    "pools[0].ranges[0]",
    /"last" 500 is below "first" 600/,
  );
  rejects(
    pool({ ranges: [{ first: 250, last: 260 }] }),
    "pools[0].ranges[0]",
    /includes the kernel's reserved table\(s\) 253, 254, 255/,
  );
  rejects(
    pool({ ranges: [{ first: 254, last: 254 }] }),
    "pools[0].ranges[0].first",
    /one of the kernel's reserved tables/,
  );
  rejects(
    pool({ ranges: [{ first: 10030, last: 10050 }] }),
    "pools",
    /pools "pool0" \(10030-10050\) and "default" \(10000-10039\) of family inet overlap|"default" \(10000-10039\) and "pool0" \(10030-10050\)/,
  );
  rejects(pool({ name: "bad name" }), "pools[0].name", /must be 1 to 32 letters/);
  rejects(
    pool({ tags: "wan" }),
    "pools[0].tags",
    /must be an array of non-empty strings, got "wan"/,
  );
  rejects(pool({ ifnames: ["eth["] }), undefined, /the pattern "eth\[" has an unclosed "\["/);
  rejects(
    { table_offset: undefined, num_tables: undefined },
    "table_offset",
    /"table_offset" is required/,
  );
  rejects(
    {
      pools: [{ name: "a", family: "inet", ranges: [{ first: 500, last: 500 }] }, {
        name: "a",
        family: "inet",
        ranges: [{ first: 600, last: 600 }],
      }],
    },
    "pools[1].name",
    /"a" is used twice/,
  );
});

Deno.test("validateConfig() reads reservations and names what is wrong in them", () => {
  const config = validateConfig({
    ...VALID,
    addr_families: { inet: true, inet6: true },
    reservations: [
      { table: 10005, ifname: "eth0", address: "2001:DB8::1", family: "inet6" },
      { table: 30000, ifname: "wg0" },
    ],
  });
  assertEquals(config.reservations, [
    { table: 10005, ifname: "eth0", address: "2001:db8::1", family: 10 },
    { table: 30000, ifname: "wg0", address: "*", family: undefined },
  ]);
  rejects({ reservations: {} }, "reservations", /must be an array/);
  rejects(
    { reservations: [{ ifname: "eth0" }] },
    "reservations[0].table",
    /reservations\[0\].table must be an integer/,
  );
  rejects(
    { reservations: [{ table: 5 }] },
    "reservations[0].ifname",
    /reservations\[0\].ifname is required/,
  );
  rejects(
    { reservations: [{ table: 5, ifname: "eth0", address: "192.0.2.1" }] },
    "reservations[0].family",
    /an "address" needs its "family"/,
  );
  rejects(
    { reservations: [{ table: 5, ifname: "eth0", address: "x", family: "inet" }] },
    "reservations[0]",
    /not an IPv4 address: "x"/,
  );
  rejects(
    { reservations: [{ table: 5, ifname: "eth 0" }] },
    "reservations[0]",
    /not a valid interface name/,
  );
  rejects(
    { reservations: [{ table: 5, ifname: "a" }, { table: 5, ifname: "b" }] },
    "reservations[1]",
    /table 5 is reserved twice \(for a and b\)/,
  );
  rejects(
    { reservations: [{ table: 5, ifname: "a" }, { table: 6, ifname: "a" }] },
    "reservations[1]",
    /a \* has two reservations \(5 and 6\)/,
  );
  rejects(
    { reservations: [{ table: 5, ifname: "a", size: 1 }] },
    "reservations[0].size",
    /"size" is not a known key/,
  );
});
