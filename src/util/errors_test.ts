import { assertEquals } from "../../tests/helpers/assert.ts";
import { errorMessage } from "./errors.ts";

Deno.test("errorMessage() gives an Error's message and the string form of anything else", () => {
  assertEquals(errorMessage(new RangeError("out of range")), "out of range");
  assertEquals(errorMessage("plain text"), "plain text");
  assertEquals(errorMessage(42), "42");
  assertEquals(errorMessage(undefined), "undefined");
});
