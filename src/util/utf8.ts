/**
 * UTF-8 lengths without encoding, and UTF-8 of ASCII text without the
 * runtime's codec: a request and its reply are ASCII, and the call into
 * the runtime's TextDecoder and TextEncoder was a measurable part of what
 * one request costs the server.
 *
 * @module
 */

/**
 * The UTF-8 length of a well-formed string, counted from its UTF-16 code
 * units: every request checks two or three strings, and encoding them to
 * count was a measurable part of a request's cost.
 */
export function utf8Length(s: string): number {
  let bytes = s.length;
  for (let i = 0; i < s.length; i++) {
    const unit = s.charCodeAt(i);
    if (unit < 0x80) continue;
    // Two bytes below U+0800, three up to U+FFFF; a surrogate pair's four are 2 + 2.
    bytes += unit < 0x800 || (unit >= 0xd800 && unit <= 0xdfff) ? 1 : 2;
  }
  return bytes;
}

const fatalDecoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();
/** Longer buffers go to TextDecoder (`fromCharCode` takes one argument per byte). */
const ASCII_DECODE_MAX = 4096;

/**
 * Decodes UTF-8 as a `TextDecoder` with `fatal` does (a TypeError for
 * malformed input); a short all-ASCII buffer is read in JavaScript.
 */
export function decodeUtf8(bytes: Uint8Array): string {
  if (bytes.length > ASCII_DECODE_MAX) return fatalDecoder.decode(bytes);
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] >= 0x80) return fatalDecoder.decode(bytes);
  }
  return String.fromCharCode.apply(null, bytes as unknown as number[]);
}

/** Encodes a string to UTF-8 as a `TextEncoder` does; an all-ASCII one in JavaScript. */
export function encodeUtf8(s: string): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const unit = s.charCodeAt(i);
    if (unit >= 0x80) return encoder.encode(s);
    out[i] = unit;
  }
  return out;
}
