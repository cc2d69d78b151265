/**
 * Helpers for the host agent's end-to-end tests: stand-in processes
 * (`peer.ts`: a C-like server, a squatter, a silent name, a client that
 * sends by hand) inside a namespace, as root or as uid 65534; the names
 * bound in a namespace; the agent's processes and status.
 *
 * Every process started here runs inside the test's namespace, so the
 * namespace's disposal kills it, also when the test fails.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { type Netns, waitFor } from "./netns.ts";

/** The checkout's top directory. */
const REPO = fileURLToPath(new URL("../..", import.meta.url)).replace(/\/$/, "");

/** One datagram a peer received. */
export interface PeerDatagram {
  from: string;
  uid: number | undefined;
  pid: number | undefined;
  data: string;
  /** Epoch milliseconds. */
  at: number;
}

/** A running peer.ts. */
export interface Peer {
  /** Every datagram received so far. */
  readonly received: PeerDatagram[];
  /**
   * Sends `data` (JSON-encoded when not a string) to the padded name `to`;
   * resolves once it is in the receiver's queue, and rejects when it
   * could not be sent.
   */
  send(to: string, data: string | Record<string, unknown>): Promise<void>;
  /** Waits for a received datagram that matches (default: any); returns it. */
  next(match?: (dg: PeerDatagram) => boolean, timeoutMs?: number): Promise<PeerDatagram>;
  /** Kills the peer and waits for it. */
  stop(): Promise<void>;
}

/** How a peer runs. */
export interface PeerOptions {
  /** Run as uid and gid 65534 (`setpriv`), from a copy that user can read. */
  nobody?: boolean;
}

/**
 * Starts `peer.ts ARGS` inside the namespace and waits until its name is
 * bound. The namespace's disposal kills it if the test does not.
 */
