/**
 * The syslog sink against a stand-in daemon socket in a temporary
 * directory (real sockets, no root needed).
 */

import { assert, assertEquals, assertMatch } from "../../tests/helpers/assert.ts";
import { LogSeverity } from "../../ffi/libc.ts";
import { AbstractDatagramSocket } from "../unix/abstract_socket.ts";
import { SyslogSink, syslogTime } from "./syslog_sink.ts";

/** A stand-in for /dev/log at a fresh path (not bound until `listen`). */
async function standIn() {
  const dir = await Deno.makeTempDir({ prefix: "ta-syslog-" });
  const path = `${dir}/log`;
  let daemon: AbstractDatagramSocket | undefined;
  return {
    path,
    listen() {
      daemon = AbstractDatagramSocket.bindPath(path, { receiveBufferSize: 4096 });
    },
    /** Every line waiting, oldest first. */
    read(): string[] {
      const lines: string[] = [];
      for (let d = daemon!.receive(); d; d = daemon!.receive()) {
        lines.push(new TextDecoder().decode(d.data));
      }
      return lines;
    },
    async [Symbol.asyncDispose]() {
      daemon?.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("syslogTime() writes local time as syslog(3) does: month, space-padded day, time", () => {
  assertEquals(syslogTime(new Date(2026, 11, 8, 2, 3, 4)), "Dec  8 02:03:04");
  assertEquals(syslogTime(new Date(2027, 0, 31, 23, 59, 59)), "Jan 31 23:59:59");
});

Deno.test("SyslogSink sends <PRI>time ident[pid]: text, the facility daemon's priority", async () => {
  await using daemon = await standIn();
  daemon.listen();
  const sink = new SyslogSink("table_allocator_server", { path: daemon.path });
  try {
    sink.send(LogSeverity.info, "granted table=10000");
    sink.send(LogSeverity.err, "cannot commit");
    const lines = daemon.read();
    assertEquals(lines.length, 2);
    assertMatch(
      lines[0],
      new RegExp(
        `^<30>[A-Z][a-z]{2} [ \\d]\\d \\d\\d:\\d\\d:\\d\\d table_allocator_server\\[${Deno.pid}\\]: ` +
          "granted table=10000$",
      ),
    );
    assertMatch(lines[1], /^<27>.*: cannot commit$/);
  } finally {
    sink.close();
  }
});

Deno.test("SyslogSink never waits for a daemon that does not read: it drops, counts, then says so", async () => {
  await using daemon = await standIn();
  daemon.listen();
  const sink = new SyslogSink("t", { path: daemon.path });
  try {
    // glibc's syslog(3) would block here for good once the daemon's queue is full.
    for (let i = 0; i < 200; i++) sink.send(LogSeverity.info, `line ${i}`);
    const kept = daemon.read();
    assert(kept.length > 0 && kept.length < 200, `the daemon's queue took ${kept.length}`);
    assertEquals(sink.dropped, 200 - kept.length);
    assert(kept.at(-1)!.endsWith(`: line ${kept.length - 1}`), "the first lines, in order");
    sink.send(LogSeverity.info, "after");
    const next = daemon.read();
    assertEquals(next.length, 2);
    assertMatch(
      next[0],
      new RegExp(`^<28>.*: ${200 - kept.length} log lines dropped: the syslog daemon at `),
    );
    assertMatch(next[1], /: after$/);
    assertEquals(sink.dropped, 0);
  } finally {
    sink.close();
  }
});

Deno.test("SyslogSink with no daemon drops lines without throwing, and reports them once one listens", async () => {
  await using daemon = await standIn();
  const sink = new SyslogSink("t", { path: daemon.path });
  try {
    sink.send(LogSeverity.info, "nobody hears this");
    sink.send(LogSeverity.info, "nor this");
    assertEquals(sink.dropped, 2);
    daemon.listen();
    sink.send(LogSeverity.info, "heard");
    const lines = daemon.read();
    assertEquals(lines.length, 2);
    assertMatch(lines[0], /: 2 log lines dropped: /);
    assertMatch(lines[1], /: heard$/);
  } finally {
    sink.close();
  }
});

Deno.test("SyslogSink falls back to syslog(3) where the daemon's socket is a stream socket", async () => {
  await using daemon = await standIn();
  const listener = Deno.listen({ transport: "unix", path: daemon.path });
  const sink = new SyslogSink("t", { path: daemon.path });
  try {
    assertEquals(sink.viaLibc, false);
    sink.send(LogSeverity.info, "to glibc");
    assertEquals(sink.viaLibc, true);
    assertEquals(sink.dropped, 0);
  } finally {
    sink.close();
    listener.close();
  }
});
