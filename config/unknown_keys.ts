/**
 * Unknown keys in the objects of the original's config (the top level and
 * `addr_families`): the original ignored them, so a drop-in must load such
 * files too. Each one becomes a warning that names the key and, when one is
 * close, the known key it was probably meant to be.
 *
 * @module
 */

/**
 * The edit distance of two strings (optimal string alignment: insertions,
 * deletions, substitutions and swaps of neighbours each count 1), so that
 * `tabel_timeout` is one edit from `table_timeout`.
 */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[][] = Array.from({ length: rows }, (_, i) => {
    const row = new Array<number>(cols).fill(0);
    row[0] = i;
    return row;
  });
  for (let j = 0; j < cols; j++) d[0][j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[rows - 1][cols - 1];
}

/**
 * The known key closest to `key`, if it is a plausible typo: at most two
 * edits away, and fewer edits than half the key's length (so that a short
 * key does not "resemble" everything). Ties go to the first known key.
 */
export function closestKey(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const distance = editDistance(key.toLowerCase(), candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return bestDistance <= 2 && bestDistance * 2 < key.length ? best : undefined;
}

/**
 * One warning for each key of `obj` that is not in `known`, e.g.
 * `"tabel_timeout" is not a known key (ignored); did you mean "table_timeout"?`.
 * `prefix` names the enclosing object (`addr_families.`) in both names.
 */
export function unknownKeyWarnings(
  obj: Record<string, unknown>,
  known: readonly string[],
  prefix = "",
): string[] {
  return Object.keys(obj).filter((key) => !known.includes(key)).map((key) => {
    const near = closestKey(key, known);
    const hint = near === undefined ? "" : `; did you mean "${prefix}${near}"?`;
    return `"${prefix}${key}" is not a known key (ignored)${hint}`;
  });
}
