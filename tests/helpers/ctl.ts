/**
 * Runs `table-allocator-ctl` as a separate process, the way an admin or a
 * script runs it, optionally as another user.
 *
 * @module
 */

import { fileURLToPath } from "node:url";

/** Path of ctl.ts. */
export const CTL_PATH = fileURLToPath(new URL("../../ctl.ts", import.meta.url));

/** Output of a finished ctl run. */
export interface CtlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of {@link ctl}. */
export interface CtlOptions {
  /**
   * Run as this uid (and gid) with `setpriv`, with no supplementary groups.
   * Deno then needs a cache directory it may write: `denoDir`.
   */
  uid?: number;
  /** DENO_DIR for the process (needed with `uid`). */
  denoDir?: string;
  /** Run inside this network namespace (`ip netns exec`). */
  netns?: string;
}

const decoder = new TextDecoder();

/** Runs ctl with `args` and waits for it. */
export async function ctl(args: string[], options: CtlOptions = {}): Promise<CtlResult> {
  let argv = [Deno.execPath(), "run", "--allow-all", CTL_PATH, ...args];
  if (options.uid !== undefined) {
    argv = [
      "setpriv",
      `--reuid=${options.uid}`,
      `--regid=${options.uid}`,
      "--clear-groups",
      ...argv,
    ];
  }
  if (options.netns !== undefined) argv = ["ip", "netns", "exec", options.netns, ...argv];
  const [command, ...rest] = argv;
  const out = await new Deno.Command(command, {
    args: rest,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: options.denoDir === undefined ? undefined : { DENO_DIR: options.denoDir },
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}
