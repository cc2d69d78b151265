import {
  assertEquals,
  assertMatch,
  assertThrows,
  assertThrowsType,
} from "../../tests/helpers/assert.ts";
import {
  ackErrno,
  encodeMessage,
  groupMask,
  MsgType,
  NetlinkParseError,
  NlmFlags,
  parseAttributes,
  parseMessages,
  putAttribute,
  RtnlGroup,
  u32,
} from "./message.ts";
import { encodeAck } from "./testing.ts";

/** A request of `type` with one u32 attribute, as any encoder builds it. */
function request(type: number, seq: number, portid?: number): Uint8Array<ArrayBuffer> {
  const body = new Array<number>(12).fill(0);
  putAttribute(body, 6, u32(10000));
  return encodeMessage(type, NlmFlags.REQUEST | NlmFlags.ACK, { seq, portid }, body);
}

Deno.test("ackErrno() gives 0 for an ACK and the errno of a refusal", () => {
  const sent = request(MsgType.RTM_NEWRULE, 42, 5);
  const [ack] = parseMessages(encodeAck(sent, 0));
  assertEquals(ack.type, MsgType.ERROR);
  assertEquals(ack.seq, 42);
  assertEquals(ackErrno(ack), 0);
  const [refusal] = parseMessages(encodeAck(sent, 17));
  assertEquals(ackErrno(refusal), 17);
  const [notAnAck] = parseMessages(sent);
  assertEquals(ackErrno(notAnAck), null);
  const short = { ...ack, payload: ack.payload.subarray(0, 3) };
  assertMatch(assertThrowsType(() => ackErrno(short), NetlinkParseError).message, /no error code/);
});

Deno.test("parseMessages() splits a buffer of several messages and rejects a truncated one", () => {
  const a = request(MsgType.RTM_NEWRULE, 1);
  const b = request(MsgType.RTM_DELRULE, 2);
  const both = new Uint8Array([...a, ...b]);
  assertEquals(parseMessages(both).map((m) => [m.type, m.seq]), [[32, 1], [33, 2]]);
  assertThrows(() => parseMessages(both.subarray(0, a.byteLength + 20)), RangeError);
  const error = assertThrowsType(
    () => parseMessages(both.subarray(0, a.byteLength + 20)),
    NetlinkParseError,
  );
  assertMatch(
    error.message,
    new RegExp(`message at offset ${a.byteLength} claims ${b.byteLength} bytes, 20 left`),
  );
});

Deno.test("parseAttributes() splits aligned attributes and fails on a cut one as parseMessages() does", () => {
  const body: number[] = [];
  putAttribute(body, 3, new TextEncoder().encode("lo\0"));
  putAttribute(body, 15, u32(7));
  const payload = new Uint8Array(body);
  assertEquals(parseAttributes(payload, 0).map((a) => [a.type, a.payload.byteLength]), [[3, 3], [
    15,
    4,
  ]]);
  const error = assertThrowsType(
    () => parseAttributes(payload.subarray(0, 14), 0),
    NetlinkParseError,
  );
  assertMatch(error.message, /attribute at offset 8 claims 8 bytes, 6 left/);
  assertThrows(() => parseAttributes(payload.subarray(0, 14), 0), RangeError);
});

Deno.test("groupMask() turns RTNLGRP numbers into bind bits", () => {
  assertEquals(groupMask([RtnlGroup.LINK]), 0x1);
  assertEquals(groupMask([RtnlGroup.LINK, RtnlGroup.IPV4_IFADDR]), 0x11);
  assertEquals(groupMask([RtnlGroup.LINK, RtnlGroup.IPV6_IFADDR]), 0x101);
});
