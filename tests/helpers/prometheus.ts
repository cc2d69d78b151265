/**
 * A strict parser of the Prometheus text exposition format (0.0.4), for
 * tests of what the server prints: it throws on anything the format does
 * not allow or that a scraper would take wrongly, so a test that parses
 * the output checks its syntax too.
 *
 * Checked: metric and label names, `# HELP` / `# TYPE` (at most one each,
 * before the family's samples, one group per family), label syntax and
 * escapes (`\\`, `\"`, `\n` only), duplicate labels and series, values,
 * counters (`_total`, never negative), histograms (every series has
 * `_bucket` lines in ascending `le` order, cumulative, ending with
 * `le="+Inf"`, then `_sum`, and `_count` equal to the `+Inf` bucket), the
 * final line feed. Blank lines are refused too: the server writes none.
 *
 * @module
 */

/** One parsed sample. */
export interface ParsedSample {
  /** The sample's own name (`x_bucket`, `x_sum`, ... for a histogram). */
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** One parsed family. */
export interface ParsedFamily {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  samples: ParsedSample[];
}

/** The parsed exposition, by family name, with lookups. */
export class Exposition {
  /** Families in order of appearance. */
  readonly families = new Map<string, ParsedFamily>();

  /** The family `name`; throws when it is missing. */
  family(name: string): ParsedFamily {
    const family = this.families.get(name);
    if (!family) throw new Error(`no metric family ${name} in the exposition`);
    return family;
  }

  /**
   * The value of the sample `name` whose labels include `labels`; throws
   * unless exactly one sample matches.
   */
  value(name: string, labels: Record<string, string> = {}): number {
    const matches = this.samples(name, labels);
    if (matches.length !== 1) {
      throw new Error(
        `${matches.length} samples of ${name} match ${JSON.stringify(labels)}: ${
          JSON.stringify(matches)
        }`,
      );
    }
    return matches[0].value;
  }

  /** Every sample named `name` whose labels include `labels`. */
  samples(name: string, labels: Record<string, string> = {}): ParsedSample[] {
    const out: ParsedSample[] = [];
    for (const family of this.families.values()) {
      for (const s of family.samples) {
        if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) {
          out.push(s);
        }
      }
    }
    return out;
  }
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = ["counter", "gauge", "histogram", "summary", "untyped"] as const;

function parseValue(text: string, where: string): number {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) {
    throw new Error(`${where}: ${JSON.stringify(text)} is not a sample value`);
  }
  return Number(text);
}

/** Parses `{a="x",b="y"}` starting at `text[0] === "{"`; returns labels and the rest. */
function parseLabels(text: string, where: string): [Record<string, string>, string] {
  const labels: Record<string, string> = {};
  let i = 1;
  for (;;) {
    if (text[i] === "}") return [labels, text.slice(i + 1)];
    const name = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(text.slice(i))?.[0];
    if (!name) throw new Error(`${where}: bad label name at ${JSON.stringify(text.slice(i))}`);
    if (name.startsWith("__")) throw new Error(`${where}: label ${name} is reserved`);
    if (name in labels) throw new Error(`${where}: label ${name} given twice`);
    i += name.length;
    if (text.slice(i, i + 2) !== '="') throw new Error(`${where}: label ${name} has no ="value"`);
    i += 2;
    let value = "";
    for (;;) {
      const c = text[i];
      if (c === undefined) throw new Error(`${where}: label ${name} value not closed`);
      if (c === '"') break;
      if (c === "\n") throw new Error(`${where}: raw line feed in label ${name}`);
      if (c === "\\") {
        const next = text[i + 1];
        if (next === "\\") value += "\\";
        else if (next === '"') value += '"';
        else if (next === "n") value += "\n";
        else throw new Error(`${where}: bad escape \\${next} in label ${name}`);
        i += 2;
        continue;
      }
      value += c;
      i++;
    }
    labels[name] = value;
    i++;
    if (text[i] === ",") {
      i++;
      if (text[i] === "}") return [labels, text.slice(i + 1)]; // a trailing comma is allowed
    } else if (text[i] !== "}") {
      throw new Error(`${where}: expected , or } after label ${name}`);
    }
  }
}

function unescapeHelp(text: string, where: string): string {
  return text.replace(/\\(.)/g, (_, c: string) => {
    if (c === "\\") return "\\";
    if (c === "n") return "\n";
    throw new Error(`${where}: bad escape \\${c} in HELP`);
  });
}

/** The family a sample name belongs to (`x_bucket` to a histogram `x`). */
function familyOf(name: string, families: Map<string, ParsedFamily>): ParsedFamily | undefined {
  const direct = families.get(name);
  if (direct) return direct;
  const base = name.replace(/_(bucket|sum|count)$/, "");
  const family = families.get(base);
  return family && (family.type === "histogram" || family.type === "summary") ? family : undefined;
}

