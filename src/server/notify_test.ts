import { assertEquals } from "../../tests/helpers/assert.ts";
import { AbstractDatagramSocket } from "../unix/abstract_socket.ts";
import { STATUS_INTERVAL_MS, SystemdNotifier, watchdogIntervalMs } from "./notify.ts";

Deno.test("watchdogIntervalMs() is half of WATCHDOG_USEC, for this process only", () => {
  assertEquals(watchdogIntervalMs("30000000", undefined), 15_000);
  assertEquals(watchdogIntervalMs("30000000", String(Deno.pid)), 15_000);
  assertEquals(watchdogIntervalMs("30000000", String(Deno.pid + 1)), null);
  assertEquals(watchdogIntervalMs(undefined, undefined), null);
  assertEquals(watchdogIntervalMs("0", undefined), null);
  assertEquals(watchdogIntervalMs("x", undefined), null);
});

Deno.test("SystemdNotifier pings the watchdog and sends changed status lines, rate-limited", () => {
  // systemd's abstract notify addresses are not padded: an autobound name is one.
  using listener = AbstractDatagramSocket.bind(null);
  const name = new TextDecoder().decode(listener.address.subarray(3));
  using notifier = new SystemdNotifier({ socket: `@${name}`, watchdogUsec: "2000000" });
  const received = () => {
    const out: string[] = [];
    for (let d = listener.receive(); d; d = listener.receive()) {
      out.push(new TextDecoder().decode(d.data));
    }
    return out;
  };
  assertEquals(notifier.watchdogMs, 1000);
  notifier.ready("0 bound, 40 free", 9_000);
  assertEquals(received(), ["READY=1", "STATUS=0 bound, 40 free"]);
  let asked = 0;
  const status = (text: string) => () => (asked++, text);
  // An unchanged status is not sent again; the watchdog is pinged.
  assertEquals(notifier.tick(status("0 bound, 40 free"), 10_000), 1000);
  assertEquals(received(), ["WATCHDOG=1"]);
  // Within the rate limit the status is not even computed; the wait is reported.
  const wait = notifier.tick(status("1 bound, 39 free"), 10_000 + 10);
  assertEquals(received(), []);
  assertEquals(asked, 1);
  assertEquals(wait <= STATUS_INTERVAL_MS, true);
  notifier.tick(status("2 bound, 38 free"), 10_000 + STATUS_INTERVAL_MS + 5);
  assertEquals(received(), ["WATCHDOG=1\nSTATUS=2 bound, 38 free"]);
});

Deno.test("SystemdNotifier does nothing without NOTIFY_SOCKET", () => {
  using notifier = new SystemdNotifier({});
  assertEquals(notifier.enabled, false);
  assertEquals(notifier.watchdogMs, null);
  assertEquals(notifier.tick(() => "x"), Infinity);
  notifier.ready("x");
});
