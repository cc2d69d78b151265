import { assert, assertEquals, assertMatch } from "../../tests/helpers/assert.ts";
import { leaseEvent } from "../../tests/helpers/events.ts";
import { parsePrometheusText } from "../../tests/helpers/prometheus.ts";
import { Logger } from "../log/logger.ts";
import { ServerMetrics } from "../metrics/server_metrics.ts";
import { paddedAbstractAddress } from "../unix/abstract_socket.ts";
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
  socketQueue: { limit: 512, full: 0 },
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

const none = () => Promise.resolve([]);

Deno.test("the eventlog output writes the server's event lines, families by name", async () => {
  await withContext(async (dir, context) => {
    const outputs = new Outputs(context);
    await outputs.apply([{ kind: "eventlog" }], none);
    const origin = {
      kind: "client" as const,
      request: {
        cmd: 0 as const,
        identity: { family: 2 as const, ifname: "eth1", address: "192.0.2.10" },
        tag: "wan",
      },
      sender: paddedAbstractAddress("x"),
      credentials: { pid: 7, uid: 0, gid: 0 },
    };
    outputs.onLease({ ...leaseEvent("granted", 10000, { tag: "wan", origin }), pool: "default" });
    outputs.onLease(leaseEvent("released", 10000, { origin: { kind: "control", uid: 0 } }));
    outputs.onLease(leaseEvent("expired", 10000, { family: 10, address: "2001:db8::1" }));
    await outputs.stop();
    assertEquals(await logLines(dir), [
      "INFO granted family=inet ifname=eth1 address=192.0.2.10 tag=wan table=10000 pool=default expires=1970-01-01T00:00:00.000Z from=@x pid=7 uid=0 gid=0",
      "INFO released family=inet ifname=eth1 address=192.0.2.10 table=10000 by=control uid=0",
      "INFO expired family=inet6 ifname=eth1 address=2001:db8::1 table=10000 expired=1970-01-01T00:00:00.000Z",
    ]);
  });
});

Deno.test("Outputs.apply() keeps unchanged outputs, starts new ones, retires removed ones", async () => {
  await withContext(async (dir, context) => {
    const outputs = new Outputs(context);
    const rt = { kind: "rt_tables" as const, path: `${dir}/a.conf`, name: "{ifname}-{family}" };
    const prom = { kind: "prometheus_textfile" as const, path: `${dir}/m.prom`, interval: 3600 };
    let reads = 0;
    const bound = (...tables: number[]) => () => {
      reads++;
      return Promise.resolve(
        tables.map((t) => leaseEvent("granted", t, { ifname: "eth9" }).lease!),
      );
    };
    await outputs.apply([rt, prom], bound(10009));
    const [first, textfile] = outputs.outputs;
    assert(first instanceof RtTablesOutput && textfile instanceof PrometheusTextfileOutput);
    await first.settled();
    await textfile.write();
    assertMatch(await Deno.readTextFile(`${dir}/a.conf`), /\n10009 eth9-v4\n$/);
    const metrics = parsePrometheusText(await Deno.readTextFile(`${dir}/m.prom`));
    assertEquals(metrics.value("table_allocator_leases", { state: "held" }), 1);

    // The same rt_tables output moves to outputs[1]; the store is not read for it again;
    // the metrics file goes away with its output.
    await outputs.apply([{ kind: "eventlog" }, rt], bound(10009));
    assertEquals(reads, 1);
    assertEquals(outputs.outputs[1], first);
    assertEquals(first.name, "outputs[1]");
    outputs.onLease(leaseEvent("granted", 10000));
    await first.settled();
    assertMatch(await Deno.readTextFile(`${dir}/a.conf`), /\n10000 eth1-v4\n10009 eth9-v4\n$/);

    // A new path: the new file is written from the bound leases, the old one removed.
    await outputs.apply([{ ...rt, path: `${dir}/b.conf` }], bound(10000));
    const [second] = outputs.outputs;
    assert(second instanceof RtTablesOutput && second !== first);
    await outputs.stop();
    assertMatch(await Deno.readTextFile(`${dir}/b.conf`), /\n10000 eth9-v4\n$/);
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
