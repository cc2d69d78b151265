import { assertThrowsType } from "../../tests/helpers/assert.ts";
import { syncDirectory } from "./sync_directory.ts";

Deno.test("syncDirectory() syncs an existing directory and throws NotFound for a missing one", () => {
  const dir = Deno.makeTempDirSync();
  try {
    syncDirectory(dir);
    assertThrowsType(() => syncDirectory(`${dir}/missing`), Deno.errors.NotFound);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
