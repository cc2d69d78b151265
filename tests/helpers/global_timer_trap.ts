/**
 * A trap on Deno's global timer functions: a line on stderr, with the
 * stack, at the first touch of each. In Deno 2.9 that touch loads
 * `node:timers` (see `src/util/timer.ts`); a program that never touches
 * them shows no such line. `global_timer_trap_preload.ts` sets it in a
 * program (`deno run --preload=...`).
 *
 * @module
 */

/** What the trap writes before the timer's name and the stack. */
export const TRAP_MARK = "global timer touched:";

const NAMES = [
  "setTimeout",
  "setInterval",
  "clearTimeout",
  "clearInterval",
  "setImmediate",
  "clearImmediate",
] as const;

/** Sets the trap in this process. */
export function installGlobalTimerTrap(): void {
  for (const name of NAMES) trap(name);
}

function trap(name: typeof NAMES[number]): void {
  const original = Object.getOwnPropertyDescriptor(globalThis, name);
  if (!original?.get) {
    throw new Error(`globalThis.${name} is no longer a getter: the trap needs a look`);
  }
  Object.defineProperty(globalThis, name, {
    configurable: true,
    enumerable: original.enumerable ?? true,
    get() {
      // Once per name: put the original back, then report where the touch came from.
      Object.defineProperty(globalThis, name, original);
      console.error(`${TRAP_MARK} ${name}\n${new Error().stack}`);
      return original.get!.call(globalThis);
    },
    set: original.set,
  });
}
