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

import { parseCommandLine, UsageError } from "./src/cli/cli.ts";
import { ConfigError, loadConfig } from "./config/config.ts";
import { ErrnoError } from "./ffi/libc.ts";
import { Logger } from "./src/log/logger.ts";
import { MAX_REQUEST_BYTES } from "./src/protocol/v1.ts";
import { Daemon } from "./src/server/daemon.ts";
import { SERVER_OWNER } from "./src/server/decide.ts";
import { notifySystemd } from "./src/server/notify.ts";
import type { ImportReport } from "./src/store/c_database_import.ts";
import type { LeaseStore } from "./src/store/lease_store.ts";
import { openStore } from "./src/store/open_store.ts";
import { AbstractDatagramSocket } from "./src/unix/abstract_socket.ts";
import { VERSION } from "./src/version.ts";
import { errorMessage } from "./src/util/errors.ts";

const PROGRAM = "table_allocator_server";

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
  let values;
  try {
    ({ values } = parseCommandLine({
      args,
      options: {
        config: { type: "string", short: "c" },
        check: { type: "boolean", short: "t" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
      },
      allowPositionals: false,
    }));
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
    console.log(`${PROGRAM}: config "${values.config}" is valid`);
    return 0;
  }

  let logger: Logger;
  try {
    logger = new Logger({
      program: PROGRAM,
      logPath: config.logPath,
      syslog: config.doSyslog,
      level: config.logLevel,
    });
  } catch (error) {
    console.error(`${PROGRAM}: ${errorMessage(error)}`);
    return 1;
  }
  for (const warning of config.warnings) logger.warn(warning, { config: values.config });

  let store: LeaseStore;
  try {
    store = await openStore(config.store, {
      cImport: {
        tableTimeout: config.tableTimeout,
        owner: SERVER_OWNER,
        onImported: (report) => logImport(logger, report),
      },
    });
  } catch (error) {
    logger.error(errorMessage(error));
    logger.close();
    return 1;
  }

  let socket: AbstractDatagramSocket;
  try {
    socket = AbstractDatagramSocket.bind(config.socketPath, {
      passCredentials: true,
      receiveBufferSize: MAX_REQUEST_BYTES,
    });
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
  let daemon: Daemon;
  try {
    daemon = await Daemon.create({
      config,
      store,
      socket,
      logger,
      sharedStore: config.store.kind === "postgres",
      storeDescription,
    });
  } catch (error) {
    logger.error(`Cannot load the leases from the store: ${errorMessage(error)}`);
    socket.close();
    await store.close().catch(() => {});
    logger.close();
    return 1;
  }
  const stop = () => daemon.stop();
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  const pools = daemon.allocation.pools.pools.map((p) => `${p.name}/${p.family}:${p.describe()}`);
  logger.info("ready", {
    version: VERSION,
    socket: `@${config.socketPath}`,
    store: storeDescription,
    pools: pools.join(","),
    leased: daemon.allocation.pools.pools.reduce((n, p) => n + p.used, 0) +
      daemon.allocation.outside,
    reservations: daemon.allocation.reservations.length,
  });
  try {
    notifySystemd("READY=1");
  } catch (error) {
    logger.warn("cannot notify systemd", { error: errorMessage(error) });
  }

  try {
    await daemon.run();
  } finally {
    Deno.removeSignalListener("SIGTERM", stop);
    Deno.removeSignalListener("SIGINT", stop);
    socket.close();
    try {
      await store.close();
    } catch (error) {
      logger.error("cannot commit the last changes", { error: errorMessage(error) });
    }
    logger.info("stopped", daemon.stats as unknown as Record<string, number>);
    logger.close();
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
