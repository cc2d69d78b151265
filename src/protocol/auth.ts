/**
 * Message authentication for the v1 protocol: an HMAC-SHA256 over the
 * datagram's own bytes with a pre-shared key, a timestamp and a nonce
 * against replay. Shared by the server and the client; pure (bytes, a key
 * and a clock reading in, bytes or a verdict out).
 *
 * The scheme is fixed, because other implementations and tests build
 * messages by hand (`docs/protocol.md` has a worked example):
 *
 * 1. The v1 object gains `"ts"` (integer unix seconds) and `"nonce"` (16
 *    hex digits), anywhere among its members.
 * 2. The MAC is the lower-case hex HMAC-SHA256, keyed with the PSK, of
 *    the datagram's bytes without the `,"hmac":"<hex>"` member.
 * 3. That member is appended as the object's last one:
 *    `...,"nonce":"0123456789abcdef","hmac":"<64 hex digits>"}`.
 *
 * Replies are signed the same way. A receiver checks the MAC over the
 * bytes as received (no re-serialisation, so any JSON writer works), then
 * that `ts` is within the clock skew and the nonce was not seen within it.
 *
 * @module
 */

// Not node:crypto: loading it costs 25 to 35 ms of every start of the server.
import { hmacSha256, timingSafeEqual, toHex } from "../util/sha256.ts";

/** Hex digits of a nonce. */
export const NONCE_HEX_DIGITS = 16;
/** Hex digits of a MAC (HMAC-SHA256). */
export const MAC_HEX_DIGITS = 64;
/** Bytes of a PSK as `genpsk` makes it. */
export const PSK_BYTES = 32;
/** Shortest PSK accepted: 128 bits. */
export const MIN_PSK_BYTES = 16;
/** Clock skew allowed by default, in seconds. */
export const DEFAULT_CLOCK_SKEW_S = 10;
/**
 * Most nonces remembered at once. Only holders of the PSK can add one (the
 * MAC is checked first); past this many within the window, signed
 * messages are refused rather than a nonce forgotten early.
 */
export const MAX_REMEMBERED_NONCES = 500_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const MAC_PREFIX = encoder.encode(`,"hmac":"`);
/** `,"hmac":"` + 64 hex digits + `"}`: the signed tail of every authenticated datagram. */
const MAC_TAIL_BYTES = MAC_PREFIX.byteLength + MAC_HEX_DIGITS + 2;
const HEX = /^[0-9a-f]*$/;
const NONCE = /^[0-9a-fA-F]{16}$/;

/** A pre-shared key, ready to sign with. */
export interface Psk {
  /** The key's bytes. */
  readonly bytes: Uint8Array;
}

/**
 * Reads a PSK from its text form: hex digits (either case), surrounding
 * white space ignored, at least {@link MIN_PSK_BYTES} bytes. Throws a
 * RangeError saying what is wrong, never echoing the key.
 */
export function parsePsk(text: string): Psk {
  const hex = text.trim().toLowerCase();
  if (!HEX.test(hex) || hex.length % 2 !== 0) {
    throw new RangeError(
      `the PSK must be hex digits (an even number of them, as genpsk prints), got ${hex.length} characters that are not`,
    );
  }
  if (hex.length < MIN_PSK_BYTES * 2) {
    throw new RangeError(
      `the PSK must be at least ${MIN_PSK_BYTES} bytes (${MIN_PSK_BYTES * 2} hex digits), got ${
        hex.length / 2
      }`,
    );
  }
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return { bytes };
}

export { toHex } from "../util/sha256.ts";

/** A new random PSK in its text form: {@link PSK_BYTES} bytes as lower-case hex (no newline). */
export function generatePsk(random: (buf: Uint8Array) => void = fillRandom): string {
  const bytes = new Uint8Array(PSK_BYTES);
  random(bytes);
  return toHex(bytes);
}

/** A new random nonce: {@link NONCE_HEX_DIGITS} lower-case hex digits. */
export function generateNonce(random: (buf: Uint8Array) => void = fillRandom): string {
  const bytes = new Uint8Array(NONCE_HEX_DIGITS / 2);
  random(bytes);
  return toHex(bytes);
}

