import { assertEquals } from "../../tests/helpers/assert.ts";
import type { Fields, Level } from "./logger.ts";
import { LimitedLog, RateLimiter } from "./rate_limit.ts";

Deno.test("RateLimiter logs a burst per kind and sender per window, then counts", () => {
  const limiter = new RateLimiter({ burst: 2, windowMs: 1000 });
  const hit = (kind: string, sender: string, now: number) => limiter.hit(kind, sender, now).log;
  assertEquals([hit("a", "uid=1", 0), hit("a", "uid=1", 1), hit("a", "uid=1", 2)], [
    true,
    true,
    false,
  ]);
  assertEquals(hit("a", "uid=2", 3), true, "another sender has its own budget");
  assertEquals(hit("b", "uid=1", 4), true, "another kind has its own budget");
  assertEquals(hit("a", "uid=1", 999), false);
  // The next window starts with the report of the last one.
  const next = limiter.hit("a", "uid=1", 1000, { x: 1 });
  assertEquals(next.log, true);
  assertEquals(next.ended, { kind: "a", sender: "uid=1", count: 2, fields: {} });
});

Deno.test("RateLimiter.sweep() reports ended windows that suppressed lines and forgets idle keys", () => {
  const limiter = new RateLimiter({ burst: 1, windowMs: 1000 });
  limiter.hit("a", "uid=1", 0);
  limiter.hit("a", "uid=1", 10, { uid: 1, n: 1 });
  limiter.hit("a", "uid=1", 20, { uid: 1, n: 2 });
  limiter.hit("b", "uid=1", 500);
  assertEquals(limiter.sweep(900), []);
  assertEquals(limiter.sweep(1000), [
    { kind: "a", sender: "uid=1", count: 2, fields: { uid: 1, n: 2 } },
  ]);
  assertEquals(limiter.size, 1, "the quiet window of b is still open");
  assertEquals(limiter.sweep(1500), []);
  assertEquals(limiter.size, 0);
});

Deno.test("RateLimiter keeps memory bounded: past maxKeys new senders share one key", () => {
  const limiter = new RateLimiter({ burst: 1, windowMs: 1000, maxKeys: 2 });
  limiter.hit("a", "s1", 0);
  limiter.hit("a", "s2", 0);
  assertEquals(limiter.hit("a", "s3", 0).log, true);
  assertEquals(limiter.hit("a", "s4", 0).log, false, "s4 shares the budget of s3 (other)");
  assertEquals(limiter.size, 3);
  assertEquals(limiter.drain(), [{ kind: "a", sender: "other", count: 1, fields: {} }]);
});

Deno.test("LimitedLog: 20,000 warnings from one sender log a burst and one summary per window", () => {
  const lines: Array<[string, Fields | undefined]> = [];
  let now = 0;
  const warnings = new LimitedLog(
    {
      log: (_level: Level, message: string, fields?: Fields) => void lines.push([message, fields]),
    },
    { burst: 3, windowMs: 1000, now: () => now },
  );
  try {
    for (let i = 0; i < 20_000; i++) {
      now = i / 10; // 20,000 lines over 2 s: two windows
      warnings.warn("rejected bad_json", "uid=65534", "rejected", { error: "bad_json", i });
    }
  } finally {
    warnings.close();
  }
  assertEquals(lines.map(([m]) => m), [
    "rejected",
    "rejected",
    "rejected",
    "9997 similar messages suppressed",
    "rejected",
    "rejected",
    "rejected",
    "9997 similar messages suppressed",
  ]);
  assertEquals(lines[3][1], {
    kind: "rejected bad_json",
    sender: "uid=65534",
    error: "bad_json",
    i: 9999,
  });
});
