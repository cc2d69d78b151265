/**
 * table_allocator_client: asks the table_allocator server for a routing
 * table for an interface address and prints it (0 when there is none). A
 * drop-in replacement for the original C client: same flags, same output,
 * same wire protocol (see `docs/client.md`).
 *
 * Without `-f` the lease is held by the host agent of the network
 * namespace (started on demand, or by its unit): the client hands the
 * identity over, prints the agent's answer and exits. This path loads
 * only the argument parser, libc, the abstract socket and the agent's
 * codec; the agent (`--agent`), `-f` and `-r` load the rest (netlink,
 * rules, log sinks) when they run.
 *
 * @module
 */

import { ifNameToIndex } from "./ffi/libc.ts";
import { formatFields } from "./src/log/logger.ts";
import { handOff, holdSpec } from "./src/client/handoff.ts";
import {
  CLIENT_VERSION,
  type ClientOptions,
  parseClientArgs,
  PROGRAM,
  USAGE,
} from "./src/client/options.ts";
import { UsageError, writeAll as write } from "./src/cli/usage.ts";
import { errorMessage } from "./src/util/errors.ts";
import { identityName } from "./src/protocol/v1.ts";

function usageError(message: string): number {
  write(Deno.stderr, `${PROGRAM}: ${message}\n${USAGE}`);
  return 2;
}

/** A line on stderr, `program: message key=value...`. */
function say(message: string, fields: Record<string, string | number> = {}): void {
  write(Deno.stderr, `${PROGRAM}: ${message}${formatFields(fields)}\n`);
}

/**
 * Runs the client with command-line arguments and resolves with the exit
 * status. `-h` prints usage on stdout; bad arguments print a message and
 * usage on stderr and give 2.
 */
export async function main(args: string[]): Promise<number> {
  let invocation;
  try {
    invocation = parseClientArgs(args);
  } catch (error) {
    if (error instanceof UsageError) return usageError(error.message);
    throw error;
  }
  switch (invocation.kind) {
    case "help":
      write(Deno.stdout, USAGE);
      return 0;
    case "version":
      write(Deno.stdout, `${CLIENT_VERSION}\n`);
      return 0;
    case "agent": {
      const { runAgent } = await import("./src/agent/main.ts");
      return await runAgent({ logPath: absolute(invocation.logPath), syslog: invocation.syslog });
    }
  }
  const options = invocation.options;
  options.logPath = absolute(options.logPath);
  options.pskFile = absolute(options.pskFile);
  if (options.pskFile !== undefined) {
    // Checked here, on the hook's stderr; the agent reads it again for itself.
    const { readPskFile } = await import("./config/psk_file.ts");
    try {
      readPskFile(options.pskFile);
    } catch (error) {
      say(errorMessage(error));
      return 1;
    }
  }
  const ifindex = ifNameToIndex(options.ifname);
  if (ifindex === 0) return usageError(`interface "${options.ifname}" does not exist`);
  if (options.logPath !== undefined) {
    // The agent appends to it; say now, on the hook's stderr, if it cannot.
    try {
      Deno.openSync(options.logPath, { append: true, create: true }).close();
    } catch (error) {
      say(`Cannot open log file "${options.logPath}": ${errorMessage(error)}`);
      return 1;
    }
  }
  if (options.foreground || options.release) return await runHere(options, ifindex);
  if (Deno.uid() !== 0) {
    say("only root may hand identities to the host agent (run as root, or use -f)", {
      identity: identityName(options),
      uid: Deno.uid() ?? "unknown",
    });
    write(Deno.stdout, "0\n");
    return 1;
  }
  const result = await handOff(options, import.meta.url);
  write(Deno.stdout, `${result.table}\n`);
  const { note } = result;
  // The agent logs the same to the identity's -l or -s; an error is said here too.
  if (note && (note.level === "error" || (options.logPath === undefined && !options.syslog))) {
    say(note.message, { identity: identityName(options), ...note.fields });
  }
  return result.status;
}

/** `-f` and `-r`: in this process, with a log of its own. */
async function runHere(options: ClientOptions, ifindex: number): Promise<number> {
  const { Logger } = await import("./src/log/logger.ts");
  let logger;
  try {
    logger = new Logger({ program: PROGRAM, logPath: options.logPath, syslog: options.syslog });
  } catch (error) {
    say(errorMessage(error));
    return 1;
  }
  const logElsewhere = options.logPath !== undefined || options.syslog;
  try {
    if (options.release) {
      const { runRelease } = await import("./src/client/release.ts");
      return await runRelease(options, logger);
    }
    const { runForeground } = await import("./src/agent/foreground.ts");
    return await runForeground(holdSpec(options), ifindex, logger, (outcome) => {
      write(Deno.stdout, `${outcome.kind === "lease" ? outcome.table : 0}\n`);
      if (outcome.kind === "refused" && logElsewhere) {
        say("the server refused the lease", {
          identity: identityName(options),
          error: outcome.error,
          reason: outcome.message,
        });
      }
    });
  } catch (error) {
    logger.error("client failed", {
      identity: identityName(options),
      reason: errorMessage(error),
    });
    if (logElsewhere) say(errorMessage(error));
    return 1;
  } finally {
    logger.close();
  }
}

/** A `-l` or `--psk-file` path made absolute: the agent does not run in the hook's directory. */
function absolute(path: string | undefined): string | undefined {
  if (path === undefined || path.startsWith("/")) return path;
  return `${Deno.cwd()}/${path}`;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
