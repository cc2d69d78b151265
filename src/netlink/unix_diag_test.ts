import { assertEquals } from "../../tests/helpers/assert.ts";
import { MsgType, NlmFlags, parseMessages } from "./message.ts";
import { decodeUnixDiag, encodeUnixDiagAnswer, encodeUnixDiagDump } from "./unix_diag.ts";

Deno.test("encodeUnixDiagDump() asks for every unix socket with its name and uid", () => {
  const [message] = parseMessages(encodeUnixDiagDump({ seq: 7, portid: 9 }));
  assertEquals([message.type, message.flags, message.seq, message.portid], [
    20,
    NlmFlags.REQUEST | NlmFlags.DUMP,
    7,
    9,
  ]);
  const view = new DataView(message.payload.buffer, message.payload.byteOffset);
  assertEquals(message.payload.byteLength, 24, "struct unix_diag_req");
  assertEquals(message.payload[0], 1, "AF_UNIX");
  assertEquals(view.getUint32(4, true), 0xffff_ffff, "every state");
  assertEquals(view.getUint32(8, true), 0, "every inode");
  assertEquals(view.getUint32(12, true), 0x41, "UDIAG_SHOW_NAME | UDIAG_SHOW_UID");
});

Deno.test("decodeUnixDiag() reads the type, inode, bound path and uid", () => {
  const path = new Uint8Array(108);
  path.set(new TextEncoder().encode("eth1-192.0.2.10-2"), 1);
  const info = { type: 2, inode: 123456, path, uid: 65534 };
  const [message] = parseMessages(encodeUnixDiagAnswer(info, 3));
  assertEquals(decodeUnixDiag(message), info);
  const unbound = { type: 1, inode: 5, path: undefined, uid: undefined };
  assertEquals(decodeUnixDiag(parseMessages(encodeUnixDiagAnswer(unbound))[0]), unbound);
  assertEquals(
    decodeUnixDiag({ type: MsgType.DONE, flags: 0, seq: 0, portid: 0, payload: new Uint8Array(4) }),
    null,
  );
});
