import { assertEquals, assertMatch } from "../../tests/helpers/assert.ts";
import { VALID_CONFIG } from "../../tests/helpers/config.ts";
import { validateConfig } from "../../config/config.ts";
import { restartNeeded } from "./reload.ts";

const BASE = VALID_CONFIG;
const config = (change: Record<string, unknown> = {}) => validateConfig({ ...BASE, ...change });

Deno.test("restartNeeded() lets pools, outputs, logs and timeouts change, not the socket, its queue or the store", () => {
  const current = config();
  for (
    const change of [
      { num_tables: 10 },
      { table_timeout: 60, readiness_delay: 0 },
      { addr_families: { inet: true, inet6: true } },
      { outputs: [{ kind: "log" }], log_level: "debug", log_path: "/tmp/x.log", do_syslog: true },
      { reservations: [{ table: 10005, ifname: "eth0" }] },
    ]
  ) {
    assertEquals(restartNeeded(current, config(change)), null, JSON.stringify(change));
  }
  assertMatch(
    restartNeeded(current, config({ socket_path: "other" }))!,
    /^"socket_path" changed from "tas_socket" to "other": restart the server/,
  );
  assertMatch(
    restartNeeded(current, config({ socket_queue_length: 1024 }))!,
    /^"socket_queue_length" changed from 512 to 1024: restart the server/,
  );
  assertMatch(
    restartNeeded(current, config({ db_path: "/var/lib/x.db" }))!,
    /the store changed \("db_path" "var\/leases\.db" to "db_path" "\/var\/lib\/x\.db"/,
  );
  assertMatch(
    restartNeeded(current, config({ store: { kind: "postgres", url: "postgres://h/d" } }))!,
    /to "store" postgres/,
  );
});
