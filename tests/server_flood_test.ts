/**
 * End-to-end: one sender cannot flood the server's log. The log file is
 * measured: 20,000 bad datagrams, and a sender that never reads its
 * replies, add little, and say how much they suppressed.
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { e2eTest } from "./helpers/e2e.ts";
import { type Netns, waitFor } from "./helpers/netns.ts";
import { type Peer, stagePeer, startPeer } from "./helpers/wire_peer.ts";
import { type ServerHandle, startServer } from "./helpers/server.ts";
import { requestBody } from "./helpers/wire.ts";

const MB = 1 << 20;

/** What a flood case works with. */
interface Flooded {
  server: ServerHandle;
  /** A sender of uid 65534. */
  nobody: Peer;
  /** A sender of uid 0. */
  root: Peer;
  logPath: string;
  /** The log file's size once the server is ready. */
  before: number;
}

/** Runs `fn` with a server in `netns` that logs to a file of its own, and two senders. */
async function withFloodedServer(netns: Netns, fn: (f: Flooded) => Promise<void>): Promise<void> {
  await using staged = await stagePeer();
  const logDir = await Deno.makeTempDir({ prefix: "ta-flood-" });
  try {
    const logPath = `${logDir}/server.log`;
    await using server = await startServer({ netns: netns.name, config: { log_path: logPath } });
    await using nobody = startPeer(staged, server.socketName, { netns: netns.name });
    await using root = startPeer(undefined, server.socketName, { netns: netns.name });
    const before = (await Deno.stat(logPath)).size;
    await fn({ server, nobody, root, logPath, before });
  } finally {
    await Deno.remove(logDir, { recursive: true });
  }
}

e2eTest("20,000 bad datagrams from one user add less than 1 MB of log, and a summary of them", {
  netns: true,
}, async ({ netns }) => {
  await withFloodedServer(netns, async ({ server, nobody, root, logPath, before }) => {
    const kinds = [
      "not json",
      '{"version":1,"cmd":0,"addr_family":2,"ifname":"eth 1","address":"10.0.0.1"}',
      '{"version":1,"cmd":0,"addr_family":0,"ifname":"eth1","address":"x\\ud800"}',
      '{"version":7}',
    ];
    for (const kind of kinds) await nobody.flood(5000, kind);
    // The server has worked through the flood once it answers this.
    assertEquals((await root.call(requestBody("10.0.0.1")))?.table, 10000);
    const added = (await Deno.stat(logPath)).size - before;
    assert(added < MB, `the flood added ${added} bytes of log`);
    const log = await Deno.readTextFile(logPath);
    assertEquals(
      [...log.matchAll(/ WARN rejected error=bad_json .*uid=65534/g)].length <= 20,
      true,
      "bad_json lines are rate-limited",
    );
    await server.stop();
    // The suppressed count is reported by the next window, or at the latest at shutdown.
    const text = await Deno.readTextFile(logPath);
    const suppressed = [
      ...text.matchAll(
        / WARN (\d+) similar messages suppressed kind="rejected bad_json" sender="uid=65534"/g,
      ),
    ]
      .reduce((n, m) => n + Number(m[1]), 0);
    const logged = [...text.matchAll(/ WARN rejected error=bad_json .*uid=65534/g)].length;
    assertEquals(logged + suppressed, 5000, "every bad datagram is logged or counted");
    assertMatch(text, /similar messages suppressed kind="rejected bad_request" sender="uid=65534"/);
    assert((await Deno.stat(logPath)).size - before < MB);
  });
});

e2eTest(
  "a sender that never reads its replies does not flood the log either",
  { netns: true },
  async ({ netns }) => {
    await withFloodedServer(netns, async ({ server, nobody, root, logPath, before }) => {
      assertEquals((await root.call(requestBody("10.0.0.5")))?.cmd, 2);
      // Replies never read, so its queue fills up: 20,000 refreshes of root's
      // lease (refused), and requests for its 8 own leases in turn (each pass
      // writes each once, copies in a pass sharing the answer).
      await nobody.flood(20_000, requestBody("10.0.0.5"));
      const own = [1, 2, 3, 4, 5, 6, 7, 8].map((i) => requestBody(`10.0.1.${i}`));
      await nobody.flood(800, ...own);
      assertEquals((await root.call(requestBody("10.0.0.8")))?.cmd, 2);
      await waitFor(
        "the server logs the dropped replies",
        () => Deno.readTextFileSync(logPath).includes("reply dropped"),
      );
      const added = (await Deno.stat(logPath)).size - before;
      assert(added < MB, `20,000 unread replies added ${added} bytes of log`);
      await server.stop();
      const text = await Deno.readTextFile(logPath);
      assertMatch(
        text,
        / WARN \d+ similar messages suppressed kind="reply dropped" sender="uid=65534"/,
      );
      assertMatch(
        text,
        / WARN \d+ similar messages suppressed kind="rejected not_permitted" sender="uid=65534"/,
      );
      // How many of its own requests became lease events depends on the passes (copies in a
      // pass share one answer): their limit is src/server/events_test.ts's.
      assert((await Deno.stat(logPath)).size - before < MB);
    });
  },
);
