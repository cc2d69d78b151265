import { assert, assertEquals } from "../../tests/helpers/assert.ts";
import { decodeLinkEvent, type LinkEvent } from "./link.ts";
import { MsgType, parseMessages } from "./message.ts";
import { encodeLinkEvent } from "./testing.ts";

const v4 = (s: string) => new Uint8Array(s.split(".").map(Number));

Deno.test("decodeLinkEvent() reads RTM_DELADDR with IFA_LOCAL for IPv4 and IFA_ADDRESS for IPv6", () => {
  const v6 = new Uint8Array(16).fill(0xab);
  const events: LinkEvent[] = [
    { kind: "address-deleted", index: 4, family: 2, prefix: 24, address: v4("192.0.2.10") },
    { kind: "address-deleted", index: 4, family: 10, prefix: 64, address: v6 },
    { kind: "address-added", index: 9, family: 2, prefix: 32, address: v4("10.0.0.1") },
  ];
  for (const event of events) {
    const [message] = parseMessages(encodeLinkEvent(event));
    assertEquals(decodeLinkEvent(message), event);
  }
});

Deno.test("decodeLinkEvent() prefers IFA_LOCAL over the peer's IFA_ADDRESS on IPv4 point-to-point", () => {
  // ifaddrmsg + IFA_ADDRESS(peer 10.0.0.2) + IFA_LOCAL(10.0.0.1), as the kernel sends it.
  const ifaddrmsg = [2, 32, 0, 0, 3, 0, 0, 0];
  const peer = [8, 0, 1, 0, 10, 0, 0, 2];
  const local = [8, 0, 2, 0, 10, 0, 0, 1];
  const message = {
    type: MsgType.RTM_DELADDR,
    flags: 0,
    seq: 0,
    portid: 0,
    payload: new Uint8Array([...ifaddrmsg, ...peer, ...local]),
  };
  const event = decodeLinkEvent(message);
  assert(event?.kind === "address-deleted");
  assertEquals([...event.address], [10, 0, 0, 1]);
  assertEquals(event.index, 3);
});

Deno.test("decodeLinkEvent() reads RTM_DELLINK and RTM_NEWLINK with index and name", () => {
  const deleted =
    parseMessages(encodeLinkEvent({ kind: "link-deleted", index: 12, name: "veth0" }))[0];
  assertEquals(decodeLinkEvent(deleted), { kind: "link-deleted", index: 12, name: "veth0" });
  const changed =
    parseMessages(encodeLinkEvent({ kind: "link-changed", index: 3, name: "eth9" }))[0];
  assertEquals(decodeLinkEvent(changed), { kind: "link-changed", index: 3, name: "eth9" });
  const rule = {
    type: MsgType.RTM_NEWRULE,
    flags: 0,
    seq: 1,
    portid: 0,
    payload: new Uint8Array(12),
  };
  assertEquals(decodeLinkEvent(rule), null);
});
