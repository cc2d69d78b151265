/**
 * A throwaway PostgreSQL server for tests and benchmarks, from Debian's
 * `postgresql` package: `initdb` and `pg_ctl` run as the `postgres` OS user
 * (they refuse root) on a data directory in a fresh temporary directory.
 * The server listens on a unix socket in that directory, and on TCP only
 * when asked (127.0.0.1 of a network namespace it then runs in), with
 * fsync on, so commits cost what they cost in production. Disposal stops it and removes the directory, also when
 * the test failed.
 *
 * ```ts
 * await using pg = await startPostgres();
 * const store = await PostgresLeaseStore.open(pg.config);
 * ```
 *
 * @module
 */

import postgres from "postgres";
import type { StoreConfig } from "../../config/config.ts";
import { errorMessage } from "../../src/util/errors.ts";
import { IS_ROOT } from "./privilege.ts";
import { runOk } from "./spawn.ts";

/** The store config of a PostgreSQL database. */
export type PgStoreConfig = Extract<StoreConfig, { kind: "postgres" }>;

/** A running throwaway PostgreSQL server. */
export interface PgHandle extends AsyncDisposable {
  /** The temporary directory: data in `data/`, the log in `postgres.log`. */
  readonly dir: string;
  /** The directory of the server's unix socket (`.s.PGSQL.<port>`). */
  readonly socketDir: string;
  readonly port: number;
  /** The database made for the test. */
  readonly database: string;
  /** The superuser to connect as (trust authentication on the socket). */
  readonly user: string;
  /** The store config of {@link database}, `host` being the socket directory. */
  readonly config: PgStoreConfig;
  /** The same as a URL (the socket directory in the `host` query parameter, libpq style). */
  readonly url: string;
  /** The same as the `store` key of a server config file. */
  readonly storeKey: Record<string, unknown>;
  /** Creates another empty database and returns its store config. */
  createDatabase(name?: string): Promise<PgStoreConfig>;
  /** A client connection pool to `database` (default: the test's); the caller ends it. */
  connect(database?: string): postgres.Sql;
  /** Stops the server (`pg_ctl stop -m fast`), keeping its data. */
  stop(): Promise<void>;
  /** Starts it again on the same data and socket. */
  start(): Promise<void>;
  /**
   * Freezes every process of the server (SIGSTOP): connections stay open
   * and nothing answers, as behind a broken network path.
   */
  pause(): Promise<void>;
  /** Thaws the processes {@link pause} froze (SIGCONT). */
  resume(): Promise<void>;
  /** The server's log so far. */
  log(): string;
}

/** The directory of the newest installed PostgreSQL's programs, if any. */
export function pgBinDir(): string | undefined {
  let versions: string[];
  try {
    versions = [...Deno.readDirSync("/usr/lib/postgresql")].map((e) => e.name)
      .filter((name) => /^\d+$/.test(name));
  } catch {
    return undefined;
  }
  for (const version of versions.sort((a, b) => Number(b) - Number(a))) {
    const bin = `/usr/lib/postgresql/${version}/bin`;
    try {
      Deno.statSync(`${bin}/initdb`);
      Deno.statSync(`${bin}/pg_ctl`);
      return bin;
    } catch { /* a version without the server programs: try the next */ }
  }
  return undefined;
}

/** uid and gid of the `postgres` OS user, from /etc/passwd. */
function postgresUser(): { uid: number; gid: number } | undefined {
  try {
    const line = Deno.readTextFileSync("/etc/passwd").split("\n")
      .find((l) => l.startsWith("postgres:"));
    if (!line) return undefined;
    const [, , uid, gid] = line.split(":");
    return { uid: Number(uid), gid: Number(gid) };
  } catch {
    return undefined;
  }
}

/** The postmaster of `data` and its children (the backends, writers), by /proc. */
function serverPids(data: string): number[] {
  const postmaster = Number(Deno.readTextFileSync(`${data}/postmaster.pid`).split("\n")[0]);
  const pids = [postmaster];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      // The parent pid is the 2nd field after the command, which is in parentheses.
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === postmaster) pids.push(Number(entry.name));
    } catch { /* the process ended meanwhile */ }
  }
  return pids;
}

/** Whether {@link startPostgres} can work here: root, the server programs and the postgres user. */
export function pgAvailable(): boolean {
  return IS_ROOT && pgBinDir() !== undefined && postgresUser() !== undefined;
}

/** Why PostgreSQL tests are skipped, for their `ignore` message. */
export const PG_SKIP_REASON =
  "needs root and Debian's postgresql package (initdb, pg_ctl run as the postgres user): " +
  "run tools/install-system-deps.sh as root";

/**
 * Prints {@link PG_SKIP_REASON} once when PostgreSQL is not available and
 * returns the value for a test's `ignore`.
 */
export function ignoreWithoutPg(what: string): boolean {
  const ignore = !pgAvailable();
  if (ignore) console.warn(`skipping ${what}: ${PG_SKIP_REASON}`);
  return ignore;
}

/** Runs a PostgreSQL program as the postgres user; throws with its output on failure. */
function asPostgres(program: string, args: string[], netns?: string): Promise<string> {
  const inNetns = netns ? ["ip", "netns", "exec", netns] : [];
  return runOk([...inNetns, "runuser", "-u", "postgres", "--", program, ...args], {
    // Not root's locale and home: initdb and pg_ctl would complain about them.
    env: {
      LANG: "C.UTF-8",
      LC_ALL: "C.UTF-8",
      HOME: "/var/lib/postgresql",
      // For `ip netns exec`, which finds runuser (in /usr/sbin) on it.
      PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
    },
    clearEnv: true,
  });
}

