/**
 * Moving to the background without fork(2), which Deno cannot do: the
 * foreground process re-runs the same program as a detached process
 * (`Deno.Command` with `detached: true`) and hands over its two bound
 * descriptors, the identity socket and the netlink notification socket,
 * by clearing close-on-exec on them. The lease (table and expiry) travels
 * in an environment variable. The background process adopts the
 * descriptors, installs the rules and writes `ok` on a pipe; only then
 * does the foreground process print the table and exit 0. The identity
 * name is bound the whole time, so there is no gap, no second request,
 * and no notification is lost.
 *
 * The background process's stdout is that private pipe and its stdin and
 * stderr are /dev/null, so a hook's `$(...)` returns as soon as the
 * foreground process exits.
 *
 * @module
 */

import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { setCloseOnExec } from "../../ffi/libc.ts";
import { type ClientOptions, formatClientArgs } from "./options.ts";
import type { Lease } from "./session.ts";

/** Environment variable carrying the hand-over; not for users. */
export const HANDOVER_ENV = "TABLE_ALLOCATOR_CLIENT_HANDOVER";
/** How long the foreground process waits for the background one to take over. */
export const HANDOVER_TIMEOUT_MS = 10_000;

/** What the background process takes over. */
export interface Handover {
  socketFd: number;
  netlinkFd: number;
  lease: Lease;
}

/** Encodes a hand-over for {@link HANDOVER_ENV}. */
export function encodeHandover(handover: Handover): string {
  return JSON.stringify({
    socket_fd: handover.socketFd,
    netlink_fd: handover.netlinkFd,
    table: handover.lease.table,
    lease_expires: handover.lease.leaseExpires,
  });
}

/** Decodes {@link HANDOVER_ENV}; throws a TypeError naming the bad field. */
export function decodeHandover(text: string): Handover {
  let obj: Record<string, unknown>;
  try {
    obj = JSON.parse(text);
  } catch (error) {
    throw new TypeError(`${HANDOVER_ENV} is not JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const int = (key: string, min: number) => {
    const value = obj?.[key];
    if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
      throw new TypeError(`${HANDOVER_ENV}: "${key}" must be an integer >= ${min}, got ${value}`);
    }
    return value;
  };
  const expires = obj?.lease_expires;
  if (typeof expires !== "number" || !Number.isFinite(expires)) {
    throw new TypeError(`${HANDOVER_ENV}: "lease_expires" must be a number, got ${expires}`);
  }
  return {
    socketFd: int("socket_fd", 3),
    netlinkFd: int("netlink_fd", 3),
    lease: { table: int("table", 1), leaseExpires: expires },
  };
}

/** This process's command line, from /proc (empty when it cannot be read). */
function ownCommandLine(): string[] {
  try {
    return Deno.readTextFileSync("/proc/self/cmdline").split("\0").slice(0, -1);
  } catch {
    return [];
  }
}

/**
 * The command that runs this program again with `args`: the executable
 * itself for a `deno compile` binary (`Deno.build.standalone`), else the
 * Deno executable with the entry module. Under `deno run` the runtime's
 * flags are those this process got (`commandLine`, /proc/self/cmdline), so
 * that a packaged launcher's `--cached-only` and `--config` hold for the
 * copy too; when the module is not found there (the entry was imported),
 * `run --allow-all`.
 */
export function selfCommand(
  entryModule: string,
  args: string[],
  standalone = Deno.build.standalone,
  commandLine = ownCommandLine(),
): { command: string; args: string[] } {
  if (standalone) return { command: Deno.execPath(), args };
  const module = entryModule.startsWith("file:") ? fileURLToPath(entryModule) : entryModule;
  const at = commandLine.findIndex((arg, i) => i > 1 && resolve(arg) === module);
  const flags = commandLine[1] === "run" && at > 1
    ? commandLine.slice(1, at)
    : ["run", "--allow-all", "--no-prompt", "--quiet"];
  return { command: Deno.execPath(), args: [...flags, module, ...args] };
}

/** How a hand-over ended. */
export type HandoverResult = { ok: true } | { ok: false; reason: string };

/**
 * Starts the background process and waits until it reports that it took
 * over (or failed, or `HANDOVER_TIMEOUT_MS` passed, or `abort` fires).
 * On failure the background process is killed, so the caller still owns
 * the lease alone.
 */
export async function startBackground(
  entryModule: string,
  options: ClientOptions,
  handover: Handover,
  abort: AbortSignal,
): Promise<HandoverResult> {
  const { command, args } = selfCommand(entryModule, formatClientArgs(options));
  for (const fd of [handover.socketFd, handover.netlinkFd]) setCloseOnExec(fd, false);
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(command, {
      args,
      // Deno must not look for updates over the network.
      env: { [HANDOVER_ENV]: encodeHandover(handover), DENO_NO_UPDATE_CHECK: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "null",
      detached: true,
    }).spawn();
  } catch (error) {
    return { ok: false, reason: `cannot start ${command}: ${(error as Error).message}` };
  } finally {
    for (const fd of [handover.socketFd, handover.netlinkFd]) setCloseOnExec(fd, true);
  }
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stopped = new Promise<string>((resolve) => {
    timer = setTimeout(
      () => resolve(`no answer within ${HANDOVER_TIMEOUT_MS} ms`),
      HANDOVER_TIMEOUT_MS,
    );
    abort.addEventListener("abort", () => resolve("interrupted by a signal"), { once: true });
  });
  const answered = (async () => {
    let text = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return `it exited before taking over (${(await child.status).code})`;
      text += value;
      const newline = text.indexOf("\n");
      if (newline >= 0) return text.slice(0, newline);
    }
  })();
  const line = await Promise.race([answered, stopped]);
  clearTimeout(timer);
  await reader.cancel().catch(() => {});
  if (line === "ok") {
    child.unref();
    return { ok: true };
  }
  try {
    child.kill("SIGKILL");
  } catch {
    // Already gone.
  }
  await child.status;
  return { ok: false, reason: line.startsWith("error ") ? line.slice(6) : line };
}

/** Reads the hand-over from the environment, once, and removes it. */
export function takeHandover(): Handover | null {
  const text = Deno.env.get(HANDOVER_ENV);
  if (text === undefined) return null;
  Deno.env.delete(HANDOVER_ENV);
  return decodeHandover(text);
}
