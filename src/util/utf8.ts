/**
 * UTF-8 lengths without encoding.
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
