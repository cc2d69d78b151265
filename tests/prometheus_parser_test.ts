// The strict exposition parser of the tests must refuse what a scraper
// would refuse or misread, or the metrics tests could not fail.
import { assertEquals, assertThrows } from "./helpers/assert.ts";
import { parsePrometheusText } from "./helpers/prometheus.ts";

const GOOD = `# HELP a_total Things done, with a \\\\ and a \\n in the help.
# TYPE a_total counter
a_total{code="x\\"y\\\\z\\nw"} 3
a_total{code="b",} 0
# HELP g A gauge.
# TYPE g gauge
g -1.5e3
g{x="1"} +Inf
# HELP h_seconds A histogram.
# TYPE h_seconds histogram
h_seconds_bucket{le="0.1"} 1
h_seconds_bucket{le="1"} 3
h_seconds_bucket{le="+Inf"} 4
h_seconds_sum 7.25
h_seconds_count 4
`;

Deno.test("the strict parser reads names, help, types, escaped labels and histograms", () => {
  const parsed = parsePrometheusText(GOOD);
  assertEquals([...parsed.families.keys()], ["a_total", "g", "h_seconds"]);
  assertEquals(parsed.family("a_total").help, "Things done, with a \\ and a \n in the help.");
  assertEquals(parsed.value("a_total", { code: 'x"y\\z\nw' }), 3);
  assertEquals(parsed.value("g", { x: "1" }), Infinity);
  assertEquals(parsed.samples("g").length, 2);
  assertEquals(parsed.value("h_seconds_bucket", { le: "1" }), 3);
  assertEquals(parsed.value("h_seconds_count"), 4);
});

Deno.test("the strict parser refuses every malformed exposition", () => {
  const cases: Array<[string, RegExp]> = [
    [GOOD.slice(0, -1), /does not end in/],
    [`${GOOD}\n`, /blank line/],
    ["1x 1\n", /no metric name/],
    ["a 1 2 3\n", /VALUE \[TIMESTAMP\]/],
    ["a one\n", /not a sample value/],
    ['a{b="c} 1\n', /not closed/],
    ['a{b="\\t"} 1\n', /bad escape \\t/],
    ['a{b="1",b="2"} 1\n', /given twice/],
    ['a{__b="1"} 1\n', /reserved/],
    ["a{b=1} 1\n", /has no ="value"/],
    ["a 1\na 2\n", /duplicate series/],
    ["# TYPE a counter\na_total 1\n", /counter a must end in _total/],
    ["# TYPE a_total counter\na_total -1\n", /counter a_total is -1/],
    ["# TYPE a gauge\n# TYPE a gauge\n", /second TYPE/],
    ["# HELP a x\n# HELP a y\n", /second HELP/],
    ["# TYPE a nonsense\n", /unknown type/],
    ["a 1\n# TYPE a gauge\n", /TYPE after samples/],
    ['# TYPE a gauge\na 1\nb 1\na{x="1"} 2\n', /split into two groups/],
    ["# HELP 9a x\n", /bad metric name/],
    ["# TYPE h histogram\nh 1\n", /without _bucket/],
    ['# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n', /not le="\+Inf"/],
    [
      '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
      /not cumulative/,
    ],
    [
      '# TYPE h histogram\nh_bucket{le="2"} 1\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
      /out of order/,
    ],
    ['# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 1\n', /no _sum/],
    ['# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n', /_count 1 differs/],
    [
      '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\nh_bucket{le="+Inf"} 1\n',
      /duplicate series|after _sum/,
    ],
  ];
  for (const [text, message] of cases) {
    assertThrows(() => parsePrometheusText(text), message, JSON.stringify(text));
  }
});
