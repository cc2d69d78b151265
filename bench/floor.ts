/**
 * The fsync floor: how many one-row commits per second SQLite makes
 * durable on this disk (WAL, `synchronous=FULL`, a new transaction per
 * row), measured beside the server's figures in the same run, in the
 * same directory as the server's database. A grant waits for one such
 * commit, so the floor bounds what one sequential client can get.
 *
 * Measured with `node:sqlite` (the SQLite the server uses) and, when
 * `python3` is installed, with Python's `sqlite3` as well (how the figure
 * was first taken).
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";

/** Load averages (1, 5, 15 minutes) from /proc/loadavg. */
export function loadAverage(): string {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  } catch {
    return "unknown";
  }
}

/** One-row WAL/FULL commits per second through `node:sqlite`, for `ms` milliseconds in `dir`. */
export function nodeSqliteFloor(dir: string, ms = 1000): number {
  const path = `${dir}/floor-${crypto.randomUUID().slice(0, 8)}.db`;
  const db = new DatabaseSync(path);
  try {
    db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL");
    db.exec("CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER NOT NULL)");
    const begin = db.prepare("BEGIN IMMEDIATE");
    const put = db.prepare("INSERT OR REPLACE INTO t VALUES (?, ?)");
    const commit = db.prepare("COMMIT");
    let n = 0;
    const start = performance.now();
    const end = start + ms;
    while (performance.now() < end) {
      begin.run();
      put.run(n % 100, n);
      commit.run();
      n++;
    }
    return Math.round(n / ((performance.now() - start) / 1000));
  } finally {
    db.close();
    for (const suffix of ["", "-wal", "-shm"]) {
      try {
        Deno.removeSync(path + suffix);
      } catch { /* SQLite removes the WAL files itself on close */ }
    }
  }
}

const PYTHON_FLOOR = `
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=FULL")
db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
n = 0; start = time.monotonic(); end = start + float(sys.argv[2])
while time.monotonic() < end:
    db.execute("BEGIN IMMEDIATE"); db.execute("INSERT OR REPLACE INTO t VALUES (?, ?)", (n % 100, n)); db.execute("COMMIT"); n += 1
print(round(n / (time.monotonic() - start)))
`;

/** The same loop in Python's `sqlite3`; undefined when python3 is not installed. */
export async function pythonFloor(dir: string, ms = 1000): Promise<number | undefined> {
  const path = `${dir}/floor-py-${crypto.randomUUID().slice(0, 8)}.db`;
  try {
    const out = await new Deno.Command("python3", {
      args: ["-c", PYTHON_FLOOR, path, String(ms / 1000)],
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!out.success) return undefined;
    return Number(new TextDecoder().decode(out.stdout).trim());
  } catch {
    return undefined; // no python3
  } finally {
    for (const suffix of ["", "-wal", "-shm"]) {
      try {
        Deno.removeSync(path + suffix);
      } catch { /* never created, or removed by SQLite */ }
    }
  }
}
