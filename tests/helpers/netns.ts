/**
 * A fresh network namespace per end-to-end test: a random short name, a
 * veth pair inside it with an IPv4 and an IPv6 address on the first end,
 * and helpers to run commands there. Commands run with the namespace's own
 * agent state directory and agent log (a temporary directory), so that
 * tests never touch the host's `/run/table-allocator`. Disposal kills
 * every process still in the namespace (the host agent included) and
 * deletes it, also when the test failed.
 *
 * @module
 */

import { run, runOk, type RunResult } from "./spawn.ts";
import { IS_ROOT } from "./privilege.ts";

export { IS_ROOT, ROOT_SKIP_REASON } from "./privilege.ts";
export type { RunResult } from "./spawn.ts";

/** Addresses the namespace is set up with (documentation ranges only). */
export const NETNS_ADDRESSES = {
  ifname: "veth0",
  peer: "veth1",
  ipv4: "192.0.2.10",
  ipv4Prefix: 24,
  ipv4Netmask: "255.255.255.0",
  ipv4Network: "192.0.2.0/24",
  ipv6: "2001:db8:1:2::10",
  ipv6Prefix: 64,
  ipv6Network: "2001:db8:1:2::/64",
} as const;

/** A network namespace with a veth pair; dispose to remove it. */
export interface Netns extends AsyncDisposable {
  /** The namespace's name (`ta` and 6 random hex digits). */
  readonly name: string;
  /** Runs a command inside the namespace and waits for it. */
  run(
    command: string[],
    options?: { stdin?: string; env?: Record<string, string> },
  ): Promise<RunResult>;
  /** Runs `ip ARGS` inside the namespace; throws with stderr when it fails. */
  ip(...args: string[]): Promise<string>;
  /** Starts a command inside the namespace with piped stdout and stderr. */
  spawn(command: string[], options?: { env?: Record<string, string> }): Deno.ChildProcess;
  /** Pids of every process in the namespace. */
  pids(): Promise<number[]>;
  /** Pids in the namespace whose command line contains `text`. */
  pidsOf(text: string): Promise<number[]>;
  /** The temporary directory of the namespace's agent state file and log. */
  readonly dir: string;
  /** The environment every command gets (agent state directory and log). */
  readonly env: Record<string, string>;
  /** The agent's log so far ("" before an agent ran). */
  agentLog(): string;
}

/** Reads a process's command line, or "" when it is gone. */
function cmdline(pid: number): string {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ");
  } catch {
    return "";
  }
}

/** Creates an empty namespace with a random name, loopback up, and its handle. */
export async function addNetns(): Promise<Netns> {
  const name = `ta${crypto.randomUUID().replaceAll("-", "").slice(0, 6)}`;
  if (!IS_ROOT) throw new Error("createNetns() needs root");
  const dir = await Deno.makeTempDir({ prefix: `ta-${name}-` });
  const env = {
    TABLE_ALLOCATOR_RUN_DIR: `${dir}/run`,
    TABLE_ALLOCATOR_AGENT_LOG: `${dir}/agent.log`,
  };
  await runOk(["ip", "netns", "add", name]);
  const pids = async () =>
    (await run(["ip", "netns", "pids", name])).stdout.split(/\s+/).filter(Boolean).map(Number);
  const netns: Netns = {
    name,
    dir,
    env,
    run: (command, options) =>
      run(["ip", "netns", "exec", name, ...command], {
        ...options,
        env: { ...env, ...options?.env },
      }),
    ip: (...args) => runOk(["ip", "-n", name, ...args]),
    spawn: (command, options) =>
      new Deno.Command("ip", {
        args: ["netns", "exec", name, ...command],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        env: { DENO_NO_UPDATE_CHECK: "1", ...env, ...options?.env },
      }).spawn(),
    pids,
    pidsOf: async (text) => (await pids()).filter((pid) => cmdline(pid).includes(text)),
    agentLog: () => {
      try {
        return Deno.readTextFileSync(env.TABLE_ALLOCATOR_AGENT_LOG);
      } catch {
        return "";
      }
    },
    async [Symbol.asyncDispose]() {
      // Deleting a namespace does not end its processes: kill them, and wait until they are gone.
      for (let i = 0; i < 100; i++) {
        const left = await pids();
        if (left.length === 0) break;
        for (const pid of left) {
          try {
            Deno.kill(pid, "SIGKILL");
          } catch { /* already gone */ }
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      await run(["ip", "netns", "del", name]);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  try {
    await netns.ip("link", "set", "lo", "up");
  } catch (error) {
    await netns[Symbol.asyncDispose]();
    throw error;
  }
  return netns;
}

/**
 * Creates a namespace with loopback up and a veth pair `veth0`/`veth1`,
 * both up, `veth0` holding {@link NETNS_ADDRESSES}' IPv4 and IPv6 address.
 */
export async function createNetns(): Promise<Netns> {
  const a = NETNS_ADDRESSES;
  const netns = await addNetns();
  try {
    await netns.ip("link", "add", a.ifname, "type", "veth", "peer", "name", a.peer);
    await netns.ip("link", "set", a.ifname, "up");
    await netns.ip("link", "set", a.peer, "up");
    await netns.ip("addr", "add", `${a.ipv4}/${a.ipv4Prefix}`, "dev", a.ifname);
    await netns.ip("-6", "addr", "add", `${a.ipv6}/${a.ipv6Prefix}`, "dev", a.ifname, "nodad");
  } catch (error) {
    await netns[Symbol.asyncDispose]();
    throw error;
  }
  return netns;
}

/**
 * Moves the peer end (`veth1`) of a {@link createNetns} namespace into a
 * namespace of its own, up, with `addresses` (e.g. `192.0.2.1/24`): the
 * other host of the link, for a DHCP server or a router.
 */
export async function createPeerNetns(ns: Netns, ...addresses: string[]): Promise<Netns> {
  const peer = await addNetns();
  try {
    await ns.ip("link", "set", NETNS_ADDRESSES.peer, "netns", peer.name);
    await peer.ip("link", "set", NETNS_ADDRESSES.peer, "up");
    for (const address of addresses) {
      const v6 = address.includes(":");
      await peer.ip(
        ...(v6 ? ["-6"] : ["-4"]),
        "addr",
        "add",
        address,
        "dev",
        NETNS_ADDRESSES.peer,
        ...(v6 ? ["nodad"] : []),
      );
    }
  } catch (error) {
    await peer[Symbol.asyncDispose]();
    throw error;
  }
  return peer;
}

/** Path of client.ts, for running the client as a command. */
export const CLIENT_PATH = new URL("../../client.ts", import.meta.url).pathname;

/** The command line that runs the client with `args` (as a hook would). */
export function clientCommand(...args: string[]): string[] {
  return [Deno.execPath(), "run", "--allow-all", CLIENT_PATH, ...args];
}

/**
 * Polls `probe` every 50 ms until it returns a value other than
 * undefined/false, and returns it; throws `what` after `timeoutMs`.
 */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 5000,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
