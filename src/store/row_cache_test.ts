import { assertEquals } from "../../tests/helpers/assert.ts";
import { lease } from "../../tests/helpers/store_conformance.ts";
import { RowCache, rowsOf } from "./row_cache.ts";

Deno.test("rowsOf() gives a client's rows as its SELECT does: columns in order, by table", () => {
  const a = { ...lease("10.0.0.1", 10001, 1234.6), tag: "wan" };
  const b = lease("10.0.0.1", 10000, 99);
  assertEquals(rowsOf("2/eth1/10.0.0.1", [a, b]), [
    ["2/eth1/10.0.0.1", 2, "eth1", "10.0.0.1", 10000, 99, null, b.owner, "bound", b.uid],
    ["2/eth1/10.0.0.1", 2, "eth1", "10.0.0.1", 10001, 1235, "wan", a.owner, "bound", a.uid],
  ]);
});

Deno.test("RowCache keeps the clients committed last, at most its capacity", () => {
  const cache = new RowCache(2);
  const rows = (id: string) => rowsOf(id, [lease("10.0.0.1", 10000)]);
  cache.committed("a", rows("a"));
  cache.committed("b", rows("b"));
  cache.committed("a", rows("a")); // written again: now the last
  cache.committed("c", rows("c"));
  assertEquals([cache.get("a")?.[0][0], cache.get("b"), cache.get("c")?.[0][0]], [
    "a",
    undefined,
    "c",
  ]);
  assertEquals(cache.size, 2);
  cache.forget("a");
  assertEquals([cache.get("a"), cache.size], [undefined, 1]);
  cache.clear();
  assertEquals(cache.size, 0);
});
