/**
 * The Prometheus text exposition format (version 0.0.4), written by hand:
 * `# HELP` and `# TYPE` lines, one sample per line, label values escaped,
 * histograms as cumulative `_bucket` series ending in `le="+Inf"`, then
 * `_sum` and `_count`. Pure: families in, text out.
 *
 * @module
 */

/** Labels of one sample: name to value. */
export type Labels = Readonly<Record<string, string>>;

/** A counter or gauge family. */
export interface ScalarFamily {
  name: string;
  help: string;
  type: "counter" | "gauge";
  samples: ReadonlyArray<{ labels?: Labels; value: number }>;
}

/** One series of a histogram: counts per bucket (not cumulative), their sum and total. */
export interface HistogramSeries {
  labels?: Labels;
  /** Observations per bucket, `bounds.length + 1` of them: the last is above every bound. */
  counts: readonly number[];
  sum: number;
}

/** A histogram family with its bucket upper bounds, ascending. */
export interface HistogramFamily {
  name: string;
  help: string;
  type: "histogram";
  bounds: readonly number[];
  series: readonly HistogramSeries[];
}

/** A metric family of any type. */
export type MetricFamily = ScalarFamily | HistogramFamily;

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A sample value: integers as is, `+Inf`, `-Inf`, `NaN`. */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

/** Escapes a label value: backslash, double quote and line feed. */
export function escapeLabelValue(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

/** Escapes HELP text: backslash and line feed. */
function escapeHelp(text: string): string {
  return text.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
}

function labelText(labels: Labels | undefined, extra?: [string, string]): string {
  const pairs = Object.entries(labels ?? {});
  if (extra) pairs.push(extra);
  if (pairs.length === 0) return "";
  for (const [name] of pairs) {
    if (!LABEL_NAME.test(name) || name.startsWith("__")) {
      throw new RangeError(`invalid label name ${JSON.stringify(name)}`);
    }
  }
  return `{${pairs.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(",")}}`;
}

/**
 * Writes families as exposition text. Throws a RangeError for an invalid
 * metric or label name, a duplicate family, or a histogram whose counts do
 * not fit its bounds: a bug, never input.
 */
export function formatExposition(families: readonly MetricFamily[]): string {
  const seen = new Set<string>();
  let out = "";
  for (const family of families) {
    if (!METRIC_NAME.test(family.name)) {
      throw new RangeError(`invalid metric name ${JSON.stringify(family.name)}`);
    }
    if (seen.has(family.name)) throw new RangeError(`metric ${family.name} written twice`);
    seen.add(family.name);
    out += `# HELP ${family.name} ${
      escapeHelp(family.help)
    }\n# TYPE ${family.name} ${family.type}\n`;
    if (family.type !== "histogram") {
      for (const sample of family.samples) {
        out += `${family.name}${labelText(sample.labels)} ${formatValue(sample.value)}\n`;
      }
      continue;
    }
    for (const series of family.series) {
      if (series.counts.length !== family.bounds.length + 1) {
        throw new RangeError(
          `histogram ${family.name} has ${series.counts.length} counts for ${family.bounds.length} bounds`,
        );
      }
      let cumulative = 0;
      family.bounds.forEach((bound, i) => {
        cumulative += series.counts[i];
        out += `${family.name}_bucket${
          labelText(series.labels, ["le", formatValue(bound)])
        } ${cumulative}\n`;
      });
      cumulative += series.counts[family.bounds.length];
      out += `${family.name}_bucket${labelText(series.labels, ["le", "+Inf"])} ${cumulative}\n`;
      out += `${family.name}_sum${labelText(series.labels)} ${formatValue(series.sum)}\n`;
      out += `${family.name}_count${labelText(series.labels)} ${cumulative}\n`;
    }
  }
  return out;
}

/** A histogram with fixed bucket bounds, cheap to observe into. */
export class Histogram {
  readonly bounds: readonly number[];
  #counts: number[];
  #sum = 0;

  /** Builds an empty histogram; `bounds` must be ascending. */
  constructor(bounds: readonly number[]) {
    if (bounds.some((b, i) => i > 0 && b <= bounds[i - 1]) || bounds.some((b) => !isFinite(b))) {
      throw new RangeError(
        `histogram bounds must be finite and ascending, got ${bounds.join(",")}`,
      );
    }
    this.bounds = bounds;
    this.#counts = new Array(bounds.length + 1).fill(0);
  }

  /** Counts one observation. */
  observe(value: number): void {
    let i = 0;
    while (i < this.bounds.length && value > this.bounds[i]) i++;
    this.#counts[i]++;
    this.#sum += value;
  }

  /** The series as {@link formatExposition} takes it. */
  series(labels?: Labels): HistogramSeries {
    return { labels, counts: [...this.#counts], sum: this.#sum };
  }
}
