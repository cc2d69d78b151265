import { assertEquals, assertMatch, assertThrowsType } from "../tests/helpers/assert.ts";
import { ConfigError, parseConfig, validateConfig } from "./config.ts";
import { stripJsonComments } from "./jsonc.ts";

const VALID = {
  socket_path: "tas_socket",
  table_offset: 10000,
  num_tables: 40,
  table_timeout: 3600,
  db_path: "var/leases.db",
  addr_families: { inet: true },
};

function rejects(change: Record<string, unknown>, key: string | undefined, message: RegExp): void {
  const error = assertThrowsType(() => validateConfig({ ...VALID, ...change }), ConfigError);
  assertEquals(error.key, key);
  assertMatch(error.message, message);
}

Deno.test("validateConfig() accepts the original's example and fills defaults", () => {
  assertEquals(validateConfig(VALID), {
    socketPath: "tas_socket",
    tableOffset: 10000,
    numTables: 40,
    tableTimeout: 3600,
    dbPath: "var/leases.db",
    store: { kind: "sqlite", path: "var/leases.db" },
    addrFamilies: { inet: true, inet6: false, unspec: false },
    doSyslog: false,
    logPath: undefined,
  });
});

Deno.test("validateConfig() accepts every valid extreme the original got wrong", () => {
  // num_tables < 32, a timeout past 16 bits, one family only: all fine here.
  assertEquals(validateConfig({ ...VALID, num_tables: 1 }).numTables, 1);
  assertEquals(validateConfig({ ...VALID, table_timeout: 100_000 }).tableTimeout, 100_000);
  assertEquals(validateConfig({ ...VALID, num_tables: 1 << 20 }).numTables, 1 << 20);
  assertEquals(validateConfig({ ...VALID, table_offset: 256, num_tables: 1 }).tableOffset, 256);
  assertEquals(
    validateConfig({ ...VALID, addr_families: { unspec: true } }).addrFamilies.unspec,
    true,
  );
  assertEquals(validateConfig({ ...VALID, do_syslog: true, log_path: "/tmp/x" }).logPath, "/tmp/x");
});

Deno.test("validateConfig() names the key, the expected form and the value for each error", () => {
  rejects({ socket_path: undefined }, "socket_path", /"socket_path" is required \(a string\)/);
  rejects(
    { socket_path: 5 },
    "socket_path",
    /"socket_path" must be a string of 1 to 106 characters, got 5/,
  );
  rejects({ socket_path: "" }, "socket_path", /got ""/);
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
  rejects(
    { addr_families: { ipv4: true } },
    "addr_families.ipv4",
    /"addr_families.ipv4" is not a known family/,
  );
  rejects({ do_syslog: 1 }, "do_syslog", /"do_syslog" must be true or false, got 1/);
  rejects({ log_path: "" }, "log_path", /"log_path" must be a string/);
  rejects(
    { table_ofset: 1 },
    "table_ofset",
    /"table_ofset" is not a known key; known keys: socket_path/,
  );
  assertMatch(
    assertThrowsType(() => validateConfig([]), ConfigError).message,
    /must be a JSON object, got \[\]/,
  );
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
  assertEquals(parseConfig(`${padding}${JSON.stringify(VALID)}${padding}`).numTables, 40);
});

Deno.test("stripJsonComments() leaves comment markers inside strings alone", () => {
  assertEquals(stripJsonComments('{"a":"//x","b":"/*y*/"} // z'), '{"a":"//x","b":"/*y*/"}     ');
  assertEquals(stripJsonComments('{"a":"\\"//"}'), '{"a":"\\"//"}');
});

Deno.test("the shipped configs are valid", async () => {
  for (const name of ["default.json", "production.json"]) {
    const text = await Deno.readTextFile(new URL(name, import.meta.url));
    const config = parseConfig(text);
    assertEquals([config.socketPath, config.tableOffset, config.numTables], [
      "tas_socket",
      10000,
      40,
    ]);
  }
});
