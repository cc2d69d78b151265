import { assertEquals } from "../../tests/helpers/assert.ts";
import { isDeparture, refreshDelayMs } from "./lease.ts";

Deno.test("refreshDelayMs() is half the remaining lease time", () => {
  assertEquals(refreshDelayMs(1000 + 3600, 1000), 1_800_000);
  assertEquals(refreshDelayMs(104, 100), 2000);
});

Deno.test("refreshDelayMs() waits at least a second for an expired or bogus lease", () => {
  assertEquals(refreshDelayMs(100, 100), 1000);
  assertEquals(refreshDelayMs(50, 100), 1000);
  assertEquals(refreshDelayMs(1e12, 0), 2 ** 31 - 1);
});

const watch = { ifindex: 4, family: 2, address: new Uint8Array([192, 0, 2, 10]) };

Deno.test("isDeparture() matches the deletion of this address on this interface only", () => {
  const deleted = {
    kind: "address-deleted" as const,
    index: 4,
    family: 2,
    prefix: 24,
    address: new Uint8Array([192, 0, 2, 10]),
  };
  assertEquals(isDeparture(deleted, watch), true);
  assertEquals(isDeparture({ ...deleted, index: 5 }, watch), false);
  assertEquals(isDeparture({ ...deleted, address: new Uint8Array([192, 0, 2, 11]) }, watch), false);
  assertEquals(isDeparture({ ...deleted, family: 10 }, watch), false);
  assertEquals(isDeparture({ ...deleted, kind: "address-added" }, watch), false);
  assertEquals(isDeparture(deleted, { ...watch, address: null }), false);
});

Deno.test("isDeparture() matches the deletion of this interface, not a change or another link", () => {
  assertEquals(isDeparture({ kind: "link-deleted", index: 4, name: "veth0" }, watch), true);
  assertEquals(isDeparture({ kind: "link-deleted", index: 3, name: "veth0" }, watch), false);
  assertEquals(isDeparture({ kind: "link-changed", index: 4, name: "veth0" }, watch), false);
});
