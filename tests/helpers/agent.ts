/**
 * Helpers for the host agent's end-to-end tests: stand-in processes
 * (`peer.ts`: a C-like server, a squatter, a silent name, a client that
 * sends by hand) inside a namespace, as root or as another user (a copy
 * staged with `stageAsUser()`); the names bound in a namespace; the
 * agent's processes and answers.
 *
 * Every process started here runs inside the test's namespace, so the
 * namespace's disposal kills it, also when the test fails.
 *
 * @module
 */

import type { StagedProgram } from "./as_user.ts";
import { type Netns, waitFor } from "./netns.ts";
import { denoRun } from "./spawn.ts";

/** The stand-in's module, for {@link startPeer} and for `stageAsUser()`. */
export const PEER_MODULE = "tests/helpers/peer.ts";
const PEER_PATH = new URL("./peer.ts", import.meta.url).pathname;

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
  /** Run as another user: `stageAsUser(PEER_MODULE)` made a copy that user can read. */
  as?: StagedProgram;
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
  const command = options.as ? options.as.command(...args) : denoRun(PEER_PATH, ...args);
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", ns.name, ...command],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { DENO_NO_UPDATE_CHECK: "1", ...ns.env, ...options.as?.runOptions.env },
    cwd: options.as?.runOptions.cwd,
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

/** The abstract names bound in the namespace (`/proc/net/unix`, padding removed). */
export async function boundNames(ns: Netns): Promise<string[]> {
  const { stdout } = await ns.run(["cat", "/proc/net/unix"]);
  return stdout.split("\n").slice(1).map((line) => line.trim().split(/\s+/)[7])
    .filter((path): path is string => path?.startsWith("@") === true)
    .map((path) => path.replace(/@+$/, "").slice(1));
}

/**
 * The identities of interface `ifname` held in the namespace: their padded
 * names `<ifname>-<address>-<family>` are bound while the agent (or a
 * foreground client) holds them.
 */
export async function heldOn(ns: Netns, ifname: string): Promise<string[]> {
  return (await boundNames(ns)).filter((name) =>
    name.startsWith(`${ifname}-`) && /-(0|2|10)$/.test(name)
  );
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
