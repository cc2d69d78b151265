/**
 * The control client's transport and reply checks, against a scripted peer
 * on a real abstract socket: what the client does with replies a correct
 * server never sends (foreign senders, malformed results, silence). The
 * client against the real server is tested in `tests/ctl_test.ts`.
 */

import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertMatch,
  assertThrows,
  assertThrowsType,
} from "../../tests/helpers/assert.ts";
import { AbstractDatagramSocket, type Datagram } from "../unix/abstract_socket.ts";
import {
  BadReplyError,
  ControlClient,
  ControlError,
  NotRunningError,
  TimeoutError,
  validateResult,
} from "./client.ts";
import { encodeControlReply, type LeaseView } from "./protocol.ts";

const encoder = new TextEncoder();

const LEASE: LeaseView = {
  family: 2,
  ifname: "eth1",
  address: "192.0.2.10",
  table: 10000,
  state: "bound",
  expires_at: 1_700_000_000_000,
  tag: null,
  owner: "table-allocator-server",
  uid: 0,
};

/** A peer bound to a fresh padded name that answers each datagram with `answer`. */
function scriptedPeer(
  answer: (datagram: Datagram, peer: AbstractDatagramSocket) => void,
): { name: string; received: Datagram[] } & AsyncDisposable {
  const name = `ctl-test-${crypto.randomUUID().slice(0, 8)}`;
  const socket = AbstractDatagramSocket.bind(name);
  const received: Datagram[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const datagram = socket.receive();
      if (datagram) {
        received.push(datagram);
        answer(datagram, socket);
      } else await socket.readable(-1);
    }
  })();
  return {
    name,
    received,
    async [Symbol.asyncDispose]() {
      running = false;
      socket.wake();
      await loop;
      socket.close();
    },
  };
}

function reply(text: string) {
  return (datagram: Datagram, peer: AbstractDatagramSocket) => {
    peer.send(encoder.encode(text), datagram.sender);
  };
}

Deno.test("ControlClient.call() sends a cmd 16 request and returns the checked result", async () => {
  await using peer = scriptedPeer((datagram, socket) => {
    socket.send(encodeControlReply("show", { leases: [LEASE] }), datagram.sender);
  });
  const client = new ControlClient({ socket: peer.name, timeoutMs: 2000 });
  const result = await client.call("show", { family: 2, table: 10000 });
  assertEquals(result, { leases: [LEASE] });
  assertEquals(JSON.parse(new TextDecoder().decode(peer.received[0].data)), {
    version: 1,
    cmd: 16,
    op: "show",
    family: 2,
    table: 10000,
  });
});

Deno.test("ControlClient.call() receives a reply of tens of KB whole", async () => {
  const leases = Array.from({ length: 200 }, (_, i) => ({
    ...LEASE,
    ifname: `veth${i}`,
    address: `2001:db8:ffff:ffff:ffff:ffff:ffff:${i.toString(16)}`,
    family: 10 as const,
    tag: "t".repeat(100),
    table: 10000 + i,
  }));
  const bytes = encodeControlReply("list", { leases, next: "cursor" });
  assert(bytes.byteLength > 50_000, `reply of ${bytes.byteLength} bytes`);
  await using peer = scriptedPeer((datagram, socket) => socket.send(bytes, datagram.sender));
  const result = await new ControlClient({ socket: peer.name }).call("list", { limit: 200 });
  assertEquals(result, { leases, next: "cursor" });
});

Deno.test("ControlClient.call() turns an error reply into a ControlError with code and message", async () => {
  await using peer = scriptedPeer(
    reply('{"version":1,"cmd":3,"error":"not_permitted","message":"control is for root only"}'),
  );
  const error = await new ControlClient({ socket: peer.name }).call("status", {}).catch((e) => e);
  assertInstanceOf(error, ControlError);
  assertEquals([error.op, error.code, error.message], [
    "status",
    "not_permitted",
    "control is for root only",
  ]);
});

Deno.test("ControlClient.call() says the server is not running when nobody is bound to the name", async () => {
  const name = `ctl-nobody-${crypto.randomUUID().slice(0, 8)}`;
  const error = await new ControlClient({ socket: name }).call("status", {}).catch((e) => e);
  assertInstanceOf(error, NotRunningError);
  assertEquals(error.socket, name);
  assertEquals(
    error.message,
    `the server is not running on @${name} (no socket bound in this network namespace)`,
  );
});

