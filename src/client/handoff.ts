/**
 * The hook path: a request without `-f` hands its identity to the host
 * agent of this network namespace and prints the agent's answer. When no
 * agent answers on its name, the client starts one (detached: its own
 * session, stdio on /dev/null, the same program with `--agent`) and
 * retries until the name answers; when several clients start at once,
 * every agent but one exits, and each client reaches the one that stays.
 *
 * The hand-off is resent every 2 s (the agent ignores a repeat), so an
 * agent that dies meanwhile is noticed and replaced. Only an answer from
 * the agent's name whose sender the kernel says is root counts.
 *
 * This module is on the hook's path: it imports only the agent codec, the
 * abstract socket and libc (through `agent_link.ts`), so that exec to
 * table printed stays short.
 *
 * @module
 */

import type { AgentReply, HoldSpec } from "../agent/protocol.ts";
import { isLeasableTable } from "../protocol/v1.ts";
import { AgentLink } from "./agent_link.ts";
import type { ClientOptions } from "./options.ts";

/** How long a client waits for an agent it started to bind the agent's name. */
export const AGENT_START_MS = 10_000;
/** How often the hand-off is sent again while the agent works on it. */
export const RESEND_MS = 2000;
/** How long a client waits for the agent's answer: 5 tries 2 s apart, and a margin. */
export const ANSWER_MS = 15_000;
/** How often a client looks for the name of an agent it started. */
const START_POLL_MS = 20;
/**
 * An agent started this long ago that still does not answer is started
 * again: the first may have lost a race and left, or ended at once.
 */
export const AGENT_RESTART_MS = 2000;
/** The agent's own log when a client starts it: `-l` with this path (tests), else syslog. */
export const AGENT_LOG_ENV = "TABLE_ALLOCATOR_AGENT_LOG";

/** What the client prints and says. */
export interface HandOffResult {
  /** The table to print (0 when none). */
  table: number;
  status: number;
  /** Said on stderr: always for an error, for a warning only when nothing else logs it. */
  note?: { level: "warn" | "error"; message: string; fields: Record<string, string | number> };
}

