import { assertEquals, assertThrows } from "../../tests/helpers/assert.ts";
import { parsePrometheusText } from "../../tests/helpers/prometheus.ts";
import { escapeLabelValue, formatExposition, formatValue, Histogram } from "./exposition.ts";

Deno.test("formatExposition() writes HELP, TYPE and samples that a strict parser reads back", () => {
  const text = formatExposition([
    {
      name: "x_total",
      help: "Counted \\ things\nover lines.",
      type: "counter",
      samples: [{ labels: { code: 'a"b\\c\nd' }, value: 2 }, { value: 5 }],
    },
    { name: "y", help: "A gauge.", type: "gauge", samples: [{ value: 0.25 }] },
  ]);
  assertEquals(
    text,
    `# HELP x_total Counted \\\\ things\\nover lines.
# TYPE x_total counter
x_total{code="a\\"b\\\\c\\nd"} 2
x_total 5
# HELP y A gauge.
# TYPE y gauge
y 0.25
`,
  );
  const parsed = parsePrometheusText(text);
  assertEquals(parsed.value("x_total", { code: 'a"b\\c\nd' }), 2);
  assertEquals(parsed.family("x_total").help, "Counted \\ things\nover lines.");
});

Deno.test("a Histogram is written cumulative, ending with +Inf, _sum and _count", () => {
  const h = new Histogram([0.001, 0.01, 0.1]);
  for (const v of [0.0005, 0.001, 0.005, 0.05, 0.05, 3]) h.observe(v);
  const text = formatExposition([{
    name: "lat_seconds",
    help: "Latency.",
    type: "histogram",
    bounds: h.bounds,
    series: [h.series()],
  }]);
  assertEquals(
    text.split("\n").slice(2).join("\n"),
    `lat_seconds_bucket{le="0.001"} 2
lat_seconds_bucket{le="0.01"} 3
lat_seconds_bucket{le="0.1"} 5
lat_seconds_bucket{le="+Inf"} 6
lat_seconds_sum 3.1065
lat_seconds_count 6
`,
  );
  assertEquals(parsePrometheusText(text).value("lat_seconds_count"), 6);
});

Deno.test("formatExposition() refuses invalid names and mismatched histograms (bugs, not input)", () => {
  const gauge = (name: string, labels?: Record<string, string>) => ({
    name,
    help: "h",
    type: "gauge" as const,
    samples: [{ labels, value: 1 }],
  });
  assertThrows(() => formatExposition([gauge("1x")]), /invalid metric name/);
  assertThrows(() => formatExposition([gauge("x", { "a-b": "1" })]), /invalid label name/);
  assertThrows(() => formatExposition([gauge("x"), gauge("x")]), /written twice/);
  assertThrows(
    () =>
      formatExposition([{
        name: "h",
        help: "h",
        type: "histogram",
        bounds: [1],
        series: [{ counts: [1], sum: 1 }],
      }]),
    /1 counts for 1 bounds/,
  );
  assertThrows(() => new Histogram([1, 1]), /ascending/);
});

Deno.test("formatValue() and escapeLabelValue() follow the text format", () => {
  assertEquals([1, 0.5, Infinity, -Infinity, NaN].map(formatValue), [
    "1",
    "0.5",
    "+Inf",
    "-Inf",
    "NaN",
  ]);
  assertEquals(escapeLabelValue('\\"\n'), '\\\\\\"\\n');
});
