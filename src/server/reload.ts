/**
 * What a reload may change. The socket and the store are opened once, at
 * start: a new config that changes them is refused (with the reason) so
 * that the running server never half-applies a file. Pure.
 *
 * @module
 */

import type { ServerConfig } from "../../config/config.ts";

/**
 * Why `next` cannot be applied to a server running with `current`
 * without a restart, or null when it can.
 */
export function restartNeeded(current: ServerConfig, next: ServerConfig): string | null {
  if (current.socketPath !== next.socketPath) {
    return `"socket_path" changed from ${JSON.stringify(current.socketPath)} to ${
      JSON.stringify(next.socketPath)
    }: restart the server to apply it`;
  }
  if (JSON.stringify(current.store) !== JSON.stringify(next.store)) {
    const describe = (c: ServerConfig) =>
      c.store.kind === "sqlite" ? `"db_path" ${JSON.stringify(c.store.path)}` : `"store" postgres`;
    return `the store changed (${describe(current)} to ${describe(next)}, or its "store" keys): ` +
      "restart the server to apply it";
  }
  return null;
}
