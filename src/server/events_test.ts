import { assertEquals } from "../../tests/helpers/assert.ts";
import { MemoryLogger } from "../../tests/helpers/log.ts";
import { Command } from "../protocol/v1.ts";
import type { Lease } from "../store/lease_store.ts";
import { paddedAbstractAddress } from "../unix/abstract_socket.ts";
import { LimitedLog } from "../log/rate_limit.ts";
import {
  type ClientOrigin,
  fanOut,
  type LeaseEvent,
  type LeaseObserver,
  LogObserver,
} from "./events.ts";

const EXPIRES = Date.UTC(2024, 10, 21, 20, 0, 0);
const lease: Lease = {
  family: 2,
  ifname: "eth1",
  address: "192.0.2.10",
  table: 10001,
  expiresAt: EXPIRES,
  tag: "wan",
  owner: "table-allocator-server",
  uid: 0,
  state: "bound",
};
const client = (tag?: string): ClientOrigin => ({
  kind: "client",
  request: { cmd: Command.REQUEST, identity: lease, tag },
  sender: paddedAbstractAddress("eth1-192.0.2.10-2"),
  credentials: { pid: 812, uid: 0, gid: 0 },
});
const FROM = "from=@eth1-192.0.2.10-2 pid=812 uid=0 gid=0";
const ID = "family=inet ifname=eth1 address=192.0.2.10";

Deno.test("LogObserver writes each lease event as the line the server has always logged", () => {
  const cases: Array<[LeaseEvent, string]> = [
    [
      { kind: "granted", lease, pool: "wan", reserved: false, origin: client("wan") },
      `INFO granted ${ID} tag=wan table=10001 pool=wan expires=2024-11-21T20:00:00.000Z ${FROM}`,
    ],
    [
      { kind: "refreshed", lease, reserved: false, origin: client() },
      `INFO refreshed ${ID} table=10001 expires=2024-11-21T20:00:00.000Z ${FROM}`,
    ],
    [
      { kind: "moved", lease, previousTable: 10000, reserved: true, origin: client() },
      `INFO moved ${ID} table=10001 previous_table=10000 reserved=yes expires=2024-11-21T20:00:00.000Z ${FROM}`,
    ],
    [
      { kind: "granted", lease, held: true, origin: client() },
      `INFO granted ${ID} table=10001 held=yes expires=2024-11-21T20:00:00.000Z ${FROM}`,
    ],
    [
      { kind: "released", lease: { ...lease, state: "released" }, origin: client() },
      `INFO released ${ID} table=10001 ${FROM}`,
    ],
    [
      { kind: "released", lease: undefined, origin: client() },
      `DEBUG released ${ID} table=0 note="no lease held" ${FROM}`,
    ],
    [
      { kind: "released", lease, origin: { kind: "control", uid: 0 } },
      `INFO released ${ID} table=10001 by=control uid=0`,
    ],
    [
      { kind: "expired", lease: { ...lease, state: "expired" }, origin: { kind: "expiry" } },
      `INFO expired ${ID} table=10001 expired=2024-11-21T20:00:00.000Z`,
    ],
  ];
  for (const [event, line] of cases) {
    const log = new MemoryLogger();
    new LogObserver(log).onLease(event);
    assertEquals(log.lines, [line]);
  }
});

Deno.test("LogObserver with leases off writes error replies only", () => {
  const log = new MemoryLogger();
  const observer = new LogObserver(log, { leases: false });
  observer.onLease({ kind: "granted", lease, origin: client() });
  const { sender, credentials } = client();
  observer.onErrorReply({
    code: "bad_json",
    message: "x",
    request: undefined,
    sender,
    credentials,
  });
  assertEquals(log.lines, [`WARN rejected error=bad_json reason=x ${FROM}`]);
});

Deno.test("LogObserver writes an error reply as a rejected line, with the request when there is one", () => {
  const log = new MemoryLogger();
  const observer = new LogObserver(log);
  const { sender, credentials, request } = client("wan");
  observer.onErrorReply({
    code: "bad_json",
    message: "not a JSON object",
    request: undefined,
    sender,
    credentials,
  });
  observer.onErrorReply({
    code: "pool_exhausted",
    message: "all 2 tables",
    request,
    sender,
    credentials,
  });
  assertEquals(log.lines, [
    `WARN rejected error=bad_json reason="not a JSON object" ${FROM}`,
    `WARN rejected error=pool_exhausted reason="all 2 tables" ${ID} tag=wan ${FROM}`,
  ]);
});

Deno.test("LogObserver limits repeated lines of one uid, except root's lease events", () => {
  const log = new MemoryLogger();
  const limited = new LimitedLog(log, { burst: 2 });
  const observer = new LogObserver(log, { limited });
  const nobody = { ...client(), credentials: { pid: 9, uid: 65534, gid: 65534 } };
  for (let i = 0; i < 5; i++) {
    observer.onLease({ kind: "refreshed", lease, reserved: false, origin: nobody });
    observer.onLease({ kind: "refreshed", lease, reserved: false, origin: client() });
    observer.onErrorReply({ ...nobody, code: "bad_json", message: "x", request: undefined });
  }
  limited.close();
  assertEquals(log.matching(/INFO refreshed .*uid=65534/).length, 2);
  assertEquals(log.matching(/INFO refreshed .*uid=0/).length, 5, "root's events are all logged");
  assertEquals(log.matching(/WARN rejected error=bad_json/).length, 2);
  assertEquals(log.matching(/similar messages suppressed/), [
    `INFO 3 similar messages suppressed kind=refreshed sender="uid=65534" ${ID} table=10001 expires=2024-11-21T20:00:00.000Z from=@eth1-192.0.2.10-2 pid=9 uid=65534 gid=65534`,
    `WARN 3 similar messages suppressed kind="rejected bad_json" sender="uid=65534" error=bad_json reason=x from=@eth1-192.0.2.10-2 pid=9 uid=65534 gid=65534`,
  ]);
});

Deno.test("fanOut() tells every observer in order, even after one throws", () => {
  const heard: string[] = [];
  const observer = (name: string, fail = false): LeaseObserver => ({
    onLease: (event) => {
      heard.push(`${name} ${event.kind}`);
      if (fail) throw new Error("output down");
    },
    onErrorReply: (event) => void heard.push(`${name} ${event.code}`),
  });
  const all = fanOut([observer("a", true), observer("b")]);
  all.onLease({ kind: "expired", lease, origin: { kind: "expiry" } });
  all.onErrorReply({ ...client(), code: "oversize", message: "", request: undefined });
  assertEquals(heard, ["a expired", "b expired", "a oversize", "b oversize"]);
});
