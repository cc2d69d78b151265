import { assertEquals } from "../../tests/helpers/assert.ts";
import { type Hold, Holds } from "./holds.ts";

const hold = (table: number, over: Partial<Hold> = {}): Hold => ({
  family: 2,
  table,
  address: "192.0.2.10",
  ifname: "eth1",
  until: 1000,
  reason: "admin_release",
  ...over,
});

Deno.test("Holds finds a hold by table and by identity, its interface or any", () => {
  const holds = new Holds();
  holds.add(hold(10005));
  holds.add(hold(10003, { ifname: undefined, reason: "readiness" }));
  holds.add(hold(10007, { address: "192.0.2.11" }));
  holds.add(hold(10005, { family: 10, address: "2001:db8::1" }));
  assertEquals(holds.size, 4);
  assertEquals(holds.of(2, 10005)?.address, "192.0.2.10");
  assertEquals(holds.of(10, 10005)?.address, "2001:db8::1");
  assertEquals(holds.of(2, 10006), undefined);
  // The lowest table wins when two match; an any-interface hold matches every interface.
  assertEquals(
    holds.forIdentity({ family: 2, ifname: "eth1", address: "192.0.2.10" })?.table,
    10003,
  );
  assertEquals(
    holds.forIdentity({ family: 2, ifname: "eth9", address: "192.0.2.10" })?.table,
    10003,
  );
  assertEquals(holds.forIdentity({ family: 2, ifname: "eth9", address: "192.0.2.11" }), undefined);
  assertEquals(holds.forIdentity({ family: 10, ifname: "eth1", address: "192.0.2.10" }), undefined);
  assertEquals(holds.remove(2, 10003)?.reason, "readiness");
  assertEquals(holds.remove(2, 10003), undefined);
  assertEquals(
    holds.forIdentity({ family: 2, ifname: "eth1", address: "192.0.2.10" })?.table,
    10005,
  );
});

Deno.test("Holds.add() replaces the hold of the same table; due() ends the ones that passed", () => {
  const holds = new Holds();
  holds.add(hold(10001, { until: 500 }));
  holds.add(hold(10001, { until: 2000, address: "192.0.2.20" }));
  holds.add(hold(10002, { until: 1000 }));
  holds.add(hold(10003, { until: 3000 }));
  assertEquals(holds.size, 3);
  assertEquals(
    holds.forIdentity({ family: 2, ifname: "eth1", address: "192.0.2.20" })?.table,
    10001,
  );
  assertEquals(holds.next(), 1000);
  assertEquals(holds.due(999), []);
  assertEquals(holds.due(2000).map((h) => h.table), [10001, 10002]);
  assertEquals(holds.list().map((h) => h.table), [10003]);
  assertEquals(holds.next(), 3000);
  assertEquals(holds.due(Infinity).length, 1);
  assertEquals(holds.next(), Infinity);
});