/** The agent's view of the client's options. */
export function holdSpec(options: ClientOptions): HoldSpec {
  const { family, ifname, address } = options;
  return {
    identity: { family, ifname, address },
    prefix: options.prefix,
    server: options.destination,
    tag: options.tag,
    logPath: options.logPath,
    syslog: options.syslog,
    serverUids: options.serverUids,
    pskFile: options.pskFile,
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

/** A path of the command line made absolute (no node:path on the hook's path). */
function absolutePath(path: string): string {
  return decodeURIComponent(new URL(path, `file://${Deno.cwd()}/`).pathname);
}

/**
 * The command that runs this program again with `args`: the executable
 * itself for a `deno compile` binary (`Deno.build.standalone`), else the
 * Deno executable with the entry module. Under `deno run` the runtime's
 * flags are those this process got (`commandLine`, /proc/self/cmdline), so
 * that a packaged launcher's `--cached-only` and `--config` hold for the
 * agent too; when the module is not found there (the entry was imported),
 * `run --allow-all`.
 */
export function selfCommand(
  entryModule: string,
  args: string[],
  standalone = Deno.build.standalone,
  commandLine = ownCommandLine(),
): { command: string; args: string[] } {
  if (standalone) return { command: Deno.execPath(), args };
  const module = entryModule.startsWith("file:")
    ? decodeURIComponent(new URL(entryModule).pathname)
    : entryModule;
  const at = commandLine.findIndex((arg, i) => i > 1 && absolutePath(arg) === module);
  const flags = commandLine[1] === "run" && at > 1
    ? commandLine.slice(1, at)
    : ["run", "--allow-all", "--no-prompt", "--quiet"];
  return { command: Deno.execPath(), args: [...flags, module, ...args] };
}

/** Starts an agent, detached; the caller retries until its name answers. */
export function startAgent(entryModule: string): void {
  const logPath = Deno.env.get(AGENT_LOG_ENV);
  const { command, args } = selfCommand(
    entryModule,
    ["--agent", ...(logPath ? ["-l", logPath] : ["-s"])],
  );
  new Deno.Command(command, {
    args,
    // Not the hook's directory: an agent must not keep a mount busy.
    cwd: "/",
    env: { DENO_NO_UPDATE_CHECK: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn().unref();
}

/**
 * Hands the identity to the agent (starting one when none answers) and
 * waits for its answer. A signal ends the wait: the agent is told that
 * this client has gone, and the result is table 0.
 */
export async function handOff(options: ClientOptions, entryModule: string): Promise<HandOffResult> {
  using link = new AgentLink();
  const spec = holdSpec(options);
  let interrupted: Deno.Signal | null = null;
  const onSignal = (signal: Deno.Signal) => () => {
    interrupted = signal;
    link.wake();
  };
  const handlers = (["SIGTERM", "SIGINT", "SIGHUP"] as const).map((s) => [s, onSignal(s)] as const);
  for (const [signal, handler] of handlers) Deno.addSignalListener(signal, handler);
  try {
    let sendAt = performance.now();
    let startedAt: number | null = null;
    let lastStart = 0;
    let deadline = Infinity;
    for (;;) {
      if (interrupted) {
        link.send({ op: "cancel", identity: spec.identity });
        return { table: 0, status: 0 };
      }
      const now = performance.now();
      if (now >= sendAt) {
        const sent = link.send({ op: "hold", spec });
        // A full queue: the agent drains it soon.
        sendAt = now + (sent === "sent" ? RESEND_MS : START_POLL_MS);
        if (sent !== "no-agent" && deadline === Infinity) deadline = now + ANSWER_MS;
        if (sent === "no-agent") {
          // Nobody on the agent's name: start one, then look for it (and
          // start another now and then while none answers).
          if (startedAt === null) {
            startAgent(entryModule);
            startedAt = lastStart = now;
          } else if (now - startedAt > AGENT_START_MS) {
            return failure(`the host agent did not start within ${AGENT_START_MS / 1000} s`);
          } else if (now - lastStart > AGENT_RESTART_MS) {
            startAgent(entryModule);
            lastStart = now;
          }
        }
      }
      if (now >= deadline) {
        return failure(
          link.untrusted === undefined
            ? `no answer from the host agent within ${ANSWER_MS / 1000} s`
            : `only uid ${link.untrusted}, not root, answers on the host agent's name`,
        );
      }
      await link.readable(Math.min(sendAt, deadline) - now);
      for (const reply of link.replies()) {
        const result = resultOf(reply);
        if (result) return result;
      }
    }
  } finally {
    for (const [signal, handler] of handlers) Deno.removeSignalListener(signal, handler);
  }
}

function failure(message: string): HandOffResult {
  return { table: 0, status: 1, note: { level: "error", message, fields: {} } };
}

/** The result of one answer of the agent; null for an answer that is not about the hold. */
function resultOf(reply: AgentReply): HandOffResult | null {
  if (reply.op === "error") {
    return failure(`the host agent refused the request: ${reply.message} (${reply.error})`);
  }
  if (reply.op !== "hold") return null;
  switch (reply.result) {
    case "lease":
      // The agent checked it already; a kernel table is never printed, whoever says it.
      if (isLeasableTable(reply.table)) return { table: reply.table, status: 0 };
      return failure(`the host agent answered table ${reply.table}, a kernel table`);
    case "none":
      return {
        table: 0,
        status: 0,
        note: { level: "warn", message: "no lease", fields: { reason: reply.reason } },
      };
    case "refused":
      return {
        table: 0,
        status: 0,
        note: {
          level: "error",
          message: "the server refused the lease",
          fields: { error: reply.error, reason: reply.message },
        },
      };
  }
}
