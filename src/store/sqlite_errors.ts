/**
 * How the SQLite store reports a failure of SQLite: as the errors of the
 * `LeaseStore` API.
 *
 * @module
 */

import { StoreLostError, TransientError } from "./lease_store.ts";
import { errorMessage } from "../util/errors.ts";

/**
 * Maps a SQLite failure to the API's errors: a constraint failure is a
 * plain Error (bad data); anything else (locked, disk full, I/O error,
 * read-only file) is a TransientError, because nothing was written.
 * `action` says what could not be done ("cannot commit").
 */
export function wrap(action: string, error: unknown): Error {
  if (error instanceof TransientError || error instanceof StoreLostError) return error;
  const message = errorMessage(error);
  if (/constraint failed/i.test(message)) {
    return new Error(`${action}: ${message}`, { cause: error });
  }
  return new TransientError(`${action}: ${message}`, { cause: error });
}
