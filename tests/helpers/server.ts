/**
 * Starts the real server process for end-to-end tests: a temporary
 * directory with its config and database, a unique socket name, optionally
 * inside a network namespace. Waits for the `ready` log line.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { fileURLToPath } from "node:url";

/** Path of server.ts. */
export const SERVER_PATH = fileURLToPath(new URL("../../server.ts", import.meta.url));

/**
 * The flags of `deno run` for the server, as its packaged launcher gives
 * them besides those that pick the installed cache: no V8 code cache
 * (docs/packaging.md says why).
 */
export const SERVER_RUN_FLAGS = ["--allow-all", "--no-code-cache"];

/** A lease as stored, read straight from the database. */
export interface StoredLease {
  family: number;
  ifname: string;
  address: string;
  table: number;
  expiresAt: number;
  tag: string | null;
  state: string;
}

/** Options of {@link startServer}. */
export interface StartOptions {
  /**
   * Config keys overriding the defaults (40 tables from 10000, 3600 s, all
   * families; outside a namespace, `socket_queue_length` 0).
   */
  config?: Record<string, unknown>;
  /** Run the server inside this network namespace (`ip netns exec`). */
  netns?: string;
  /** Reuse this directory (and its database) instead of a new one: a restart. */
  dir?: string;
  /** Reuse this socket name (with `dir`, for restarts). */
  socketName?: string;
  /** Extra environment for the server process. */
  env?: Record<string, string>;
  /** A command line the server's is appended to (e.g. `sh -c '...; exec "$@"' sh`). */
  wrap?: string[];
  /** Flags added to the server's `deno run` (e.g. `--preload=FILE`). */
  runFlags?: string[];
  /** How to tell the server is ready (default: a ` INFO ready ` log line). */
  ready?: (handle: ServerHandle) => Promise<unknown>;
}

/** A running server. */
export interface ServerHandle extends AsyncDisposable {
  socketName: string;
  dbPath: string;
  configPath: string;
  dir: string;
  process: Deno.ChildProcess;
  /** Every stderr line so far, then the log file's lines when `log_path` is set. */
  output(): string;
  /** Bound leases in the database, ordered by family and table. */
  leases(): StoredLease[];
  /** Every lease row, history (released, expired) and reservations included. */
  allLeases(): StoredLease[];
  /** Waits until a log line matches `pattern`; returns it. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Signals the server (SIGTERM by default) and waits for it to exit. */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

/**
 * Reads the bound leases of a database file (every row with `all`), read
 * only: the server may be running.
 */
export function readLeases(dbPath: string, all = false): StoredLease[] {
  const db = new DatabaseSync(dbPath, { readOnly: true });
  try {
    return db.prepare(
      `SELECT family, ifname, address, table_id AS "table", expires_at AS expiresAt, tag, state
       FROM leases ${all ? "" : "WHERE state = 'bound'"} ORDER BY family, table_id, client_id`,
    ).all().map((row) => ({ ...row }) as unknown as StoredLease);
  } finally {
    db.close();
  }
}

/** Starts the server and waits until it is ready to answer. */
export async function startServer(options: StartOptions = {}): Promise<ServerHandle> {
  const dir = options.dir ?? await Deno.makeTempDir({ prefix: "ta-test-" });
  const socketName = options.socketName ?? `ta-${crypto.randomUUID().slice(0, 8)}`;
  const dbPath = `${dir}/leases.db`;
  const configPath = `${dir}/server.json`;
  const config: Record<string, unknown> = {
    socket_path: socketName,
    table_offset: 10000,
    num_tables: 40,
    table_timeout: 3600,
    db_path: dbPath,
    addr_families: { inet: true, inet6: true, unspec: true },
    // Tests share the host's namespace and its net.unix.max_dgram_qlen: a server raising it
    // for its socket would, for that moment, give the raised queue to another test's socket.
    ...(options.netns ? {} : { socket_queue_length: 0 }),
    ...options.config,
  };
  await Deno.writeTextFile(configPath, JSON.stringify(config, null, 2));
  const serverArgs = [
    "run",
    ...SERVER_RUN_FLAGS,
    ...options.runFlags ?? [],
    SERVER_PATH,
    "-c",
    configPath,
  ];
  const argv = [...(options.wrap ?? []), Deno.execPath(), ...serverArgs];
  const [command, ...args] = options.netns ? ["ip", "netns", "exec", options.netns, ...argv] : argv;
  const process = new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { DENO_NO_UPDATE_CHECK: "1", ...options.env },
  }).spawn();

  let output = "";
  const logPath = typeof config.log_path === "string" ? config.log_path : undefined;
  const allOutput = () => {
    if (!logPath) return output;
    try {
      return output + Deno.readTextFileSync(logPath);
    } catch {
      return output;
    }
  };
  const waiters = new Set<() => void>();
  const pump = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of process.stderr) {
      output += decoder.decode(chunk, { stream: true });
      for (const wake of waiters) wake();
    }
    for (const wake of waiters) wake();
  })();
  let exited: Deno.CommandStatus | undefined;
  const status = process.status.then((s) => {
    exited = s;
    for (const wake of waiters) wake();
    return s;
  });

  const waitForLog = async (pattern: RegExp, timeoutMs = 10_000): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = allOutput().split("\n").find((l) => pattern.test(l));
      if (line) return line;
      if (exited) {
        throw new Error(
          `server exited (${exited.code}) before logging ${pattern}:\n${allOutput()}`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`server did not log ${pattern} within ${timeoutMs} ms:\n${allOutput()}`);
      }
      await new Promise<void>((resolve) => {
        // A log file is polled; stderr output wakes the waiters as it arrives.
        const timer = setTimeout(done, logPath ? Math.min(left, 20) : left);
        function done() {
          clearTimeout(timer);
          waiters.delete(done);
          resolve();
        }
        waiters.add(done);
      });
    }
  };

  const stop = async (signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> => {
    if (!exited) {
      try {
        process.kill(signal);
      } catch { /* already gone */ }
    }
    const result = await status;
    await pump;
    return result;
  };

  const handle: ServerHandle = {
    socketName,
    dbPath,
    configPath,
    dir,
    process,
    output: allOutput,
    leases: () => readLeases(dbPath),
    allLeases: () => readLeases(dbPath, true),
    waitForLog,
    stop,
    async [Symbol.asyncDispose]() {
      await stop("SIGKILL");
      if (!options.dir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  try {
    await (options.ready ? options.ready(handle) : waitForLog(/ INFO ready /));
  } catch (error) {
    await handle[Symbol.asyncDispose]();
    throw error;
  }
  return handle;
}
