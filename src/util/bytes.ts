/**
 * Byte helpers shared by the socket, netlink and protocol code (pure).
 *
 * @module
 */

/**
 * Whether `a` and `b` hold the same bytes. Two missing values are the
 * same; a missing value and a present one are not (an absent selector of
 * a rule is not an empty one).
 */
export function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}
