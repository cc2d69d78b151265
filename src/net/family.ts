/**
 * Address families: their numbers on the wire (Linux `AF_*`), their names
 * (`inet`, `inet6`, `unspec`, as the config, ctl and log lines say them)
 * and the words a command line may use for them. Pure.
 *
 * @module
 */

/** Address families as numbered on the wire (Linux `AF_*`). */
export const AddrFamily = { UNSPEC: 0, INET: 2, INET6: 10 } as const;
/** One of {@link AddrFamily}'s values. */
export type AddrFamily = typeof AddrFamily[keyof typeof AddrFamily];

/** The families by their names, in the order config and output list them. */
export const FAMILY_BY_NAME: Readonly<Record<FamilyName, AddrFamily>> = {
  inet: AddrFamily.INET,
  inet6: AddrFamily.INET6,
  unspec: AddrFamily.UNSPEC,
};

/** A family's name. */
export type FamilyName = "inet" | "inet6" | "unspec";

const NAME_OF: Readonly<Record<number, FamilyName>> = { 0: "unspec", 2: "inet", 10: "inet6" };

/** `inet`, `inet6` or `unspec` for a family number (the number itself if unknown). */
export function familyName(family: AddrFamily | number): string {
  return NAME_OF[family] ?? String(family);
}

/** Whether `value` is the number of one of the three families. */
export function isAddrFamily(value: unknown): value is AddrFamily {
  return value === AddrFamily.UNSPEC || value === AddrFamily.INET || value === AddrFamily.INET6;
}

/** The family named exactly `name` (`inet`, `inet6`, `unspec`), or undefined. */
export function familyByName(name: string): AddrFamily | undefined {
  return Object.hasOwn(FAMILY_BY_NAME, name) ? FAMILY_BY_NAME[name as FamilyName] : undefined;
}

const FAMILY_WORDS: Readonly<Record<string, AddrFamily>> = {
  ...FAMILY_BY_NAME,
  "4": AddrFamily.INET,
  "2": AddrFamily.INET,
  "6": AddrFamily.INET6,
  "10": AddrFamily.INET6,
  "0": AddrFamily.UNSPEC,
};

/**
 * Reads a family given on a command line: by name (`inet`, `inet6`,
 * `unspec`, any case), by IP version (`4`, `6`) or by number (`2`, `10`,
 * `0`). Undefined for anything else.
 */
export function parseFamilyWord(text: string): AddrFamily | undefined {
  const word = text.toLowerCase();
  return Object.hasOwn(FAMILY_WORDS, word) ? FAMILY_WORDS[word] : undefined;
}
