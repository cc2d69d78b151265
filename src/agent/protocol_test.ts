import { assertEquals, assertMatch, assertThrowsType } from "../../tests/helpers/assert.ts";
import {
  AgentProtocolError,
  type AgentReply,
  decodeAgentReply,
  decodeAgentRequest,
  encodeAgentReply,
  encodeAgentRequest,
  type HoldSpec,
} from "./protocol.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

const SPEC: HoldSpec = {
  identity: { family: 2, ifname: "eth1", address: "192.0.2.10" },
  prefix: 24,
  server: "tas_socket",
  tag: undefined,
  logPath: undefined,
  syslog: true,
  serverUids: undefined,
  pskFile: undefined,
};

Deno.test("a hold request goes through the codec unchanged, with only the keys given", () => {
  const wire = encodeAgentRequest({ op: "hold", spec: SPEC });
  assertEquals(
    dec(wire),
    '{"version":1,"op":"hold","addr_family":2,"ifname":"eth1","address":"192.0.2.10","prefix":24,"server":"tas_socket","syslog":true}',
  );
  assertEquals(decodeAgentRequest(wire), { op: "hold", spec: SPEC });
  const full: HoldSpec = {
    identity: { family: 10, ifname: "wan0", address: "2001:db8::10" },
    prefix: 64,
    server: "s",
    tag: "wan",
    logPath: "/var/log/ta.log",
    syslog: false,
    serverUids: [0, 998],
    pskFile: undefined,
  };
  assertEquals(decodeAgentRequest(encodeAgentRequest({ op: "hold", spec: full })), {
    op: "hold",
    spec: full,
  });
  const unspec = { ...SPEC, identity: { family: 0 as const, ifname: "lo", address: "id 1" } };
  assertEquals(
    decodeAgentRequest(encodeAgentRequest({ op: "hold", spec: { ...unspec, prefix: null } })),
    { op: "hold", spec: { ...unspec, prefix: null } },
  );
});

Deno.test("release, cancel and status requests go through the codec unchanged", () => {
  const identity = { family: 2 as const, ifname: "eth1", address: "192.0.2.10" };
  for (const op of ["release", "cancel"] as const) {
    assertEquals(decodeAgentRequest(encodeAgentRequest({ op, identity })), { op, identity });
  }
  assertEquals(decodeAgentRequest(encodeAgentRequest({ op: "status" })), { op: "status" });
});

Deno.test("decodeAgentRequest() names what is wrong with a message", () => {
  const hold = (extra: Record<string, unknown>) =>
    JSON.stringify({
      version: 1,
      op: "hold",
      addr_family: 2,
      ifname: "eth1",
      address: "192.0.2.10",
      prefix: 24,
      server: "s",
      ...extra,
    });
  const cases: Array<[string, string, RegExp, number?]> = [
    ["{", "bad_json", /not a JSON object/],
    ["[1]", "bad_json", /not a JSON object, got \[1\]/],
    ['{"version":2,"op":"status"}', "bad_version", /"version" must be 1, got 2/],
    ['{"version":1,"op":"steal"}', "unknown_op", /"op" must be .* got "steal"/],
    ['{"version":1}', "unknown_op", /got undefined/],
    ['{"version":1,"op":"status"}', "oversize", /of 9000 bytes exceeds 8192/, 9000],
    [hold({ prefix: 33 }), "bad_request", /"prefix" must be an integer from 1 to 32, got 33/],
    [hold({ prefix: undefined }), "bad_request", /"prefix" must be an integer/],
    [hold({ addr_family: 0, prefix: 8 }), "bad_request", /"prefix" is for families 2 and 10/],
    [hold({ address: "192.0.2.300" }), "bad_request", /not an IPv4 address/],
    [hold({ ifname: "a/b" }), "bad_request", /not a valid interface name/],
    [hold({ server: "" }), "bad_request", /"server" must be a string of 1 to 105 bytes/],
    [hold({ log_path: "relative.log" }), "bad_request", /"log_path" must be an absolute path/],
    [hold({ syslog: "yes" }), "bad_request", /"syslog" must be true or false/],
    [hold({ server_uids: [] }), "bad_request", /"server_uids" must be 1 to 16 uids/],
    [hold({ server_uids: [-1] }), "bad_request", /"server_uids"/],
    [hold({ tag: 7 }), "bad_request", /"tag" must be a string/],
  ];
  for (const [text, code, message, length] of cases) {
    const error = assertThrowsType(() => decodeAgentRequest(enc(text), length), AgentProtocolError);
    assertEquals(error.code, code, text);
    assertMatch(error.message, message);
  }
});

Deno.test("the agent's replies go through the codec unchanged; anything else is refused", () => {
  const replies = [
    { op: "hold", result: "lease", table: 10001 },
    { op: "hold", result: "none", reason: "no answer from @s after 5 tries" },
    { op: "hold", result: "refused", error: "pool_exhausted", message: "full" },
    { op: "release", result: "released" },
    { op: "release", result: "not_held" },
    { op: "cancel", result: "cancelled" },
    { op: "status", pid: 42, rss: 50_000_000, heap_used: 9_000_000, identities: [] },
    { op: "error", error: "not_permitted", message: "only root" },
  ] satisfies AgentReply[];
  for (const reply of replies) assertEquals(decodeAgentReply(encodeAgentReply(reply)), reply);
  for (const text of ['{"version":1,"op":"hold","result":"lease","table":0}', '{"version":1}']) {
    assertEquals(
      assertThrowsType(() => decodeAgentReply(enc(text)), AgentProtocolError).code,
      "bad_request",
    );
  }
});
