import { assert, assertEquals, assertMatch, assertThrows } from "../../tests/helpers/assert.ts";
import { close, readSome, socketPair } from "../../ffi/libc.ts";
import { formatFields, journalStreamIsStderr, Logger } from "./logger.ts";

Deno.test("journalStreamIsStderr() is true only for the device and inode of that stream", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/stream`;
    await Deno.writeTextFile(path, "");
    const { dev, ino } = await Deno.stat(path);
    assert(journalStreamIsStderr(`${dev}:${ino}`, path));
    assert(!journalStreamIsStderr(`${dev}:${ino! + 1}`, path));
    assert(!journalStreamIsStderr(`${dev + 1}:${ino}`, path));
    assert(!journalStreamIsStderr(undefined, path));
    assert(!journalStreamIsStderr(`${dev}-${ino}`, path));
    assert(!journalStreamIsStderr(`${dev}:${ino}`, `${dir}/missing`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Logger drops lines below its level; reconfigure() changes the level and the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const first = `${dir}/first.log`, second = `${dir}/second.log`;
    const log = new Logger({ program: "t", logPath: first });
    log.debug("hidden");
    log.info("shown", { a: 1, b: "two words" });
    assert(!log.enabled("debug"));
    log.reconfigure({ program: "t", logPath: second, level: "debug" });
    assert(log.enabled("debug"));
    log.debug("now shown");
    log.close();
    const lines = (await Deno.readTextFile(first)).trim().split("\n");
    assertEquals(lines.length, 1);
    assertMatch(lines[0], /^\d{4}-\d\d-\d\dT[\d:.]+Z INFO shown a=1 b="two words"$/);
    assertMatch(await Deno.readTextFile(second), /^\S+ DEBUG now shown\n$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Logger.reconfigure() keeps the old sink when the new one cannot be opened", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/ok.log`;
    const log = new Logger({ program: "t", logPath: path });
    assertThrows(
      () => log.reconfigure({ program: "t", logPath: `${dir}/no/such/dir.log`, level: "debug" }),
      /Cannot open log file ".*no\/such\/dir\.log"/,
    );
    log.info("still here");
    log.debug("level unchanged too");
    log.close();
    assertMatch(await Deno.readTextFile(path), /^\S+ INFO still here\n$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("formatFields() writes key=value in order, quotes what would not read back, skips missing values", () => {
  assertEquals(formatFields(undefined), "");
  assertEquals(
    formatFields({
      table: 10000,
      neg: -1.5,
      ok: true,
      gone: undefined,
      none: null,
      ifname: "eth1",
      empty: "",
      spaced: "two words",
      tab: "a\tb",
      nbsp: "a\u00a0b",
      quote: 'say "hi"',
      eq: "a=b",
    }),
    ' table=10000 neg=-1.5 ok=true ifname=eth1 empty="" spaced="two words" tab="a\\tb"' +
      ' nbsp="a\u00a0b" quote="say \\"hi\\"" eq="a=b"',
  );
});

Deno.test("Logger in journal mode sends <N> lines to journald's stream socket, a pass's lines in one send", () => {
  const [ours, journald] = socketPair();
  try {
    const log = new Logger({ program: "t", journal: true, journalFd: ours });
    log.hold();
    log.info("granted", { table: 10000 });
    log.warn("rejected", { error: "bad_json" });
    assertEquals(readSome(journald, 4096).length, 0, "held until the pass ends");
    log.release();
    log.error("cannot commit");
    assertEquals(
      new TextDecoder().decode(readSome(journald, 4096)),
      "<6>granted table=10000\n<4>rejected error=bad_json\n<3>cannot commit\n",
    );
  } finally {
    close(ours);
    close(journald);
  }
});
