/**
 * fsync(2) of a directory: a file that was created or renamed is durable
 * only once the directory entry that names it is.
 *
 * @module
 */

/** Syncs the directory `dir` (opened read only, closed again). */
export function syncDirectory(dir: string): void {
  const directory = Deno.openSync(dir, { read: true });
  try {
    directory.syncSync();
  } finally {
    directory.close();
  }
}