Deno.test("ControlClient.call() gives up with a TimeoutError when no reply comes", async () => {
  await using peer = scriptedPeer(() => {});
  const started = performance.now();
  const error = await new ControlClient({ socket: peer.name, timeoutMs: 150 }).call("pools", {})
    .catch((e) => e);
  const elapsed = performance.now() - started;
  assertInstanceOf(error, TimeoutError);
  assertEquals(error.message, `no reply to pools from @${peer.name} within 150 ms`);
  assert(elapsed >= 140 && elapsed < 1000, `waited ${elapsed} ms`);
  assertEquals(peer.received.length, 1, "the request did arrive");
});

Deno.test("ControlClient.call() ignores datagrams from anyone but the server", async () => {
  using stranger = AbstractDatagramSocket.bind(null);
  await using peer = scriptedPeer((datagram, socket) => {
    // Another process writes to the client's name first: not an answer.
    stranger.send(encodeControlReply("pools", { pools: [] }), datagram.sender);
    setTimeout(() => {
      socket.send(
        encoder.encode('{"version":1,"cmd":3,"error":"conflict","message":"real answer"}'),
        datagram.sender,
      );
    }, 20);
  });
  const error = await new ControlClient({ socket: peer.name }).call("pools", {}).catch((e) => e);
  assertInstanceOf(error, ControlError);
  assertEquals(error.message, "real answer");
});

Deno.test("ControlClient.call() refuses replies that are not JSON, for another op, or malformed", async () => {
  const cases: Array<[string, RegExp]> = [
    ["not json", /the server's reply to pools is not understood: .*not a JSON object/],
    ['{"version":1,"cmd":2,"table":1,"lease_expires":1}', /unexpected reply/],
    ['{"version":1,"cmd":17,"op":"status","result":{}}', /it answers op "status"/],
    [
      '{"version":1,"cmd":17,"op":"pools","result":{"pools":[{"name":"x"}]}}',
      /"result\.pools\[0\]\.family" must be 0, 2 or 10, got undefined/,
    ],
  ];
  for (const [text, message] of cases) {
    await using peer = scriptedPeer(reply(text));
    const error = await new ControlClient({ socket: peer.name }).call("pools", {}).catch((e) => e);
    assertInstanceOf(error, BadReplyError);
    assertMatch(error.message, message);
  }
});

Deno.test("validateResult() names the first key at fault and keeps unknown keys", () => {
  assertEquals(validateResult("show", { leases: [{ ...LEASE, extra: 1 }], more: true }), {
    leases: [{ ...LEASE, extra: 1 }],
    more: true,
  });
  const bad: Array<[unknown, RegExp]> = [
    [null, /"result" must be an object, got null/],
    [{ leases: {} }, /"result\.leases" must be an array/],
    [
      { leases: [{ ...LEASE, table: -1 }] },
      /"result\.leases\[0\]\.table" must be an integer >= 0, got -1/,
    ],
    [
      { leases: [{ ...LEASE, state: "gone" }] },
      /"result\.leases\[0\]\.state" must be one of bound/,
    ],
    [{ leases: [{ ...LEASE, expires_at: "soon" }] }, /expires_at" must be a number, got "soon"/],
    [{ leases: [{ ...LEASE, tag: 5 }] }, /"result\.leases\[0\]\.tag" must be a string, got 5/],
  ];
  for (const [result, message] of bad) {
    const error = assertThrowsType(() => validateResult("show", result), BadReplyError);
    assertMatch(error.message, message);
  }
  assertEquals(
    validateResult("list", { leases: [], next: null }),
    { leases: [], next: null },
  );
  // An older server sends no held tables with a release.
  assertEquals(validateResult("release", { released: [] }), { released: [], held: [] });
  const hold = {
    family: 2,
    table: 10000,
    ifname: null,
    address: "192.0.2.10",
    until: 5,
    reason: "readiness",
  };
  assertEquals(validateResult("release", { released: [], held: [hold] }).held, [hold]);
  assertMatch(
    assertThrowsType(
      () => validateResult("release", { released: [], held: [{ ...hold, reason: "x" }] }),
      BadReplyError,
    ).message,
    /"result\.held\[0\]\.reason" must be a hold reason, got "x"/,
  );
  assertEquals(validateResult("metrics", { text: "x 1\n" }), { text: "x 1\n" });
  assertMatch(
    assertThrowsType(() => validateResult("metrics", { text: 1 }), BadReplyError).message,
    /"result\.text" must be a string/,
  );
  assertEquals(
    validateResult("reload", { config: "c", pools: 1, reservations: 0, outputs: 1 }).pools,
    1,
  );
});

Deno.test("ControlClient refuses a socket name that cannot be addressed and a timeout <= 0", () => {
  assertThrows(() => new ControlClient({ socket: "" }), RangeError);
  assertThrows(() => new ControlClient({ socket: "s".repeat(108) }), RangeError);
  assertThrows(() => new ControlClient({ timeoutMs: 0 }), /timeoutMs must be a positive number/);
});
