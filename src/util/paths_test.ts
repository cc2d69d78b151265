import {
  basename as nodeBasename,
  dirname as nodeDirname,
  resolve as nodeResolve,
} from "node:path";
import { assertEquals } from "../../tests/helpers/assert.ts";
import { basename, dirname, resolve } from "./paths.ts";

Deno.test("dirname(), basename() and resolve() agree with node:path", () => {
  const paths = [
    "",
    "a",
    "a/b",
    "a/b/",
    "/a",
    "/a/b",
    "/a/b//",
    "/a//b",
    "/",
    "//",
    "./leases.db",
    "var/leases.db",
    "/var/lib/table-allocator/leases.db",
    "/etc/iproute2/rt_tables.d/table-allocator.conf",
    "../x/./y/../z",
    "/a/../../b",
    "a/..",
  ];
  for (const path of paths) {
    assertEquals(
      [dirname(path), basename(path), resolve(path)],
      [nodeDirname(path), nodeBasename(path), nodeResolve(path)],
      path,
    );
  }
});
