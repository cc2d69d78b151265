/**
 * The error of an invalid configuration.
 *
 * @module
 */

/** An invalid configuration; the message names the key, the expected form and the value. */
export class ConfigError extends Error {
  /** The offending key (dotted path), or undefined for file-level errors. */
  readonly key: string | undefined;
  /** Builds the error. */
  constructor(message: string, key?: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConfigError";
    this.key = key;
  }
}
