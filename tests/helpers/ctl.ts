/**
 * Runs `table-allocator-ctl` as a separate process, the way an admin or a
 * script runs it, optionally as another user or in a network namespace.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import type { StagedProgram } from "./as_user.ts";
import { denoRun, run, type RunResult } from "./spawn.ts";

/** Path of ctl.ts. */
export const CTL_PATH = fileURLToPath(new URL("../../ctl.ts", import.meta.url));

/** Output of a finished ctl run. */
export type CtlResult = RunResult;

/** Options of {@link ctl}. */
export interface CtlOptions {
  /** Run the copy staged for another user (`stageAsUser("ctl.ts")`) as that user. */
  as?: StagedProgram;
  /** Run inside this network namespace (`ip netns exec`). */
  netns?: string;
}

/** Runs ctl with `args` and waits for it. */
export function ctl(args: string[], options: CtlOptions = {}): Promise<CtlResult> {
  let argv = options.as ? options.as.command(...args) : denoRun(CTL_PATH, ...args);
  if (options.netns !== undefined) argv = ["ip", "netns", "exec", options.netns, ...argv];
  return run(argv, options.as?.runOptions);
}
