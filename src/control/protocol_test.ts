import { assertEquals, assertMatch, assertThrowsType } from "../../tests/helpers/assert.ts";
import { ProtocolError } from "../protocol/v1.ts";
import {
  decodeControlReply,
  decodeControlRequest,
  encodeControlReply,
  encodeControlRequest,
  leaseView,
} from "./protocol.ts";

const decode = (text: string) => {
  const obj = JSON.parse(text);
  return decodeControlRequest(obj);
};

Deno.test("decodeControlRequest() reads every operation", () => {
  assertEquals(decode('{"op":"status"}'), { op: "status" });
  assertEquals(decode('{"op":"pools"}'), { op: "pools" });
  assertEquals(decode('{"op":"metrics"}'), { op: "metrics" });
  assertEquals(decode('{"op":"reload"}'), { op: "reload" });
  assertEquals(decode('{"op":"list"}'), {
    op: "list",
    after: undefined,
    limit: 100,
    family: undefined,
    ifname: undefined,
    state: undefined,
  });
  assertEquals(
    decode('{"op":"list","limit":5,"family":10,"ifname":"eth1","state":"bound","after":"x"}'),
    {
      op: "list",
      after: "x",
      limit: 5,
      family: 10,
      ifname: "eth1",
      state: "bound",
    },
  );
  assertEquals(decode('{"op":"show","family":2,"table":10000}'), {
    op: "show",
    selector: { family: 2, table: 10000 },
  });
  assertEquals(decode('{"op":"release","family":10,"ifname":"eth1","address":"2001:DB8::1"}'), {
    op: "release",
    selector: { family: 10, ifname: "eth1", address: "2001:db8::1" },
  });
  assertEquals(decode('{"op":"reserve","table":10005,"ifname":"eth0"}'), {
    op: "reserve",
    table: 10005,
    ifname: "eth0",
    address: undefined,
    family: undefined,
  });
  assertEquals(
    decode('{"op":"reserve","table":7,"ifname":"eth0","address":"192.0.2.1","family":2}'),
    {
      op: "reserve",
      table: 7,
      ifname: "eth0",
      address: "192.0.2.1",
      family: 2,
    },
  );
  assertEquals(decode('{"op":"unreserve","table":7}'), {
    op: "unreserve",
    table: 7,
    family: undefined,
  });
});

Deno.test("decodeControlRequest() names what is wrong", () => {
  const fail = (text: string, code: string, message: RegExp) => {
    const error = assertThrowsType(() => decode(text), ProtocolError);
    assertEquals(error.code, code);
    assertMatch(error.message, message);
  };
  fail(
    '{"op":"explode"}',
    "unknown_cmd",
    /"op" must be one of status, pools, list, show, release, reserve, unreserve, metrics, reload, got "explode"/,
  );
  fail(
    '{"op":"list","limit":1000}',
    "bad_request",
    /"limit" must be an integer from 1 to 200, got 1000/,
  );
  fail(
    '{"op":"list","state":"gone"}',
    "bad_request",
    /"state" must be one of bound, released, expired, reserved, got "gone"/,
  );
  fail('{"op":"show","table":5}', "bad_request", /"family" is required/);
  fail('{"op":"show","family":2}', "bad_request", /give "table", or "ifname" and "address"/);
  fail('{"op":"show","family":7,"table":1}', "bad_request", /"family" must be 0, 2 or 10, got 7/);
  fail(
    '{"op":"release","family":2,"ifname":"eth1","address":"nope"}',
    "bad_request",
    /not an IPv4 address/,
  );
  fail('{"op":"reserve","ifname":"eth0"}', "bad_request", /"table" is required/);
  fail('{"op":"reserve","table":7}', "bad_request", /"ifname" is required/);
  fail(
    '{"op":"reserve","table":7,"ifname":"eth0","address":"192.0.2.1"}',
    "bad_request",
    /needs its "family"/,
  );
  for (const table of [253, 254, 255]) {
    fail(
      `{"op":"reserve","table":${table},"ifname":"eth0"}`,
      "bad_request",
      new RegExp(`table ${table} is one of the kernel's tables .* cannot be reserved`),
    );
  }
  fail(
    '{"op":"reserve","table":0,"ifname":"eth0"}',
    "bad_request",
    /"table" must be an integer from 1/,
  );
});

Deno.test("control replies round-trip, and errors decode as failures", () => {
  const lease = {
    family: 2 as const,
    ifname: "eth1",
    address: "192.0.2.1",
    table: 10000,
    expiresAt: 1_700_000_000_000,
    tag: undefined,
    owner: "table-allocator-server",
    uid: 0,
    state: "bound" as const,
  };
  const reply = decodeControlReply(encodeControlReply("show", { leases: [leaseView(lease)] }));
  assertEquals(reply, {
    ok: true,
    op: "show",
    result: {
      leases: [{
        family: 2,
        ifname: "eth1",
        address: "192.0.2.1",
        table: 10000,
        state: "bound",
        expires_at: 1_700_000_000_000,
        tag: null,
        owner: "table-allocator-server",
        uid: 0,
      }],
    },
  });
  assertEquals(leaseView({ ...lease, state: "reserved", expiresAt: 0 }).expires_at, null);
  assertEquals(
    decodeControlReply(
      new TextEncoder().encode(
        '{"version":1,"cmd":3,"error":"not_permitted","message":"root only"}',
      ),
    ),
    { ok: false, code: "not_permitted", message: "root only" },
  );
  assertEquals(JSON.parse(new TextDecoder().decode(encodeControlRequest("list", { limit: 5 }))), {
    version: 1,
    cmd: 16,
    op: "list",
    limit: 5,
  });
});
