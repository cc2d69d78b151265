import { assertEquals, assertMatch, assertThrows } from "../../tests/helpers/assert.ts";
import type { HoldSpec } from "./protocol.ts";
import {
  decodeState,
  encodeState,
  netnsCookie,
  readState,
  stateFilePath,
  writeState,
} from "./state_file.ts";

const SPEC: HoldSpec = {
  identity: { family: 2, ifname: "eth1", address: "192.0.2.10" },
  prefix: 24,
  server: "tas_socket",
  tag: "wan",
  logPath: "/var/log/ta.log",
  syslog: false,
  serverUids: [998],
  pskFile: undefined,
};
const V6: HoldSpec = {
  identity: { family: 10, ifname: "eth1", address: "2001:db8::10" },
  prefix: 64,
  server: "tas_socket",
  tag: undefined,
  logPath: undefined,
  syslog: true,
  serverUids: undefined,
  pskFile: undefined,
};

Deno.test("the state file keeps every field of a held lease", () => {
  const records = [{ spec: SPEC, table: 10001 }, { spec: V6, table: 10002 }];
  assertEquals(decodeState(encodeState(records, "4096")), {
    netnsCookie: "4096",
    records,
    errors: [],
  });
  assertEquals(decodeState(encodeState([], "1")), { netnsCookie: "1", records: [], errors: [] });
});

Deno.test("decodeState() skips a bad record, names it, and keeps the others", () => {
  const text = JSON.stringify({
    version: 1,
    netns_cookie: "7",
    identities: [
      { addr_family: 2, ifname: "eth1", address: "192.0.2.10", prefix: 24, server: "s", table: 0 },
      { addr_family: 2, ifname: "eth1", address: "192.0.2.300", prefix: 24, server: "s", table: 7 },
      { addr_family: 2, ifname: "eth1", address: "192.0.2.11", prefix: 24, server: "s", table: 7 },
    ],
  });
  const { records, errors } = decodeState(text);
  assertEquals(records.map((r) => [r.spec.identity.address, r.table]), [["192.0.2.11", 7]]);
  assertEquals(errors.length, 2);
  assertMatch(errors[0], /identity 0: "table" must be a positive integer, got 0/);
  assertMatch(errors[1], /identity 1: .*not an IPv4 address/);
  assertThrows(() => decodeState("{"), TypeError);
  assertThrows(() => decodeState('{"version":2,"netns_cookie":"1","identities":[]}'), TypeError);
  assertThrows(() => decodeState('{"version":1,"identities":[]}'), TypeError, "no cookie");
});

Deno.test("writeState() replaces the file atomically and readState() reads it back", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-state-" });
  try {
    const path = stateFilePath(`${dir}/run`);
    assertMatch(path, new RegExp(`^${dir}/run/agent-netns-\\d+\\.json$`));
    assertEquals(readState(path), { netnsCookie: "", records: [], errors: [] }, "no file");
    const cookie = netnsCookie();
    assertMatch(cookie, /^[1-9]\d*$/);
    writeState(path, [{ spec: SPEC, table: 10001 }], cookie);
    writeState(path, [{ spec: SPEC, table: 10001 }, { spec: V6, table: 10002 }], cookie);
    assertEquals(readState(path).records.map((r) => r.table), [10001, 10002]);
    assertEquals(readState(path).netnsCookie, cookie);
    assertEquals([...Deno.readDirSync(`${dir}/run`)].map((e) => e.name), [path.split("/").pop()]);
    assertEquals(Deno.statSync(path).mode! & 0o777, 0o600);
    Deno.writeTextFileSync(path, "garbage");
    assertThrows(() => readState(path), /Cannot read the state file/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
