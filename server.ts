/**
 * table_allocator_server: hands out routing tables as leases over an
 * abstract unix datagram socket, a drop-in replacement for the original
 * table_allocator_server.
 *
 *     server.ts -c /etc/table-allocator/server.json
 *     server.ts --check -c /etc/table-allocator/server.json   # validate only
 *
 * @module
 */

import { parseFlags } from "./src/cli/flags.ts";
import { UsageError } from "./src/cli/usage.ts";
import { ConfigError, loadConfig } from "./config/config.ts";
import { ErrnoError, fixMallocMmapThreshold } from "./ffi/libc.ts";
import { Logger } from "./src/log/logger.ts";
import { Daemon } from "./src/server/daemon.ts";
import { SERVER_OWNER } from "./src/server/decide.ts";
import { SystemdNotifier } from "./src/server/notify.ts";
import type { ImportReport } from "./src/store/c_database_import.ts";
import { poolViews, statusLine } from "./src/server/views.ts";
import { familyName } from "./src/net/family.ts";
import { ServerMetrics } from "./src/metrics/server_metrics.ts";
import { Outputs } from "./src/outputs/outputs.ts";
import type { ServerConfig } from "./config/config.ts";
import { listAll } from "./src/store/lease_store.ts";
import type { LeaseStore } from "./src/store/lease_store.ts";
import { bindServerSocket, loadAuth, openStoreWhenReachable } from "./src/server/start.ts";
import type { AbstractDatagramSocket } from "./src/unix/abstract_socket.ts";
import { VERSION } from "./src/version.ts";
import { errorMessage } from "./src/util/errors.ts";

const PROGRAM = "table_allocator_server";

/** Blocks from this size get their own mapping, given back when freed (glibc's initial default). */
const MALLOC_MMAP_THRESHOLD = 128 * 1024;

const USAGE = `Usage: ${PROGRAM} -c CONFIG
       ${PROGRAM} --check -c CONFIG

Hands out routing table numbers as leases to (family, interface, address)
identities over an abstract unix datagram socket.

Options:
  -c, --config CONFIG  JSON config file (comments allowed), required
  -t, --check          validate CONFIG and exit: 0 when valid, 1 (with the
                       reason a start would give) when not
  -h, --help           print this help and exit
  -V, --version        print the version and exit
`;

/** Most skipped rows of an import logged one by one. */
const MAX_SKIPPED_LOGGED = 10;

/** Logs what the import of the original's database did. */
function logImport(logger: Logger, report: ImportReport): void {
  logger.info("imported the leases of the original server's database", {
    rows: report.rows,
    imported: report.imported,
    kept: report.kept,
    renewed: report.renewed,
    skipped: report.skipped.length,
  });
  for (const { reason } of report.skipped.slice(0, MAX_SKIPPED_LOGGED)) {
    logger.warn("row of RtTables not imported (it stays in RtTables)", { reason });
  }
  if (report.skipped.length > MAX_SKIPPED_LOGGED) {
    logger.warn("more rows of RtTables not imported", {
      count: report.skipped.length - MAX_SKIPPED_LOGGED,
    });
  }
}

