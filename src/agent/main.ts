/**
 * `table_allocator_client --agent`: the host agent, one long-running
 * process per network namespace that holds every identity handed to it.
 *
 * Exactly one survives concurrent starts: only one bind of the agent's
 * name can succeed, and the others exit quietly (under systemd, one that
 * finds an agent started on demand reports ready and waits to take over).
 * At start it takes back the leases of its state file: every identity
 * whose address still exists is held again (rules checked, lease
 * refreshed), the others are released. SIGTERM and SIGINT release every
 * lease and remove every rule, as each client's own end did.
 *
 * @module
 */

import { Errno, ErrnoError, ifNameToIndex } from "../../ffi/libc.ts";
import { Logger } from "../log/logger.ts";
import { notifySystemd } from "../server/notify.ts";
import { AbstractDatagramSocket } from "../unix/abstract_socket.ts";
import { includesAddress, type InterfaceAddress, listAddresses } from "./addresses.ts";
import { AgentControl } from "./control.ts";
import { HoldingCore } from "./core.ts";
import { boundNameUid } from "./foreign.ts";
import { identityName } from "../protocol/v1.ts";
import { agentSocketName, MAX_AGENT_MESSAGE_BYTES } from "./protocol.ts";
import { PROGRAM } from "../client/options.ts";
import { Sinks } from "./sinks.ts";
import {
  type HeldRecord,
  netnsCookie,
  readState,
  stateFilePath,
  writeState,
} from "./state_file.ts";
import { errorMessage } from "../util/errors.ts";
import { sleep } from "../util/timer.ts";

/** The agent's own log: stderr, `-l PATH` or `-s`. */
export interface AgentOptions {
  logPath: string | undefined;
  syslog: boolean;
}

/** How often an agent started by systemd tries to take over from one started on demand. */
const TAKEOVER_RETRY_MS = 1000;

/** Runs the agent until SIGTERM/SIGINT; resolves with the exit status. */
export async function runAgent(options: AgentOptions): Promise<number> {
  let log: Logger;
  try {
    log = new Logger({ program: PROGRAM, logPath: options.logPath, syslog: options.syslog });
  } catch (error) {
    console.error(`${PROGRAM} --agent: ${errorMessage(error)}`);
    return 1;
  }
  try {
    const name = agentSocketName();
    const socket = await bindAgentName(name, log);
    if (typeof socket === "number") return socket;
    using _socket = socket;
    return await serve(socket, name, log, options);
  } catch (error) {
    log.error("the agent failed", { reason: errorMessage(error) });
    return 1;
  } finally {
    log.close();
  }
}

/** Binds the agent's name, or says why another process keeps it (an exit status). */
async function bindAgentName(name: string, log: Logger): Promise<AbstractDatagramSocket | number> {
  let waiting = false;
  for (;;) {
    try {
      return AbstractDatagramSocket.bind(name, {
        passCredentials: true,
        receiveBufferSize: MAX_AGENT_MESSAGE_BYTES,
      });
    } catch (error) {
      if (!(error instanceof ErrnoError && error.errno === Errno.EADDRINUSE)) throw error;
    }
    const owner = await boundNameUid(name).catch(() => undefined);
    if (owner !== 0 && owner !== null && owner !== undefined) {
      log.error("the agent's name is held by a process that is not root: no agent can run", {
        socket: `@${name}`,
        uid: owner,
      });
      return 1;
    }
    // Another agent won the race (or runs already): it serves every client.
    if (!Deno.env.get("NOTIFY_SOCKET")) return 0;
    if (!waiting) {
      waiting = true;
      log.info("another agent holds the name; waiting to take over", { socket: `@${name}` });
      notifySystemd(`READY=1\nSTATUS=another agent serves @${name}; waiting to take over`);
    }
    await sleep(TAKEOVER_RETRY_MS);
  }
}

