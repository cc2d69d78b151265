/**
 * Reloading the config (SIGHUP, `table-allocator-ctl reload`): read and
 * validate the file, refuse what needs a restart (the socket and the store
 * are opened once, at start), then apply it step by step, putting back
 * what was changed when a later step fails, so that the running server
 * never half-applies a file.
 *
 * @module
 */

import type { ServerConfig } from "../../config/config.ts";
import type { ReloadView } from "../control/protocol.ts";
import type { Logger } from "../log/logger.ts";
import type { ServerMetrics } from "../metrics/server_metrics.ts";
import { ProtocolError } from "../protocol/v1.ts";
import { errorMessage } from "../util/errors.ts";
import type { SystemdNotifier } from "./notify.ts";

/** A reload that was refused: the reason, for the log and for `ctl reload`. */
export class ReloadRefused extends Error {
  /** Builds the refusal with its reason. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ReloadRefused";
  }
}

/** The steps of a reload, as the daemon carries them out. */
export interface ReloadSteps {
  /** The config running now. */
  current: ServerConfig;
  /** Reads and validates the file (throws its ConfigError). */
  read: () => Promise<ServerConfig>;
  /** Switches the log to a config's sink and level; throws when its file cannot be opened. */
  reconfigureLog?: ((config: ServerConfig) => void) | undefined;
  /** Writes a config's reservations and rebuilds the allocation for it from the store. */
  rebuild: (config: ServerConfig) => Promise<void>;
  /** Makes the config the running one (decisions, control, outputs); does not fail. */
  adopt: (config: ServerConfig) => Promise<void>;
}

/**
 * Runs a reload; resolves with the new config, or rejects with a
 * {@link ReloadRefused} after which the running config is in effect.
 */
export async function reloadConfig(steps: ReloadSteps): Promise<ServerConfig> {
  let next: ServerConfig;
  try {
    next = await steps.read();
  } catch (error) {
    throw new ReloadRefused(errorMessage(error), { cause: error });
  }
  const restart = restartNeeded(steps.current, next);
  if (restart) throw new ReloadRefused(restart);
  try {
    steps.reconfigureLog?.(next);
  } catch (error) {
    throw new ReloadRefused(errorMessage(error), { cause: error });
  }
  try {
    await steps.rebuild(next);
  } catch (error) {
    // Back to the running config: its log sink, and an allocation that matches the store again.
    try {
      steps.reconfigureLog?.(steps.current);
    } catch { /* the old sink was open a moment ago; nothing better to do */ }
    await steps.rebuild(steps.current).catch(() => {});
    throw new ReloadRefused(`cannot apply it to the store: ${errorMessage(error)}`, {
      cause: error,
    });
  }
  await steps.adopt(next);
  return next;
}

/** What a reload reports to besides its caller. */
export interface ReloadReporting {
  log: Logger;
  metrics?: ServerMetrics | undefined;
  notifier?: SystemdNotifier | undefined;
  /** The config file, as results name it. */
  configPath?: string | undefined;
}

/**
 * A reload as the server runs it: {@link reloadConfig}, with systemd told
 * (`RELOADING=1`, then `READY=1`), the outcome logged and counted.
 * Resolves with what runs now; a refusal rejects with a ProtocolError
 * `bad_config` whose message is the reason.
 */
export async function runReload(steps: ReloadSteps, report: ReloadReporting): Promise<ReloadView> {
  const { log, metrics, notifier } = report;
  notifier?.reloading();
  try {
    const config = await reloadConfig(steps);
    metrics?.reload(true);
    for (const warning of config.warnings) log.warn(warning, { config: report.configPath });
    const view: ReloadView = {
      config: report.configPath ?? "",
      pools: config.pools.length,
      reservations: config.reservations.length,
      outputs: config.outputs.length,
    };
    log.info("reloaded", { ...view, config: report.configPath });
    return view;
  } catch (error) {
    metrics?.reload(false);
    const reason = errorMessage(error);
    log.error(`reload refused: ${reason}; the running config is kept`);
    throw new ProtocolError("bad_config", reason);
  } finally {
    notifier?.send("READY=1");
  }
}

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
  if (current.socketQueueLength !== next.socketQueueLength) {
    // The kernel gives a socket its queue when the socket is made; a reload keeps the socket.
    return `"socket_queue_length" changed from ${current.socketQueueLength} to ${next.socketQueueLength}: restart the server to apply it`;
  }
  if (JSON.stringify(current.trust.auth) !== JSON.stringify(next.trust.auth)) {
    // The PSK file is read, and checked, at start.
    return `"auth" changed: restart the server to apply it`;
  }
  if (JSON.stringify(current.store) !== JSON.stringify(next.store)) {
    const describe = (c: ServerConfig) =>
      c.store.kind === "sqlite" ? `"db_path" ${JSON.stringify(c.store.path)}` : `"store" postgres`;
    return `the store changed (${describe(current)} to ${describe(next)}, or its "store" keys): ` +
      "restart the server to apply it";
  }
  return null;
}
