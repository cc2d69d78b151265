/**
 * Whether the tests may use root. `TA_TEST_UNPRIVILEGED=1` (what `make
 * unit` sets) makes a root run behave as an unprivileged one: every test
 * that needs root is skipped, so the quick run covers exactly what any
 * user can run.
 *
 * @module
 */

/** Whether tests that need root run: root, and not an unprivileged run. */
export const IS_ROOT = Deno.uid() === 0 && Deno.env.get("TA_TEST_UNPRIVILEGED") !== "1";

/** The reason printed by tests skipped when not root. */
export const ROOT_SKIP_REASON = "needs root: network namespaces and routing rules";
