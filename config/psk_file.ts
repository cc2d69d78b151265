/**
 * Reads a PSK file for message authentication, for the server (`auth.psk_file`)
 * and the client (`--psk-file`). A key that other users can read is no
 * secret: such a file is refused, with the command that fixes it.
 *
 * @module
 */

import { parsePsk, type Psk } from "../src/protocol/auth.ts";
import { errorMessage } from "../src/util/errors.ts";

/** A PSK file that cannot be used; the message names the file and the reason. */
export class PskFileError extends Error {
  /** Builds the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PskFileError";
  }
}

/**
 * Reads and checks the PSK file at `path`: a regular file, not readable by
 * group or others, holding the key as hex (`table-allocator-ctl genpsk`).
 * Throws a {@link PskFileError}.
 */
export function readPskFile(path: string): Psk {
  let info: Deno.FileInfo;
  let text: string;
  try {
    info = Deno.statSync(path);
    if (!info.isFile) throw new Error("it is not a regular file");
    const mode = info.mode ?? 0;
    if ((mode & 0o044) !== 0) {
      throw new Error(
        `it is readable by ${mode & 0o040 ? "group" : ""}${
          (mode & 0o040) && (mode & 0o004) ? " and " : ""
        }${mode & 0o004 ? "others" : ""} (mode ${
          (mode & 0o777).toString(8).padStart(4, "0")
        }); a key others can read is no secret: chmod 600 ${path}`,
      );
    }
    text = Deno.readTextFileSync(path);
  } catch (error) {
    throw new PskFileError(`Cannot use PSK file "${path}": ${errorMessage(error)}`, {
      cause: error,
    });
  }
  try {
    return parsePsk(text);
  } catch (error) {
    throw new PskFileError(`Cannot use PSK file "${path}": ${errorMessage(error)}`, {
      cause: error,
    });
  }
}
