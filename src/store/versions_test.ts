import { assertEquals } from "../../tests/helpers/assert.ts";
import { Versions } from "./versions.ts";

Deno.test("Versions keeps a client only while a token is out or an update waits for its commit", () => {
  const v = new Versions();
  assertEquals(v.issue("a"), 0);
  assertEquals(v.size, 1);
  v.spend("a");
  assertEquals(v.size, 0, "nothing in flight: forgotten");
  const token = v.issue("a");
  v.spend("a");
  assertEquals(v.bump("a"), token, "the update's version before");
  assertEquals(v.current("a"), 1);
  v.committed("a");
  assertEquals([v.size, v.current("a")], [0, 0], "committed and no token out: forgotten");
});

Deno.test("Versions: a token issued before an update stays stale after the commit", () => {
  const v = new Versions();
  const first = v.issue("a");
  const second = v.issue("a");
  v.spend("a"); // the first token makes the update
  v.bump("a");
  v.committed("a");
  assertEquals(v.current("a") === second, false, "the second token is stale");
  assertEquals(v.current("a") === first + 1, true);
  v.spend("a");
  assertEquals(v.size, 0);
});

Deno.test("Versions.undo() puts back the versions of a failed commit, latest first", () => {
  const v = new Versions();
  const t = v.issue("a");
  const before = [v.bump("a"), v.bump("a")];
  assertEquals(v.current("a"), 2);
  v.undo("a", before[1]);
  v.undo("a", before[0]);
  assertEquals(v.current("a"), t, "a token from before the failed commit is good again");
  v.spend("a");
  assertEquals(v.size, 0);
});
