import { assertEquals, assertMatch, assertThrowsType } from "../../tests/helpers/assert.ts";
import {
  Command,
  decodeReply,
  decodeRequest,
  encodeError,
  encodeNotice,
  encodeReply,
  encodeRequest,
  ifnameProblem,
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

Deno.test("decodeRequest() refuses lone surrogates anywhere, so two bad spellings never merge", () => {
  const fail = (text: string, message: RegExp) => {
    const error = assertThrowsType(() => decodeRequest(enc(text)), ProtocolError);
    assertEquals(error.code, "bad_request");
    assertMatch(error.message, message);
  };
  const body = (address: string, extra = "") =>
    `{"address":"${address}","ifname":"eth1","addr_family":0,"cmd":0,"version":1${extra}}`;
  fail(body("x\\ud800"), /well-formed Unicode; "address" has a lone surrogate/);
  fail(body("x\\udfff"), /"address" has a lone surrogate/);
  fail(body("x", ',"tag":"\\udc00"'), /"tag" has a lone surrogate/);
  fail(body("x", ',"other":{"deep":["\\ud800"]}'), /"deep" has a lone surrogate/);
  fail(body("x", ',"\\ud800":1'), /the key .* has a lone surrogate/);
  // A pair is well-formed, escaped or not.
  assertEquals(decodeRequest(enc(body("x\\ud83d\\ude00"))).identity.address, "x\u{1f600}");
  assertEquals(decodeRequest(enc(body("x\u{1f600}"))).identity.address, "x\u{1f600}");
});

Deno.test("ifnameProblem() follows the kernel's rules for interface names", () => {
  for (const name of ["eth0", "wlp2s0", "br-lan.10", "a".repeat(15), "été"]) {
    assertEquals(ifnameProblem(name), undefined, name);
  }
  const problems: Array<[string, RegExp]> = [
    ["", /empty/],
    [".", /\. or \.\./],
    ["..", /\. or \.\./],
    ["a".repeat(16), /16 bytes, at most 15/],
    ["ééééééééé", /18 bytes/],
    ["a/b", /white space, \/ or :/],
    ["eth0:1", /white space/],
    ["a b", /white space/],
    ["a\tb", /control|white space/],
    ["a\u00a0b", /white space/],
    ["a\u2003b", /white space/],
    ["a\u3000b", /white space/],
    // The kernel's isspace() takes the byte 0xa0: "à" is c3 a0 in UTF-8.
    ["à", /white space/],
    ["a\u0001b", /control/],
    ["a\u007fb", /control/],
    ["a\u0085b", /control/],
    ["a\ud800", /well-formed/],
  ];
  for (const [name, problem] of problems) assertMatch(ifnameProblem(name) ?? "", problem, name);
});

Deno.test("decodeRequest() refuses tags with control characters", () => {
  const error = assertThrowsType(
    () =>
      decodeRequest(
        enc(
          '{"address":"1.2.3.4","ifname":"e","tag":"a\\u001bb","addr_family":2,"cmd":0,"version":1}',
        ),
      ),
    ProtocolError,
  );
  assertEquals(error.code, "bad_request");
  assertMatch(error.message, /"tag" has control characters/);
  assertEquals(
    decodeRequest(
      enc('{"address":"1.2.3.4","ifname":"e","tag":"wan é","addr_family":2,"cmd":0,"version":1}'),
    ).tag,
    "wan é",
  );
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
  const room = encodeError("unauthenticated", "x".repeat(300), 136);
  assertEquals(room.byteLength <= 136, true, "a smaller limit leaves room for a signature");
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
