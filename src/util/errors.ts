/**
 * What to say about a thrown value. Anything can be thrown in JavaScript;
 * log lines and error replies want a string.
 *
 * @module
 */

/** The message of `error` when it is an Error, else its string form. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
