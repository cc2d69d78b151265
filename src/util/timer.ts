/**
 * Timers for the programs' own waits, instead of the global `setTimeout`
 * and `setInterval`.
 *
 * In Deno 2.9 the global timers are Node's: the first touch of
 * `setTimeout` in a process loads `node:timers` and what it needs
 * (`async_hooks`, Node's errors, `util`), 6 to 10 ms here, which the
 * server paid before its first answer (its store arms a timer when it
 * opens). `AbortSignal.timeout` runs on the same timers of the runtime
 * without any of that. Deno keeps the process alive while such a signal
 * has an `abort` listener and lets it go when the last one is removed,
 * so a signal with one listener is a timer that keeps the process alive
 * until it fires or is cancelled, like `setTimeout` (checked by
 * `timer_test.ts`, so that a Deno that changes this fails the tests).
 *
 * A cancelled timer is not freed: its signal stays in the runtime's
 * timer list until its time comes (about a kilobyte). A long timer that
 * moves often should move only earlier (the stores' `ExpiryTimer`), or
 * be left to fire early and armed again then. An exception thrown by a
 * callback is uncaught, as it would be in a `setTimeout` callback.
 *
 * @module
 */

/** A timer armed by {@link after} or {@link every}. */
export interface Timer {
  /** Stops the timer: its callback is not called again. Calling it twice does nothing. */
  cancel(): void;
}

/**
 * The longest wait one signal is armed for: a later time is reached in
 * steps (Deno's timers, like Node's, take at most 2^31-1 ms).
 */
const MAX_STEP_MS = 2 ** 30;

/** Calls `fire` once, `ms` milliseconds from now (0, less or NaN: on the timers' next turn). */
export function after(ms: number, fire: () => void): Timer {
  let remaining = ms > 0 ? ms : 0; // NaN too, as setTimeout takes it
  let signal: AbortSignal | undefined;
  const listener = () => {
    if (remaining > 0) return arm();
    signal = undefined;
    fire();
  };
  const arm = () => {
    const step = Math.min(remaining, MAX_STEP_MS);
    remaining -= step;
    signal = AbortSignal.timeout(step);
    signal.addEventListener("abort", listener, { once: true });
  };
  arm();
  return {
    cancel() {
      signal?.removeEventListener("abort", listener);
      signal = undefined;
    },
  };
}

/** Options of {@link every}. */
export interface EveryOptions {
  /**
   * False: the timer alone does not keep the process alive. Only the
   * global timers can be unreferenced, so this one loads `node:timers`
   * when first armed: for timers armed late, if ever (default true).
   */
  keepAlive?: boolean;
}

/** Calls `fire` every `ms` milliseconds (counted from each call's start) until cancelled. */
export function every(ms: number, fire: () => void, options: EveryOptions = {}): Timer {
  if (options.keepAlive === false) {
    const id = setInterval(fire, ms);
    Deno.unrefTimer(id);
    return { cancel: () => clearInterval(id) };
  }
  // Armed again before `fire` runs, so that a `fire` that cancels stops the next call.
  const tick = () => {
    current = after(ms, tick);
    fire();
  };
  let current = after(ms, tick);
  return { cancel: () => current.cancel() };
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => after(ms, resolve));
}
