import {
  assert,
  assertEquals,
  assertMatch,
  assertThrows,
  assertThrowsType,
} from "../../tests/helpers/assert.ts";
import { cString, Errno, ErrnoError, fileIdentity } from "../../ffi/libc.ts";
import { FileIdentity, PathLock, pathLockName, realDatabasePath } from "./file_guard.ts";

Deno.test("FileIdentity notices a deleted, a replaced file and a deleted directory", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-guard-" });
  try {
    const path = `${dir}/sub/leases.db`;
    Deno.mkdirSync(`${dir}/sub`);
    Deno.writeTextFileSync(path, "a");
    const identity = FileIdentity.of(path);
    assertEquals(identity.check(), undefined);
    Deno.writeTextFileSync(path, "written in place is the same file");
    assertEquals(identity.check(), undefined);

    Deno.writeTextFileSync(`${path}.new`, "b");
    Deno.renameSync(`${path}.new`, path);
    assertEquals(identity.check(), `the database file "${path}" was replaced by another file`);

    const second = FileIdentity.of(path);
    Deno.removeSync(path);
    assertMatch(second.check()!, /was deleted \(or its directory was\)$/);

    Deno.writeTextFileSync(path, "c");
    const third = FileIdentity.of(path);
    // SQLite holds its file open, so its inode cannot be reused by a new file.
    using held = Deno.openSync(path);
    void held;
    Deno.removeSync(`${dir}/sub`, { recursive: true });
    assertMatch(third.check()!, /was deleted/);
    Deno.mkdirSync(`${dir}/sub`);
    Deno.writeTextFileSync(path, "a new file at the old path");
    assertMatch(third.check()!, /was replaced/);

    const fourth = FileIdentity.of(path);
    Deno.removeSync(`${dir}/sub`, { recursive: true });
    Deno.writeTextFileSync(`${dir}/sub`, "a file where the directory was (ENOTDIR)");
    assertMatch(fourth.check()!, /was deleted \(or its directory was\)$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("PathLock keeps a second holder off a database path, whatever its spelling", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "ta-guard-" }));
  try {
    Deno.mkdirSync(`${dir}/real`);
    Deno.symlinkSync(`${dir}/real`, `${dir}/link`);
    assertEquals(realDatabasePath(`${dir}/link/x.db`), `${dir}/real/x.db`);
    assertMatch(pathLockName(`${dir}/real/x.db`), /^table-allocator-db-[0-9a-f]{32}$/);
    using lock = PathLock.take(`${dir}/real/x.db`);
    for (const spelling of [`${dir}/link/x.db`, `${dir}/real/../real/x.db`]) {
      assertThrows(
        () => PathLock.take(spelling),
        new RegExp(`another process holds its lock @${lock.name}`),
      );
    }
    using other = PathLock.take(`${dir}/real/y.db`);
    assert(other.name !== lock.name);
    lock.close();
    using again = PathLock.take(`${dir}/real/x.db`);
    assertEquals(again.name, lock.name, "released on close");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fileIdentity (stat(2) through FFI) gives the device and inode Deno.statSync gives", () => {
  const path = Deno.makeTempFileSync({ prefix: "ta-guard-" });
  try {
    const info = Deno.statSync(path);
    assertEquals(fileIdentity(cString(path)), { dev: BigInt(info.dev!), ino: BigInt(info.ino!) });
    Deno.removeSync(path);
    const error = assertThrowsType(() => fileIdentity(cString(path)), ErrnoError);
    assertEquals(error.errno, Errno.ENOENT);
  } finally {
    try {
      Deno.removeSync(path);
    } catch { /* removed above */ }
  }
});
