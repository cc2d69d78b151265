import { assertEquals, assertThrowsType } from "../../tests/helpers/assert.ts";
import { PoolExhaustedError, PoolSet } from "./pool_set.ts";

const set = () =>
  new PoolSet([
    {
      name: "wan",
      family: 2,
      ranges: [{ first: 100, last: 101 }, { first: 200, last: 200 }],
      tags: ["wan"],
      ifnames: [],
    },
    {
      name: "lte",
      family: 2,
      ranges: [{ first: 300, last: 309 }],
      tags: [],
      ifnames: ["wwan?", "lte[0-3]"],
    },
    { name: "any", family: 2, ranges: [{ first: 1000, last: 1009 }], tags: [], ifnames: [] },
    { name: "v6", family: 10, ranges: [{ first: 1000, last: 1000 }], tags: [], ifnames: [] },
  ]);

Deno.test("PoolSet.select() takes the first pool of the family whose every selector matches", () => {
  const pools = set();
  assertEquals(pools.select(2, "eth0", "wan")?.name, "wan");
  assertEquals(pools.select(2, "wwan0", undefined)?.name, "lte");
  assertEquals(pools.select(2, "wwan10", undefined)?.name, "any", "? matches one character");
  assertEquals(pools.select(2, "lte3", undefined)?.name, "lte");
  assertEquals(pools.select(2, "lte4", undefined)?.name, "any");
  assertEquals(pools.select(2, "eth0", "other")?.name, "any");
  assertEquals(pools.select(10, "eth0", "wan")?.name, "v6");
  assertEquals(pools.select(0, "eth0", undefined), undefined);
});

Deno.test("Pool.allocate() hands out the lowest table across its ranges, then reports exhaustion", () => {
  const wan = set().pools[0];
  assertEquals([wan.allocate(), wan.allocate(), wan.allocate()], [100, 101, 200]);
  assertThrowsType(() => wan.allocate(), PoolExhaustedError);
  assertEquals(wan.release(101), true);
  assertEquals(wan.release(101), false, "already free");
  assertEquals(wan.allocate(), 101);
  assertEquals([wan.size, wan.used, wan.free, wan.describe()], [3, 3, 0, "100-101,200-200"]);
});

Deno.test("PoolSet.take() and release() find the pool of a table by family and range", () => {
  const pools = set();
  assertEquals(pools.poolOf(2, 305)?.name, "lte");
  assertEquals(pools.poolOf(10, 305), undefined);
  assertEquals(pools.take(2, 1000), true);
  assertEquals(pools.take(2, 1000), false);
  assertEquals(pools.take(2, 5000), false, "in no pool");
  assertEquals(pools.pools[2].allocate(), 1001);
  assertEquals(pools.release(2, 1000), true);
  assertEquals(pools.pools[2].allocate(), 1000);
  assertEquals(pools.hasFamily(10), true);
  assertEquals(pools.hasFamily(0), false);
});
