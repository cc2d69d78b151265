import { assertEquals, assertMatch, assertThrowsType } from "../../tests/helpers/assert.ts";
import {
  Command,
  decodeReply,
  decodeRequest,
  encodeError,
  encodeNotice,
  encodeReply,
  encodeRequest,
  isLeasableTable,
  MAX_REPLY_BYTES,
  ProtocolError,
} from "./v1.ts";

const enc = (s: string) => new TextEncoder().encode(s);

Deno.test("decodeRequest() reads the C client's exact request", () => {
  const wire =
    '{"address":"192.168.5.113","ifname":"eth1","tag":"x","addr_family":2,"cmd":0,"version":1}';
  const request = decodeRequest(enc(wire));
  assertEquals(request, {
    cmd: Command.REQUEST,
    identity: { family: 2, ifname: "eth1", address: "192.168.5.113" },
    tag: "x",
  });
  // And encodeRequest() writes the same bytes, key order included.
  assertEquals(new TextDecoder().decode(encodeRequest(request)), wire);
});

Deno.test("decodeRequest() ignores unknown keys and takes any identifier for family 0", () => {
  const request = decodeRequest(
    enc('{"address":"modem 1","ifname":"wwan0","addr_family":0,"cmd":1,"version":1,"extra":true}'),
  );
  assertEquals(request.identity, { family: 0, ifname: "wwan0", address: "modem 1" });
  assertEquals(request.cmd, Command.RELEASE);
});

Deno.test("decodeRequest() names what is wrong", () => {
  const fail = (text: string, code: string, message: RegExp, length?: number) => {
    const error = assertThrowsType(() => decodeRequest(enc(text), length), ProtocolError);
    assertEquals(error.code, code);
    assertMatch(error.message, message);
  };
  fail("{", "bad_json", /not a JSON object/);
  fail("null", "bad_json", /got null/);
  fail('"text"', "bad_json", /got "text"/);
  fail("{}", "bad_request", /"version" is missing/);
  fail('{"version":1.5}', "bad_request", /"version" must be an integer, got 1\.5/);
  fail('{"version":2,"cmd":0}', "bad_version", /"version" must be 1, got 2/);
  fail('{"version":1,"cmd":9}', "unknown_cmd", /got 9/);
  fail(
    '{"version":1,"cmd":0,"addr_family":2,"ifname":"eth1","address":"::1"}',
    "bad_request",
    /not an IPv4/,
  );
  fail(
    '{"version":1,"cmd":0,"addr_family":10,"ifname":"eth1","address":"1.2.3.4"}',
    "bad_request",
    /not an IPv6/,
  );
  fail(
    '{"version":1,"cmd":0,"addr_family":2,"ifname":"a/b","address":"1.2.3.4"}',
    "bad_request",
    /interface name/,
  );
  fail(
    '{"version":1,"cmd":0,"addr_family":2,"ifname":"","address":"1.2.3.4"}',
    "bad_request",
    /1 to 15 bytes/,
  );
  fail(
    '{"version":1,"cmd":0,"addr_family":0,"ifname":"e","address":"a\\u0001"}',
    "bad_request",
    /control/,
  );
  fail(
    '{"version":1,"cmd":0,"addr_family":2,"ifname":"e","address":"1.2.3.4","tag":5}',
    "bad_request",
    /"tag" must be a string/,
  );
  fail("{}", "oversize", /datagram of 5000 bytes exceeds 1024/, 5000);
});

Deno.test("encodeReply() writes the v1 reply the C client parses", () => {
  assertEquals(
    new TextDecoder().decode(encodeReply(10000, 3775.9)),
    '{"version":1,"cmd":2,"table":10000,"lease_expires":3775}',
  );
  assertEquals(decodeReply(encodeReply(10000, 3775)), {
    kind: "lease",
    table: 10000,
    leaseExpires: 3775,
  });
});

Deno.test("encodeError() keeps version 1, uses cmd 3 and always fits 254 bytes", () => {
  const short = JSON.parse(new TextDecoder().decode(encodeError("pool_exhausted", "full")));
  assertEquals(short, { version: 1, cmd: 3, error: "pool_exhausted", message: "full" });
  const long = encodeError("bad_request", `"x" ${'\u00e9"'.repeat(400)}`);
  assertEquals(long.byteLength <= MAX_REPLY_BYTES, true);
  const parsed = JSON.parse(new TextDecoder().decode(long));
  assertMatch(parsed.message, /\.\.\.$/);
  assertEquals(decodeReply(long).kind, "error");
});

Deno.test("decodeReply() treats another version as an error and anything but cmd 2 as no lease", () => {
  assertEquals(
    assertThrowsType(() => decodeReply(enc('{"version":2,"cmd":2,"table":1}')), ProtocolError).code,
    "bad_version",
  );
  assertEquals(assertThrowsType(() => decodeReply(enc("[]")), ProtocolError).code, "bad_json");
  assertEquals(decodeReply(enc('{"version":1,"cmd":5}')), {
    kind: "error",
    code: "cmd 5",
    message: "the server sent no reason",
  });
});

Deno.test("encodeNotice() writes the revoked notice and decodeReply() reads it back", () => {
  const notice = {
    notice: "revoked" as const,
    table: 10003,
    identity: { family: 2 as const, ifname: "eth1", address: "192.0.2.10" },
  };
  const wire = new TextDecoder().decode(encodeNotice(notice));
  assertEquals(
    wire,
    '{"version":1,"cmd":4,"notice":"revoked","table":10003,"addr_family":2,"ifname":"eth1","address":"192.0.2.10"}',
  );
  assertEquals(decodeReply(enc(wire)), { kind: "notice", notice });
  // The identity is canonicalised like a request's.
  const v6 = decodeReply(
    enc(
      '{"version":1,"cmd":4,"notice":"revoked","table":7,"addr_family":10,"ifname":"eth1","address":"2001:DB8::0:1"}',
    ),
  );
  assertEquals(v6.kind === "notice" && v6.notice.identity.address, "2001:db8::1");
});

Deno.test("decodeReply() refuses a malformed notice and names what is wrong", () => {
  const base = { version: 1, cmd: 4, notice: "revoked", table: 10003, addr_family: 2 };
  const fail = (obj: Record<string, unknown>, message: RegExp) => {
    const error = assertThrowsType(() => decodeReply(enc(JSON.stringify(obj))), ProtocolError);
    assertEquals(error.code, "bad_request");
    assertMatch(error.message, message);
  };
  const id = { ifname: "eth1", address: "192.0.2.10" };
  fail({ ...base, ...id, notice: "moved" }, /"notice" must be "revoked", got "moved"/);
  fail({ ...base, ...id, table: 0 }, /"table" must be 1 to 4294967295, got 0/);
  fail({ ...base, ...id, table: "1" }, /"table" must be an integer/);
  fail({ ...base, ifname: "eth1" }, /"address" is missing/);
  fail({ ...base, ...id, address: "192.0.2.300" }, /not an IPv4 address/);
});

Deno.test("isLeasableTable() refuses the kernel's tables, 0 and numbers beyond u32", () => {
  for (const table of [0, 253, 254, 255, -1, 1.5, 2 ** 32, NaN]) {
    assertEquals(isLeasableTable(table), false, `table ${table}`);
  }
  for (const table of [1, 252, 256, 10000, 2 ** 32 - 1]) {
    assertEquals(isLeasableTable(table), true, `table ${table}`);
  }
});
