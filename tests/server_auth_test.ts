/**
 * End-to-end: message authentication against the real server. Every
 * signed message is built by hand and signed by openssl (a second,
 * independent signer); replies are checked with openssl too.
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { handSign, opensslHmac } from "./helpers/hand_signed.ts";
import { startServer } from "./helpers/server.ts";
import { requestBody } from "./helpers/wire.ts";
import { AbstractDatagramSocket } from "../src/unix/abstract_socket.ts";
import { CTL_PATH } from "./helpers/ctl.ts";

const KEY = "8f1302643b0809279794c5cc47f236561d7442b85d748bd7d1a58adfbe9ff431";
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** A client socket that keeps the reply's bytes, to check its signature. */
class RawClient implements Disposable {
  socket = AbstractDatagramSocket.bind(`t-${crypto.randomUUID().slice(0, 12)}`);
  constructor(readonly server: string) {}

  async call(payload: string): Promise<{ text: string; reply: Record<string, unknown> }> {
    while (this.socket.receive()) { /* nothing stale */ }
    assert(this.socket.sendToName(encoder.encode(payload), this.server), "sent");
    assert(await this.socket.readable(5000), `a reply to ${payload.slice(0, 60)}`);
    const text = decoder.decode(this.socket.receive()!.data);
    return { text, reply: JSON.parse(text) };
  }

  [Symbol.dispose]() {
    this.socket.close();
  }
}

/** Checks a signed reply with openssl: the MAC of the bytes without the hmac member. */
async function assertSignedByKey(text: string): Promise<void> {
  const match = /^(.*),"hmac":"([0-9a-f]{64})"\}$/.exec(text);
  assert(match, `reply has "hmac" as its last member: ${text}`);
  assertEquals(await opensslHmac(KEY, `${match[1]}}`), match[2], `signature of ${text}`);
  const reply = JSON.parse(text);
  assert(Math.abs(reply.ts - Date.now() / 1000) < 5, `reply ts ${reply.ts}`);
  assertMatch(reply.nonce, /^[0-9a-f]{16}$/);
}

async function withPsk<T>(
  mode: number,
  fn: (path: string) => Promise<T>,
  key = KEY,
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "ta-psk-" });
  try {
    const path = `${dir}/psk`;
    await Deno.writeTextFile(path, `${key}\n`);
    await Deno.chmod(path, mode);
    return await fn(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("auth.require: hand-signed requests are served and answered signed; unsigned, altered, stale and replayed ones are unauthenticated", async () => {
  await withPsk(0o600, async (psk) => {
    await using server = await startServer({ config: { auth: { psk_file: psk } } });
    using client = new RawClient(server.socketName);

    const signed = await handSign(KEY, requestBody("192.0.2.10"));
    const granted = await client.call(signed);
    assertEquals([granted.reply.cmd, granted.reply.table], [2, 10000]);
    await assertSignedByKey(granted.text);

    const replay = await client.call(signed);
    assertEquals([replay.reply.cmd, replay.reply.error], [3, "unauthenticated"]);
    assertMatch(String(replay.reply.message), /nonce [0-9a-f]{16} was already used .*replay/);
    assertEquals(replay.reply.hmac, undefined, "a refusal of authentication is not signed");

    const unsigned = await client.call(requestBody("192.0.2.11"));
    assertEquals([unsigned.reply.error], ["unauthenticated"]);
    assertMatch(String(unsigned.reply.message), /requires signed requests/);

    const altered = (await handSign(KEY, requestBody("192.0.2.12"))).replace(
      "192.0.2.12",
      "192.0.2.13",
    );
    assertEquals((await client.call(altered)).reply.error, "unauthenticated");
    const otherKey = await handSign("11".repeat(32), requestBody("192.0.2.14"));
    assertMatch(String((await client.call(otherKey)).reply.message), /does not match/);

    const now = Math.floor(Date.now() / 1000);
    const stale = await client.call(await handSign(KEY, requestBody("192.0.2.15"), now - 30));
    assertMatch(
      String(stale.reply.message),
      /s in the past, outside the allowed clock skew of 10 s/,
    );
    const future = await client.call(await handSign(KEY, requestBody("192.0.2.16"), now + 30));
    assertMatch(String(future.reply.message), /s in the future/);
    const badNonce = await client.call(
      await handSign(KEY, requestBody("192.0.2.17"), now, "not-hex-at-all!!"),
    );
    assertMatch(String(badNonce.reply.message), /"nonce" must be 16 hex digits/);

    // A signed release of the lease, answered signed; an error to a signed request is signed too.
    const released = await client.call(await handSign(KEY, requestBody("192.0.2.10", { cmd: 1 })));
    assertEquals([released.reply.cmd, released.reply.table], [2, 0]);
    await assertSignedByKey(released.text);
    const badFamily = await client.call(
      await handSign(KEY, requestBody("192.0.2.10", { family: 7 })),
    );
    assertEquals(badFamily.reply.error, "bad_request");
    await assertSignedByKey(badFamily.text);
    assert(badFamily.text.length <= 254, "a signed error reply fits the C client's buffer");

    assertEquals(server.allLeases().map((l) => [l.address, l.state]), [
      ["192.0.2.10", "released"],
    ]);
    await server.waitForLog(/ WARN rejected error=unauthenticated /);
  });
});

Deno.test("auth with require false: unsigned requests are served (C clients), signed ones are checked", async () => {
  await withPsk(0o400, async (psk) => {
    await using server = await startServer({
      config: { auth: { psk_file: psk, require: false, clock_skew: 60 } },
    });
    using client = new RawClient(server.socketName);
    const plain = await client.call(requestBody("192.0.2.20"));
    assertEquals([plain.reply.table, plain.reply.hmac], [10000, undefined]);
    assertEquals(
      plain.text,
      `{"version":1,"cmd":2,"table":10000,"lease_expires":${plain.reply.lease_expires}}`,
    );

    const now = Math.floor(Date.now() / 1000);
    const signed = await client.call(await handSign(KEY, requestBody("192.0.2.21"), now - 50));
    assertEquals(signed.reply.table, 10001, "within a clock_skew of 60 s");
    await assertSignedByKey(signed.text);
    const wrong = await client.call(await handSign("22".repeat(32), requestBody("192.0.2.22")));
    assertEquals(wrong.reply.error, "unauthenticated", "a wrong MAC is refused even so");
  });
});

Deno.test("a PSK file readable by group or others stops the server at start, naming the file", async () => {
  for (const mode of [0o640, 0o604]) {
    await withPsk(mode, async (psk) => {
      const started = await startServer({ config: { auth: { psk_file: psk } } }).then(
        () => "started",
        (error) => String(error),
      );
      assertMatch(started, /server exited \(1\)/);
      assertMatch(
        started,
        new RegExp(`Cannot use PSK file "${psk}": it is readable by (group|others) .*chmod 600`),
      );
    });
  }
  await withPsk(0o600, async (psk) => {
    const started = await startServer({ config: { auth: { psk_file: psk } } }).then(
      () => "started",
      (error) => String(error),
    );
    assertMatch(started, /Cannot use PSK file ".*": the PSK must be hex digits/);
  }, "not a key");
});

Deno.test("ctl genpsk prints 32 random bytes as 64 lower-case hex digits and a newline", async () => {
  const run = async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", CTL_PATH, "genpsk"],
      stdin: "null",
    }).output();
    assertEquals(out.code, 0);
    return decoder.decode(out.stdout);
  };
  const [a, b] = [await run(), await run()];
  assertMatch(a, /^[0-9a-f]{64}\n$/);
  assert(a !== b, "two keys differ");
});
