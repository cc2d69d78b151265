/**
 * IP address parsing, formatting and masking, in pure TypeScript (no I/O).
 * Used by the protocol codec to canonicalise lease identities and by the
 * client to build netlink rule selectors.
 *
 * @module
 */

import { AddrFamily } from "./family.ts";

/**
 * Parses dotted-quad IPv4 (no leading zeros, like inet_pton); null if
 * invalid. Walks the characters once: every request's address comes here.
 */
export function parseIPv4(text: string): Uint8Array | null {
  if (text.length < 7 || text.length > 15) return null;
  const out = new Uint8Array(4);
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : DOT; // the end closes the last part
    if (c === DOT) {
      if (digits === 0 || part === 4) return null;
      out[part++] = value;
      value = 0;
      digits = 0;
    } else if (c >= ZERO && c <= ZERO + 9) {
      if (digits > 0 && value === 0) return null; // a leading zero
      value = value * 10 + c - ZERO;
      if (++digits > 3 || value > 255) return null;
    } else {
      return null;
    }
  }
  return part === 4 ? out : null;
}

const DOT = 0x2e;
const ZERO = 0x30;

/** Parses an IPv6 address (RFC 4291 text forms, embedded IPv4 allowed); null if invalid. */
export function parseIPv6(text: string): Uint8Array | null {
  if (text.length < 2 || text.length > 45) return null;
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const groups = (part: string): number[] | null => {
    if (part === "") return [];
    const out: number[] = [];
    const items = part.split(":");
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      if (i === items.length - 1 && item.includes(".")) {
        const v4 = parseIPv4(item);
        if (!v4) return null;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(item)) return null;
        out.push(parseInt(item, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (!head || !tail) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const all = [...head, ...new Array<number>(missing).fill(0), ...tail];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

/** Formats 4 or 16 address bytes; IPv6 in the RFC 5952 canonical form. */
export function formatIP(bytes: Uint8Array): string {
  if (bytes.byteLength === 4) return bytes.join(".");
  if (bytes.byteLength !== 16) {
    throw new RangeError(`address must be 4 or 16 bytes, got ${bytes.byteLength}`);
  }
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i] << 8) | bytes[i + 1]);
  // The longest run of two or more zero groups (first one on ties) becomes "::".
  let bestStart = -1, bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(":");
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

/** Parses an address of a family; null when invalid for that family. */
export function parseIP(family: AddrFamily, text: string): Uint8Array | null {
  if (family === AddrFamily.INET) return parseIPv4(text);
  if (family === AddrFamily.INET6) return parseIPv6(text);
  return null;
}

/** Bits in an address of the family. */
export function addressBits(family: AddrFamily): number {
  return family === AddrFamily.INET6 ? 128 : 32;
}

/**
 * Parses a netmask given as a prefix length (`24`, `/24`) or, for IPv4 and
 * IPv6, as a contiguous mask (`255.255.255.0`, `ffff:ffff::`). Returns the
 * prefix length, or null when the text is neither.
 */
export function parsePrefixLength(family: AddrFamily, text: string): number | null {
  const bits = addressBits(family);
  const digits = text.startsWith("/") ? text.slice(1) : text;
  if (/^(0|[1-9][0-9]{0,2})$/.test(digits)) {
    const n = Number(digits);
    return n <= bits ? n : null;
  }
  const mask = parseIP(family, text);
  if (!mask) return null;
  let prefix = 0;
  let ended = false;
  for (const byte of mask) {
    for (let bit = 7; bit >= 0; bit--) {
      const set = (byte >> bit) & 1;
      if (set && ended) return null; // not contiguous
      if (set) prefix++;
      else ended = true;
    }
  }
  return prefix;
}

/** The network of an address: every bit past `prefix` cleared. */
export function maskAddress(address: Uint8Array, prefix: number): Uint8Array {
  const out = new Uint8Array(address);
  for (let i = 0; i < out.byteLength; i++) {
    const keep = Math.max(0, Math.min(8, prefix - 8 * i));
    out[i] &= keep === 8 ? 0xff : (0xff << (8 - keep)) & 0xff;
  }
  return out;
}
