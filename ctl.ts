/**
 * table-allocator-ctl: inspects and administers a running table-allocator
 * server over its control socket (status, pools, leases, show, release,
 * reserve, unreserve), and makes keys for message authentication
 * (genpsk). See `docs/ctl.md`.
 *
 *     ctl.ts [-d SOCKET] [--json] [--timeout MS] COMMAND [ARGS]
 *
 * @module
 */

import {
  BadReplyError,
  ControlClient,
  ControlError,
  NotRunningError,
  TimeoutError,
} from "./src/control/client.ts";
import { type CtlCommand, parseCtlArgs, PROGRAM, USAGE } from "./src/control/args.ts";
import { UsageError, writeAll as write } from "./src/cli/cli.ts";
import { formatResult } from "./src/control/format.ts";
import type { ControlResults } from "./src/control/protocol.ts";
import { VERSION } from "./src/version.ts";
import { generatePsk } from "./src/protocol/auth.ts";
import { errorMessage } from "./src/util/errors.ts";

/** Runs `command` and returns its result (every page of `leases --all`). */
async function run(
  client: ControlClient,
  command: CtlCommand,
): Promise<ControlResults[CtlCommand["op"]]> {
  if (command.op !== "list") return await client.call(command.op, command.args);
  const first = await client.call("list", command.args);
  if (!command.all) return first;
  const leases = [...first.leases];
  let next = first.next;
  while (next !== null) {
    const page = await client.call("list", { ...command.args, after: next });
    if (page.next === next) {
      throw new BadReplyError("list", `the page after ${JSON.stringify(next)} points to itself`);
    }
    leases.push(...page.leases);
    next = page.next;
  }
  return { leases, next: null };
}

/**
 * Runs ctl with command-line `args` and resolves with the exit status: 0
 * done, 1 the server refused, is not running or did not answer, 2 bad
 * arguments (message and usage on stderr, nothing on stdout).
 */
export async function main(args: string[]): Promise<number> {
  let invocation;
  try {
    invocation = parseCtlArgs(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    write(Deno.stderr, `${PROGRAM}: ${error.message}\n\n${USAGE}`);
    return 2;
  }
  if (invocation.kind === "help") {
    write(Deno.stdout, USAGE);
    return 0;
  }
  if (invocation.kind === "version") {
    write(Deno.stdout, `${PROGRAM} ${VERSION}\n`);
    return 0;
  }
  if (invocation.kind === "genpsk") {
    write(Deno.stdout, `${generatePsk()}\n`);
    return 0;
  }
  const { options, command } = invocation;
  const client = new ControlClient({ socket: options.socket, timeoutMs: options.timeoutMs });
  let result;
  try {
    result = await run(client, command);
  } catch (error) {
    if (error instanceof ControlError) {
      write(Deno.stderr, `${PROGRAM}: ${error.op}: ${error.code}: ${error.message}\n`);
    } else if (error instanceof NotRunningError) {
      write(Deno.stderr, `${PROGRAM}: ${error.message}\n`);
    } else if (error instanceof TimeoutError) {
      write(
        Deno.stderr,
        `${PROGRAM}: ${error.message} (the server is busy, stopped, or not a table-allocator server; see --timeout)\n`,
      );
    } else if (error instanceof BadReplyError) {
      write(Deno.stderr, `${PROGRAM}: ${error.message}\n`);
    } else {
      write(Deno.stderr, `${PROGRAM}: ${command.name} failed: ${errorMessage(error)}\n`);
    }
    return 1;
  }
  write(
    Deno.stdout,
    options.json ? `${JSON.stringify(result)}\n` : formatResult(command.op, result, Date.now()),
  );
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
