import { createHash, createHmac, timingSafeEqual as nodeEqual } from "node:crypto";
import { assertEquals } from "../../tests/helpers/assert.ts";
import { hmacSha256, sha256, timingSafeEqual, toHex } from "./sha256.ts";

const text = (s: string) => new TextEncoder().encode(s);

Deno.test("sha256() gives the FIPS 180-4 digests and agrees with node:crypto at every length", () => {
  assertEquals(
    toHex(sha256(text("abc"))),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assertEquals(
    toHex(sha256(new Uint8Array())),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
  for (let length = 0; length <= 300; length++) {
    const data = crypto.getRandomValues(new Uint8Array(length));
    assertEquals(toHex(sha256(data)), createHash("sha256").update(data).digest("hex"), `${length}`);
    // In parts, as the HMAC hashes key pad and message.
    const cut = length >> 1;
    assertEquals(toHex(sha256(data.subarray(0, cut), data.subarray(cut))), toHex(sha256(data)));
  }
});

Deno.test("hmacSha256() agrees with node:crypto for keys shorter and longer than a block", () => {
  for (const keyLength of [0, 1, 32, 63, 64, 65, 100]) {
    for (const length of [0, 10, 64, 200]) {
      const key = crypto.getRandomValues(new Uint8Array(keyLength));
      const message = crypto.getRandomValues(new Uint8Array(length));
      assertEquals(
        toHex(hmacSha256(key, message)),
        createHmac("sha256", key).update(message).digest("hex"),
        `key ${keyLength}, message ${length}`,
      );
    }
  }
});

Deno.test("timingSafeEqual() compares as node:crypto does", () => {
  const a = text("0123456789abcdef");
  for (const b of [text("0123456789abcdef"), text("0123456789abcdeF"), text("0123")]) {
    assertEquals(timingSafeEqual(a, b), a.length === b.length && nodeEqual(a, b));
  }
});
