import { assertEquals, assertThrowsType } from "../../tests/helpers/assert.ts";
import { decodeUtf8, encodeUtf8, utf8Length } from "./utf8.ts";

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

Deno.test("decodeUtf8() and encodeUtf8() give what TextDecoder (fatal) and TextEncoder give", () => {
  const encoder = new TextEncoder();
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const long = "x".repeat(5000);
  for (
    const s of ["", '{"version":1,"cmd":0}', "eth0\u0000", "\u007f", "é", "a😀b", "日本語", long]
  ) {
    const bytes = encoder.encode(s);
    assertEquals(encodeUtf8(s), bytes, JSON.stringify(s.slice(0, 20)));
    assertEquals(decodeUtf8(bytes), decoder.decode(bytes), JSON.stringify(s.slice(0, 20)));
  }
  // A BOM is stripped by both; ASCII never has one.
  assertEquals(decodeUtf8(new Uint8Array([0xef, 0xbb, 0xbf, 0x61])), "a");
  for (const bad of [[0x61, 0xff], [0xc3], [0xed, 0xa0, 0x80]]) {
    assertThrowsType(() => decodeUtf8(new Uint8Array(bad)), TypeError);
  }
});
