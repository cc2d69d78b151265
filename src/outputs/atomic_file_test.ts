import { assertEquals, assertRejects } from "../../tests/helpers/assert.ts";
import { writeFileAtomic } from "./atomic_file.ts";

Deno.test("writeFileAtomic() replaces the file, leaves no temporary file, sets the mode", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/x.conf`;
    await Deno.writeTextFile(path, "old\n");
    const before = (await Deno.stat(path)).ino;
    await writeFileAtomic(path, "new\n");
    assertEquals(await Deno.readTextFile(path), "new\n");
    assertEquals((await Deno.stat(path)).mode! & 0o777, 0o644);
    // A rename, not a rewrite in place: readers holding the old file keep it whole.
    assertEquals((await Deno.stat(path)).ino !== before, true);
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["x.conf"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic() names the file when its directory is missing", async () => {
  await assertRejects(
    () => writeFileAtomic("/nonexistent-dir-ta/x.conf", "x"),
    /Cannot write "\/nonexistent-dir-ta\/x\.conf": /,
  );
});
