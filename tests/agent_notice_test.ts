/**
 * End-to-end: the agent's side of an admin release. The server's notice
 * (`cmd` 4, "revoked", sent to the identity's name) is believed only from
 * the server's name, a trusted uid and for the table held; then the agent
 * removes the identity's rules, confirms with a normal release, waits for
 * the acknowledgement and lets the identity go. Anything else arriving as
 * `cmd` 4 is logged and ignored. The notices are sent by hand from a
 * stand-in bound on the server's name.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import {
  askAgent,
  boundNames,
  type Peer,
  PEER_MODULE,
  startPeer,
  waitUnbound,
} from "./helpers/agent.ts";
import { stageAsUser } from "./helpers/as_user.ts";
import { clientCommand, type Netns, NETNS_ADDRESSES as A } from "./helpers/netns.ts";
import { e2eTest } from "./helpers/e2e.ts";
import { encodeNotice, type Identity } from "../src/protocol/v1.ts";

/** Every test: a fresh namespace (root), and helpers that outlive a test step. */
const NEEDS = { netns: true, sanitize: false } as const;

const NAME = `${A.ifname}-${A.ipv4}-2`;
const SERVER = "notice-server";
const IDENTITY: Identity = { family: 2, ifname: A.ifname, address: A.ipv4 };

const notice = (table: number, identity: Identity = IDENTITY) =>
  new TextDecoder().decode(encodeNotice({ notice: "revoked", table, identity }));

async function ourRules(ns: Netns): Promise<string[]> {
  return (await ns.ip("-4", "rule", "show")).split("\n")
    .filter((l) => /^(10000|20000|91000):/.test(l));
}

/**
 * Sends `messages` from `from` to the identity's name, then makes sure the
 * agent has read them: a question from another socket on the same name is
 * answered only after everything queued before it.
 */
async function deliver(from: Peer, asker: Peer, messages: string[]): Promise<void> {
  for (const message of messages) await from.send(NAME, message);
  const before = asker.received.length;
  await asker.send(
    NAME,
    '{"address":"192.0.2.10","ifname":"veth0","addr_family":2,"cmd":0,"version":1}',
  );
  await asker.next((dg) => dg.from === `@${NAME}` && asker.received.indexOf(dg) >= before);
}

e2eTest(
  "a revoked notice from the trusted server ends the lease; any other notice is ignored",
  NEEDS,
  async ({ netns: ns }) => {
    await using nobody = await stageAsUser(PEER_MODULE);
    // A stand-in server (root) that grants table 10004 and acknowledges releases.
    const server = await startPeer(ns, [SERVER, "table", "10004"]);
    const hook = await ns.run(
      clientCommand("-4", "-a", A.ipv4, "-n", "24", "-i", A.ifname, "-d", SERVER),
    );
    assertEquals(hook.stdout, "10004\n", hook.stderr);
    const rules = await ourRules(ns);
    assertEquals(rules.length, 3);
    const asker = await startPeer(ns, ["-", "silent"]);

    // Not about this lease: another table, another identity, an unknown kind, garbage.
    await deliver(server, asker, [
      notice(10005),
      notice(10004, { ...IDENTITY, address: "192.0.2.99" }),
      notice(10004).replace('"revoked"', '"moved"'),
      '{"version":1,"cmd":4}',
    ]);
    assertEquals(await ourRules(ns), rules, "the rules stay");
    assert((await boundNames(ns)).includes(NAME), "the lease is still held");
    const log = ns.agentLog();
    assertMatch(log, /ignoring a notice that is not about this lease .*notice_table=10005/);
    assertMatch(log, /notice_identity=veth0-192\.0\.2\.99-2/);
    assertMatch(log, /ignoring a malformed reply .*notice.* must be .*revoked.*, got .*moved/);

    // The right notice from another uid on the server's name is not believed.
    await server.stop();
    const squatter = await startPeer(ns, [SERVER, "silent"], { as: nobody });
    await deliver(squatter, asker, [notice(10004)]);
    assertEquals(await ourRules(ns), rules, "a squatter's notice moves nothing");
    assertMatch(ns.agentLog(), /its uid is not trusted .*uid=65534/);
    await squatter.stop();

    // The right notice from the server: rules out, a release, the acknowledgement, the name let go.
    const again = await startPeer(ns, [SERVER, "table", "10004"]);
    await again.send(NAME, notice(10004));
    const release = await again.next((dg) => dg.from === `@${NAME}` && dg.data.includes('"cmd":1'));
    assertEquals(JSON.parse(release.data), {
      address: A.ipv4,
      ifname: A.ifname,
      addr_family: 2,
      cmd: 1,
      version: 1,
    });
    await waitUnbound(ns, NAME);
    assertEquals(await ourRules(ns), [], "the rules went before the release");
    const status = await askAgent(asker, { version: 1, op: "status" });
    assertEquals(status.identities, [], "and the agent holds nothing");
    const state = JSON.parse(
      Deno.readTextFileSync(
        `${ns.dir}/run/${[...Deno.readDirSync(`${ns.dir}/run`)][0].name}`,
      ),
    );
    assertEquals(state.identities, [], "nor does its state file");
    const end = ns.agentLog();
    assertMatch(end, /the server revoked the lease: removing the rules and confirming/);
    assertMatch(end, /lease released identity=veth0-192\.0\.2\.10-2 table=10004/);
  },
);
