import { assertEquals } from "../../tests/helpers/assert.ts";
import { utf8Length } from "./utf8.ts";

Deno.test("utf8Length() counts what TextEncoder writes: ASCII, 2-, 3- and 4-byte characters", () => {
  const encoder = new TextEncoder();
  for (
    const s of [
      "",
      "eth0",
      "é",
      "à-x",
      "\u07ff",
      "\u0800",
      "€uro",
      "\uffff",
      "😀",
      "a😀b𝄞",
      "日本語",
    ]
  ) {
    assertEquals(utf8Length(s), encoder.encode(s).byteLength, JSON.stringify(s));
  }
});
