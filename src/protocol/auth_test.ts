import { assert, assertEquals, assertMatch, assertThrowsType } from "../../tests/helpers/assert.ts";
import {
  Authenticator,
  generateNonce,
  generatePsk,
  mac,
  parsePsk,
  ReplayGuard,
  sign,
  signatureOverhead,
  verifyMac,
} from "./auth.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const psk = parsePsk(KEY);
const REQUEST = `{"address":"192.0.2.10","ifname":"eth1","addr_family":2,"cmd":0,"version":1}`;
// The worked example of docs/protocol.md; its MAC was computed with
// `openssl dgst -sha256 -mac HMAC -macopt hexkey:$KEY`, not with our code.
const SIGNED_BODY =
  `{"address":"192.0.2.10","ifname":"eth1","addr_family":2,"cmd":0,"version":1,"ts":1700000000,"nonce":"0123456789abcdef"}`;
const EXAMPLE_MAC = "624f828c37b78afb7184fecb5b81c4bfb1312ad108af22d712eb298a0b971a92";

Deno.test("mac() is HMAC-SHA256 (RFC 4231 test case 2)", () => {
  const key = { bytes: encoder.encode("Jefe") };
  assertEquals(
    mac(key, encoder.encode("what do ya want for nothing?")),
    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
  );
});

Deno.test("sign() appends ts, nonce and the hmac of the rest as the last member", () => {
  const signed = decoder.decode(sign(psk, encoder.encode(REQUEST), 1700000000, "0123456789abcdef"));
  assertEquals(signed, `${SIGNED_BODY.slice(0, -1)},"hmac":"${EXAMPLE_MAC}"}`);
  assertEquals(JSON.parse(signed).hmac, EXAMPLE_MAC);
  assertEquals(signed.length, REQUEST.length + signatureOverhead(1700000000));
  assertEquals(
    decoder.decode(sign(psk, encoder.encode("{}"), 5, "0123456789abcdef")).slice(0, 32),
    `{"ts":5,"nonce":"0123456789abcde`,
  );
  assertThrowsType(() => sign(psk, encoder.encode("[1]"), 1, "0123456789abcdef"), TypeError);
  assertThrowsType(() => sign(psk, encoder.encode("{}"), 1.5, "0123456789abcdef"), TypeError);
});

Deno.test("verifyMac() accepts the bytes as signed and refuses any change", () => {
  const signed = `${SIGNED_BODY.slice(0, -1)},"hmac":"${EXAMPLE_MAC}"}`;
  assertEquals(verifyMac(psk, encoder.encode(signed)), { ok: true });
  // Another member order or spacing is fine: the MAC covers the bytes as sent.
  const spaced = `{ "version": 1, "cmd": 1, "ts": 7, "nonce": "ffffffffffffffff" }`;
  const spacedSigned = `${spaced.slice(0, -1)},"hmac":"${mac(psk, encoder.encode(spaced))}"}`;
  assertEquals(verifyMac(psk, encoder.encode(spacedSigned)), { ok: true });

  const refused = (text: string) => {
    const check = verifyMac(psk, encoder.encode(text));
    assert(!check.ok, `accepted ${text}`);
    return check.reason;
  };
  assertMatch(refused(signed.replace("eth1", "eth2")), /does not match/);
  assertMatch(refused(signed.replace(EXAMPLE_MAC, EXAMPLE_MAC.toUpperCase())), /last member/);
  assertMatch(refused(`${signed} `), /last member/);
  assertMatch(refused(signed.replace(`,"hmac"`, `, "hmac"`)), /last member/);
  assertMatch(refused(`{"hmac":"${EXAMPLE_MAC}"}`), /last member|does not match/);
  assertMatch(refused(`{"x":1,"hmac":"abc"}`), /last member/);
  const otherKey = parsePsk("11".repeat(32));
  assert(!verifyMac(otherKey, encoder.encode(signed)).ok, "another key must not verify");
});

Deno.test("parsePsk() takes genpsk's hex, either case, and names what is wrong otherwise", () => {
  assertEquals(parsePsk(`${KEY.toUpperCase()}\n`).bytes, parsePsk(KEY).bytes);
  assertEquals(parsePsk(KEY).bytes.length, 32);
  assertMatch(assertThrowsType(() => parsePsk("xyz"), RangeError).message, /hex digits/);
  assertMatch(assertThrowsType(() => parsePsk("abc"), RangeError).message, /even number/);
  assertMatch(
    assertThrowsType(() => parsePsk("ab".repeat(15)), RangeError).message,
    /at least 16 bytes .* got 15/,
  );
  const secret = "zz".repeat(32);
  assert(!assertThrowsType(() => parsePsk(secret), RangeError).message.includes(secret));
});

