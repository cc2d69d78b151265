/**
 * What the command-line programs (server, client, ctl) share: the error
 * for a bad command line, a parseArgs that throws it, and a write that
 * does not stop half-way.
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { errorMessage } from "../util/errors.ts";

/** A bad command line: the message names the offending argument. */
export class UsageError extends Error {
  /** Builds the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UsageError";
  }
}

/**
 * `node:util` parseArgs (strict unless `config` says otherwise), whose failures (an unknown option, a
 * missing value) are {@link UsageError}s with parseArgs' own message.
 */
export function parseCommandLine<T extends ParseArgsConfig>(
  config: T,
): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (error) {
    throw new UsageError(errorMessage(error).replace(/^TypeError: /, ""), { cause: error });
  }
}

const encoder = new TextEncoder();

/** Writes all of `text` to `file` (writeSync may write less than it was given). */
export function writeAll(file: { writeSync(p: Uint8Array): number }, text: string): void {
  const bytes = encoder.encode(text);
  for (let done = 0; done < bytes.byteLength;) done += file.writeSync(bytes.subarray(done));
}
