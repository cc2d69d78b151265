import { assertEquals } from "../../tests/helpers/assert.ts";
import { formatIP, maskAddress, parseIPv4, parseIPv6, parsePrefixLength } from "./ip.ts";
import { AddrFamily } from "./family.ts";

Deno.test("parseIPv4() accepts dotted quads and rejects everything else", () => {
  assertEquals([...parseIPv4("192.168.5.113")!], [192, 168, 5, 113]);
  assertEquals([...parseIPv4("0.0.0.0")!], [0, 0, 0, 0]);
  assertEquals([...parseIPv4("255.255.255.255")!], [255, 255, 255, 255]);
  assertEquals([...parseIPv4("10.0.100.9")!], [10, 0, 100, 9]);
  for (
    const bad of [
      "256.1.1.1",
      "1.2.3",
      "1.2.3.4.5",
      "01.2.3.4",
      "1.2.3.-4",
      "a.b.c.d",
      "",
      "1.2.3.4 ",
      "1.2.3.4.",
      ".1.2.3",
      "1..2.3",
      "1.2.3.1000",
      "00.1.2.3",
      "1.2.3.0x1",
      "1.2.3.\u0663",
      "1111.2.3.4",
    ]
  ) {
    assertEquals(parseIPv4(bad), null, bad);
  }
});

Deno.test("parseIPv6() and formatIP() round-trip to the RFC 5952 canonical form", () => {
  const cases: Array<[string, string]> = [
    ["2001:DB8:0:0:0:0:0:1", "2001:db8::1"],
    ["::", "::"],
    ["::1", "::1"],
    ["fe80::", "fe80::"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    ["2001:0:0:1:0:0:0:1", "2001:0:0:1::1"],
    ["::ffff:192.0.2.1", "::ffff:c000:201"],
  ];
  for (const [input, canonical] of cases) {
    assertEquals(formatIP(parseIPv6(input)!), canonical, input);
  }
  for (
    const bad of ["1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "g::", ":", "1.2.3.4"]
  ) {
    assertEquals(parseIPv6(bad), null, bad);
  }
});

Deno.test("parsePrefixLength() takes prefix lengths and contiguous netmasks", () => {
  assertEquals(parsePrefixLength(AddrFamily.INET, "255.255.255.0"), 24);
  assertEquals(parsePrefixLength(AddrFamily.INET, "24"), 24);
  assertEquals(parsePrefixLength(AddrFamily.INET, "/32"), 32);
  assertEquals(parsePrefixLength(AddrFamily.INET, "0.0.0.0"), 0);
  assertEquals(parsePrefixLength(AddrFamily.INET, "255.0.255.0"), null);
  assertEquals(parsePrefixLength(AddrFamily.INET, "33"), null);
  assertEquals(parsePrefixLength(AddrFamily.INET6, "64"), 64);
  assertEquals(parsePrefixLength(AddrFamily.INET6, "ffff:ffff:ffff:ffff::"), 64);
  assertEquals(parsePrefixLength(AddrFamily.INET6, "129"), null);
});

Deno.test("maskAddress() clears the host bits", () => {
  assertEquals(formatIP(maskAddress(parseIPv4("192.168.5.113")!, 24)), "192.168.5.0");
  assertEquals(formatIP(maskAddress(parseIPv4("192.168.5.113")!, 20)), "192.168.0.0");
  assertEquals(formatIP(maskAddress(parseIPv4("192.168.5.113")!, 32)), "192.168.5.113");
  assertEquals(formatIP(maskAddress(parseIPv6("2001:db8:1:2:3::1")!, 48)), "2001:db8:1::");
});
