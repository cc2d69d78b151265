import { assertEquals } from "../tests/helpers/assert.ts";
import { closestKey, editDistance, unknownKeyWarnings } from "./unknown_keys.ts";

const KEYS = ["socket_path", "table_offset", "num_tables", "table_timeout", "db_path"];

Deno.test("editDistance() counts a swap of neighbours as one edit", () => {
  assertEquals(editDistance("tabel_timeout", "table_timeout"), 1);
  assertEquals(editDistance("table_ofset", "table_offset"), 1);
  assertEquals(editDistance("", "abc"), 3);
  assertEquals(editDistance("kitten", "sitting"), 3);
  assertEquals(editDistance("same", "same"), 0);
});

Deno.test("closestKey() suggests near typos only", () => {
  assertEquals(closestKey("tabel_timeout", KEYS), "table_timeout");
  assertEquals(closestKey("DB_PATH", KEYS), "db_path");
  assertEquals(closestKey("num_table", KEYS), "num_tables");
  assertEquals(closestKey("_comment", KEYS), undefined);
  assertEquals(closestKey("ab", ["db"]), undefined, "one edit is half of a two-letter key");
});

Deno.test("unknownKeyWarnings() names each unknown key and the closest known one", () => {
  assertEquals(
    unknownKeyWarnings({ tabel_timeout: 1, socket_path: "x", _comment: "hi" }, KEYS),
    [
      `"tabel_timeout" is not a known key (ignored); did you mean "table_timeout"?`,
      `"_comment" is not a known key (ignored)`,
    ],
  );
  assertEquals(
    unknownKeyWarnings({ inet: true, inte6: true }, ["inet", "inet6", "unspec"], "addr_families."),
    [`"addr_families.inte6" is not a known key (ignored); did you mean "addr_families.inet6"?`],
  );
  assertEquals(unknownKeyWarnings({ db_path: "x" }, KEYS), []);
});
