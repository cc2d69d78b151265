/**
 * End-to-end: the server's policy by kernel-verified credentials. The
 * server runs in a network namespace; requests come from peer processes
 * running as root and as uid 65534 there (`setpriv`), so the uid the
 * server sees is the kernel's, not a claim.
 */

import { DatabaseSync } from "node:sqlite";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { NOBODY } from "./helpers/as_user.ts";
import { e2eTest } from "./helpers/e2e.ts";
import { stagePeer, startPeer } from "./helpers/wire_peer.ts";
import { startServer } from "./helpers/server.ts";
import { requestBody } from "./helpers/wire.ts";

/** uid and state of each stored lease, by address. */
function owners(dbPath: string): Record<string, [number, string]> {
  const db = new DatabaseSync(dbPath, { readOnly: true });
  try {
    const rows = db.prepare("SELECT address, uid, state FROM leases WHERE state <> 'reserved'")
      .all() as Array<{ address: string; uid: number; state: string }>;
    return Object.fromEntries(rows.map((r) => [r.address, [r.uid, r.state]]));
  } finally {
    db.close();
  }
}

e2eTest(
  "a lease belongs to the uid that took it: another user can neither release nor refresh it",
  { netns: true },
  async ({ netns }) => {
    await using staged = await stagePeer();
    await using server = await startServer({ netns: netns.name });
    await using root = startPeer(undefined, server.socketName, { netns: netns.name });
    await using nobody = startPeer(staged, server.socketName, { netns: netns.name });

    assertEquals((await root.call(requestBody("192.0.2.10")))?.table, 10000);
    const expiresAt = server.leases()[0].expiresAt;

    const release = await nobody.call(requestBody("192.0.2.10", { cmd: 1 }));
    assertEquals([release?.cmd, release?.error], [3, "not_permitted"]);
    assertMatch(
      String(release?.message),
      /the lease of eth1 192\.0\.2\.10 \(inet\) belongs to uid 0; uid 65534 may not release it/,
    );
    const refresh = await nobody.call(requestBody("192.0.2.10"));
    assertEquals(refresh?.error, "not_permitted");
    assertMatch(String(refresh?.message), /uid 65534 may not refresh it/);
    assertEquals(server.leases().map((l) => [l.address, l.table, l.expiresAt]), [
      ["192.0.2.10", 10000, expiresAt],
    ], "the lease is untouched");

    // Its own lease: nobody refreshes and releases it; root may too.
    assertEquals((await nobody.call(requestBody("192.0.2.20")))?.table, 10001);
    assertEquals((await nobody.call(requestBody("192.0.2.20")))?.table, 10001);
    assertEquals(owners(server.dbPath)["192.0.2.20"], [NOBODY, "bound"]);
    assertEquals((await root.call(requestBody("192.0.2.20")))?.table, 10001);
    assertEquals(
      owners(server.dbPath)["192.0.2.20"],
      [NOBODY, "bound"],
      "a refresh by root leaves the lease its taker's",
    );
    assertEquals((await nobody.call(requestBody("192.0.2.20", { cmd: 1 })))?.table, 0);
    assertEquals((await nobody.call(requestBody("192.0.2.21")))?.table, 10001);
    assertEquals((await root.call(requestBody("192.0.2.21", { cmd: 1 })))?.table, 0);
    // A release of nothing is acknowledged to anyone: there is nothing to protect.
    assertEquals((await nobody.call(requestBody("192.0.2.99", { cmd: 1 })))?.table, 0);

    assertEquals(owners(server.dbPath), {
      "192.0.2.10": [0, "bound"],
      "192.0.2.20": [NOBODY, "released"],
      "192.0.2.21": [NOBODY, "released"],
    });
    assertMatch(
      await server.waitForLog(/ WARN rejected error=not_permitted .*uid=65534/),
      /address=192\.0\.2\.10 /,
    );
  },
);

e2eTest("a non-root uid holds at most max_leases_per_uid leases (default 8); root has no cap", {
  netns: true,
}, async ({ netns }) => {
  await using staged = await stagePeer();
  await using server = await startServer({ netns: netns.name });
  await using root = startPeer(undefined, server.socketName, { netns: netns.name });
  await using nobody = startPeer(staged, server.socketName, { netns: netns.name });

  // The attack: 38 made-up identities against a 40-table pool.
  const replies = [];
  for (let i = 1; i <= 38; i++) replies.push(await nobody.call(requestBody(`10.9.0.${i}`)));
  assertEquals(replies.filter((r) => r?.cmd === 2).length, 8);
  const refused = replies.slice(8);
  assert(refused.every((r) => r?.error === "not_permitted"), JSON.stringify(refused[0]));
  assertMatch(
    String(refused[0]?.message),
    /uid 65534 holds 8 leases, the most max_leases_per_uid allows/,
  );
  // Its leases still refresh, and root is not capped.
  assertEquals((await nobody.call(requestBody("10.9.0.1")))?.table, 10000);
  for (let i = 1; i <= 20; i++) {
    assertEquals((await root.call(requestBody(`10.8.0.${i}`)))?.cmd, 2, `root lease ${i}`);
  }
  // Releasing one makes room for one more.
  await nobody.call(requestBody("10.9.0.3", { cmd: 1 }));
  assertEquals((await nobody.call(requestBody("10.9.0.30")))?.cmd, 2);
  assertEquals((await nobody.call(requestBody("10.9.0.31")))?.error, "not_permitted");
  assertEquals(
    Object.values(owners(server.dbPath)).filter(([uid, s]) => uid === NOBODY && s === "bound")
      .length,
    8,
  );
});

e2eTest(
  "max_leases_per_uid 0 refuses every non-root request; root is served",
  { netns: true },
  async ({ netns }) => {
    await using staged = await stagePeer();
    await using server = await startServer({
      netns: netns.name,
      config: { max_leases_per_uid: 0 },
    });
    await using root = startPeer(undefined, server.socketName, { netns: netns.name });
    await using nobody = startPeer(staged, server.socketName, { netns: netns.name });
    const refused = await nobody.call(requestBody("192.0.2.30"));
    assertEquals(refused?.error, "not_permitted");
    assertMatch(String(refused?.message), /max_leases_per_uid is 0: only root may take leases/);
    assertEquals((await root.call(requestBody("192.0.2.30")))?.table, 10000);
    assertEquals(server.leases().length, 1);
  },
);
