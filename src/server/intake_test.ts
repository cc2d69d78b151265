import { assertEquals, assertMatch } from "../../tests/helpers/assert.ts";
import { Authenticator, parsePsk } from "../protocol/auth.ts";
import { paddedAbstractAddress } from "../unix/abstract_socket.ts";
import type { DecisionPolicy } from "./decide.ts";
import { sortBatch } from "./intake.ts";
import type { Carried } from "./receiver.ts";

const POLICY: DecisionPolicy = {
  leaseMs: 60_000,
  families: [2],
  sharedStore: false,
  maxLeasesPerUid: 8,
};
const encoder = new TextEncoder();

function datagram(text: string, uid = 0, name = "c1"): Carried {
  const data = encoder.encode(text);
  return {
    datagram: {
      data,
      length: data.byteLength,
      sender: paddedAbstractAddress(name),
      credentials: { pid: 1, uid, gid: uid },
    },
    attempt: 1,
    collisions: 0,
  };
}
const body = (address: string, cmd = 0) =>
  `{"address":"${address}","ifname":"eth1","addr_family":2,"cmd":${cmd},"version":1}`;

Deno.test("sortBatch() makes one job per identity: copies share it, one other message waits", () => {
  const batch = [
    datagram(body("10.0.0.1")),
    datagram(body("10.0.0.1"), 0, "c2"), // the same ask from another socket of the same uid
    datagram(body("10.0.0.1", 1)), // a release: waits for the next pass
    datagram(body("10.0.0.1", 1), 0, "c3"), // a copy of the waiting one
    datagram(body("10.0.0.1"), 65534), // another uid: a third message, refused
    datagram(body("10.0.0.2")),
  ];
  const intake = sortBatch(batch, POLICY, undefined);
  assertEquals(intake.jobs.map((j) => [j.clientId, j.twins.length]), [
    ["2/eth1/10.0.0.1", 1],
    ["2/eth1/10.0.0.2", 0],
  ]);
  assertEquals(intake.waiting.map((j) => [j.origin.request.cmd, j.twins.length]), [[1, 1]]);
  assertEquals(intake.refused.map((r) => r.answer.code), ["conflict"]);
  assertMatch(intake.refused[0].answer.message, /two other messages for eth1 10\.0\.0\.1/);
});

Deno.test("sortBatch() refuses bad datagrams and disabled families, and sets control requests aside", () => {
  const intake = sortBatch(
    [
      datagram("nope"),
      datagram(`{"address":"2001:db8::1","ifname":"eth1","addr_family":10,"cmd":0,"version":1}`),
      datagram(`{"version":1,"cmd":16,"op":"status"}`),
    ],
    POLICY,
    undefined,
  );
  assertEquals(intake.refused.map((r) => r.answer.code), ["bad_json", "family_disabled"]);
  assertEquals(intake.controls.length, 1);
  assertEquals(intake.jobs, []);
});

Deno.test("sortBatch() runs its callback between two datagrams, whatever becomes of them", () => {
  const calls: number[] = [];
  const batch = [
    datagram("nope"), // refused
    datagram(`{"version":1,"cmd":16,"op":"status"}`), // set aside
    datagram(body("10.0.0.1")),
    datagram(body("10.0.0.1"), 0, "c2"), // a twin
    datagram(body("10.0.0.2")),
  ];
  const intake = sortBatch(batch, POLICY, undefined, (sorted) => calls.push(sorted));
  assertEquals(calls, [1, 2, 3, 4], "after each datagram but the last");
  assertEquals(intake.jobs.length, 2);
  const one = sortBatch([datagram(body("10.0.0.3"))], POLICY, undefined, () => {
    throw new Error("a batch of one has no in-between");
  });
  assertEquals(one.jobs.length, 1);
});

Deno.test("sortBatch() checks a MAC once: a carried datagram keeps its verdict", () => {
  const auth = { authenticator: new Authenticator(parsePsk("ab".repeat(32))), require: true };
  const signed = new TextDecoder().decode(
    auth.authenticator.seal(encoder.encode(body("10.0.0.1"))),
  );
  const first = sortBatch([datagram(signed)], POLICY, auth);
  assertEquals(first.jobs.map((j) => j.signed), [true]);
  // The same bytes again from the wire: a replay.
  assertEquals(
    sortBatch([datagram(signed)], POLICY, auth).refused[0].answer.code,
    "unauthenticated",
  );
  // Carried to the next pass with its verdict: not a replay.
  const carried = { ...datagram(signed), verdict: "authentic" as const };
  assertEquals(sortBatch([carried], POLICY, auth).jobs.map((j) => j.signed), [true]);
  assertMatch(
    sortBatch([datagram(body("10.0.0.3"))], POLICY, auth).refused[0].answer.message,
    /requires signed requests/,
  );
});
