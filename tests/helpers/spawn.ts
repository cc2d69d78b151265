/**
 * Runs a program to completion and collects what it printed: the one way
 * the tests and their helpers start a command and wait for it.
 *
 * @module
 */

/** Output of a finished command. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of {@link run}. */
export interface RunOptions {
  /** Text written to the command's stdin (default: no stdin). */
  stdin?: string | undefined;
  /** Extra environment variables. */
  env?: Record<string, string> | undefined;
  /** Start from an empty environment plus `env`. */
  clearEnv?: boolean | undefined;
  /** Working directory (default: the test's). */
  cwd?: string | undefined;
}

const decoder = new TextDecoder();

/** Runs `command` (program and arguments), waits for it, and returns its status and output. */
export async function run(
  command: readonly string[],
  options: RunOptions = {},
): Promise<RunResult> {
  const [program, ...args] = command;
  const child = new Deno.Command(program, {
    args,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    // Deno, when that is what runs, must not look for updates (no network here).
    env: { DENO_NO_UPDATE_CHECK: "1", ...options.env },
    clearEnv: options.clearEnv,
    cwd: options.cwd,
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const out = await child.output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** Like {@link run}, but throws with the command and its stderr unless it exits 0; returns stdout. */
export async function runOk(command: readonly string[], options: RunOptions = {}): Promise<string> {
  const result = await run(command, options);
  if (result.code !== 0) {
    throw new Error(
      `${command.join(" ")} failed (exit ${result.code}): ${
        (result.stderr || result.stdout).trim()
      }`,
    );
  }
  return result.stdout;
}

/** The command line that runs one of the project's programs with the Deno running the tests. */
export function denoRun(path: string, ...args: string[]): string[] {
  return [Deno.execPath(), "run", "--allow-all", path, ...args];
}
