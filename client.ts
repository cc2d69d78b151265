/**
 * table_allocator_client: asks the table_allocator server for a routing
 * table for an interface address, prints it (0 when there is none), and
 * keeps the lease and its routing rules from the background until the
 * address or the link goes away. A drop-in replacement for the original C
 * client: same flags, same output, same wire protocol (see
 * `docs/client.md`).
 *
 * @module
 */

import { resolve } from "node:path";
import { Errno, ErrnoError, ifNameToIndex, setCloseOnExec } from "./ffi/libc.ts";
import { Logger } from "./src/log/logger.ts";
import { AddrFamily } from "./src/net/family.ts";
import { NetlinkSocket } from "./src/netlink/connection.ts";
import { groupMask, RtnlGroup } from "./src/netlink/message.ts";
import { AbstractDatagramSocket } from "./src/unix/abstract_socket.ts";
import { type Handover, startBackground, takeHandover } from "./src/client/background.ts";
import {
  CLIENT_VERSION,
  type ClientOptions,
  identityName,
  parseClientArgs,
  USAGE,
  UsageError,
} from "./src/client/options.ts";
import { askRunningClient, releaseIdentity } from "./src/client/peer.ts";
import { Poller } from "./src/client/poller.ts";
import { RuleKeeper } from "./src/client/rules.ts";
import { ClientSession } from "./src/client/session.ts";

const PROGRAM = "table_allocator_client";
const encoder = new TextEncoder();

function write(file: { writeSync(p: Uint8Array): number }, text: string): void {
  const bytes = encoder.encode(text);
  for (let done = 0; done < bytes.byteLength;) done += file.writeSync(bytes.subarray(done));
}

function usageError(message: string): number {
  write(Deno.stderr, `${PROGRAM}: ${message}\n${USAGE}`);
  return 2;
}

/** Runs `onSignal` on SIGTERM, SIGINT and SIGHUP until disposed. */
function onSignals(onSignal: (signal: Deno.Signal) => void): Disposable {
  const signals: Deno.Signal[] = ["SIGTERM", "SIGINT", "SIGHUP"];
  const handlers = signals.map((signal) => {
    const handler = () => onSignal(signal);
    Deno.addSignalListener(signal, handler);
    return [signal, handler] as const;
  });
  return {
    [Symbol.dispose]() {
      for (const [signal, handler] of handlers) Deno.removeSignalListener(signal, handler);
    },
  };
}

/** Notification groups that tell this identity's link or address is gone. */
function watchGroups(family: AddrFamily): number {
  if (family === AddrFamily.INET) return groupMask([RtnlGroup.LINK, RtnlGroup.IPV4_IFADDR]);
  if (family === AddrFamily.INET6) return groupMask([RtnlGroup.LINK, RtnlGroup.IPV6_IFADDR]);
  return groupMask([RtnlGroup.LINK]);
}

interface Context {
  options: ClientOptions;
  ifindex: number;
  logger: Logger;
  poller: Poller;
}

/**
 * Runs the client with command-line arguments and resolves with the exit
 * status. `-h` prints usage on stdout; bad arguments print a message and
 * usage on stderr and give 2.
 */
export async function main(args: string[]): Promise<number> {
  let invocation;
  try {
    invocation = parseClientArgs(args);
  } catch (error) {
    if (error instanceof UsageError) return usageError(error.message);
    throw error;
  }
  if (invocation.kind === "help") {
    write(Deno.stdout, USAGE);
    return 0;
  }
  if (invocation.kind === "version") {
    write(Deno.stdout, `${CLIENT_VERSION}\n`);
    return 0;
  }
  const options = invocation.options;
  if (options.logPath !== undefined) options.logPath = resolve(options.logPath);
  const ifindex = ifNameToIndex(options.ifname);
  if (ifindex === 0) return usageError(`interface "${options.ifname}" does not exist`);
  let logger: Logger;
  try {
    logger = new Logger({ program: PROGRAM, logPath: options.logPath, syslog: options.syslog });
  } catch (error) {
    write(Deno.stderr, `${PROGRAM}: ${(error as Error).message}\n`);
    return 1;
  }
  using poller = new Poller();
  const context: Context = { options, ifindex, logger, poller };
  try {
    const handover = takeHandover();
    if (handover) return await runBackground(context, handover);
    if (options.release) return await runRelease(context);
    return await runRequest(context);
  } catch (error) {
    logger.error("client failed", {
      identity: identityName(options),
      reason: (error as Error).message,
    });
    if (options.logPath !== undefined || options.syslog) {
      write(Deno.stderr, `${PROGRAM}: ${(error as Error).message}\n`);
    }
    return 1;
  } finally {
    logger.close();
  }
}

