/**
 * A real systemd, booted in a container over this machine's own `/usr`, so
 * that tests can run the packaged units under the service manager they are
 * written for (this VM's PID 1 is not systemd).
 *
 * `systemd-nspawn --volatile=yes` boots a tmpfs root with the host's `/usr`
 * mounted read-only into it: the units and programs a package installed
 * under `/usr` are there, `/etc` and `/var` start empty (the test binds in
 * what its unit needs: users, config). With `hostSystem`, it boots this
 * machine's own system instead: `/usr`, `/etc` and `/var` as overlays with
 * a tmpfs above each, so that `dpkg` can install into the container and
 * nothing it writes reaches the host. `--keep-unit --register=no`: there
 * is no host systemd to ask for a scope or to register a machine with.
 * `--capability=all`: a unit runs with what it would get on a host. The
 * container joins a test's network namespace, so the abstract socket names
 * and routing rules of the units it runs are that namespace's.
 *
 * @module
 */

import { run, type RunResult } from "./spawn.ts";
import { waitFor } from "./netns.ts";

/** What to boot: a name, the network namespace to join, paths bound in. */
export interface ContainerOptions {
  /** The container's name (its hostname too), short. */
  name: string;
  /** `/run/netns/NAME` of the network namespace the container joins. */
  netnsPath: string;
  /** Host paths bound read-only at the same path inside. */
  readOnly?: string[];
  /** Host paths bound writable, as `[host, inside]`. */
  writable?: Array<[string, string]>;
  /** Boot this machine's `/usr`, `/etc` and `/var`, writable in the container only. */
  hostSystem?: boolean;
  /** Units masked for this boot (`systemd.mask=` on systemd's command line). */
  masked?: string[];
}

/** A booted container; dispose to halt it (and wait until it is gone). */
export interface SystemdContainer extends AsyncDisposable {
  /** The container's systemd (PID 1 inside), as a host pid. */
  readonly leader: number;
  /** Runs a command inside the container (every namespace of its PID 1) and waits for it. */
  exec(command: string[]): Promise<RunResult>;
  /** `systemctl ARGS` inside. */
  systemctl(...args: string[]): Promise<RunResult>;
  /** One property of a unit (`systemctl show -p NAME --value`). */
  property(unit: string, name: string): Promise<string>;
  /** The unit's messages in the container's journal, one per line (`journalctl -o cat`). */
  journal(unit: string): Promise<string>;
  /**
   * Adds the drop-in `NAME.conf` with `text` to a unit (in
   * `/etc/systemd/system/UNIT.d/` inside) and reloads systemd; disposing
   * removes it and reloads again. The unit takes it at its next (re)start.
   */
  dropIn(unit: string, name: string, text: string): Promise<AsyncDisposable>;
}

/**
 * An empty root for {@link ContainerOptions.hostSystem}: mount points, the
 * links of a merged `/usr` (Debian 12), and an os-release where nspawn
 * looks for one before it mounts the overlays that hide it.
 */
async function hostSystemRoot(): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "ta-container-" });
  // The container's "/": its services' users must be able to pass through it.
  await Deno.chmod(root, 0o755);
  for (const dir of ["usr/lib", "etc", "var", "dev", "proc", "sys", "run", "tmp"]) {
    await Deno.mkdir(`${root}/${dir}`, { recursive: true });
  }
  for (const dir of ["bin", "sbin", "lib", "lib64"]) {
    await Deno.symlink(`usr/${dir}`, `${root}/${dir}`);
  }
  await Deno.copyFile("/usr/lib/os-release", `${root}/usr/lib/os-release`);
  return root;
}

/** The child of `parent` whose command name is `comm`, if any. */
function childNamed(parent: number, comm: string): number | undefined {
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      // pid (comm) state ppid ...: comm may hold spaces, so split after its ")".
      const close = stat.lastIndexOf(")");
      const name = stat.slice(stat.indexOf("(") + 1, close);
      const ppid = Number(stat.slice(close + 2).split(" ")[1]);
      if (ppid === parent && name === comm) return Number(entry.name);
    } catch { /* gone meanwhile */ }
  }
  return undefined;
}

/**
 * Boots systemd in a container and waits until its boot has finished
 * (`systemctl is-system-running --wait`: `running`, or `degraded` when a
 * unit of the bare system failed, such as the first-boot wizard).
 */
