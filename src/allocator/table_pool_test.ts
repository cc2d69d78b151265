import { assert, assertEquals, assertThrowsType } from "../../tests/helpers/assert.ts";
import { DoubleFreeError, PoolExhaustedError, TablePool } from "./table_pool.ts";

Deno.test("TablePool.lowestFree() names the table allocate() would take, and takes nothing", () => {
  const pool = new TablePool(10000, 40);
  assertEquals([pool.lowestFree(), pool.lowestFree(), pool.used], [10000, 10000, 0]);
  pool.take(10000);
  pool.take(10002);
  assertEquals(pool.lowestFree(), 10001);
  assertEquals(pool.allocate(), 10001);
  for (let t = 10003; t < 10040; t++) pool.take(t);
  assertEquals([pool.lowestFree(), pool.free], [undefined, 0]);
});

Deno.test("TablePool.allocate() returns the lowest free table", () => {
  const pool = new TablePool(10000, 40);
  assertEquals([pool.allocate(), pool.allocate(), pool.allocate()], [10000, 10001, 10002]);
  pool.release(10001);
  assertEquals(pool.allocate(), 10001);
  assertEquals(pool.allocate(), 10003);
  assertEquals([pool.used, pool.free], [4, 36]);
});

Deno.test("TablePool works with a single table and throws PoolExhaustedError when full", () => {
  const pool = new TablePool(5000, 1);
  assertEquals(pool.allocate(), 5000);
  const error = assertThrowsType(() => pool.allocate(), PoolExhaustedError);
  assertEquals(error.message, "all 1 tables from 5000 to 5000 are leased");
  pool.release(5000);
  assertEquals(pool.allocate(), 5000);
});

Deno.test("TablePool.take() marks restored tables and refuses taken or foreign ones", () => {
  const pool = new TablePool(100, 70);
  assert(pool.take(100));
  assert(pool.take(131));
  assert(!pool.take(131), "already taken");
  assert(!pool.take(99), "below the range");
  assert(!pool.take(170), "above the range");
  assertEquals(pool.allocate(), 101);
  assertThrowsType(() => pool.release(150), DoubleFreeError);
  assertThrowsType(() => pool.release(170), RangeError);
});

Deno.test("TablePool fills and drains a 2^20 pool in order across every bitmap level", () => {
  const size = 1 << 20;
  const pool = new TablePool(1000, size);
  for (let i = 0; i < size; i++) {
    if (pool.allocate() !== 1000 + i) throw new Error(`allocation ${i} out of order`);
  }
  assertThrowsType(() => pool.allocate(), PoolExhaustedError);
  // Free a scattered set; they come back lowest first.
  const freed = [1000 + size - 1, 1000 + 777_777, 1000 + 33, 1000 + 32 * 32 * 32 + 5];
  for (const t of freed) pool.release(t);
  assertEquals(
    [pool.allocate(), pool.allocate(), pool.allocate(), pool.allocate()],
    freed.toSorted((a, b) => a - b),
  );
});

Deno.test("TablePool agrees with a naive model under random operations", () => {
  const size = 3000;
  const pool = new TablePool(0, size);
  const taken = new Set<number>();
  let seed = 42;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let step = 0; step < 20_000; step++) {
    if (random() < 0.6 && taken.size < size) {
      let expected = 0;
      while (taken.has(expected)) expected++;
      assertEquals(pool.allocate(), expected);
      taken.add(expected);
    } else if (taken.size > 0) {
      const list = [...taken];
      const t = list[Math.floor(random() * list.length)];
      pool.release(t);
      taken.delete(t);
    }
  }
  assertEquals(pool.used, taken.size);
});

Deno.test("TablePool.takeRange() takes whole words and single tables alike, and reports tables taken before", () => {
  const pool = new TablePool(100, 1000);
  pool.take(150);
  const before: number[] = [];
  pool.takeRange(101, 900, (t) => before.push(t));
  assertEquals(before, [150]);
  assertEquals(pool.used, 800);
  assertEquals(pool.lowestFree(), 100);
  pool.allocate();
  assertEquals(pool.lowestFree(), 901, "the summary levels know every taken word");
  for (let t = 101; t <= 900; t++) assert(!pool.isFree(t), `${t} taken`);
  pool.release(500);
  assertEquals(pool.allocate(), 500);
  pool.takeRange(901, 1099, () => {});
  assertEquals([pool.free, pool.lowestFree()], [0, undefined]);
});
