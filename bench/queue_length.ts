/**
 * The kernel's queue for a unix datagram socket, `net.unix.max_dgram_qlen`,
 * decides how many clients may wait on the server before senders are
 * refused (EAGAIN). The kernel's default is 10; systemd raises it to 512
 * at boot, so a server on a systemd host runs with 512, and one in a
 * network namespace made later (or on a host without systemd) with 10.
 * This machine's benchmark runs in a container without systemd: each
 * figure says which queue length it ran with, and the throughput rows run
 * with both, each in a network namespace of its own with the value set
 * there (the host's value is left alone). The servers keep that value
 * (`socket_queue_length` 0, which `startServer` writes for a server in
 * the namespace it runs in), so that each row has the queue it names: by
 * default a server run as root raises its own socket's to 512.
 *
 * @module
 */

import { addNetns } from "../tests/helpers/netns.ts";

/** What systemd sets `net.unix.max_dgram_qlen` to at boot. */
export const SYSTEMD_DGRAM_QLEN = 512;
/** Set inside the namespace, so that a script re-run there knows it is. */
const QLEN_ENV = "TA_BENCH_DGRAM_QLEN";

/**
 * Runs `handler` at SIGINT or SIGTERM until disposed: without a listener
 * the runtime exits at once, and no `finally` cleans up after the run.
 */
export function onInterrupt(handler: () => void): Disposable {
  const signals = ["SIGINT", "SIGTERM"] as const;
  for (const signal of signals) Deno.addSignalListener(signal, handler);
  return {
    [Symbol.dispose]() {
      for (const signal of signals) Deno.removeSignalListener(signal, handler);
    },
  };
}

/** Whether this process is the re-run of {@link runWithQueueLength} (inside its namespace). */
export function insideQueueNamespace(): boolean {
  return Deno.env.get(QLEN_ENV) !== undefined;
}

/**
 * Runs `deno run -A script ...args` in a new network namespace whose
 * `net.unix.max_dgram_qlen` is `qlen`, its stderr passed through; returns
 * its stdout. Needs root; the namespace is removed afterwards.
 */
export async function runWithQueueLength(
  qlen: number,
  script: string,
  args: string[],
): Promise<string> {
  await using ns = await addNetns();
  await ns.run(["sysctl", "-q", "-w", `net.unix.max_dgram_qlen=${qlen}`]).then((r) => {
    if (r.code !== 0) throw new Error(`cannot set net.unix.max_dgram_qlen: ${r.stderr}`);
  });
  const child = ns.spawn([Deno.execPath(), "run", "-A", script, ...args], {
    env: { [QLEN_ENV]: String(qlen) },
  });
  // Interrupted (Ctrl-C, a kill), the run inside is stopped and the namespace still removed.
  using _interrupt = onInterrupt(() => {
    try {
      child.kill("SIGTERM");
    } catch { /* ended already */ }
  });
  const [out] = await Promise.all([
    new Response(child.stdout).text(),
    child.stderr.pipeTo(Deno.stderr.writable, { preventClose: true }),
  ]);
  const status = await child.status;
  if (!status.success) throw new Error(`${script} in the namespace exited with ${status.code}`);
  return out;
}
