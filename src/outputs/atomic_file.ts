/**
 * Writing a file so that readers see the old content or the new, never a
 * part: a temporary file in the same directory, flushed to disk, renamed
 * over the target. Writes of one path land in the order they were asked
 * for, even from two writers (an output and its successor after a reload).
 *
 * @module
 */

import { errorMessage } from "../util/errors.ts";
import { basename, dirname } from "../util/paths.ts";

const encoder = new TextEncoder();
/** The last write asked for, per path. */
const queues = new Map<string, Promise<void>>();
let serial = 0;

/**
 * Replaces `path` with `text` atomically, after the writes of `path`
 * asked for before. The temporary file is removed when something fails;
 * the error names the file.
 */
export function writeFileAtomic(path: string, text: string, mode = 0o644): Promise<void> {
  const previous = queues.get(path) ?? Promise.resolve();
  const write = previous.catch(() => {}).then(() => replace(path, text, mode));
  queues.set(path, write);
  write.catch(() => {}).finally(() => {
    if (queues.get(path) === write) queues.delete(path);
  });
  return write;
}

async function replace(path: string, text: string, mode: number): Promise<void> {
  const temp = `${dirname(path)}/.${basename(path)}.${Deno.pid}.${serial++}.tmp`;
  try {
    const file = await Deno.open(temp, { write: true, create: true, truncate: true, mode });
    try {
      const bytes = encoder.encode(text);
      for (let done = 0; done < bytes.byteLength;) {
        done += await file.write(bytes.subarray(done));
      }
      // Without it, a crash soon after the rename may leave an empty file.
      await file.syncData();
    } finally {
      file.close();
    }
    // The mode given to open() is masked by the umask; readers (iproute2, node_exporter) need it.
    await Deno.chmod(temp, mode);
    await Deno.rename(temp, path);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw new Error(`Cannot write "${path}": ${errorMessage(error)}`, { cause: error });
  }
}