/**
 * Starts a throwaway PostgreSQL server and creates a database `test`.
 * Throws when {@link pgAvailable} is false or the server does not start.
 */
export async function startPostgres(
  options: {
    sharedBuffers?: string;
    /**
     * Also listen on TCP at 127.0.0.1 of this network namespace (the
     * server runs inside it), for clients that must come over IP.
     */
    tcpInNetns?: string;
  } = {},
): Promise<PgHandle> {
  const bin = pgBinDir();
  const owner = postgresUser();
  if (Deno.uid() !== 0 || !bin || !owner) {
    throw new Error(`Cannot start PostgreSQL: ${PG_SKIP_REASON}`);
  }
  const dir = await Deno.makeTempDir({ prefix: "ta-pg-" });
  const data = `${dir}/data`;
  const logPath = `${dir}/postgres.log`;
  const port = 5432;
  const database = "test";
  const user = "postgres";
  let running = false;
  const pools = new Set<postgres.Sql>();

  const connect = (db = database): postgres.Sql => {
    const sql = postgres({
      host: dir,
      port,
      database: db,
      user,
      max: 2,
      onnotice: () => {},
      connect_timeout: 10,
    });
    pools.add(sql);
    return sql;
  };
  const configOf = (db: string): PgStoreConfig => ({
    kind: "postgres",
    url: undefined,
    host: dir,
    port,
    database: db,
    user,
    password: undefined,
    poolSize: 4,
  });
  const stop = async () => {
    await resume();
    if (!running) return;
    running = false;
    await asPostgres(`${bin}/pg_ctl`, ["-D", data, "-m", "fast", "-w", "-t", "30", "stop"]);
  };
  let paused: number[] = [];
  const resume = () => {
    for (const pid of paused) {
      try {
        Deno.kill(pid, "SIGCONT");
      } catch { /* gone */ }
    }
    paused = [];
    return Promise.resolve();
  };
  const pause = () => {
    paused = serverPids(data);
    for (const pid of paused) Deno.kill(pid, "SIGSTOP");
    return Promise.resolve();
  };
  const start = async () => {
    const args = ["-D", data, "-l", logPath, "-w", "-t", "30", "start"];
    await asPostgres(`${bin}/pg_ctl`, args, options.tcpInNetns);
    running = true;
  };
  // A test process that ends without disposing (an uncaught error in a
  // worker) must not leave a server behind.
  const onUnload = () => {
    try {
      resume();
      if (running) {
        new Deno.Command("runuser", {
          args: ["-u", "postgres", "--", `${bin}/pg_ctl`, "-D", data, "-m", "immediate", "stop"],
          stdout: "null",
          stderr: "null",
        }).outputSync();
      }
      Deno.removeSync(dir, { recursive: true });
    } catch { /* nothing more can be done while exiting */ }
  };
  globalThis.addEventListener("unload", onUnload);

  const dispose = async () => {
    globalThis.removeEventListener("unload", onUnload);
    for (const sql of pools) await sql.end({ timeout: 1 }).catch(() => {});
    pools.clear();
    try {
      await stop();
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  };

  try {
    await Deno.chown(dir, owner.uid, owner.gid);
    await asPostgres(`${bin}/initdb`, [
      "-D",
      data,
      "-U",
      user,
      "--auth=trust",
      "--encoding=UTF8",
      "--locale=C.UTF-8",
      // initdb's own syncing only protects the template files of a
      // throwaway cluster; the server itself runs with fsync on.
      "--no-sync",
    ]);
    await Deno.writeTextFile(
      `${data}/postgresql.conf`,
      [
        "",
        "# table-allocator tests: a unix socket in the test's directory",
        `listen_addresses = '${options.tcpInNetns ? "127.0.0.1" : ""}'`,
        `unix_socket_directories = '${dir}'`,
        `port = ${port}`,
        "fsync = on",
        "synchronous_commit = on",
        `shared_buffers = '${options.sharedBuffers ?? "32MB"}'`,
        "max_connections = 100",
        "",
      ].join("\n"),
      { append: true },
    );
    await start();
    const admin = connect("postgres");
    try {
      await admin.unsafe(`CREATE DATABASE ${database}`);
    } finally {
      await admin.end();
      pools.delete(admin);
    }
  } catch (error) {
    let log = "";
    try {
      log = await Deno.readTextFile(logPath);
    } catch { /* no log yet */ }
    await dispose();
    throw new Error(
      `Cannot start PostgreSQL in ${dir}: ${errorMessage(error)}${log ? `\n${log}` : ""}`,
      { cause: error },
    );
  }

  let databases = 0;
  return {
    dir,
    socketDir: dir,
    port,
    database,
    user,
    config: configOf(database),
    url: `postgres://${user}@/${database}?host=${encodeURIComponent(dir)}&port=${port}`,
    storeKey: { kind: "postgres", host: dir, port, database, user },
    async createDatabase(name = `test_${++databases}`) {
      const admin = connect("postgres");
      try {
        await admin.unsafe(`CREATE DATABASE "${name}"`);
      } finally {
        await admin.end();
        pools.delete(admin);
      }
      return configOf(name);
    },
    connect,
    stop,
    start,
    pause,
    resume,
    log() {
      try {
        return Deno.readTextFileSync(logPath);
      } catch {
        return "";
      }
    },
    [Symbol.asyncDispose]: dispose,
  };
}
