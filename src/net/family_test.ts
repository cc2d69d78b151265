import { assertEquals } from "../../tests/helpers/assert.ts";
import { AddrFamily, familyByName, familyName, isAddrFamily, parseFamilyWord } from "./family.ts";

Deno.test("familyName() names the three families and shows an unknown one as its number", () => {
  assertEquals([familyName(2), familyName(10), familyName(0), familyName(7)], [
    "inet",
    "inet6",
    "unspec",
    "7",
  ]);
});

Deno.test("familyByName() takes exactly the three names", () => {
  assertEquals(familyByName("inet"), AddrFamily.INET);
  assertEquals(familyByName("inet6"), AddrFamily.INET6);
  assertEquals(familyByName("unspec"), AddrFamily.UNSPEC);
  for (const bad of ["INET", "4", "toString", "__proto__", ""]) {
    assertEquals(familyByName(bad), undefined, bad);
  }
});

Deno.test("parseFamilyWord() takes names in any case, IP versions and numbers", () => {
  const cases: Array<[string, AddrFamily | undefined]> = [
    ["inet", 2],
    ["INET", 2],
    ["4", 2],
    ["2", 2],
    ["inet6", 10],
    ["6", 10],
    ["10", 10],
    ["unspec", 0],
    ["0", 0],
    ["ipv4", undefined],
    ["constructor", undefined],
    ["", undefined],
  ];
  for (const [word, family] of cases) assertEquals(parseFamilyWord(word), family, word);
});

Deno.test("isAddrFamily() accepts only 0, 2 and 10", () => {
  assertEquals([0, 2, 10, 1, "2", null].map(isAddrFamily), [true, true, true, false, false, false]);
});
