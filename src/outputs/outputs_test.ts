import { assert, assertEquals, assertMatch } from "../../tests/helpers/assert.ts";
import { parsePrometheusText } from "../../tests/helpers/prometheus.ts";
import { Logger } from "../log/logger.ts";
import { ServerMetrics } from "../metrics/server_metrics.ts";
import type { LeaseEvent } from "./lease_event.ts";
import { Outputs } from "./outputs.ts";
import { PrometheusTextfileOutput, SummaryLogOutput } from "./periodic.ts";
import { RtTablesOutput } from "./rt_tables.ts";

const SNAPSHOT = {
  pools: [{
    name: "default",
    family: 2 as const,
    size: 40,
    free: 37,
    bound: 2,
    reserved: 0,
    held: 1,
  }],
  outside: 1,
  uptimeSeconds: 5,
  version: "1.0.0",
};

const granted: LeaseEvent = {
  kind: "granted",
  family: 2,
  ifname: "eth1",
  address: "192.0.2.10",
  tag: "wan",
  table: 10000,
  previousTable: 0,
  expiresAt: 0,
  details: {
    pool: "default",
    expires: "2030-01-01T00:00:00.000Z",
    from: "@x",
    pid: 7,
    uid: 0,
    gid: 0,
  },
};

async function withContext(
  fn: (
    dir: string,
    context: { log: Logger; metrics: ServerMetrics; snapshot: () => typeof SNAPSHOT },
  ) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  const log = new Logger({ program: "t", logPath: `${dir}/log` });
  try {
    await fn(dir, { log, metrics: new ServerMetrics(), snapshot: () => SNAPSHOT });
  } finally {
    log.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const logLines = async (dir: string) =>
  (await Deno.readTextFile(`${dir}/log`)).trim().split("\n").map((l) => l.replace(/^\S+ /, ""));

Deno.test("the eventlog output writes the server's classic event line, families by name", async () => {
  await withContext(async (dir, context) => {
    const outputs = new Outputs(context);
    outputs.apply([{ kind: "eventlog" }], []);
    outputs.leaseEvent(granted);
    outputs.leaseEvent({
      ...granted,
      kind: "moved",
      table: 10002,
      previousTable: 10000,
      tag: undefined,
      details: {},
    });
    outputs.leaseEvent({
      ...granted,
      kind: "expired",
      family: 10,
      address: "2001:db8::1",
      tag: undefined,
      details: { expired: "x" },
    });
    await outputs.stop();
    assertEquals(await logLines(dir), [
      "INFO granted family=inet ifname=eth1 address=192.0.2.10 tag=wan table=10000 pool=default expires=2030-01-01T00:00:00.000Z from=@x pid=7 uid=0 gid=0",
      "INFO moved family=inet ifname=eth1 address=192.0.2.10 table=10002 previous_table=10000",
      "INFO expired family=inet6 ifname=eth1 address=2001:db8::1 table=10000 expired=x",
    ]);
  });
});

Deno.test("Outputs.apply() keeps unchanged outputs, starts new ones, retires removed ones", async () => {
  await withContext(async (dir, context) => {
    const outputs = new Outputs(context);
    const rt = { kind: "rt_tables" as const, path: `${dir}/a.conf`, name: "{ifname}-{family}" };
    const prom = { kind: "prometheus_textfile" as const, path: `${dir}/m.prom`, interval: 3600 };
    outputs.apply([rt, prom], [{
      family: 2,
      ifname: "eth9",
      address: "192.0.2.9",
      tag: undefined,
      table: 10009,
    }]);
    const [first, textfile] = outputs.outputs;
    assert(first instanceof RtTablesOutput && textfile instanceof PrometheusTextfileOutput);
    await first.settled();
    await textfile.write();
    assertMatch(await Deno.readTextFile(`${dir}/a.conf`), /\n10009 eth9-v4\n$/);
    const metrics = parsePrometheusText(await Deno.readTextFile(`${dir}/m.prom`));
    assertEquals(metrics.value("table_allocator_leases", { state: "held" }), 1);

    // The same rt_tables output moves to outputs[1]; the metrics file goes away with its output.
    outputs.apply([{ kind: "eventlog" }, rt], []);
    assertEquals(outputs.outputs[1], first);
    assertEquals(first.name, "outputs[1]");
    outputs.leaseEvent(granted);
    await first.settled();
    assertMatch(await Deno.readTextFile(`${dir}/a.conf`), /\n10000 eth1-v4\n10009 eth9-v4\n$/);

    // A new path: the new file is written from the bound leases, the old one removed.
    outputs.apply([{ ...rt, path: `${dir}/b.conf` }], [{ ...granted }]);
    const [second] = outputs.outputs;
    assert(second instanceof RtTablesOutput && second !== first);
    await outputs.stop();
    assertMatch(await Deno.readTextFile(`${dir}/b.conf`), /\n10000 eth1-v4\n$/);
    assertEquals(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["b.conf", "log"],
    );
  });
});

Deno.test("the log output sums up the pools; prometheus_textfile writes what ctl metrics prints", async () => {
  await withContext(async (dir, context) => {
    new SummaryLogOutput("outputs[0]", 60, context.log, context.snapshot).summary();
    assertEquals(await logLines(dir), [
      "INFO summary pools=1 tables=40 bound=3 reserved=0 held=1 free=37 outside_pools=1",
      "INFO summary of pool pool=default family=inet size=40 bound=2 reserved=0 held=1 free=37",
    ]);
    const path = `${dir}/x.prom`;
    const out = new PrometheusTextfileOutput(
      "outputs[1]",
      { path, interval: 60 },
      context.log,
      context.metrics,
      context.snapshot,
    );
    context.metrics.leaseEvent("granted");
    await out.write();
    assertEquals(await Deno.readTextFile(path), context.metrics.render(SNAPSHOT));
    await out.stop(0, false);
  });
});
