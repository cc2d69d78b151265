/**
 * Guards an SQLite database against being deleted or replaced under the
 * server. SQLite keeps writing to the file it opened even after its name
 * is unlinked: every commit would then succeed into a file nobody will
 * ever open again, and a restart would find the leases gone. So:
 *
 * - {@link FileIdentity} remembers the device and inode behind the path at
 *   open; {@link FileIdentity.check} (a stat(2), a few µs) says whether the
 *   path still leads there. The daemon checks before it acknowledges and
 *   on a timer, and stops when it does not. (The inode cannot be reused
 *   by a new file meanwhile: SQLite holds the old one open.)
 * - {@link PathLock} keeps a second server off the path even then: the
 *   lock file (`<db>-lock`) goes with a deleted directory, so the server
 *   also binds an abstract socket named after the database's real path,
 *   which nothing on the filesystem can remove (per network namespace).
 *
 * @module
 */

import { dirname, resolve } from "../util/paths.ts";
import { sha256, toHex } from "../util/sha256.ts";
import { cString, Errno, ErrnoError, fileIdentity } from "../../ffi/libc.ts";
import { AbstractDatagramSocket } from "../unix/abstract_socket.ts";
import { errorMessage } from "../util/errors.ts";

/** Device and inode of a file, as stat(2) gives them. */
interface Identity {
  dev: bigint;
  ino: bigint;
}

/** The file a path led to when it was opened. */
export class FileIdentity {
  readonly path: string;
  /** The path as stat(2) takes it, encoded once: it is checked before every commit. */
  #cPath: Uint8Array<ArrayBuffer>;
  #identity: Identity;

  private constructor(path: string) {
    this.path = path;
    this.#cPath = cString(path);
    this.#identity = fileIdentity(this.#cPath);
  }

  /** Remembers what `path` leads to now; throws when it leads nowhere. */
  static of(path: string): FileIdentity {
    return new FileIdentity(path);
  }

  /**
   * Undefined while `path` still leads to the file it led to at open,
   * else what happened to it (deleted, replaced, unreadable).
   */
  check(): string | undefined {
    let now: Identity;
    try {
      now = fileIdentity(this.#cPath);
    } catch (error) {
      // ENOTDIR: a directory on the way was replaced by a file.
      if (
        error instanceof ErrnoError &&
        (error.errno === Errno.ENOENT || error.errno === Errno.ENOTDIR)
      ) {
        return `the database file "${this.path}" was deleted (or its directory was)`;
      }
      return `the database file "${this.path}" cannot be checked: ${errorMessage(error)}`;
    }
    if (now.dev !== this.#identity.dev || now.ino !== this.#identity.ino) {
      return `the database file "${this.path}" was replaced by another file`;
    }
    return undefined;
  }
}

/**
 * The abstract socket name that stands for a database path: its real
 * path (symlinks resolved, so two spellings are one lock) hashed, to fit
 * any path into a socket name.
 */
export function pathLockName(realPath: string): string {
  const digest = toHex(sha256(new TextEncoder().encode(realPath))).slice(0, 32);
  return `table-allocator-db-${digest}`;
}

/** The real path of a database file that may not exist yet (its directory must). */
export function realDatabasePath(path: string): string {
  const absolute = resolve(path);
  const dir = Deno.realPathSync(dirname(absolute));
  return `${dir}/${absolute.slice(dirname(absolute).length + 1)}`;
}

/** A lock on a database path that outlives the path itself; close to release it. */
export class PathLock implements Disposable {
  #socket: AbstractDatagramSocket;
  /** The abstract name held. */
  readonly name: string;

  private constructor(socket: AbstractDatagramSocket, name: string) {
    this.#socket = socket;
    this.name = name;
  }

  /**
   * Takes the lock of `path` (see {@link pathLockName}); throws an Error
   * naming the path when another process holds it.
   */
  static take(path: string): PathLock {
    const name = pathLockName(realDatabasePath(path));
    try {
      return new PathLock(AbstractDatagramSocket.bind(name), name);
    } catch (error) {
      if (error instanceof ErrnoError && error.code === "EADDRINUSE") {
        throw new Error(
          `another process holds its lock @${name} (is another server using it, or still ` +
            `running on a database that was deleted here?)`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  /** Releases the lock; safe to call twice. */
  close(): void {
    this.#socket.close();
  }

  /** Same as {@link close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
