/**
 * The subset of `node:util` parseArgs that the client's command line uses
 * (strict, no positionals; boolean and string options, short and long,
 * `--long=value`, `-xVALUE`, groups of short flags, repeatable options),
 * with the same error messages, and without loading node compatibility:
 * the client's hook path runs it on every call, where `node:util` costs
 * about 7 ms. Pure.
 *
 * @module
 */

import { UsageError } from "./usage.ts";

/** One option: its type, its one-letter form, whether it may repeat. */
export interface FlagSpec {
  type: "boolean" | "string";
  short?: string;
  multiple?: boolean;
}

/** The options given, by long name: true, a string, or the strings of a repeatable one. */
export type FlagValues = Record<string, boolean | string | string[] | undefined>;

/**
 * Reads `args` against `options`. Throws a {@link UsageError} with
 * parseArgs' wording for an unknown option, a positional argument, a
 * value given to a boolean, or a missing or dash-led value.
 */
export function parseFlags(args: readonly string[], options: Record<string, FlagSpec>): FlagValues {
  const byShort = new Map<string, string>();
  for (const [long, spec] of Object.entries(options)) if (spec.short) byShort.set(spec.short, long);
  const label = (long: string) => {
    const short = options[long].short;
    return short ? `-${short}, --${long}` : `--${long}`;
  };
  const values: FlagValues = {};
  const store = (long: string, value: string | true, given: string) => {
    const spec = options[long];
    if (spec.type === "boolean" && value !== true) {
      throw new UsageError(`Option '${label(long)}' does not take an argument`);
    }
    if (spec.type === "string" && value === true) {
      throw new UsageError(`Option '${label(long)} <value>' argument missing`);
    }
    if (
      spec.type === "string" && typeof value === "string" && value.length > 1 &&
      value[0] === "-" && given
    ) {
      const viaShort = given.startsWith("--") ? "" : ` or '${given}-XYZ'`;
      throw new UsageError(
        `Option '${given}' argument is ambiguous.\n` +
          `Did you forget to specify the option argument for '${given}'?\n` +
          `To specify an option argument starting with a dash use '--${long}=-XYZ'${viaShort}.`,
      );
    }
    if (spec.multiple) {
      values[long] = [...(values[long] as string[] | undefined ?? []), value as string];
    } else values[long] = value;
  };
  const unknown = (arg: string) => new UsageError(`Unknown option '${arg}'`);
  const queue = [...args];
  while (queue.length > 0) {
    const arg = queue.shift()!;
    if (arg === "--") {
      if (queue.length > 0) throw positional(queue[0]);
      break;
    }
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const long = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      if (!Object.hasOwn(options, long)) throw unknown(eq < 0 ? arg : arg.slice(0, eq));
      if (eq >= 0) store(long, arg.slice(eq + 1), "");
      else if (options[long].type === "boolean") store(long, true, arg);
      else store(long, queue.length > 0 ? queue.shift()! : true, arg);
      continue;
    }
    if (arg.length > 1 && arg[0] === "-") {
      const long = byShort.get(arg[1]);
      if (long === undefined) throw unknown(`-${arg[1]}`);
      if (options[long].type === "string") {
        // -aVALUE, or -a VALUE
        if (arg.length > 2) store(long, arg.slice(2), "");
        else store(long, queue.length > 0 ? queue.shift()! : true, arg);
      } else if (arg.length === 2) {
        store(long, true, arg);
      } else {
        // A group of short flags: -rf is -r -f.
        queue.unshift(...[...arg.slice(1)].map((c) => `-${c}`));
      }
      continue;
    }
    throw positional(arg);
  }
  return values;
}

function positional(arg: string): UsageError {
  return new UsageError(
    `Unexpected argument '${arg}'. This command does not take positional arguments`,
  );
}
