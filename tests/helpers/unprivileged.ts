/**
 * Runs our code as another user (uid 65534) in end-to-end tests. CI's
 * clone may be readable by root only, so what that user runs is copied to
 * a temporary directory everyone may read: the Deno binary (hard-linked
 * when possible), the entry points, `src/`, `ffi/`, `config/` and the test
 * helpers, with a DENO_DIR the user owns (no `deno.json`: only SQLite, no
 * npm package, works there). Dispose to remove it.
 *
 * ```ts
 * await using tree = await unprivilegedTree();
 * await using peer = tree.peer(server.socketName, "eth1-192.0.2.10-2", { netns });
 * const reply = await peer.call(requestBody("192.0.2.10"));
 * ```
 *
 * @module
 */

import { fileURLToPath } from "node:url";

/** The unprivileged user of the tests. */
export const NOBODY = 65534;

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** A peer process speaking v1 as another user (see `peer_cli.ts`). */
export interface UnprivilegedPeer extends AsyncDisposable {
  /** Sends one datagram and resolves with the parsed reply, or null when none came. */
  call(payload: string): Promise<Record<string, unknown> | null>;
  /** Sends `payload` `count` times without waiting for replies. */
  flood(count: number, payload: string): Promise<void>;
}

/** A copy of what the user needs to run our code. */
export interface UnprivilegedTree extends AsyncDisposable {
  readonly dir: string;
  /** argv that runs `script` (relative to the repository) as `uid` with `args`. */
  command(script: string, args: string[], options?: { netns?: string; uid?: number }): string[];
  /** Starts a peer bound to `name` (null: autobind) that talks to `server`. */
  peer(
    server: string,
    name: string | null,
    options?: { netns?: string; uid?: number },
  ): UnprivilegedPeer;
}

async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true, mode: 0o755 });
  for await (const entry of Deno.readDir(from)) {
    const source = `${from}/${entry.name}`;
    const target = `${to}/${entry.name}`;
    if (entry.isDirectory) await copyTree(source, target);
    else if (entry.isFile) {
      await Deno.copyFile(source, target);
      await Deno.chmod(target, 0o644);
    }
  }
  await Deno.chmod(to, 0o755);
}

/** Prepares the copy; the caller disposes of it. */
export async function unprivilegedTree(uid = NOBODY): Promise<UnprivilegedTree> {
  const dir = await Deno.makeTempDir({ prefix: "ta-nobody-" });
  await Deno.chmod(dir, 0o755);
  const deno = `${dir}/deno`;
  try {
    try {
      await Deno.link(Deno.execPath(), deno);
    } catch {
      await Deno.copyFile(Deno.execPath(), deno);
    }
    await Deno.chmod(deno, 0o755);
    for (const part of ["src", "ffi", "config", "tests/helpers"]) {
      await copyTree(`${ROOT}/${part}`, `${dir}/${part}`);
    }
    for (const entry of ["server.ts", "client.ts", "ctl.ts"]) {
      await Deno.copyFile(`${ROOT}/${entry}`, `${dir}/${entry}`);
      await Deno.chmod(`${dir}/${entry}`, 0o644);
    }
    await Deno.mkdir(`${dir}/deno-dir`);
    await Deno.chown(`${dir}/deno-dir`, uid, uid);
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
  const command = (
    script: string,
    args: string[],
    options: { netns?: string; uid?: number } = {},
  ): string[] => {
    const user = options.uid ?? uid;
    const argv = [
      "setpriv",
      `--reuid=${user}`,
      `--regid=${user}`,
      "--clear-groups",
      "env",
      `DENO_DIR=${dir}/deno-dir`,
      "DENO_NO_UPDATE_CHECK=1",
      deno,
      "run",
      "--allow-all",
      `${dir}/${script}`,
      ...args,
    ];
    return options.netns ? ["ip", "netns", "exec", options.netns, ...argv] : argv;
  };
  return {
    dir,
    command,
    peer(server, name, options = {}) {
      const [program, ...args] = command(
        "tests/helpers/peer_cli.ts",
        [server, name ?? "-"],
        options,
      );
      const child = new Deno.Command(program, {
        args,
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
        clearEnv: true,
        env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
      }).spawn();
      const writer = child.stdin.getWriter();
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let stderr = "";
      const errors = (async () => {
        for await (const chunk of child.stderr) stderr += decoder.decode(chunk);
      })();
      let pending = "";
      const line = async (): Promise<string> => {
        for (;;) {
          const newline = pending.indexOf("\n");
          if (newline >= 0) {
            const out = pending.slice(0, newline);
            pending = pending.slice(newline + 1);
            return out;
          }
          const { value, done } = await reader.read();
          if (done) throw new Error(`the peer as uid ${options.uid ?? uid} exited: ${stderr}`);
          pending += value;
        }
      };
      return {
        async call(payload) {
          await writer.write(encoder.encode(`${payload}\n`));
          return JSON.parse(await line());
        },
        async flood(count, payload) {
          await writer.write(encoder.encode(`flood ${count} ${payload}\n`));
          await line();
        },
        async [Symbol.asyncDispose]() {
          await writer.close().catch(() => {});
          try {
            child.kill("SIGKILL");
          } catch { /* already gone */ }
          await child.status;
          await reader.cancel().catch(() => {});
          await errors.catch(() => {});
        },
      };
    },
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
