import { assertEquals } from "../../tests/helpers/assert.ts";
import { parsePrometheusText } from "../../tests/helpers/prometheus.ts";
import { ServerMetrics } from "./server_metrics.ts";

const SNAPSHOT = {
  pools: [
    { name: "wan", family: 2 as const, size: 10, free: 6, bound: 2, reserved: 1, held: 1 },
    { name: "default", family: 10 as const, size: 40, free: 40, bound: 0, reserved: 0, held: 0 },
  ],
  outside: 3,
  uptimeSeconds: 12,
  version: "1.0.0",
  socketQueue: { limit: 10, full: 4 },
};

Deno.test("ServerMetrics counts events, errors, passes and commits and writes valid text", () => {
  const metrics = new ServerMetrics();
  metrics.leaseEvent("granted");
  metrics.leaseEvent("granted");
  metrics.leaseEvent("expired");
  metrics.errorReply("pool_exhausted");
  metrics.errorReply("bad_json");
  metrics.errorReply("pool_exhausted");
  metrics.pass(3);
  metrics.pass(1);
  metrics.commitSeconds(0.0004);
  metrics.commitSeconds(0.2);
  metrics.reload(true);
  metrics.reload(false);
  metrics.reload(false);
  metrics.outputFailure("outputs[1]");
  const m = parsePrometheusText(metrics.render(SNAPSHOT));
  assertEquals(m.value("table_allocator_lease_events_total", { event: "granted" }), 2);
  assertEquals(m.value("table_allocator_lease_events_total", { event: "moved" }), 0);
  assertEquals(m.value("table_allocator_lease_events_total", { event: "expired" }), 1);
  assertEquals(m.value("table_allocator_error_replies_total", { code: "pool_exhausted" }), 2);
  assertEquals(m.value("table_allocator_error_replies_total", { code: "bad_json" }), 1);
  assertEquals(m.value("table_allocator_passes_total"), 2);
  assertEquals(m.value("table_allocator_datagrams_total"), 4);
  assertEquals(m.value("table_allocator_commit_duration_seconds_bucket", { le: "0.0005" }), 1);
  assertEquals(m.value("table_allocator_commit_duration_seconds_bucket", { le: "0.25" }), 2);
  assertEquals(m.value("table_allocator_commit_duration_seconds_count"), 2);
  assertEquals(m.value("table_allocator_reloads_total", { result: "refused" }), 2);
  assertEquals(m.value("table_allocator_output_failures_total", { output: "outputs[1]" }), 1);
  assertEquals(
    m.value("table_allocator_leases", { pool: "wan", family: "inet", state: "held" }),
    1,
  );
  assertEquals(
    m.value("table_allocator_pool_free_tables", { pool: "default", family: "inet6" }),
    40,
  );
  assertEquals(m.value("table_allocator_leases_outside_pools"), 3);
  assertEquals(m.value("table_allocator_uptime_seconds"), 12);
  assertEquals(m.value("table_allocator_info", { version: "1.0.0" }), 1);
  assertEquals(m.value("table_allocator_socket_queue_limit"), 10);
  assertEquals(m.value("table_allocator_socket_queue_full_total"), 4);
  assertEquals(m.family("table_allocator_socket_queue_full_total").type, "counter");
});

Deno.test("a fresh ServerMetrics writes every family, with empty ones declared", () => {
  const m = parsePrometheusText(new ServerMetrics().render({ ...SNAPSHOT, pools: [] }));
  assertEquals(m.samples("table_allocator_error_replies_total").length, 0);
  assertEquals(m.family("table_allocator_error_replies_total").type, "counter");
  assertEquals(m.value("table_allocator_commit_duration_seconds_bucket", { le: "+Inf" }), 0);
});