function fillRandom(buf: Uint8Array): void {
  crypto.getRandomValues(buf);
}

/** The lower-case hex HMAC-SHA256 of `data` with `psk`. */
export function mac(psk: Psk, data: Uint8Array): string {
  return toHex(hmacSha256(psk.bytes, data));
}

/** Bytes {@link sign} adds to a message (of at least one member) for timestamp `ts`. */
export function signatureOverhead(ts: number): number {
  // The message's closing brace moves to the end: it is counted in the tail.
  return `,"ts":${ts},"nonce":""`.length + NONCE_HEX_DIGITS + MAC_TAIL_BYTES - 1;
}

/**
 * Signs a JSON object's bytes: appends `"ts"` and `"nonce"`, then the
 * `"hmac"` of the result as the last member. `message` must be an
 * object's text ending with `}` and carry no `ts`, `nonce` or `hmac`.
 */
export function sign(
  psk: Psk,
  message: Uint8Array,
  ts: number,
  nonce: string,
): Uint8Array<ArrayBuffer> {
  if (message.byteLength < 2 || message[message.byteLength - 1] !== 0x7d) {
    throw new TypeError("only a JSON object (ending with '}') can be signed");
  }
  if (!Number.isSafeInteger(ts) || !NONCE.test(nonce)) {
    throw new TypeError(`ts must be an integer and nonce 16 hex digits, got ${ts}, ${nonce}`);
  }
  const body = message.subarray(0, message.byteLength - 1);
  const empty = body.byteLength === 1; // "{}": no comma before the first member
  const signed = concat(body, encoder.encode(`${empty ? "" : ","}"ts":${ts},"nonce":"${nonce}"}`));
  const tail = encoder.encode(`,"hmac":"${mac(psk, signed)}"}`);
  return concat(signed.subarray(0, signed.byteLength - 1), tail);
}

/** What {@link verifyMac} found. */
export type MacCheck =
  | { ok: true }
  | { ok: false; reason: string };

/**
 * Checks the MAC of a datagram that carries one: its bytes must end with
 * `,"hmac":"<64 lower-case hex digits>"}`, and that MAC must be the HMAC of
 * the datagram without the member. Constant-time comparison.
 */
export function verifyMac(psk: Psk, data: Uint8Array): MacCheck {
  const n = data.byteLength;
  const start = n - MAC_TAIL_BYTES;
  const tailOk = start > 0 && data[n - 1] === 0x7d && data[n - 2] === 0x22 &&
    MAC_PREFIX.every((b, i) => data[start + i] === b);
  const given = tailOk ? decoder.decode(data.subarray(start + MAC_PREFIX.byteLength, n - 2)) : "";
  if (!tailOk || !HEX.test(given)) {
    return {
      ok: false,
      reason:
        `"hmac" must be the last member, written ,"hmac":"<${MAC_HEX_DIGITS} lower-case hex digits>"}`,
    };
  }
  const signed = concat(data.subarray(0, start), encoder.encode("}"));
  const expected = encoder.encode(mac(psk, signed));
  if (!timingSafeEqual(expected, encoder.encode(given))) {
    return { ok: false, reason: "the hmac does not match the message (wrong key or altered)" };
  }
  return { ok: true };
}

/** Whether a received message passed authentication, and why not. */
export type AuthVerdict =
  | { kind: "unsigned" }
  | { kind: "authentic" }
  | { kind: "refused"; reason: string };

/**
 * Remembers the nonces seen within the clock-skew window, so a replayed
 * message is recognised. A nonce is kept until its message's `ts` leaves
 * the window, after which the timestamp check alone refuses it.
 */
export class ReplayGuard {
  #skew: number;
  #max: number;
  /** nonce (lower case) -> second after which it may be forgotten. */
  #seen = new Map<string, number>();
  /** forget-after second -> nonces, to prune without scanning every nonce. */
  #bySecond = new Map<number, string[]>();
  #prunedUpTo = -Infinity;

  /** A guard for a window of ± `skewSeconds`, remembering at most `maxNonces`. */
  constructor(skewSeconds: number, maxNonces = MAX_REMEMBERED_NONCES) {
    this.#skew = skewSeconds;
    this.#max = maxNonces;
  }