/** Runs the server with command-line `args`; resolves to the exit code. */
export async function main(args: string[]): Promise<number> {
  let values: { config?: string; check?: boolean; help?: boolean; version?: boolean };
  try {
    // parseArgs' subset without node:util, whose loading is a tenth of the start.
    values = parseFlags(args, {
      config: { type: "string", short: "c" },
      check: { type: "boolean", short: "t" },
      help: { type: "boolean", short: "h" },
      version: { type: "boolean", short: "V" },
    }) as typeof values;
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`${PROGRAM}: ${error.message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.version) {
    console.log(`${PROGRAM} ${VERSION}`);
    return 0;
  }
  if (!values.config) {
    console.error(`${PROGRAM}: -c CONFIG is required\n\n${USAGE}`);
    return 2;
  }

  let config;
  try {
    config = await loadConfig(values.config);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`${PROGRAM}: ${error.message}`);
    return 1;
  }
  if (values.check) {
    // Ignored keys are not errors (the original ignored them), but a check shows them.
    for (const warning of config.warnings) console.error(`${PROGRAM}: warning: ${warning}`);
    console.log(`${PROGRAM}: config "${values.config}" is valid`);
    return 0;
  }

  const logOptions = (c: ServerConfig) => ({
    program: PROGRAM,
    logPath: c.logPath,
    syslog: c.doSyslog,
    level: c.logLevel,
  });
  let logger: Logger;
  try {
    logger = new Logger(logOptions(config));
  } catch (error) {
    console.error(`${PROGRAM}: ${errorMessage(error)}`);
    return 1;
  }
  for (const warning of config.warnings) logger.warn(warning, { config: values.config });
  // Before the store opens, so that SQLite's buffers follow it too.
  if (!fixMallocMmapThreshold(MALLOC_MMAP_THRESHOLD)) {
    logger.warn("malloc refused a fixed mmap threshold: memory after bursts stays higher");
  }

  let auth;
  try {
    auth = loadAuth(config);
  } catch (error) {
    logger.error(errorMessage(error));
    logger.close();
    return 1;
  }

  // SIGTERM while waiting for an unreachable store ends the wait.
  const opening = new AbortController();
  const abortOpening = () => opening.abort();
  Deno.addSignalListener("SIGTERM", abortOpening);
  Deno.addSignalListener("SIGINT", abortOpening);
  let store: LeaseStore | undefined;
  try {
    store = await openStoreWhenReachable(config, logger, opening.signal, {
      cImport: {
        tableTimeout: config.tableTimeout,
        owner: SERVER_OWNER,
        onImported: (report) => logImport(logger, report),
      },
    });
  } catch (error) {
    logger.error(errorMessage(error));
  } finally {
    Deno.removeSignalListener("SIGTERM", abortOpening);
    Deno.removeSignalListener("SIGINT", abortOpening);
  }
  if (!store) {
    logger.close();
    return opening.signal.aborted ? 0 : 1;
  }

  let socket: AbstractDatagramSocket;
  let socketQueue: number;
  try {
    ({ socket, queue: socketQueue } = bindServerSocket(config, logger));
  } catch (error) {
    const inUse = error instanceof ErrnoError && error.code === "EADDRINUSE";
    logger.error(
      inUse
        ? `Cannot bind socket @${config.socketPath}: the name is in use (is another server running in this network namespace?)`
        : `Cannot bind socket @${config.socketPath}: ${errorMessage(error)}`,
    );
    await store.close();
    logger.close();
    return 1;
  }

  const storeDescription = config.store.kind === "sqlite"
    ? `sqlite:${config.store.path}`
    : "postgres";
  const configPath = values.config;
  const metrics = new ServerMetrics();
  const notifier = new SystemdNotifier();
  // The outputs read the daemon's state through `daemon`, set once it is built.
  let daemon: Daemon | undefined;
  const outputs = new Outputs({ log: logger, metrics, snapshot: () => daemon!.snapshot() });
  const applyOutputs = (c: ServerConfig) =>
    outputs.apply(c.outputs, async () => {
      const bound = [];
      for await (const lease of listAll(store, { state: "bound" })) bound.push(lease);
      return bound;
    });
  try {
    daemon = await Daemon.create({
      config,
      store,
      socket,
      kernelQueue: socketQueue,
      logger,
      sharedStore: config.store.kind === "postgres",
      storeDescription,
      // The `eventlog` output writes the event lines, when the config lists it.
      logLeaseEvents: false,
      observers: [metrics, outputs],
      metrics,
      notifier,
      configPath,
      readConfig: () => loadConfig(configPath),
      reconfigureLog: (c) => logger.reconfigure(logOptions(c)),
      onConfig: applyOutputs,
      auth,
    });
    // Not before: the metrics file's first write needs the daemon's snapshot.
    await applyOutputs(config);
  } catch (error) {
    logger.error(`Cannot load the leases from the store: ${errorMessage(error)}`);
    await outputs.stop(0);
    socket.close();
    await store.close().catch(() => {});
    notifier[Symbol.dispose]();
    logger.close();
    return 1;
  }
  const running = daemon;
  const stop = () => running.stop();
  const reload = () => running.requestReload();
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  // SIGHUP re-reads the config (it used to end the server).
  Deno.addSignalListener("SIGHUP", reload);
  const { allocation } = running;
  const pools = allocation.pools.pools.map((p) =>
    `${p.name}/${familyName(p.family)}:${p.describe()}`
  );
  // A database deleted or replaced under the server: anything acknowledged
  // from now on would be lost. Stop, and exit non-zero so systemd restarts us.
  let lost = false;
  const unwatch = store.onFatal?.((error) => {
    lost = true;
    logger.error(`${error.message}; stopping`);
    running.stop();
  });
  logger.info("ready", {
    version: VERSION,
    socket: `@${config.socketPath}`,
    queue: socketQueue,
    store: storeDescription,
    pools: pools.join(","),
    leased: poolViews(allocation).reduce((n, p) => n + p.bound, 0) + allocation.outside,
    reservations: allocation.reservations.length,
    held: allocation.holds.length || undefined,
  });
  if (notifier.enabled && !notifier.ready(statusLine(allocation))) {
    logger.warn("cannot notify systemd: NOTIFY_SOCKET does not take the message", {
      socket: Deno.env.get("NOTIFY_SOCKET"),
    });
  }

  try {
    await running.run();
  } finally {
    unwatch?.();
    Deno.removeSignalListener("SIGTERM", stop);
    Deno.removeSignalListener("SIGINT", stop);
    Deno.removeSignalListener("SIGHUP", reload);
    notifier.send("STOPPING=1");
    await outputs.stop();
    socket.close();
    notifier[Symbol.dispose]();
    try {
      await store.close();
    } catch (error) {
      logger.error("cannot commit the last changes", { error: errorMessage(error) });
    }
    logger.info("stopped", running.stats as unknown as Record<string, number>);
    logger.close();
  }
  return lost ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
