/**
 * A fresh network namespace per end-to-end test: a random short name, a
 * veth pair inside it with an IPv4 and an IPv6 address on the first end,
 * and helpers to run commands there. Disposal kills every process still in
 * the namespace (background clients included) and deletes it, also when
 * the test failed.
 *
 * @module
 */

/** Whether the tests run as root (needed for namespaces and rules). */
export const IS_ROOT = Deno.uid() === 0;

/** The reason printed by tests skipped when not root. */
export const ROOT_SKIP_REASON = "needs root: network namespaces and routing rules";

/** Output of a finished command. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

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
}

const decoder = new TextDecoder();

async function exec(command: string, args: string[], stdin?: string, env?: Record<string, string>) {
  const child = new Deno.Command(command, {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env,
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const out = await child.output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

async function must(command: string, args: string[]): Promise<string> {
  const result = await exec(command, args);
  if (result.code !== 0) {
    throw new Error(
      `${command} ${args.join(" ")} failed (${result.code}): ${result.stderr.trim()}`,
    );
  }
  return result.stdout;
}

/** Reads a process's command line, or "" when it is gone. */
function cmdline(pid: number): string {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ");
  } catch {
    return "";
  }
}

/**
 * Creates a namespace with loopback up and a veth pair `veth0`/`veth1`,
 * both up, `veth0` holding {@link NETNS_ADDRESSES}' IPv4 and IPv6 address.
 */
export async function createNetns(): Promise<Netns> {
  const name = `ta${crypto.randomUUID().replaceAll("-", "").slice(0, 6)}`;
  const a = NETNS_ADDRESSES;
  await must("ip", ["netns", "add", name]);
  const pids = async () =>
    (await exec("ip", ["netns", "pids", name])).stdout.split(/\s+/).filter(Boolean).map(Number);
  const netns: Netns = {
    name,
    run: (command, options) =>
      exec("ip", ["netns", "exec", name, ...command], options?.stdin, options?.env),
    ip: (...args) => must("ip", ["-n", name, ...args]),
    spawn: (command, options) =>
      new Deno.Command("ip", {
        args: ["netns", "exec", name, ...command],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        env: options?.env,
      }).spawn(),
    pids,
    pidsOf: async (text) => (await pids()).filter((pid) => cmdline(pid).includes(text)),
    async [Symbol.asyncDispose]() {
      for (const pid of await pids()) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* already gone */ }
      }
      await exec("ip", ["netns", "del", name]);
    },
  };
  try {
    await netns.ip("link", "set", "lo", "up");
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