export async function startPeer(
  ns: Netns,
  args: string[],
  options: PeerOptions = {},
): Promise<Peer> {
  const command = options.nobody
    ? [...await nobodyPrefix(ns), "tests/helpers/peer.ts", ...args]
    : [Deno.execPath(), "run", "--allow-all", `${REPO}/tests/helpers/peer.ts`, ...args];
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", ns.name, ...command],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: ns.env,
    cwd: options.nobody ? nobodyDir(ns) : undefined,
  }).spawn();
  const received: PeerDatagram[] = [];
  const confirmations: Array<{ sent?: string; sendError?: string }> = [];
  const waiters = new Set<() => void>();
  let ready!: () => void;
  let failed!: (error: Error) => void;
  const started = new Promise<void>((resolve, reject) => {
    ready = resolve;
    failed = reject;
  });
  let stderr = "";
  void (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) stderr += chunk;
  })();
  void (async () => {
    let buffer = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buffer += chunk;
      for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
        const line = JSON.parse(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 1);
        if (line.ready) ready();
        else if (line.from !== undefined) received.push(line);
        else confirmations.push(line);
        for (const wake of waiters) wake();
      }
    }
    failed(new Error(`peer ${args.join(" ")} exited: ${stderr}`));
    for (const wake of waiters) wake();
  })();
  const writer = child.stdin.getWriter();
  /** Waits until `ready()` is true, woken by every line the peer prints. */
  const until = async (what: string, ready: () => boolean, timeoutMs: number) => {
    const deadline = performance.now() + timeoutMs;
    while (!ready()) {
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`peer ${args[0]}: ${what} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        function done() {
          clearTimeout(timer);
          waiters.delete(done);
          resolve();
        }
        waiters.add(done);
      });
    }
  };
  await started;
  let sends = 0;
  return {
    received,
    async send(to, data) {
      const text = typeof data === "string" ? data : JSON.stringify(data);
      await writer.write(new TextEncoder().encode(`${JSON.stringify({ to, data: text })}\n`));
      const mine = sends++;
      await until("no confirmation of a send", () => confirmations.length > mine, 5000);
      const { sendError } = confirmations[mine];
      if (sendError) throw new Error(`peer ${args[0]}: cannot send to @${to}: ${sendError}`);
    },
    async next(match = () => true, timeoutMs = 5000) {
      let found: PeerDatagram | undefined;
      await until(
        "no matching datagram",
        () => (found = received.find(match)) !== undefined,
        timeoutMs,
      );
      return found!;
    },
    async stop() {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
      await writer.close().catch(() => {});
    },
  };
}

/** The directory of the copy that uid 65534 runs, inside the namespace's directory. */
function nobodyDir(ns: Netns): string {
  return `${ns.dir}/nobody`;
}

/**
 * Makes a copy of Deno and the sources a peer needs that uid 65534 can
 * read (the checkout may sit in a directory only root can enter), once
 * per namespace; returns the command prefix that runs a script of it.
 */
async function nobodyPrefix(ns: Netns): Promise<string[]> {
  const dir = nobodyDir(ns);
  const deno = `${dir}/deno`;
  try {
    await Deno.stat(deno);
  } catch {
    await Deno.mkdir(`${dir}/cache`, { recursive: true });
    // A hard link when the checkout and /tmp share a file system, else a copy.
    await Deno.link(Deno.execPath(), deno).catch(() => Deno.copyFile(Deno.execPath(), deno));
    for (const sub of ["ffi", "src", "config", "tests/helpers"]) {
      await copyTree(`${REPO}/${sub}`, `${dir}/${sub}`);
    }
    await Deno.chmod(ns.dir, 0o755);
    await chmodTree(dir);
    await Deno.chown(`${dir}/cache`, 65534, 65534);
  }
  return [
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--",
    "env",
    `DENO_DIR=${dir}/cache`,
    `HOME=${dir}/cache`,
    "DENO_NO_UPDATE_CHECK=1",
    deno,
    "run",
    "--allow-all",
    "--no-config",
  ];
}

async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (entry.isDirectory) await copyTree(`${from}/${entry.name}`, `${to}/${entry.name}`);
    else if (entry.isFile && entry.name.endsWith(".ts")) {
      await Deno.copyFile(`${from}/${entry.name}`, `${to}/${entry.name}`);
    }
  }
}

async function chmodTree(path: string): Promise<void> {
  const info = await Deno.stat(path);
  await Deno.chmod(path, info.isDirectory ? 0o755 : (info.mode! & 0o111 ? 0o755 : 0o644));
  if (!info.isDirectory) return;
  for await (const entry of Deno.readDir(path)) await chmodTree(`${path}/${entry.name}`);
}

/** The abstract names bound in the namespace (`/proc/net/unix`, padding removed). */
export async function boundNames(ns: Netns): Promise<string[]> {
  const { stdout } = await ns.run(["cat", "/proc/net/unix"]);
  return stdout.split("\n").slice(1).map((line) => line.trim().split(/\s+/)[7])
    .filter((path): path is string => path?.startsWith("@") === true)
    .map((path) => path.replace(/@+$/, "").slice(1));
}

/** Pids of the host agents in the namespace. */
export function agentPids(ns: Netns): Promise<number[]> {
  return ns.pidsOf("--agent");
}

/** Waits until the namespace's agent no longer binds `name` (it let the identity go). */
export async function waitUnbound(ns: Netns, name: string, timeoutMs = 5000): Promise<void> {
  await waitFor(
    `@${name} is let go`,
    async () => !(await boundNames(ns)).includes(name),
    timeoutMs,
  );
}

/** A message to the agent's socket from a peer; returns the parsed answer. */
export async function askAgent(
  peer: Peer,
  message: string | Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const before = peer.received.length;
  await peer.send("table-allocator-agent", message);
  const answer = await peer.next(
    (dg) => dg.from === "@table-allocator-agent" && peer.received.indexOf(dg) >= before,
  );
  return JSON.parse(answer.data);
}
