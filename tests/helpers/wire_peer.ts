/**
 * A v1 peer process (`peer_cli.ts`) run as another user, for tests of what
 * the server lets each uid do: the uid the server sees is then the
 * kernel's, not a claim. Staged with `stageAsUser()` (CI's clone may be
 * readable by root only), optionally inside a network namespace. Unlike
 * the agent tests' `peer.ts`, which prints everything it receives, this one
 * pairs each request with its reply and can flood without reading any reply
 * (a socket whose queue fills up).
 *
 * ```ts
 * await using staged = await stagePeer();
 * await using nobody = startPeer(staged, server.socketName, { netns: netns.name });
 * const reply = await nobody.call(requestBody("192.0.2.10"));
 * ```
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { NOBODY, stageAsUser, type StagedProgram } from "./as_user.ts";
import { denoRun } from "./spawn.ts";

const PEER_CLI = fileURLToPath(new URL("./peer_cli.ts", import.meta.url));

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** A running peer; dispose to end it. */
export interface Peer extends AsyncDisposable {
  /** Sends one datagram and resolves with the parsed reply, or null when none came in 3 s. */
  call(payload: string): Promise<Record<string, unknown> | null>;
  /** Sends `count` datagrams without reading any reply, the payloads in turn. */
  flood(count: number, ...payloads: string[]): Promise<void>;
}

/** Stages the peer for `uid`. */
export function stagePeer(uid = NOBODY): Promise<StagedProgram> {
  return stageAsUser("tests/helpers/peer_cli.ts", uid);
}

/**
 * Starts a peer talking to `server`, autobound unless `name` is given: the
 * staged copy as its user, or (`staged` undefined) the checkout's as root.
 */
export function startPeer(
  staged: StagedProgram | undefined,
  server: string,
  options: { name?: string; netns?: string } = {},
): Peer {
  const peerArgs = [server, options.name ?? "-"];
  let argv = staged ? staged.command(...peerArgs) : denoRun(PEER_CLI, ...peerArgs);
  if (options.netns) argv = ["ip", "netns", "exec", options.netns, ...argv];
  const [program, ...args] = argv;
  const child = new Deno.Command(program, {
    args,
    cwd: staged?.runOptions.cwd,
    env: { DENO_NO_UPDATE_CHECK: "1", ...staged?.runOptions.env },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
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
      if (done) throw new Error(`the peer (uid ${staged?.uid ?? 0}) exited: ${stderr}`);
      pending += value;
    }
  };
  return {
    async call(payload) {
      await writer.write(encoder.encode(`${payload}\n`));
      return JSON.parse(await line());
    },
    async flood(count, ...payloads) {
      await writer.write(encoder.encode(`flood ${count} ${payloads.join("\t")}\n`));
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
}
