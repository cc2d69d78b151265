/**
 * End to end: two real server processes share one PostgreSQL database (a
 * pool shared by two hosts) and are driven at once by many clients that
 * request, refresh and release, some of them switching servers. Every
 * acknowledged reply is checked as it comes, and the database afterwards.
 *
 * @module
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { e2eTest } from "./helpers/e2e.ts";
import { startPostgres } from "./helpers/postgres.ts";
import { type ServerHandle, startServer } from "./helpers/server.ts";
import { WireClient, type WireReply } from "./helpers/wire.ts";

const CLIENTS = 32;
const ROUNDS = 6;
const REFRESHES = 2;
const NUM_TABLES = 32;

/** One identity's definite hold of a table: from its grant's reply to its release's send. */
interface Hold {
  address: string;
  table: number;
  from: number;
  to: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

e2eTest(
  "two servers sharing one PostgreSQL database never bind a table to two identities " +
    "and store every acknowledged lease",
  { postgres: true, sanitize: false },
  async () => {
    await using pg = await startPostgres();
    const store = pg.storeKey;
    const servers: ServerHandle[] = [];
    try {
      // Started at once: the schema is created by one, waited for by the other.
      servers.push(
        ...await Promise.all([0, 1].map((i) =>
          startServer({
            socketName: `ta-pgc${i}-${crypto.randomUUID().slice(0, 6)}`,
            config: { store, num_tables: NUM_TABLES, addr_families: { inet: true } },
          })
        )),
      );

      const holds: Hold[] = [];
      const final = new Map<string, { table: number; bound: boolean }>();
      const violations: string[] = [];
      const errors = new Map<string, number>();
      let acknowledged = 0;

      /** Sends until a lease reply comes (error replies are retried, as the C client does). */
      const requestLease = async (client: WireClient, address: string): Promise<number> => {
        for (let attempt = 0;; attempt++) {
          const reply: WireReply = await client.call(
            JSON.stringify({ address, ifname: "eth1", addr_family: 2, cmd: 0, version: 1 }),
          );
          if (reply.cmd === 2 && typeof reply.table === "number" && reply.table > 0) {
            acknowledged++;
            return reply.table;
          }
          const code = String(reply.error ?? JSON.stringify(reply));
          errors.set(code, (errors.get(code) ?? 0) + 1);
          // Collisions with the other server are the daemon's to retry: no
          // error reply of any kind may reach a client.
          violations.push(`${address}: ${JSON.stringify(reply)}`);
          assert(attempt < 100, `${address}: no lease after 100 tries, last reply ${code}`);
          await sleep(5 + Math.random() * 20);
        }
      };

      const run = async (n: number) => {
        const address = `10.1.${n >> 8}.${n & 255}`;
        // Every third identity switches servers between messages; the
        // others stay with one server, as a host's clients do.
        const switching = n % 3 === 0;
        let step = 0;
        const pick = () => servers[switching ? step++ % 2 : n % 2].socketName;
        for (let round = 0; round < ROUNDS; round++) {
          let table: number;
          {
            using client = new WireClient(pick());
            table = await requestLease(client, address);
          }
          const from = performance.now();
          for (let r = 0; r < REFRESHES; r++) {
            using client = new WireClient(pick());
            const again = await requestLease(client, address);
            if (again !== table) {
              violations.push(`${address}: refresh answered table ${again} while holding ${table}`);
            }
            await sleep(Math.random() * 5);
          }
          final.set(address, { table, bound: true });
          if (round === ROUNDS - 1 && n % 2 === 0) {
            // Half the identities keep their lease at the end: it must be in the database.
            holds.push({ address, table, from, to: Infinity });
            return;
          }
          using client = new WireClient(pick());
          const to = performance.now();
          const reply = await client.call(
            JSON.stringify({ address, ifname: "eth1", addr_family: 2, cmd: 1, version: 1 }),
          );
          if (reply.cmd !== 2) {
            violations.push(`${address}: release answered ${JSON.stringify(reply)}`);
          }
          holds.push({ address, table, from, to });
          final.set(address, { table, bound: false });
        }
      };
      await Promise.all(Array.from({ length: CLIENTS }, (_, n) => run(n)));

      // No table was held by two identities at once, by the replies.
      const byTable = Map.groupBy(holds, (h) => h.table);
      for (const [table, list] of byTable) {
        list.sort((a, b) => a.from - b.from);
        for (let i = 1; i < list.length; i++) {
          if (list[i].from < list[i - 1].to) {
            violations.push(
              `table ${table}: ${list[i].address} was granted it while ${
                list[i - 1].address
              } held it`,
            );
          }
        }
      }
      assertEquals(violations, []);
      assertEquals(acknowledged, CLIENTS * ROUNDS * (1 + REFRESHES));

      // The database agrees with every acknowledged reply.
      const sql = pg.connect();
      const rows = await sql`
      SELECT address, table_id::int AS table, state FROM leases ORDER BY address`;
      const bound = rows.filter((r) => r.state === "bound");
      assertEquals(new Set(bound.map((r) => r.table)).size, bound.length);
      const stored = new Map(rows.map((r) => [r.address as string, r]));
      for (const [address, { table, bound }] of final) {
        const row = stored.get(address);
        assertEquals(
          row && { table: row.table, state: row.state },
          { table, state: bound ? "bound" : "released" },
          `${address} in the database`,
        );
      }
      assertEquals(bound.length, CLIENTS / 2);

      for (const server of servers) assertEquals((await server.stop()).code, 0);
      const retried = [...errors].map(([code, count]) => `${code}: ${count}`).join(", ");
      console.log(
        `cluster: ${acknowledged} leases acknowledged by 2 servers; error replies retried: ${
          retried || "none"
        }`,
      );
    } finally {
      for (const server of servers) await server[Symbol.asyncDispose]();
    }
  },
);

e2eTest(
  "with two servers on one PostgreSQL database each expiry is logged once, " +
    "and the expired tables are granted again by either server",
  { postgres: true, sanitize: false },
  async () => {
    await using pg = await startPostgres();
    const store = pg.storeKey;
    const servers: ServerHandle[] = [];
    try {
      for (const i of [0, 1]) {
        servers.push(
          await startServer({
            socketName: `ta-pge${i}-${crypto.randomUUID().slice(0, 6)}`,
            config: { store, num_tables: 8, table_timeout: 1, addr_families: { inet: true } },
          }),
        );
      }
      const request = async (address: string, server: ServerHandle) => {
        using client = new WireClient(server.socketName);
        for (;;) {
          const reply = await client.request(address);
          if (reply.cmd === 2) return reply.table as number;
          await sleep(20); // a collision the daemon gave up on: retry, as the C client does
        }
      };
      const first = Array.from({ length: 8 }, (_, i) => `10.2.0.${i}`);
      const tables = await Promise.all(first.map((a, i) => request(a, servers[i % 2])));
      assertEquals(tables.toSorted(), Array.from({ length: 8 }, (_, i) => 10000 + i));

      // Every table is leased for 1 s; both servers' timers fire for the
      // leases they know of, and each lease is reclaimed by one of them.
      const expiredLines = () =>
        servers.flatMap((s) => s.output().split("\n").filter((l) => / INFO expired /.test(l)));
      const deadline = Date.now() + 5000;
      while (expiredLines().length < first.length && Date.now() < deadline) await sleep(50);
      await sleep(300); // a second announcement of any lease would show up by now
      const expired = expiredLines().map((l) => l.match(/address=(\S+)/)?.[1]);
      assertEquals(expired.toSorted(), first.toSorted());

      // The pool is full again with new identities, from either server.
      const second = Array.from({ length: 8 }, (_, i) => `10.2.1.${i}`);
      const again = await Promise.all(second.map((a, i) => request(a, servers[(i + 1) % 2])));
      assertEquals(again.toSorted(), Array.from({ length: 8 }, (_, i) => 10000 + i));

      const sql = pg.connect();
      const rows = await sql`SELECT address, state FROM leases ORDER BY address`;
      assertEquals(rows.map((r) => [r.address, r.state]), [
        ...first.map((a) => [a, "expired"]),
        ...second.map((a) => [a, "bound"]),
      ]);
    } finally {
      for (const server of servers) await server[Symbol.asyncDispose]();
    }
  },
);