  /** Nonces remembered now. */
  get size(): number {
    return this.#seen.size;
  }

  /**
   * Checks `ts` against `now` (unix seconds) and records the nonce.
   * Returns null when the message is fresh, else why it is refused.
   */
  check(ts: number, nonce: string, now: number): string | null {
    const second = Math.floor(now);
    this.#prune(second);
    if (ts < second - this.#skew || ts > second + this.#skew) {
      return `"ts" ${ts} is ${
        ts < second ? `${second - ts} s in the past` : `${ts - second} s in the future`
      }, outside the allowed clock skew of ${this.#skew} s`;
    }
    const key = nonce.toLowerCase();
    if (this.#seen.has(key)) return `nonce ${key} was already used within ${this.#skew} s (replay)`;
    if (this.#seen.size >= this.#max) {
      return `more than ${this.#max} signed messages within ${this.#skew} s: refused until older nonces expire`;
    }
    const forgetAfter = ts + this.#skew;
    this.#seen.set(key, forgetAfter);
    const bucket = this.#bySecond.get(forgetAfter);
    if (bucket) bucket.push(key);
    else this.#bySecond.set(forgetAfter, [key]);
    return null;
  }

  #prune(second: number): void {
    if (second <= this.#prunedUpTo) return;
    this.#prunedUpTo = second;
    for (const [at, nonces] of this.#bySecond) {
      if (at >= second) continue;
      for (const nonce of nonces) this.#seen.delete(nonce);
      this.#bySecond.delete(at);
    }
  }
}

/**
 * One side's authentication: the PSK, the replay guard and the clock.
 * {@link check} judges a received datagram, {@link seal} signs one to send.
 */
export class Authenticator {
  /** The key messages are signed and checked with. */
  readonly psk: Psk;
  /** Seconds a message's `ts` may differ from this side's clock. */
  readonly clockSkew: number;
  #guard: ReplayGuard;
  #now: () => number;
  #random: (buf: Uint8Array) => void;

  /**
   * `now` returns unix seconds (default: the wall clock); `random` fills
   * a buffer with random bytes (default: the system's CSPRNG).
   */
  constructor(
    psk: Psk,
    options: {
      clockSkew?: number;
      now?: () => number;
      random?: (buf: Uint8Array) => void;
      maxNonces?: number;
    } = {},
  ) {
    this.psk = psk;
    this.clockSkew = options.clockSkew ?? DEFAULT_CLOCK_SKEW_S;
    this.#guard = new ReplayGuard(this.clockSkew, options.maxNonces);
    this.#now = options.now ?? (() => Date.now() / 1000);
    this.#random = options.random ?? fillRandom;
  }

  /**
   * Judges a received datagram, given its bytes and its parsed object: no
   * `hmac` member is `unsigned` (the caller decides whether that is
   * allowed); else the MAC, `ts` and `nonce` must all pass.
   */
  check(data: Uint8Array, message: Record<string, unknown>): AuthVerdict {
    if (message.hmac === undefined) return { kind: "unsigned" };
    const macCheck = verifyMac(this.psk, data);
    if (!macCheck.ok) return { kind: "refused", reason: macCheck.reason };
    const { ts, nonce } = message;
    if (typeof ts !== "number" || !Number.isSafeInteger(ts)) {
      return { kind: "refused", reason: `"ts" must be an integer (unix seconds)` };
    }
    if (typeof nonce !== "string" || !NONCE.test(nonce)) {
      return { kind: "refused", reason: `"nonce" must be ${NONCE_HEX_DIGITS} hex digits` };
    }
    const stale = this.#guard.check(ts, nonce, this.#now());
    return stale === null ? { kind: "authentic" } : { kind: "refused", reason: stale };
  }

  /** Signs `message` (a JSON object's bytes) with the current time and a new nonce. */
  seal(message: Uint8Array): Uint8Array<ArrayBuffer> {
    return sign(this.psk, message, this.timestamp(), generateNonce(this.#random));
  }

  /** The `ts` this side writes now. */
  timestamp(): number {
    return Math.floor(this.#now());
  }

  /** Nonces remembered now (for tests and status). */
  get remembered(): number {
    return this.#guard.size;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}