Deno.test("generatePsk() and generateNonce() are lower-case hex of the right length", () => {
  assertMatch(generatePsk(), /^[0-9a-f]{64}$/);
  assertMatch(generateNonce(), /^[0-9a-f]{16}$/);
  assert(generatePsk() !== generatePsk(), "two keys must differ");
  assertEquals(generateNonce((b) => b.fill(0xab)), "abababababababab");
});

Deno.test("ReplayGuard refuses a nonce seen within the window and a ts outside it", () => {
  const guard = new ReplayGuard(10);
  assertEquals(guard.check(1000, "00000000000000aa", 1000), null);
  assertMatch(guard.check(1000, "00000000000000AA", 1001)!, /already used .* \(replay\)/);
  assertMatch(guard.check(989, "00000000000000bb", 1000)!, /11 s in the past, outside .* 10 s/);
  assertMatch(guard.check(1011, "00000000000000bb", 1000)!, /11 s in the future/);
  assertEquals(guard.check(990, "00000000000000bb", 1000), null, "the window's edge is inside");
  // A nonce is forgotten only once its message is stale anyway.
  assertEquals(guard.size, 2);
  assertMatch(guard.check(1000, "00000000000000aa", 1010)!, /replay/);
  assertEquals(guard.check(1011, "00000000000000cc", 1011), null);
  assertEquals(guard.size, 1, "the nonces of ts 990 and 1000 are forgotten at 1011");
  assertMatch(guard.check(1000, "00000000000000aa", 1011)!, /11 s in the past/, "stale instead");
  assertEquals(guard.check(1011, "00000000000000aa", 1011), null, "a fresh message may reuse it");
});

Deno.test("ReplayGuard refuses rather than forgets when full", () => {
  const guard = new ReplayGuard(10, 2);
  assertEquals(guard.check(1, "0000000000000001", 1), null);
  assertEquals(guard.check(1, "0000000000000002", 1), null);
  assertMatch(guard.check(1, "0000000000000003", 1)!, /more than 2 signed messages/);
  assertEquals(guard.check(20, "0000000000000003", 20), null, "old nonces expired");
});

Deno.test("Authenticator: unsigned, authentic, refused (MAC, ts, nonce, replay)", () => {
  let now = 1700000000.5;
  const auth = new Authenticator(psk, { now: () => now, clockSkew: 10 });
  const judge = (bytes: Uint8Array) => auth.check(bytes, JSON.parse(decoder.decode(bytes)));
  assertEquals(judge(encoder.encode(REQUEST)), { kind: "unsigned" });

  const sealed = auth.seal(encoder.encode(REQUEST));
  const parsed = JSON.parse(decoder.decode(sealed));
  assertEquals(parsed.ts, 1700000000);
  assertMatch(parsed.nonce, /^[0-9a-f]{16}$/);
  assertEquals(judge(sealed), { kind: "authentic" });
  assertMatch(refusal(judge(sealed)), /replay/);

  const example = encoder.encode(`${SIGNED_BODY.slice(0, -1)},"hmac":"${EXAMPLE_MAC}"}`);
  assertEquals(judge(example), { kind: "authentic" }, "the hand-made example verifies");
  now += 11;
  assertEquals(judge(auth.seal(encoder.encode(`{"a":1}`))), { kind: "authentic" });
  const stale = sign(psk, encoder.encode(REQUEST), 1700000000, "1111111111111111");
  assertMatch(refusal(judge(stale)), /11 s in the past/);

  const noNonce = encoder.encode(`{"ts":${Math.floor(now)}}`);
  const badNonce = sealWith(noNonce);
  assertMatch(refusal(judge(badNonce)), /"nonce" must be 16 hex digits/);
  const badTs = sealWith(encoder.encode(`{"ts":"1","nonce":"2222222222222222"}`));
  assertMatch(refusal(judge(badTs)), /"ts" must be an integer/);
  const tampered = decoder.decode(auth.seal(encoder.encode(REQUEST))).replace('"cmd":0', '"cmd":1');
  assertMatch(refusal(judge(encoder.encode(tampered))), /does not match/);
});

function refusal(verdict: ReturnType<Authenticator["check"]>): string {
  if (verdict.kind !== "refused") throw new Error(`expected a refusal, got ${verdict.kind}`);
  return verdict.reason;
}

/** Appends a valid hmac to a message as it is (no ts or nonce added). */
function sealWith(message: Uint8Array): Uint8Array {
  const text = decoder.decode(message);
  return encoder.encode(`${text.slice(0, -1)},"hmac":"${mac(psk, message)}"}`);
}
