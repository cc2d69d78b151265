/**
 * End-to-end: the client's `--psk-file` against a server whose `auth`
 * requires signed requests, in a network namespace with the real agent
 * and the real kernel's rules: signed requests get a lease and rules, a
 * signed `-r` releases it; without the key the server's refusal is an
 * answer; with a wrong key no reply is believed; a key others can read is
 * refused before anything is sent.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { e2eTest } from "./helpers/e2e.ts";
import { clientCommand, type Netns, NETNS_ADDRESSES as A } from "./helpers/netns.ts";
import { startServer } from "./helpers/server.ts";
import { ctl } from "./helpers/ctl.ts";

const NEEDS = { netns: true, sanitize: false } as const;
const KEY = "8f1302643b0809279794c5cc47f236561d7442b85d748bd7d1a58adfbe9ff431";

async function withKeys<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "ta-cpsk-" });
  try {
    for (const [name, key, mode] of [["psk", KEY, 0o600], ["other", "22".repeat(32), 0o600]]) {
      await Deno.writeTextFile(`${dir}/${name}`, `${key}\n`);
      await Deno.chmod(`${dir}/${name}`, mode as number);
    }
    await Deno.writeTextFile(`${dir}/open`, `${KEY}\n`);
    await Deno.chmod(`${dir}/open`, 0o644);
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function client(ns: Netns, server: string, ...extra: string[]) {
  return ns.run(
    clientCommand("-4", "-a", A.ipv4, "-n", "24", "-i", A.ifname, "-d", server, ...extra),
  );
}

async function ourRules(ns: Netns): Promise<string[]> {
  return (await ns.ip("-4", "rule", "show")).split("\n")
    .filter((l) => /^(10000|20000|91000):/.test(l));
}

e2eTest(
  "client --psk-file: signed requests get a lease and rules from a server that requires them, and -r releases it",
  NEEDS,
  async ({ netns: ns }) => {
    await withKeys(async (dir) => {
      await using server = await startServer({
        netns: ns.name,
        config: { auth: { psk_file: `${dir}/psk` } },
      });
      const got = await client(ns, server.socketName, "--psk-file", `${dir}/psk`);
      assertEquals([got.code, got.stdout], [0, "10000\n"], `${got.stderr}\n${ns.agentLog()}`);
      assertEquals((await ourRules(ns)).length, 3, "the three rules are in place");
      assertEquals(server.leases().map((l) => l.table), [10000]);
      assert(!server.output().includes("unauthenticated"), server.output());

      const released = await client(ns, server.socketName, "-r", "--psk-file", `${dir}/psk`);
      assertEquals(released.code, 0, released.stderr);
      await server.waitForLog(/ INFO released .*table=10000/);
      assertEquals(server.leases(), []);
      assertEquals(await ourRules(ns), []);
    });
  },
);

e2eTest(
  "with auth.require, an admin release's notice is signed: the agent with the key removes its rules and confirms",
  NEEDS,
  async ({ netns: ns }) => {
    await withKeys(async (dir) => {
      await using server = await startServer({
        netns: ns.name,
        config: { auth: { psk_file: `${dir}/psk` } },
      });
      const got = await client(ns, server.socketName, "--psk-file", `${dir}/psk`);
      assertEquals(got.stdout, "10000\n", got.stderr);
      const released = await ctl(
        ["-d", server.socketName, "release", "--family", "inet", "10000"],
        {
          netns: ns.name,
        },
      );
      assertEquals(released.code, 0, released.stderr);
      await server.waitForLog(/hold ended .*table=10000 reason=confirmed/);
      assertEquals(await ourRules(ns), [], "the rules are gone");
      assert(!ns.agentLog().includes("without a valid hmac"), ns.agentLog());
    });
  },
);

e2eTest(
  "without the key the server's refusal is the answer (0); with a wrong key no reply is believed",
  NEEDS,
  async ({ netns: ns }) => {
    await withKeys(async (dir) => {
      await using server = await startServer({
        netns: ns.name,
        config: { auth: { psk_file: `${dir}/psk` } },
      });
      const unsigned = await client(ns, server.socketName, "-f");
      assertEquals(unsigned.stdout.split("\n")[0], "0");
      await server.waitForLog(/ WARN rejected error=unauthenticated .*requires signed requests/);

      const started = performance.now();
      const wrong = await client(ns, server.socketName, "-f", "--psk-file", `${dir}/other`);
      assertEquals(wrong.stdout.split("\n")[0], "0", "the refusal is not signed with this key");
      assert(performance.now() - started > 8000, "every try went unanswered");
      assertMatch(wrong.stderr, /ignoring a reply without a valid hmac/);
      assertEquals(server.leases(), []);
    });
  },
);

e2eTest(
  "client --psk-file refuses a key file others can read, before anything is sent",
  NEEDS,
  async ({ netns: ns }) => {
    await withKeys(async (dir) => {
      await using server = await startServer({ netns: ns.name });
      const refused = await client(ns, server.socketName, "--psk-file", `${dir}/open`);
      assertEquals([refused.code, refused.stdout], [1, ""]);
      assertMatch(
        refused.stderr,
        new RegExp(`Cannot use PSK file "${dir}/open": it is readable by group and others`),
      );
      assert(!server.output().includes(" granted "), "nothing reached the server");
    });
  },
);
