/**
 * `-f`: one identity held in the foreground, on the same core as the
 * agent (for per-interface units and debugging). Prints the table once
 * the rules are in (0 when there is no lease) and holds the lease until
 * the address or the link goes away, a signal, or `-r`; no state file.
 * When another process holds the identity's name, prints its table as a
 * second client does (believed only from root), and exits.
 *
 * @module
 */

import type { Logger } from "../log/logger.ts";
import { HoldingCore } from "./core.ts";
import { holdOrAsk } from "./foreign.ts";
import { Holding } from "./holding.ts";
import type { HoldOutcome } from "./lease.ts";
import type { HoldSpec } from "./protocol.ts";
import { Sinks } from "./sinks.ts";

/**
 * Holds `spec` until its lease ends; `print` gets the outcome of the
 * acquisition once. Resolves with the exit status.
 */
export async function runForeground(
  spec: HoldSpec,
  ifindex: number,
  logger: Logger,
  print: (outcome: HoldOutcome) => void,
): Promise<number> {
  using core = HoldingCore.open({
    log: logger,
    sinks: new Sinks(logger, spec),
    onEnded: () => core.stop(),
  });
  const holding = await holdOrAsk(core, spec, ifindex, (l, m, f) => logger.log(l, m, f));
  if (!(holding instanceof Holding)) {
    print(holding);
    return 0;
  }
  const signals: Deno.Signal[] = ["SIGTERM", "SIGINT", "SIGHUP"];
  const handlers = signals.map((signal) => {
    const handler = () => void holding.release(`signal ${signal}`);
    Deno.addSignalListener(signal, handler);
    return [signal, handler] as const;
  });
  try {
    holding.addWaiter("foreground", print);
    holding.acquire();
    await core.run();
    return 0;
  } finally {
    for (const [signal, handler] of handlers) Deno.removeSignalListener(signal, handler);
  }
}
