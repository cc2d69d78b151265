import { assertEquals } from "../../tests/helpers/assert.ts";
import { renderName, renderRtTables, TableNames } from "./table_names.ts";

const lease = (table: number, over: Record<string, unknown> = {}) => ({
  family: 2 as const,
  ifname: "eth1",
  address: "192.0.2.10",
  tag: undefined,
  table,
  ...over,
});

Deno.test("renderName() fills placeholders and keeps only characters iproute2 reads as a name", () => {
  assertEquals(renderName("{ifname}-{family}", lease(10000)), "eth1-v4");
  assertEquals(renderName("{ifname}-{family}", lease(1, { family: 10 })), "eth1-v6");
  assertEquals(renderName("{family}", lease(1, { family: 0 })), "unspec");
  assertEquals(
    renderName("{address}@{ifname}", lease(1, { family: 10, address: "2001:db8::1" })),
    "2001_db8__1_eth1",
  );
  assertEquals(renderName("{tag}-{table}", lease(7, { tag: "wan x" })), "wan_x-7");
  assertEquals(renderName("{tag}", lease(7)), "table-7");
  assertEquals(renderName("{table}", lease(7)), "t7");
  assertEquals(renderName("0x{table}", lease(10)), "t0x10");
  assertEquals(
    renderName("{address}", lease(1, { family: 0, address: "x".repeat(80) })).length,
    52,
  );
});

Deno.test("TableNames makes names unique with -TABLE and keeps a name while its lease lives", () => {
  const names = new TableNames("{ifname}-{family}");
  assertEquals(names.assign(lease(10005)), "eth1-v4");
  assertEquals(names.assign(lease(10001, { address: "192.0.2.11" })), "eth1-v4-10001");
  // A refresh keeps the name; the first lease is not renamed by a lower table.
  assertEquals(names.assign(lease(10005)), "eth1-v4");
  assertEquals(names.assign(lease(10001, { address: "192.0.2.11" })), "eth1-v4-10001");
  // iproute2's own names are never reused.
  assertEquals(names.assign(lease(10002, { family: 0, ifname: "x", address: "y" })), "x-unspec");
  const bare = new TableNames("{family}");
  assertEquals(bare.assign(lease(10003, { family: 0 })), "unspec-10003");
  assertEquals(names.entries(), [
    [10001, "eth1-v4-10001"],
    [10002, "x-unspec"],
    [10005, "eth1-v4"],
  ]);
  // Once the first is released, a move of the second takes the plain name.
  names.remove(lease(10005));
  assertEquals(names.assign(lease(10009, { address: "192.0.2.11" })), "eth1-v4");
  assertEquals(names.entries(), [[10002, "x-unspec"], [10009, "eth1-v4"]]);
});

Deno.test("TableNames counts up when the -TABLE name is taken too", () => {
  const names = new TableNames("{ifname}");
  assertEquals(names.assign(lease(10000)), "eth1");
  assertEquals(names.assign(lease(10000, { family: 10, address: "2001:db8::1" })), "eth1-10000");
  assertEquals(names.assign(lease(10000, { family: 0, address: "z" })), "eth1-10000-2");
});

Deno.test("renderRtTables() writes a comment, then TABLE NAME lines", () => {
  assertEquals(
    renderRtTables([[10000, "eth1-v4"], [10001, "eth2-v4"]]).split("\n").slice(2),
    ["10000 eth1-v4", "10001 eth2-v4", ""],
  );
  assertEquals(renderRtTables([]).split("\n").every((l) => l === "" || l.startsWith("#")), true);
});
