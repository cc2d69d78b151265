import { assertEquals } from "../../tests/helpers/assert.ts";
import { parseIP } from "../net/ip.ts";
import { routedTables } from "./kernel_rules.ts";

const v4 = (text: string) => parseIP(2, text)!;
const v6 = (text: string) => parseIP(10, text)!;

Deno.test("routedTables() keeps only the clients' pref 10000 from-address rules", () => {
  assertEquals(
    routedTables([
      { family: 2, priority: 10000, table: 10001, src: { address: v4("192.0.2.10"), prefix: 32 } },
      {
        family: 10,
        priority: 10000,
        table: 10002,
        src: { address: v6("2001:DB8::1"), prefix: 128 },
      },
      // The other two rules of a lease, and rules of another shape or priority.
      { family: 2, priority: 20000, table: 10001, dst: { address: v4("192.0.2.0"), prefix: 24 } },
      { family: 2, priority: 91000, table: 10001, iifname: "lo" },
      { family: 2, priority: 10000, table: 10003, src: { address: v4("192.0.2.0"), prefix: 24 } },
      { family: 2, priority: 10001, table: 10004, src: { address: v4("192.0.2.11"), prefix: 32 } },
      {
        family: 2,
        priority: 10000,
        table: 10005,
        src: { address: v4("192.0.2.12"), prefix: 32 },
        iifname: "eth0",
      },
      { family: 2, priority: 0, table: 255 },
      { family: 2, priority: 32766, table: 254 },
    ]),
    [
      { family: 2, address: "192.0.2.10", table: 10001 },
      { family: 10, address: "2001:db8::1", table: 10002 },
    ],
  );
});
