/**
 * ISO 8601 times for log lines, remembered for the last millisecond asked:
 * a pass logs one line per lease, each with the same time stamp and, for
 * the grants of one pass, the same expiry, and building the string is
 * most of a line's cost.
 *
 * @module
 */

/**
 * One time's string, remembered. A miss costs what `toISOString()` costs;
 * a hit costs a comparison.
 */
export class IsoTimes {
  #ms = NaN;
  #text = "";

  /** `new Date(ms).toISOString()`, from memory when `ms` is the last one asked. */
  of(ms: number): string {
    if (ms !== this.#ms) {
      this.#text = new Date(ms).toISOString();
      this.#ms = ms;
    }
    return this.#text;
  }
}