/** Logs an error and, when the log is not stderr, also says it on stderr. */
function report(context: Context, message: string, fields: Record<string, string | number>) {
  context.logger.error(message, fields);
  if (context.options.logPath !== undefined || context.options.syslog) {
    const detail = Object.entries(fields).map(([k, v]) => ` ${k}=${v}`).join("");
    write(Deno.stderr, `${PROGRAM}: ${message}${detail}\n`);
  }
}

function ruleKeeper(options: ClientOptions): RuleKeeper | null {
  return options.family === AddrFamily.UNSPEC ? null : new RuleKeeper(NetlinkSocket.open());
}

/** A lease request, as a hook runs it. */
async function runRequest(context: Context): Promise<number> {
  const { options, logger, poller } = context;
  const name = identityName(options);
  let socket: AbstractDatagramSocket;
  try {
    socket = AbstractDatagramSocket.bind(name, { passCredentials: true });
  } catch (error) {
    if (!(error instanceof ErrnoError && error.errno === Errno.EADDRINUSE)) throw error;
    write(Deno.stdout, `${await askRunningClient(options, poller, logger)}\n`);
    return 0;
  }
  using _socket = socket;
  using events = NetlinkSocket.open(watchGroups(options.family));
  const rules = ruleKeeper(options);
  using _rules = rules;
  const session = new ClientSession({ ...context, socket, events, rules });
  const abort = new AbortController();
  using _signals = onSignals((signal) => {
    session.stop(`signal ${signal}`);
    abort.abort();
  });
  logger.info("requesting a lease", { identity: name, server: options.destination });
  const result = await session.acquire();
  switch (result.kind) {
    case "error":
      report(context, "the server refused the lease", {
        identity: name,
        error: result.code,
        reason: result.message,
      });
      write(Deno.stdout, "0\n");
      return 0;
    case "none":
      logger.warn("no lease", { identity: name, reason: result.reason });
      write(Deno.stdout, "0\n");
      return 0;
    case "stopped":
      logger.info("stopped before a lease was granted", { identity: name, reason: result.reason });
      session.acknowledgeReleaseWithoutLease();
      write(Deno.stdout, "0\n");
      return 0;
  }
  const { lease } = result;
  logger.info("lease granted", { identity: name, table: lease.table });
  if (options.foreground) {
    write(Deno.stdout, `${lease.table}\n`);
    return await session.hold(lease);
  }
  const handover = await startBackground(
    import.meta.url,
    options,
    { socketFd: socket.fd, netlinkFd: events.fd, lease },
    abort.signal,
  );
  if (handover.ok) {
    write(Deno.stdout, `${lease.table}\n`);
    logger.info("moved to the background", { identity: name, table: lease.table });
    return 0;
  }
  // The lease is still ours alone: undo what the background process may have done.
  const interrupted = abort.signal.aborted;
  if (!interrupted) {
    report(context, "cannot move to the background; releasing the lease", {
      identity: name,
      table: lease.table,
      reason: handover.reason,
    });
  }
  const status = await releaseIdentity({ ...context, rules, own: socket });
  write(Deno.stdout, "0\n");
  return interrupted ? status : 1;
}

/** The detached process: takes over the lease from the foreground one. */
async function runBackground(context: Context, handover: Handover): Promise<number> {
  const { options, logger } = context;
  let socket: AbstractDatagramSocket, events: NetlinkSocket, rules: RuleKeeper | null;
  try {
    socket = AbstractDatagramSocket.adopt(handover.socketFd, identityName(options), {
      passCredentials: true,
    });
    setCloseOnExec(socket.fd, true);
    events = NetlinkSocket.adopt(handover.netlinkFd);
    setCloseOnExec(events.fd, true);
    rules = ruleKeeper(options);
  } catch (error) {
    write(Deno.stdout, `error ${(error as Error).message}\n`);
    return 1;
  }
  using _socket = socket;
  using _events = events;
  using _rules = rules;
  const session = new ClientSession({ ...context, socket, events, rules });
  using _signals = onSignals((signal) => session.stop(`signal ${signal}`));
  return await session.hold(handover.lease, () => {
    try {
      write(Deno.stdout, "ok\n");
    } catch {
      // The foreground process is gone (killed): carry on holding the lease.
    }
    logger.info("running in the background", { ...session.fields, pid: Deno.pid });
  });
}

/** `-r`: end a running client for the identity, delete its rules, release. */
async function runRelease(context: Context): Promise<number> {
  let own: AbstractDatagramSocket | null = null;
  try {
    own = AbstractDatagramSocket.bind(identityName(context.options));
  } catch (error) {
    if (!(error instanceof ErrnoError && error.errno === Errno.EADDRINUSE)) throw error;
  }
  using _own = own;
  const rules = ruleKeeper(context.options);
  using _rules = rules;
  return await releaseIdentity({ ...context, rules, own });
}

if (import.meta.main) Deno.exit(await main(Deno.args));
