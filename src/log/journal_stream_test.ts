/**
 * The journal stream writer against a real connected pair of unix stream
 * sockets standing in for journald's (no root needed).
 */

import { assert, assertEquals, assertMatch } from "../../tests/helpers/assert.ts";
import {
  close,
  eventfd,
  readSome,
  setsockoptInt,
  SO_RCVBUF,
  SO_SNDBUF,
  socketPair,
  SOL_SOCKET,
} from "../../ffi/libc.ts";
import { JournalStream } from "./journal_stream.ts";

/** A stream pair with small buffers, so that it fills after a few lines. */
function pair() {
  const [ours, journald] = socketPair();
  setsockoptInt(ours, SOL_SOCKET, SO_SNDBUF, 4096);
  setsockoptInt(journald, SOL_SOCKET, SO_RCVBUF, 4096);
  let received = "";
  return {
    stream: new JournalStream(ours),
    /** Everything journald's end has been sent so far. */
    read(): string {
      for (let chunk = readSome(journald, 65536); chunk.length > 0;) {
        received += new TextDecoder().decode(chunk);
        chunk = readSome(journald, 65536);
      }
      return received;
    },
    [Symbol.dispose]() {
      close(ours);
      close(journald);
    },
  };
}

Deno.test("JournalStream sends whole lines to the stream", () => {
  using p = pair();
  assertEquals(p.stream.write("<6>one\n<4>two\n"), true);
  assertEquals(p.read(), "<6>one\n<4>two\n");
  assertEquals(p.stream.dropped, 0);
});

Deno.test("JournalStream never waits for a journal that does not read: no line lost in part, the drops told", () => {
  using p = pair();
  const line = (i: number) => `<6>line ${String(i).padStart(4, "0")} ${"x".repeat(90)}\n`;
  // A pass's lines go in one write, larger than the socket's buffer: the
  // first is sent in part, the rest wait behind it. A plain write would
  // block here for good.
  for (let i = 0; i < 1000; i += 100) {
    assert(p.stream.write(Array.from({ length: 100 }, (_, j) => line(i + j)).join("")));
  }
  const dropped = p.stream.dropped;
  assert(dropped > 0 && dropped < 1000, `dropped ${dropped}`);
  assert(p.read().length % line(0).length !== 0, "the first pass went in part: a line was cut");
  p.stream.write("<6>after\n");
  p.read();
  p.stream.write("<6>last\n"); // in case "after" waited behind the rest of a line
  const lines = p.read().split("\n");
  assertEquals(lines.pop(), "", "the text ends with a whole line");
  const notice = lines.findIndex((l) => /^<4>\d+ log lines dropped: /.test(l));
  assert(notice > 0, `a notice of the drops: ${lines.slice(-3)}`);
  const kept = lines.slice(0, notice);
  for (const [i, l] of kept.entries()) {
    assertMatch(l, /^<6>line \d{4} x{90}$/, `line ${i} is whole`);
  }
  const told = Number(lines[notice].match(/^<4>(\d+) /)![1]);
  assertEquals(kept.length + told, 1000, "every line was either sent or counted");
  assertEquals(
    lines.slice(notice + 1).filter((l) => l === "<6>after" || l === "<6>last").length,
    2,
  );
  assertEquals(p.stream.dropped, 0);
});

Deno.test("JournalStream hands a descriptor that is not a socket back to the caller", () => {
  const fd = eventfd();
  try {
    const stream = new JournalStream(fd);
    assertEquals(stream.write("<6>to the usual write\n"), false);
    assertEquals(stream.write("<6>again\n"), false);
  } finally {
    close(fd);
  }
});
