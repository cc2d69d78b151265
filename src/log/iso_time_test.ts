import { assertEquals, assertThrows } from "../../tests/helpers/assert.ts";
import { IsoTimes } from "./iso_time.ts";

Deno.test("IsoTimes.of() gives toISOString() of each time, whether remembered or not", () => {
  const times = new IsoTimes();
  for (const ms of [0, 0, 1_795_291_726_571, 1_795_291_726_571, 1_795_291_726_572, 0]) {
    assertEquals(times.of(ms), new Date(ms).toISOString());
  }
});

Deno.test("IsoTimes.of() refuses an invalid time as toISOString() does, each time", () => {
  const times = new IsoTimes();
  assertThrows(() => times.of(NaN), RangeError);
  assertThrows(() => times.of(NaN), RangeError);
  assertThrows(() => times.of(Infinity), RangeError);
  assertEquals(times.of(5), "1970-01-01T00:00:00.005Z");
});
