/**
 * The command line's error and output, without `node:` imports (loading
 * node compatibility costs a hook's client about 7 ms).
 *
 * @module
 */

/** A bad command line: the message names the offending argument. */
export class UsageError extends Error {
  /** Builds the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UsageError";
  }
}

const encoder = new TextEncoder();

/** Writes all of `text` to `file` (writeSync may write less than it was given). */
export function writeAll(file: { writeSync(p: Uint8Array): number }, text: string): void {
  const bytes = encoder.encode(text);
  for (let done = 0; done < bytes.byteLength;) done += file.writeSync(bytes.subarray(done));
}