function checkHistogram(family: ParsedFamily): void {
  const series = new Map<
    string,
    { buckets: Array<[number, number]>; sum?: number; count?: number }
  >();
  const key = (labels: Record<string, string>) =>
    JSON.stringify(Object.entries(labels).filter(([k]) => k !== "le").sort());
  for (const s of family.samples) {
    const k = key(s.labels);
    const entry = series.get(k) ?? { buckets: [] };
    series.set(k, entry);
    const suffix = s.name.slice(family.name.length);
    if (suffix === "_bucket") {
      if (s.labels.le === undefined) throw new Error(`${family.name}_bucket without le`);
      if (entry.sum !== undefined || entry.count !== undefined) {
        throw new Error(`${family.name}: a bucket after _sum or _count`);
      }
      entry.buckets.push([parseValue(s.labels.le, `${family.name} le`), s.value]);
    } else if (suffix === "_sum") entry.sum = s.value;
    else if (suffix === "_count") entry.count = s.value;
    else throw new Error(`histogram ${family.name} has a sample ${s.name}`);
  }
  if (series.size === 0) throw new Error(`histogram ${family.name} has no series`);
  for (const [labels, { buckets, sum, count }] of series) {
    const where = `histogram ${family.name}${labels}`;
    if (buckets.length === 0 || buckets[buckets.length - 1][0] !== Infinity) {
      throw new Error(`${where}: the last bucket is not le="+Inf"`);
    }
    buckets.forEach(([le, n], i) => {
      if (!Number.isInteger(n) || n < 0) throw new Error(`${where}: bucket le=${le} holds ${n}`);
      if (i > 0 && le <= buckets[i - 1][0]) throw new Error(`${where}: le ${le} out of order`);
      if (i > 0 && n < buckets[i - 1][1]) throw new Error(`${where}: buckets not cumulative`);
    });
    if (sum === undefined) throw new Error(`${where}: no _sum`);
    if (count !== buckets[buckets.length - 1][1]) {
      throw new Error(`${where}: _count ${count} differs from the +Inf bucket`);
    }
  }
}

/** Parses exposition text strictly; throws an Error naming the line at fault. */
export function parsePrometheusText(text: string): Exposition {
  const exposition = new Exposition();
  const families = exposition.families;
  if (text.length > 0 && !text.endsWith("\n")) throw new Error("the text does not end in \\n");
  const lines = text.length === 0 ? [] : text.slice(0, -1).split("\n");
  const closed = new Set<string>();
  const seriesSeen = new Set<string>();
  /** HELP and TYPE lines seen per family. */
  const declared = new Map<string, Set<string>>();
  let current: ParsedFamily | undefined;
  const enter = (family: ParsedFamily) => {
    if (current && current !== family) closed.add(current.name);
    if (closed.has(family.name)) throw new Error(`family ${family.name} is split into two groups`);
    current = family;
  };
  lines.forEach((line, n) => {
    const where = `line ${n + 1} (${JSON.stringify(line.slice(0, 60))})`;
    if (line === "") throw new Error(`${where}: blank line`);
    if (line.startsWith("#")) {
      const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!meta) {
        if (/^#\s*(HELP|TYPE)\b/.test(line)) throw new Error(`${where}: malformed ${line}`);
        return; // other comments are allowed
      }
      const [, what, name, rest] = meta;
      if (!METRIC_NAME.test(name)) throw new Error(`${where}: bad metric name ${name}`);
      let family = families.get(name);
      if (!family) {
        family = { name, help: "", type: "untyped", samples: [] };
        families.set(name, family);
      }
      enter(family);
      const seen = declared.get(name) ?? new Set();
      declared.set(name, seen);
      if (seen.has(what)) throw new Error(`${where}: second ${what} for ${name}`);
      seen.add(what);
      if (what === "HELP") family.help = unescapeHelp(rest, where);
      else {
        if (family.samples.length > 0) throw new Error(`${where}: TYPE after samples of ${name}`);
        if (!(TYPES as readonly string[]).includes(rest)) {
          throw new Error(`${where}: unknown type ${rest}`);
        }
        if (rest === "counter" && !name.endsWith("_total")) {
          throw new Error(`${where}: counter ${name} must end in _total`);
        }
        family.type = rest as ParsedFamily["type"];
      }
      return;
    }
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0];
    if (!name) throw new Error(`${where}: no metric name`);
    let rest = line.slice(name.length);
    let labels: Record<string, string> = {};
    if (rest.startsWith("{")) [labels, rest] = parseLabels(rest, where);
    const fields = /^ (\S+)( -?\d+)?$/.exec(rest);
    if (!fields) {
      throw new Error(`${where}: expected " VALUE [TIMESTAMP]" after the name and labels`);
    }
    const value = parseValue(fields[1], where);
    for (const label of Object.keys(labels)) {
      if (!LABEL_NAME.test(label)) throw new Error(`${where}: bad label name ${label}`);
    }
    let family = familyOf(name, families);
    if (!family) {
      family = { name, help: "", type: "untyped", samples: [] };
      families.set(name, family);
    }
    enter(family);
    const series = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seriesSeen.has(series)) throw new Error(`${where}: duplicate series`);
    seriesSeen.add(series);
    if (family.type === "counter") {
      if (!name.endsWith("_total")) throw new Error(`${where}: counter ${name} must end in _total`);
      if (!(value >= 0)) throw new Error(`${where}: counter ${name} is ${value}`);
    }
    if (family.type === "histogram" && name === family.name) {
      throw new Error(`${where}: histogram sample without _bucket/_sum/_count`);
    }
    family.samples.push({ name, labels, value });
  });
  for (const family of families.values()) {
    if (family.type === "histogram") checkHistogram(family);
  }
  return exposition;
}
