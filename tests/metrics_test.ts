/**
 * End-to-end: `table-allocator-ctl metrics` and the `prometheus_textfile`
 * output, read with the strict exposition parser of the tests after a
 * known sequence of requests.
 *
 * @module
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { ctl } from "./helpers/ctl.ts";
import { e2eTest } from "./helpers/e2e.ts";
import { waitFor } from "./helpers/netns.ts";
import { parsePrometheusText } from "./helpers/prometheus.ts";
import { startServer } from "./helpers/server.ts";
import { requestBody, WireClient } from "./helpers/wire.ts";
import { datagramQueueLength } from "../src/unix/datagram_queue.ts";

e2eTest("ctl metrics counts leases, events, errors and commits in valid exposition text", {
  root: true, // control requests are answered to root only
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-metrics-" });
  try {
    const path = `${dir}/table-allocator.prom`;
    await using server = await startServer({
      config: {
        pools: [{
          name: "wan",
          family: "inet",
          ranges: [{ first: 20000, last: 20009 }],
          tags: ["wan"],
        }],
        outputs: [{ kind: "eventlog" }, { kind: "prometheus_textfile", path, interval: 1 }],
      },
    });
    using client = new WireClient(server.socketName);
    assertEquals((await client.request("10.0.0.1")).table, 10000);
    assertEquals((await client.request("10.0.0.2", { tag: "wan" })).table, 20000);
    assertEquals((await client.request("10.0.0.1")).table, 10000);
    assertEquals((await client.release("10.0.0.2")).table, 0);
    assertEquals((await client.call("{nope")).error, "bad_json");
    assertEquals((await client.request("not-an-ip")).error, "bad_request");
    assertEquals((await client.request("2001:db8::1", { family: 10 })).table, 10000);

    const result = await ctl(["-d", server.socketName, "metrics"]);
    assertEquals(result.code, 0, result.stderr);
    const m = parsePrometheusText(result.stdout);
    const events = (event: string) => m.value("table_allocator_lease_events_total", { event });
    assertEquals(
      ["granted", "refreshed", "moved", "released", "expired"].map(events),
      [3, 1, 0, 1, 0],
    );
    assertEquals(m.value("table_allocator_error_replies_total", { code: "bad_json" }), 1);
    assertEquals(m.value("table_allocator_error_replies_total", { code: "bad_request" }), 1);
    // Seven lease datagrams and this metrics request, each in a pass of its own or together.
    assertEquals(m.value("table_allocator_datagrams_total"), 8);
    const passes = m.value("table_allocator_passes_total");
    assert(passes >= 1 && passes <= 8, `passes ${passes}`);
    const lease = (pool: string, family: string, state: string) =>
      m.value("table_allocator_leases", { pool, family, state });
    assertEquals(lease("default", "inet", "bound"), 1);
    assertEquals(lease("default", "inet6", "bound"), 1);
    assertEquals(lease("wan", "inet", "bound"), 0);
    assertEquals(lease("default", "inet", "held"), 0);
    assertEquals(m.value("table_allocator_pool_tables", { pool: "wan", family: "inet" }), 10);
    assertEquals(m.value("table_allocator_pool_tables", { pool: "default", family: "unspec" }), 40);
    assertEquals(
      m.value("table_allocator_pool_free_tables", { pool: "default", family: "inet" }),
      39,
    );
    // Every grant, refresh and release was committed before its reply.
    const commits = m.value("table_allocator_commit_duration_seconds_count");
    assert(commits >= 4 && commits <= passes, `commits ${commits}, passes ${passes}`);
    assert(m.value("table_allocator_uptime_seconds") >= 0);
    assertEquals(m.family("table_allocator_commit_duration_seconds").type, "histogram");

    // --json carries the same text; the textfile soon shows the same counters.
    const json = await ctl(["-d", server.socketName, "--json", "metrics"]);
    assertEquals(
      parsePrometheusText(JSON.parse(json.stdout).text).value(
        "table_allocator_lease_events_total",
        { event: "granted" },
      ),
      3,
    );
    await waitFor("the metrics file with every grant", async () => {
      const text = await Deno.readTextFile(path).catch(() => "");
      return text !== "" &&
        parsePrometheusText(text).value("table_allocator_lease_events_total", {
            event: "granted",
          }) === 3;
    });
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["table-allocator.prom"]);
    // Its first write, at start, found the server's counters too.
    assert(!server.output().includes(" ERROR "), server.output());
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

e2eTest(
  "a server that finds its socket's kernel queue full counts it, warns and serves every request",
  {
    root: true, // control requests are answered to root only
  },
  async () => {
    await using server = await startServer();
    const qlen = datagramQueueLength();
    const clients = Array.from({ length: qlen + 2 }, () => new WireClient(server.socketName));
    try {
      // Frozen, the server drains nothing: the kernel queues one datagram beyond
      // its limit and refuses the next sender, as it refuses a crowd's.
      Deno.kill(server.process.pid, "SIGSTOP");
      const encoded = clients.map((_, i) => new TextEncoder().encode(requestBody(`10.0.1.${i}`)));
      let accepted: boolean[];
      try {
        accepted = clients.map((c, i) => c.socket.sendToName(encoded[i], server.socketName));
      } finally {
        Deno.kill(server.process.pid, "SIGCONT");
      }
      assertEquals(accepted.filter((a) => a).length, qlen + 1, `accepted: ${accepted}`);
      assertEquals(accepted.at(-1), false, "the last sender was refused");
      // The refused one tries again, as clients do.
      await clients.at(-1)!.send(encoded.at(-1)!);
      const tables = await Promise.all(clients.map(async (c) => (await c.receive())?.table));
      assertEquals(
        new Set(tables).size,
        qlen + 2,
        `every request got a table of its own: ${tables}`,
      );

      const m = parsePrometheusText((await ctl(["-d", server.socketName, "metrics"])).stdout);
      assertEquals(m.value("table_allocator_socket_queue_limit"), qlen);
      assertEquals(m.value("table_allocator_socket_queue_full_total"), 1);
      const warning = await server.waitForLog(/WARN the socket's kernel queue was full/);
      assert(warning.includes(` times=1 queue=${qlen} `), warning);
    } finally {
      for (const c of clients) c[Symbol.dispose]();
    }
  },
);
