/**
 * What the command-line programs (server, client, ctl) share: the error
 * for a bad command line, a parseArgs that throws it, and a write that
 * does not stop half-way.
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { errorMessage } from "../util/errors.ts";
import { UsageError } from "./usage.ts";

// The error and writeAll live in usage.ts, which loads no node: module: the
// client's hook path uses them without paying for node compatibility.
export { UsageError, writeAll } from "./usage.ts";

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
