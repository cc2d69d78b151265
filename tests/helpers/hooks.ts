/**
 * For the tests of the hook scripts with their real callers: an /etc of
 * their own for one network namespace, and the hooks' settings file.
 *
 * `ip netns exec NS` binds every entry of /etc/netns/NS over the same name
 * in /etc for the command it runs. So dhclient started there sources the
 * hooks of this tree from /etc/dhcp, ifup runs them from /etc/network, and
 * every hook reads its settings from /etc/default/table-allocator, at the
 * paths they have when installed, without touching the host's /etc (other
 * tests, and the package test, run at the same time).
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { dirname } from "node:path";
import { CLIENT_PATH, IS_ROOT, type Netns, ROOT_SKIP_REASON } from "./netns.ts";

/** The hook scripts of this tree. */
export const HOOKS = fileURLToPath(new URL("../../packaging/hooks/", import.meta.url));

/** The client of this tree as a command, for TA_CLIENT. */
export const DEV_CLIENT = `${Deno.execPath()} run --allow-all --quiet ${CLIENT_PATH}`;

/** One file of the overlay: its text, a symbolic link, or a copy of a host file. */
export type EtcEntry = string | { link: string } | { copy: string };

/** An /etc overlay for one namespace; dispose to remove it. */
export interface EtcOverlay extends AsyncDisposable {
  /** /etc/netns/NS. */
  readonly dir: string;
}

/**
 * Writes `entries` (paths relative to /etc, e.g. `default/table-allocator`;
 * a path ending in `/` is an empty directory) under /etc/netns/`netns`.
 * Every directory named in a path replaces the host's one as a whole
 * inside the namespace.
 */
export async function etcOverlay(
  netns: string,
  entries: Record<string, EtcEntry>,
): Promise<EtcOverlay> {
  const dir = `/etc/netns/${netns}`;
  const overlay: EtcOverlay = {
    dir,
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  try {
    for (const [path, entry] of Object.entries(entries)) {
      const target = `${dir}/${path}`;
      await Deno.mkdir(dirname(target), { recursive: true });
      if (path.endsWith("/")) await Deno.mkdir(target, { recursive: true });
      else if (typeof entry === "string") await Deno.writeTextFile(target, entry);
      else if ("link" in entry) await Deno.symlink(entry.link, target);
      else await Deno.copyFile(entry.copy, target);
    }
  } catch (error) {
    await overlay[Symbol.asyncDispose]();
    throw error;
  }
  return overlay;
}

/**
 * The text of /etc/default/table-allocator for the hooks under test.
 * `env` is exported too: the namespace's agent state directory and log,
 * which the hooks' empty environment would otherwise leave at the host's
 * defaults.
 */
export function hookSettings(
  socket: string,
  logPath: string,
  client = DEV_CLIENT,
  env: Record<string, string> = {},
): string {
  const exports = Object.entries(env).map(([key, value]) => `export ${key}=${value}\n`).join("");
  return `TA_CLIENT="${client}"\nTA_SOCKET=${socket}\nTA_LOG=${logPath}\n${exports}`;
}

/** Splits `ip route show` output into trimmed lines. */
export function lines(text: string): string[] {
  return text.split("\n").map((l) => l.trim()).filter(Boolean);
}

/** The routes of a table in a namespace (none when the kernel has no such table). */
export async function tableRoutes(
  ns: Netns,
  family: "-4" | "-6",
  table: string | number,
): Promise<string[]> {
  const result = await ns.run(["ip", family, "route", "show", "table", String(table)]);
  if (result.code !== 0 && /table does not exist/.test(result.stderr)) return [];
  if (result.code !== 0) throw new Error(`ip route show table ${table}: ${result.stderr}`);
  return lines(result.stdout);
}

const warned = new Set<string>();

/**
 * Registers an end-to-end test of a hook script with its caller. It needs
 * root and `programs` (which `make deps` installs); without them it is
 * skipped and the reason printed once. The test gets a temporary directory
 * of its own (logs, leases, an interfaces file), removed afterwards.
 */
export function hookTest(
  name: string,
  programs: readonly string[],
  fn: (dir: string) => Promise<void>,
): void {
  const missing = programs.filter((path) => {
    try {
      return !Deno.statSync(path).isFile;
    } catch {
      return true;
    }
  });
  const unmet = !IS_ROOT
    ? ROOT_SKIP_REASON
    : missing.length > 0
    ? `${missing.join(", ")} missing (make deps installs them)`
    : undefined;
  if (unmet && !warned.has(unmet)) {
    warned.add(unmet);
    console.warn(`skipping the hook tests that need more than this run has: ${unmet}`);
  }
  Deno.test({
    name,
    ignore: unmet !== undefined,
    // The namespaces' processes (the host agent, dhclient) outlive single steps.
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      const dir = await Deno.makeTempDir({ prefix: "ta-hook-" });
      try {
        await fn(dir);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
