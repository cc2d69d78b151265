/**
 * Assertions for the tests: node:assert/strict, plus narrowing helpers,
 * because the `asserts` signatures of node:assert do not narrow when
 * re-bound as imports.
 *
 * @module
 */

import * as nodeAssert from "node:assert/strict";

export {
  deepEqual as assertEquals,
  match as assertMatch,
  notDeepEqual as assertNotEquals,
  rejects as assertRejects,
  throws as assertThrows,
} from "node:assert/strict";

/** Fails unless `condition` is truthy; narrows like `if`. */
export function assert(condition: unknown, message?: string): asserts condition {
  nodeAssert.ok(condition, message);
}

/** Fails when `value` is null or undefined; narrows to the defined type. */
export function assertExists<T>(value: T, message?: string): asserts value is NonNullable<T> {
  nodeAssert.ok(value !== null && value !== undefined, message ?? "expected a value");
}

/** Fails unless `error` is an instance of `type`; narrows to it. */
export function assertInstanceOf<T>(
  error: unknown,
  // deno-lint-ignore no-explicit-any
  type: new (...args: any[]) => T,
): asserts error is T {
  nodeAssert.ok(error instanceof type, `expected ${type.name}, got ${String(error)}`);
}

/** Runs `fn`, expects it to throw an instance of `type`, returns the error. */
export function assertThrowsType<T>(
  fn: () => unknown,
  // deno-lint-ignore no-explicit-any
  type: new (...args: any[]) => T,
): T {
  try {
    fn();
  } catch (error) {
    assertInstanceOf(error, type);
    return error;
  }
  throw new nodeAssert.AssertionError({ message: `expected ${type.name} to be thrown` });
}