async function serve(
  socket: AbstractDatagramSocket,
  name: string,
  log: Logger,
  options: AgentOptions,
): Promise<number> {
  const statePath = stateFilePath();
  const cookie = netnsCookie();
  const sinks = new Sinks(log, options);
  using core = HoldingCore.open({
    log,
    sinks,
    persist: (holdings) => {
      const records: HeldRecord[] = holdings.filter((h) => h.state === "held").map((h) => ({
        spec: h.spec,
        table: h.table,
      }));
      try {
        writeState(statePath, records, cookie);
      } catch (error) {
        log.error("cannot write the state file", {
          path: statePath,
          reason: errorMessage(error),
        });
      }
    },
  });
  const control = new AgentControl(core, socket, log);
  let stopping: Promise<void> | null = null;
  const stop = (signal: Deno.Signal) => {
    stopping ??= (async () => {
      log.info("stopping: releasing every lease", { signal, identities: core.holdings.length });
      control.stopping();
      await core.releaseAll(`signal ${signal}`);
      core.stop();
    })();
  };
  const signals: Array<[Deno.Signal, () => void]> = [
    ["SIGTERM", () => stop("SIGTERM")],
    ["SIGINT", () => stop("SIGINT")],
    // An agent has no terminal; SIGHUP must not end it (and every lease with it).
    ["SIGHUP", () => log.info("SIGHUP ignored")],
  ];
  for (const [signal, handler] of signals) Deno.addSignalListener(signal, handler);
  try {
    const running = core.run();
    const taken = await recover(core, statePath, cookie, log);
    core.persist();
    // Clients are served once the state file's leases are back (their hand-offs wait in the queue).
    core.watch(socket.fd, () => control.onReadable());
    notifySystemd(`READY=1\nSTATUS=holding ${core.holdings.length} identities`);
    log.info("agent ready", {
      socket: `@${name}`,
      pid: Deno.pid,
      state: statePath,
      identities: taken,
    });
    await running;
    await stopping;
    sinks.closeAll();
    log.info("agent stopped");
    return 0;
  } finally {
    for (const [signal, handler] of signals) Deno.removeSignalListener(signal, handler);
  }
}

/**
 * Takes back the leases of the state file: held again when the address is
 * still on its interface, released otherwise. Returns how many were taken back.
 */
async function recover(
  core: HoldingCore,
  path: string,
  cookie: string,
  log: Logger,
): Promise<number> {
  let records: HeldRecord[];
  try {
    const state = readState(path);
    if (state.records.length > 0 && state.netnsCookie !== cookie) {
      log.warn("ignoring the state file of an earlier network namespace of the same inode", {
        path,
      });
      return 0;
    }
    for (const error of state.errors) log.warn("skipping an entry of the state file", { error });
    records = state.records;
  } catch (error) {
    log.error(`${errorMessage(error)}; starting without it`);
    return 0;
  }
  const lists = new Map<number, Promise<InterfaceAddress[] | null>>();
  const addressesOf = (family: number) => {
    if (!lists.has(family)) lists.set(family, listAddresses(family).catch(() => null));
    return lists.get(family)!;
  };
  let taken = 0;
  const releases: Promise<boolean>[] = [];
  for (const { spec, table } of records) {
    const ifindex = ifNameToIndex(spec.identity.ifname);
    let holding;
    try {
      holding = core.add(spec, ifindex);
    } catch (error) {
      log.warn("not taking back a lease of the state file", {
        identity: identityName(spec.identity),
        table,
        reason: errorMessage(error),
      });
      continue;
    }
    let present = ifindex !== 0;
    if (present && holding.address) {
      const list = await addressesOf(spec.identity.family);
      // Without a list, keep the lease: a wrong release is worse than a late one.
      present = list === null || includesAddress(list, ifindex, holding.address);
    }
    if (present) {
      await holding.adopt(table);
      taken++;
    } else {
      releases.push(holding.releaseRecovered(table, "its address went away while no agent ran"));
    }
  }
  await Promise.all(releases);
  return taken;
}
