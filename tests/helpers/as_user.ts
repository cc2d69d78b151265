/**
 * Runs one of the project's programs as an unprivileged user (uid 65534,
 * `nobody`, by default). The checkout may sit where only root can read
 * (CI clones into a private directory), so the program's modules and the
 * Deno binary are copied first into a temporary directory that user may
 * read, with a Deno cache it may write.
 *
 * ```ts
 * await using nobody = await stageAsUser("ctl.ts");
 * const result = await run(nobody.command("status"), nobody.runOptions);
 * ```
 *
 * @module
 */

import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { runOk, type RunOptions } from "./spawn.ts";

/** The repository root. */
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The uid (and gid) of `nobody`. */
export const NOBODY = 65534;

/** A program staged for a user; dispose to remove the copy. */
export interface StagedProgram extends AsyncDisposable {
  /** The readable temporary directory holding the copy. */
  readonly dir: string;
  readonly uid: number;
  /** The command line that runs the program with `args` as the user. */
  command(...args: string[]): string[];
  /** The working directory and environment the command needs. */
  readonly runOptions: RunOptions;
}

/**
 * The local module files `entry` (relative to the repository root) imports,
 * itself included. npm packages are not staged: with `withoutNpm` they are
 * left out (for an entry that loads them only on demand, as server.ts loads
 * the PostgreSQL driver only for a PostgreSQL store), else an error.
 */
async function moduleFiles(entry: string, withoutNpm: boolean): Promise<string[]> {
  const info = JSON.parse(
    await runOk([Deno.execPath(), "info", "--json", join(ROOT, entry)], { cwd: ROOT }),
  ) as { modules: Array<{ specifier: string; kind?: string }> };
  const files: string[] = [];
  for (const module of info.modules) {
    if (module.specifier.startsWith("node:")) continue;
    if (withoutNpm && module.specifier.startsWith("npm:")) continue;
    if (!module.specifier.startsWith("file:")) {
      throw new Error(`cannot stage ${entry}: it imports ${module.specifier}`);
    }
    files.push(relative(ROOT, fileURLToPath(module.specifier)));
  }
  return files;
}

/**
 * Copies `entry`'s modules and the Deno binary to a new directory `uid`
 * may read (mode 0755 directories, 0644 files), with a Deno cache owned by
 * `uid`. Needs root, to hand the cache to the user.
 */
export async function stageAsUser(
  entry: string,
  uid = NOBODY,
  options: { withoutNpm?: boolean } = {},
): Promise<StagedProgram> {
  const dir = await Deno.makeTempDir({ prefix: "ta-as-user-" });
  const remove = () => Deno.remove(dir, { recursive: true }).catch(() => {});
  try {
    await Deno.chmod(dir, 0o755);
    const files = await moduleFiles(entry, options.withoutNpm ?? false);
    for (const file of files) {
      const target = join(dir, "app", file);
      await Deno.mkdir(dirname(target), { recursive: true });
      await Deno.copyFile(join(ROOT, file), target);
      await Deno.chmod(target, 0o644);
    }
    // mkdir's mode passes through the umask: open every directory up explicitly.
    for (const sub of new Set(files.map((f) => dirname(join("app", f))))) {
      for (let d = sub; d !== "."; d = dirname(d)) await Deno.chmod(join(dir, d), 0o755);
    }
    const deno = join(dir, "deno");
    // A hard link when possible: a copy is open for writing for a moment,
    // and a child forked meanwhile elsewhere would make exec fail (ETXTBSY).
    try {
      await Deno.link(Deno.execPath(), deno);
    } catch {
      await Deno.copyFile(Deno.execPath(), deno);
    }
    await Deno.chmod(deno, 0o755);
    const denoDir = join(dir, "cache");
    await Deno.mkdir(denoDir);
    await Deno.chown(denoDir, uid, uid);
  } catch (error) {
    await remove();
    throw error;
  }
  return {
    dir,
    uid,
    command: (...args) => [
      "setpriv",
      `--reuid=${uid}`,
      `--regid=${uid}`,
      "--clear-groups",
      join(dir, "deno"),
      "run",
      "--allow-all",
      join(dir, "app", entry),
      ...args,
    ],
    runOptions: {
      cwd: dir,
      env: { DENO_DIR: join(dir, "cache"), DENO_NO_UPDATE_CHECK: "1", HOME: dir },
    },
    [Symbol.asyncDispose]: remove,
  };
}
