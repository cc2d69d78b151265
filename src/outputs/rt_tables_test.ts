import { assertEquals, assertMatch } from "../../tests/helpers/assert.ts";
import { Logger } from "../log/logger.ts";
import { leaseEvent } from "../../tests/helpers/events.ts";
import { RtTablesOutput } from "./rt_tables.ts";

const event = leaseEvent;

const lines = async (path: string) =>
  (await Deno.readTextFile(path)).split("\n").filter((l) => l && !l.startsWith("#"));

Deno.test("RtTablesOutput writes the bound leases at start and follows every change", async () => {
  const dir = await Deno.makeTempDir();
  const log = new Logger({ program: "t", logPath: `${dir}/log` });
  try {
    const path = `${dir}/ta.conf`;
    const out = new RtTablesOutput("outputs[0]", { path, name: "{ifname}-{family}" }, log);
    // An event before start (while the server reads the store) is replayed over the store's leases.
    out.onLease(event("granted", 10004, { ifname: "eth4", address: "192.0.2.44" }));
    out.onLease(event("released", 10004, { ifname: "eth4", address: "192.0.2.44" }));
    out.start([
      event("granted", 10000, { family: 10, address: "2001:db8::1" }).lease!,
      event("granted", 10001, { ifname: "eth2", address: "198.51.100.7" }).lease!,
      event("granted", 10004, { ifname: "eth4", address: "192.0.2.44" }).lease!,
    ]);
    await out.settled();
    assertMatch(await Deno.readTextFile(path), /^# Written by table-allocator-server/);
    assertEquals(await lines(path), ["10000 eth1-v6", "10001 eth2-v4"]);
    out.onLease(event("granted", 10002));
    out.onLease(event("granted", 10003, { ifname: "eth2", address: "198.51.100.8" }));
    await out.settled();
    assertEquals(await lines(path), [
      "10000 eth1-v6",
      "10001 eth2-v4",
      "10002 eth1-v4",
      "10003 eth2-v4-10003",
    ]);
    out.onLease(event("moved", 10005, { previousTable: 10002 }));
    out.onLease(event("released", 10001, { ifname: "eth2", address: "198.51.100.7" }));
    out.onLease(event("expired", 10000, { family: 10, address: "2001:db8::1" }));
    await out.settled();
    assertEquals(await lines(path), ["10003 eth2-v4-10003", "10005 eth1-v4"]);
    await out.stop(0, false);
    assertEquals(await lines(path), ["10003 eth2-v4-10003", "10005 eth1-v4"]);
    await out.stop(0, true);
    assertEquals(await Deno.stat(path).catch(() => null), null);
  } finally {
    log.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("RtTablesOutput logs a failing write once and recovers", async () => {
  const dir = await Deno.makeTempDir();
  const log = new Logger({ program: "t", logPath: `${dir}/log` });
  try {
    const path = `${dir}/sub/ta.conf`;
    const out = new RtTablesOutput("outputs[3]", { path, name: "{ifname}" }, log);
    out.start([]);
    out.onLease(event("granted", 10000));
    await out.settled();
    out.onLease(event("granted", 10001, { address: "192.0.2.11" }));
    await out.settled();
    await Deno.mkdir(`${dir}/sub`);
    out.onLease(event("released", 10001, { address: "192.0.2.11" }));
    await out.settled();
    assertEquals(await lines(path), ["10000 eth1"]);
    const logged = (await Deno.readTextFile(`${dir}/log`)).trim().split("\n");
    assertEquals(logged.length, 2);
    assertMatch(logged[0], /ERROR cannot write the rt_tables file output=outputs\[3\] error=/);
    assertMatch(logged[1], /INFO rt_tables file written again output=outputs\[3\]/);
  } finally {
    log.close();
    await Deno.remove(dir, { recursive: true });
  }
});
