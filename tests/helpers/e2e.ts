/**
 * The end-to-end test wrapper: what a test needs (root, PostgreSQL, a
 * network namespace) is declared, not checked by hand in each file. A test
 * whose needs are not met here is skipped, and the reason printed once; a
 * test that asks for a namespace gets a fresh one, removed afterwards with
 * every process in it killed first, also when the test failed.
 *
 * ```ts
 * e2eTest("client removes its rules when the address is deleted", { netns: true }, async ({ netns }) => {
 *   await netns.ip("addr", "del", "192.0.2.10/24", "dev", "veth0");
 * });
 * ```
 *
 * @module
 */

import { createNetns, type Netns } from "./netns.ts";
import { PG_SKIP_REASON, pgAvailable } from "./postgres.ts";
import { IS_ROOT, ROOT_SKIP_REASON } from "./privilege.ts";

/** What an end-to-end test needs. */
export interface E2eNeeds {
  /** Root (other users, the server's control requests); implied by `netns` and `postgres`. */
  root?: boolean;
  /** A fresh network namespace with a veth pair, handed to the test. */
  netns?: boolean;
  /** Debian's PostgreSQL server programs (the test starts its own server). */
  postgres?: boolean;
  /**
   * `false` switches off Deno's op and resource sanitizers, for a test whose
   * helpers hold connections or timers across its end (a PostgreSQL pool).
   */
  sanitize?: boolean;
}

/** What the test function gets. */
export interface E2eContext {
  /** The namespace; only when the test asked for `netns`. */
  netns: Netns;
  /** Deno's test context, for steps. */
  t: Deno.TestContext;
}

const warned = new Set<string>();

/** Why a test with these needs cannot run here; undefined when it can. */
export function unmetNeed(needs: E2eNeeds): string | undefined {
  if ((needs.root || needs.netns || needs.postgres) && !IS_ROOT) return ROOT_SKIP_REASON;
  if (needs.postgres && !pgAvailable()) return PG_SKIP_REASON;
  return undefined;
}

/** Registers an end-to-end test with what it needs. */
export function e2eTest(
  name: string,
  needs: E2eNeeds,
  fn: (context: E2eContext) => Promise<void>,
): void {
  const unmet = unmetNeed(needs);
  if (unmet && !warned.has(unmet)) {
    warned.add(unmet);
    console.warn(`skipping the tests that need more than this run has: ${unmet}`);
  }
  Deno.test({
    name,
    ignore: unmet !== undefined,
    // Only ever switched off: Deno's defaults differ from an explicit `true`.
    ...(needs.sanitize === false ? { sanitizeOps: false, sanitizeResources: false } : {}),
    async fn(t) {
      if (!needs.netns) return await fn({ netns: undefined as unknown as Netns, t });
      await using netns = await createNetns();
      await fn({ netns, t });
    },
  });
}
