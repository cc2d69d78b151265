import { assert, assertEquals } from "../../tests/helpers/assert.ts";
import { after, every, sleep } from "./timer.ts";

const TIMER_MODULE = new URL("./timer.ts", import.meta.url).href;

/** Runs a script that imports the timer module; its exit code, stdout and time to exit. */
async function runScript(body: string): Promise<{ code: number; stdout: string; ms: number }> {
  const started = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", `import { after, every, sleep } from ${JSON.stringify(TIMER_MODULE)};\n${body}`],
    env: { DENO_NO_UPDATE_CHECK: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  return { code: out.code, stdout, ms: performance.now() - started };
}

Deno.test("after calls once, no sooner than asked", async () => {
  let calls = 0;
  const started = performance.now();
  const fired = new Promise<number>((resolve) =>
    after(30, () => {
      calls++;
      resolve(performance.now() - started);
    })
  );
  const elapsed = await fired;
  assert(elapsed >= 29, `fired after ${elapsed} ms`);
  await sleep(50);
  assertEquals(calls, 1);
});

Deno.test("a time of 0, below 0 or NaN fires on the timers' next turn", async () => {
  const fired: number[] = [];
  for (const ms of [0, -5, NaN]) after(ms, () => fired.push(ms));
  await sleep(20);
  assertEquals(fired, [0, -5, NaN]);
});

Deno.test("a cancelled timer is never called, and cancelling twice does nothing", async () => {
  let calls = 0;
  const timer = after(10, () => calls++);
  timer.cancel();
  timer.cancel();
  await sleep(60);
  assertEquals(calls, 0);
});

Deno.test("a time past the runtime's 2^31-1 ms waits instead of firing at once", async () => {
  // One signal that long fires at once (Deno clamps it, as Node does setTimeout).
  let calls = 0;
  const timer = after(2 ** 31 + 5, () => calls++);
  await sleep(100);
  timer.cancel();
  assertEquals(calls, 0);
});

Deno.test("every repeats until cancelled, also by its own callback", async () => {
  let calls = 0;
  const timer = every(10, () => {
    if (++calls === 3) timer.cancel();
  });
  await sleep(150);
  assertEquals(calls, 3);
});

Deno.test("an armed timer keeps the process alive until it fires; sleep does too", async () => {
  const { stdout } = await runScript(
    `after(200, () => console.log("fired"));\nawait sleep(100);\nconsole.log("slept");`,
  );
  assertEquals(stdout, "slept\nfired\n");
});

Deno.test("a cancelled timer, and every with keepAlive false, let the process exit", async () => {
  const { stdout, ms } = await runScript(
    `after(30_000, () => console.log("fired")).cancel();\n` +
      `every(30_000, () => console.log("ticked"), { keepAlive: false });\nconsole.log("end");`,
  );
  assertEquals(stdout, "end\n");
  assert(ms < 20_000, `the process took ${ms} ms to exit`);
});
