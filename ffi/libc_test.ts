/** The libc bindings' own logic, and malloc's threshold (the socket calls are tested through their users). */

import { assertEquals } from "../tests/helpers/assert.ts";
import { bindErrnos, callDoubtingErrno, Errno, ErrnoError } from "./libc.ts";
import { AbstractDatagramSocket, paddedAbstractAddress } from "../src/unix/abstract_socket.ts";

/** A call that gives the scripted results in turn, each with its errno. */
function scripted(results: Array<[number, number]>) {
  let calls = 0;
  let lastErrno = 0;
  return {
    call: () => {
      const [rc, code] = results[calls++];
      lastErrno = code;
      return rc;
    },
    readErrno: () => lastErrno,
    calls: () => calls,
  };
}

const expected = new Set<number>([Errno.EAGAIN, Errno.ENOBUFS]);

Deno.test("callDoubtingErrno() believes a success and an errno the call may give, at once", () => {
  const ok = scripted([[12, 0]]);
  assertEquals(callDoubtingErrno(ok.call, expected, ok.readErrno), { rc: 12, code: 0 });
  assertEquals(ok.calls(), 1);
  const again = scripted([[-1, Errno.EAGAIN]]);
  assertEquals(callDoubtingErrno(again.call, expected, again.readErrno), {
    rc: -1,
    code: Errno.EAGAIN,
  });
  assertEquals(again.calls(), 1);
});

Deno.test("callDoubtingErrno() makes the call once more for an errno the call does not give", () => {
  const spurious = scripted([[-1, Errno.ENOENT], [-1, Errno.EAGAIN]]);
  assertEquals(callDoubtingErrno(spurious.call, expected, spurious.readErrno), {
    rc: -1,
    code: Errno.EAGAIN,
  });
  assertEquals(spurious.calls(), 2);
  const thenData = scripted([[-1, Errno.ENOENT], [40, 0]]);
  assertEquals(callDoubtingErrno(thenData.call, expected, thenData.readErrno), {
    rc: 40,
    code: 0,
  });
  // The second call's result counts, even when it fails the same odd way again.
  const twice = scripted([[-1, Errno.ENOENT], [-1, Errno.ENOENT]]);
  assertEquals(callDoubtingErrno(twice.call, expected, twice.readErrno), {
    rc: -1,
    code: Errno.ENOENT,
  });
  assertEquals(twice.calls(), 2);
});

Deno.test("bind() doubts a path's errors for an abstract name, and believes them for a path", () => {
  const abstract = bindErrnos(paddedAbstractAddress("ta-x"));
  const autobind = bindErrnos(new Uint8Array([1, 0]));
  for (const set of [abstract, autobind]) {
    assertEquals([set.has(Errno.EADDRINUSE), set.has(Errno.ENOENT)], [true, false]);
  }
  const path = bindErrnos(new Uint8Array([1, 0, ...new TextEncoder().encode("/x/y"), 0]));
  assertEquals([path.has(Errno.EADDRINUSE), path.has(Errno.ENOENT)], [true, true]);

  // The real calls: a held name, a path whose directory does not exist.
  const name = `ta-bind-${crypto.randomUUID().slice(0, 8)}`;
  using _held = AbstractDatagramSocket.bind(name);
  const codes = [
    () => AbstractDatagramSocket.bind(name),
    () => AbstractDatagramSocket.bindPath(`/nonexistent-${crypto.randomUUID()}/sock`),
  ].map((bind) => {
    try {
      bind().close();
      return "bound";
    } catch (error) {
      return error instanceof ErrnoError ? error.code : String(error);
    }
  });
  assertEquals(codes, ["EADDRINUSE", "ENOENT"]);
});

/**
 * Run in a process of its own, as the server does it at start: a process
 * that has run for a while may have a large free stretch of heap, from
 * which malloc serves a block whatever the threshold says.
 */
const LIBC_MODULE = JSON.stringify(new URL("./libc.ts", import.meta.url).href);
const MMAP_PROBE = `
import { fixMallocMmapThreshold } from ${LIBC_MODULE};
const libc = Deno.dlopen("libc.so.6", {
  malloc: { parameters: ["usize"], result: "pointer" },
  free: { parameters: ["pointer"], result: "void" },
});
// The IS_MMAPPED bit (2) of the chunk's size word, just before the block:
// asked of the block itself, since malloc's counters are the whole process's.
const mapped = (block) => (new Deno.UnsafePointerView(block).getBigUint64(-8) & 2n) !== 0n;
const fixed = fixMallocMmapThreshold(128 * 1024);
const first = libc.symbols.malloc(16n * 1024n * 1024n);
const firstMapped = mapped(first);
libc.symbols.free(first);
// Left to itself, glibc has now raised its threshold to 16 MiB, and
// serves 1 MiB from the heap.
const second = libc.symbols.malloc(1024n * 1024n);
console.log(JSON.stringify([fixed, firstMapped, mapped(second)]));
libc.symbols.free(second);
`;

Deno.test("fixMallocMmapThreshold() keeps large blocks mapped after one was freed", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", MMAP_PROBE],
    env: { DENO_NO_UPDATE_CHECK: "1" },
    stdin: "null",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, stderr);
  assertEquals(JSON.parse(new TextDecoder().decode(out.stdout)), [true, true, true], stderr);
});
