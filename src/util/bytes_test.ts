import { assertEquals } from "../../tests/helpers/assert.ts";
import { sameBytes } from "./bytes.ts";

Deno.test("sameBytes() compares contents and lengths, and two missing values are the same", () => {
  const cases: Array<[Uint8Array | undefined, Uint8Array | undefined, boolean]> = [
    [new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 3]), true],
    [new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 4]), false],
    [new Uint8Array([1, 2]), new Uint8Array([1, 2, 0]), false],
    [new Uint8Array([]), new Uint8Array([]), true],
    [undefined, undefined, true],
    [undefined, new Uint8Array([]), false],
    [new Uint8Array([1]), undefined, false],
  ];
  for (const [a, b, same] of cases) assertEquals(sameBytes(a, b), same, `${a} vs ${b}`);
});
