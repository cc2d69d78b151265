import { assertEquals, assertMatch } from "../../tests/helpers/assert.ts";
import { sandboxHint } from "./postgres_connection.ts";

/** A socket error as Node's `net` reports it (what the driver passes on). */
function socketError(code: string): Error {
  return Object.assign(new Error(`connect ${code} 127.0.0.1:5432`), { code });
}

Deno.test("a TCP socket refused by the sandbox names the unit setting that allows it", () => {
  assertMatch(
    sandboxHint(socketError("EAFNOSUPPORT")),
    /^ \(IP sockets are not allowed to this process: .*RestrictAddressFamilies=AF_INET AF_INET6; .*docs\/packaging\.md\)$/,
  );
  assertMatch(sandboxHint(socketError("EPERM")), /IPAddressDeny= needs an IPAddressAllow=/);
});

Deno.test("other failures to connect get no sandbox hint", () => {
  assertEquals(sandboxHint(socketError("ECONNREFUSED")), "");
  assertEquals(sandboxHint(new Error("no answer within 2000 ms")), "");
  assertEquals(sandboxHint("EAFNOSUPPORT"), "");
  assertEquals(sandboxHint(null), "");
});