export async function bootContainer(options: ContainerOptions): Promise<SystemdContainer> {
  const root = options.hostSystem ? await hostSystemRoot() : undefined;
  const args = [
    ...(root
      ? [
        `--directory=${root}`,
        ...["/usr", "/etc", "/var"].map((path) => `--overlay=${path}::${path}`),
      ]
      : ["--directory=/", "--volatile=yes"]),
    `--machine=${options.name}`,
    "--boot",
    "--register=no",
    "--keep-unit",
    "--console=pipe",
    // As on a host: nspawn's default set lacks CAP_NET_ADMIN, which the agent needs for its rules.
    "--capability=all",
    `--network-namespace-path=${options.netnsPath}`,
    ...(options.readOnly ?? []).map((path) => `--bind-ro=${path}`),
    ...(options.writable ?? []).map(([host, inside]) => `--bind=${host}:${inside}`),
    ...(options.masked ?? []).map((unit) => `systemd.mask=${unit}`),
  ];
  let nspawn: Deno.ChildProcess;
  try {
    nspawn = new Deno.Command("systemd-nspawn", {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    if (root) await Deno.remove(root, { recursive: true });
    throw error;
  }
  let output = "";
  const collect = (async () => {
    const decoder = new TextDecoder();
    const pump = async (stream: ReadableStream<Uint8Array>) => {
      for await (const chunk of stream) output += decoder.decode(chunk);
    };
    await Promise.all([pump(nspawn.stdout), pump(nspawn.stderr)]);
  })();
  let exited = false;
  const status = nspawn.status.finally(() => exited = true);

  const halt = async () => {
    if (!exited) {
      // nspawn asks the container's systemd to halt on the first SIGTERM.
      nspawn.kill("SIGTERM");
      const timer = setTimeout(() => {
        if (!exited) nspawn.kill("SIGKILL");
      }, 20_000);
      await status;
      clearTimeout(timer);
    }
    await collect;
    // nspawn leaves the (empty) directory it propagates mounts through.
    await Deno.remove(`/run/systemd/nspawn/propagate/${options.name}`).catch(() => {});
    if (root) {
      await Deno.remove(root, { recursive: true });
      // And the lock it takes on a directory image, beside it: `/tmp/.#<name>.lck`.
      const slash = root.lastIndexOf("/");
      await Deno.remove(`${root.slice(0, slash)}/.#${root.slice(slash + 1)}.lck`).catch(() => {});
    }
  };

  try {
    const leader = await waitFor(
      "systemd starts in the container",
      () => {
        if (exited) throw new Error(`systemd-nspawn ended: ${output}`);
        return childNamed(nspawn.pid, "systemd");
      },
      15_000,
    );
    const exec = (command: string[]) =>
      run(["nsenter", `--target=${leader}`, "--all", "--", ...command]);
    const systemctl = (...rest: string[]) => exec(["systemctl", "--no-pager", ...rest]);
    // Early in the boot systemctl says `offline` (systemd has not yet made
    // /run/systemd/system) or cannot reach systemd's socket: ask again.
    await waitFor("the container's boot finishes", async () => {
      const booted = await systemctl("is-system-running", "--wait");
      if (/^(running|degraded)$/m.test(booted.stdout)) return true;
      if (/^offline$/m.test(booted.stdout) || /Failed to connect to bus/.test(booted.stderr)) {
        return false;
      }
      throw new Error(
        `the container's boot did not finish: ${booted.stdout}${booted.stderr}\n` +
          `systemd-nspawn said:\n${output}`,
      );
    }, 30_000);
    return {
      leader,
      exec,
      systemctl,
      property: async (unit, name) =>
        (await systemctl("show", "--property", name, "--value", unit)).stdout.trim(),
      journal: async (unit) =>
        (await exec(["journalctl", "--no-pager", "--output=cat", `--unit=${unit}`])).stdout,
      dropIn: async (unit, name, text) => {
        // The container's files, seen from here through its PID 1's root.
        const dir = `/proc/${leader}/root/etc/systemd/system/${unit}.d`;
        const path = `${dir}/${name}.conf`;
        const reload = async () => {
          const result = await systemctl("daemon-reload");
          if (result.code !== 0) throw new Error(`daemon-reload failed: ${result.stderr}`);
        };
        await Deno.mkdir(dir, { recursive: true });
        await Deno.writeTextFile(path, text);
        await reload();
        return {
          [Symbol.asyncDispose]: async () => {
            await Deno.remove(path);
            await reload();
          },
        };
      },
      [Symbol.asyncDispose]: halt,
    };
  } catch (error) {
    await halt();
    throw error;
  }
}
