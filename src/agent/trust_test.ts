import { assertEquals } from "../../tests/helpers/assert.ts";
import { trustedServerUids, uidOfUser } from "./trust.ts";

const PASSWD = [
  "root:x:0:0:root:/root:/bin/bash",
  "table-allocator-old:x:997:997::/nonexistent:/usr/sbin/nologin",
  "table-allocator:x:998:998:table-allocator server:/nonexistent:/usr/sbin/nologin",
  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
  "",
].join("\n");

Deno.test("uidOfUser() reads a user's uid from passwd text, by the exact name", () => {
  assertEquals(uidOfUser(PASSWD, "table-allocator"), 998);
  assertEquals(uidOfUser(PASSWD, "nobody"), 65534);
  assertEquals(uidOfUser(PASSWD, "table"), undefined);
  assertEquals(uidOfUser("broken:line", "broken"), undefined);
});

Deno.test("trustedServerUids() is root plus --server-uid, or root plus the table-allocator user", () => {
  assertEquals([...trustedServerUids(undefined, () => PASSWD)], [0, 998]);
  assertEquals([...trustedServerUids(undefined, () => "")], [0], "no such user: root only");
  assertEquals([...trustedServerUids([65534, 0], () => PASSWD)], [0, 65534], "given: no default");
});
