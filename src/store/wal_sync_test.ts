import { assert, assertEquals, assertInstanceOf, assertMatch } from "../../tests/helpers/assert.ts";
import { TransientError } from "./lease_store.ts";
import { WalSync } from "./wal_sync.ts";

async function withFile(fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ta-wal-" });
  try {
    const path = `${dir}/x.db-wal`;
    await Deno.writeTextFile(path, "frames");
    await fn(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("WalSync.sync() shares one more sync among every call made while one is in flight", async () => {
  await withFile(async (path) => {
    const wal = new WalSync(path);
    try {
      const first = wal.sync();
      const during = [wal.sync(), wal.sync(), wal.sync()];
      await Promise.all([first, ...during]);
      assertEquals(wal.syncs, 2, "the first sync, then one for the three calls made meanwhile");
      wal.syncNow();
      assertEquals(wal.syncs, 3);
    } finally {
      wal.close();
    }
  });
});

Deno.test("WalSync: a failed sync fails every later call with the same TransientError", async () => {
  await withFile(async (path) => {
    const wal = new WalSync(path);
    wal.close(); // fdatasync of a closed file fails, as a disk error would
    let error: unknown;
    try {
      wal.syncNow();
    } catch (e) {
      error = e;
    }
    assertInstanceOf(error, TransientError);
    assertMatch(error.message, /cannot make the WAL durable \(fdatasync of .*x\.db-wal failed/);
    assert(wal.failure === error);
    assert(await wal.sync().catch((e) => e) === error, "later calls fail the same way");
  });
});

Deno.test("WalSync: a failed background sync fails the calls queued behind it", async () => {
  await withFile(async (path) => {
    const wal = new WalSync(path);
    wal.close();
    const first = wal.sync().catch((e) => e);
    const queued = wal.sync().catch((e) => e); // waits for the first, which fails
    const [a, b] = await Promise.all([first, queued]);
    assertInstanceOf(a, TransientError);
    assert(b === a, "the queued call gets the first one's failure");
    assertEquals(wal.syncs, 1, "no sync is tried after a failure");
  });
});
