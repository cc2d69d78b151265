import { assertEquals } from "../../tests/helpers/assert.ts";
import {
  formatColumns,
  formatDuration,
  formatExpiry,
  formatLeases,
  formatList,
  formatPools,
  formatRanges,
  formatReleased,
  formatReserved,
  formatResult,
  formatSelectors,
  formatStatus,
  formatTime,
  formatUnreserved,
  shellQuote,
} from "./format.ts";
import type { LeaseView, PoolView, StatusView } from "./protocol.ts";

const NOW = Date.UTC(2024, 10, 21, 19, 0, 0);

const lease = (over: Partial<LeaseView> = {}): LeaseView => ({
  family: 2,
  ifname: "eth1",
  address: "192.0.2.10",
  table: 10000,
  state: "bound",
  expires_at: NOW + 59 * 60_000 + 3_000,
  tag: null,
  owner: "table-allocator-server",
  uid: 0,
  ...over,
});

const pool = (over: Partial<PoolView> = {}): PoolView => ({
  name: "inet",
  family: 2,
  ranges: [{ first: 10000, last: 10039 }],
  tags: [],
  ifnames: [],
  size: 40,
  bound: 3,
  reserved: 1,
  held: 0,
  free: 36,
  ...over,
});

Deno.test("formatDuration() leaves out zero parts and rounds down to seconds", () => {
  assertEquals(formatDuration(59 * 60_000 + 3_999), "59m 3s");
  assertEquals(formatDuration(3600_000 + 3_000), "1h 3s");
  assertEquals(formatDuration(2 * 86400_000 + 4 * 3600_000), "2d 4h");
  assertEquals(formatDuration(86400_000 + 3600_000 + 60_000 + 1_000), "1d 1h 1m 1s");
  assertEquals(formatDuration(999), "0s");
  assertEquals(formatDuration(0), "0s");
  assertEquals(formatDuration(-5000), "0s");
});

Deno.test("formatExpiry() gives the ISO time and how far off it is, or never for no expiry", () => {
  assertEquals(formatTime(NOW + 1234), "2024-11-21T19:00:01Z");
  assertEquals(
    formatExpiry(NOW + 59 * 60_000 + 3_000, NOW),
    "2024-11-21T19:59:03Z (in 59m 3s)",
  );
  assertEquals(formatExpiry(NOW - 1, NOW), "2024-11-21T18:59:59Z (expired)");
  assertEquals(formatExpiry(NOW, NOW), "2024-11-21T19:00:00Z (expired)");
  assertEquals(formatExpiry(null, NOW), "never");
});

Deno.test("formatColumns() aligns columns and never ends a line in spaces", () => {
  assertEquals(
    formatColumns([["A", "BB", "C"], ["long", "x", "y"], ["s", "t", ""]]),
    "A     BB  C\nlong  x   y\ns     t\n",
  );
  const text = formatColumns([["KEY", "VALUE"], ["a", "1"], ["bbbb", "22"]]);
  assertEquals(text, "KEY   VALUE\na     1\nbbbb  22\n");
  for (const line of text.split("\n")) assertEquals(line, line.trimEnd());
});

Deno.test("formatRanges() and formatSelectors() describe a pool compactly", () => {
  assertEquals(
    formatRanges([{ first: 10000, last: 10039 }, { first: 20000, last: 20000 }]),
    "10000-10039,20000",
  );
  assertEquals(formatSelectors({ tags: [], ifnames: [] }), "any");
  assertEquals(formatSelectors({ tags: ["wan", "lte"], ifnames: [] }), "tag=wan,lte");
  assertEquals(
    formatSelectors({ tags: ["wan"], ifnames: ["eth*", "wlan0"] }),
    "tag=wan ifname=eth*,wlan0",
  );
});

Deno.test("formatPools() prints one aligned row per pool under a header", () => {
  assertEquals(
    formatPools([
      pool(),
      pool({
        name: "wan6",
        family: 10,
        tags: ["wan"],
        size: 8,
        bound: 0,
        reserved: 0,
        held: 2,
        free: 6,
        ranges: [{ first: 200, last: 207 }],
      }),
    ]),
    [
      "POOL  FAMILY  RANGES       SELECTORS  SIZE  BOUND  RESERVED  HELD  FREE",
      "inet  inet    10000-10039  any        40    3      1         0     36",
      "wan6  inet6   200-207      tag=wan    8     0      0         2     6",
      "",
    ].join("\n"),
  );
  assertEquals(formatPools([]), "no pools\n");
});

Deno.test("formatStatus() lists the server's facts, then its pools", () => {
  const status: StatusView = {
    version: "0.1.0",
    pid: 4242,
    uptime_s: 3723.6,
    socket: "tas_socket",
    store: "var/leases.db",
    families: [2, 10],
    pools: [pool()],
    leases: { bound: 3, reserved: 1, outside_pools: 0, held: 0 },
  };
  assertEquals(
    formatStatus(status),
    [
      "version   0.1.0",
      "pid       4242",
      "uptime    1h 2m 3s",
      "socket    @tas_socket",
      "store     var/leases.db",
      "families  inet, inet6",
      "leases    3 bound, 1 reserved, 0 held, 0 outside the pools",
      "",
      "POOL  FAMILY  RANGES       SELECTORS  SIZE  BOUND  RESERVED  HELD  FREE",
      "inet  inet    10000-10039  any        40    3      1         0     36",
      "",
    ].join("\n"),
  );
  // A socket already shown with its @ keeps a single one.
  assertEquals(formatStatus({ ...status, socket: "@x" }).split("\n")[3], "socket    @x");
});

Deno.test("formatLeases() shows every field, expiry as ISO time plus time left, the release time once released", () => {
  assertEquals(
    formatLeases([
      lease({ tag: "wan", uid: 1000 }),
      lease({
        family: 10,
        ifname: "eth0",
        address: "*",
        table: 10005,
        state: "reserved",
        expires_at: null,
        owner: "table-allocator-ctl",
        uid: 0,
      }),
      lease({
        address: "192.0.2.11",
        table: 10001,
        state: "released",
        expires_at: NOW - 5000,
        uid: 1000,
      }),
      lease({
        address: "192.0.2.12",
        table: 10002,
        state: "expired",
        expires_at: NOW - 1000,
        uid: 1000,
      }),
    ], NOW),
    [
      "FAMILY  IFNAME  ADDRESS     TABLE  STATE     EXPIRES                           TAG  OWNER                   UID",
      "inet    eth1    192.0.2.10  10000  bound     2024-11-21T19:59:03Z (in 59m 3s)  wan  table-allocator-server  1000",
      "inet6   eth0    *           10005  reserved  never                             -    table-allocator-ctl     0",
      "inet    eth1    192.0.2.11  10001  released  2024-11-21T18:59:55Z (released)   -    table-allocator-server  1000",
      "inet    eth1    192.0.2.12  10002  expired   2024-11-21T18:59:59Z (expired)    -    table-allocator-server  1000",
      "",
    ].join("\n"),
  );
  assertEquals(formatLeases([], NOW), "no leases\n");
  assertEquals(formatLeases([], NOW, "none\n"), "none\n");
});

Deno.test("formatList() says how to get the next page when there is one", () => {
  assertEquals(formatList({ leases: [], next: null }, NOW), "no leases\n");
  const text = formatList({ leases: [lease()], next: "2/eth1/192.0.2.10" }, NOW);
  assertEquals(
    text.split("\n").at(-2),
    "more leases follow: add --after 2/eth1/192.0.2.10, or --all",
  );
  assertEquals(shellQuote("0/eth 1/it's"), `'0/eth 1/it'\\''s'`);
  assertEquals(shellQuote("2/eth1/2001:db8::1"), "2/eth1/2001:db8::1");
});

Deno.test("release, reserve and unreserve results read as sentences", () => {
  assertEquals(
    formatReleased({ released: [lease()], held: [] }),
    "released table 10000 of inet eth1 192.0.2.10\n",
  );
  assertEquals(
    formatReleased({
      released: [lease()],
      held: [{
        family: 2,
        table: 10000,
        ifname: "eth1",
        address: "192.0.2.10",
        until: Date.parse("2026-11-21T20:08:46Z"),
        reason: "admin_release",
      }],
    }),
    "released table 10000 of inet eth1 192.0.2.10\n" +
      "table 10000 of inet stays held for eth1 192.0.2.10 until it confirms, at the latest 2026-11-21T20:08:46Z\n",
  );
  assertEquals(
    formatReleased({ released: [], held: [] }),
    "nothing released: no bound lease matches\n",
  );
  assertEquals(
    formatReserved({
      reserved: [
        lease({ address: "*", table: 10005, state: "reserved", expires_at: null }),
        lease({ family: 10, address: "*", table: 10005, state: "reserved", expires_at: null }),
      ],
    }),
    "reserved table 10005 for inet eth1 (every address)\n" +
      "reserved table 10005 for inet6 eth1 (every address)\n",
  );
  assertEquals(
    formatUnreserved({ removed: [lease({ table: 7, state: "reserved", expires_at: null })] }),
    "removed the reservation of table 7 for inet eth1 192.0.2.10\n",
  );
  assertEquals(formatUnreserved({ removed: [] }), "no reservation removed: none matches\n");
});

Deno.test("formatResult() picks the output of each operation", () => {
  assertEquals(formatResult("pools", { pools: [] }, NOW), "no pools\n");
  assertEquals(formatResult("list", { leases: [], next: null }, NOW), "no leases\n");
  assertEquals(formatResult("show", { leases: [] }, NOW), "no lease matches\n");
  assertEquals(formatResult("show", { leases: [lease()] }, NOW), formatLeases([lease()], NOW));
  assertEquals(
    formatResult("release", { released: [], held: [] }, NOW),
    "nothing released: no bound lease matches\n",
  );
  assertEquals(formatResult("reserve", { reserved: [] }, NOW), "nothing reserved\n");
  assertEquals(formatResult("metrics", { text: "# HELP x y\n" }, NOW), "# HELP x y\n");
  assertEquals(
    formatResult("reload", { config: "/etc/s.json", pools: 1, reservations: 0, outputs: 2 }, NOW),
    "reloaded /etc/s.json: 1 pool, 0 reservations, 2 outputs\n",
  );
  assertEquals(
    formatResult("unreserve", { removed: [] }, NOW),
    "no reservation removed: none matches\n",
  );
});
