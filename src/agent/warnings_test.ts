import { assertEquals } from "../../tests/helpers/assert.ts";
import type { Fields } from "../log/logger.ts";
import { WarningLimiter } from "./warnings.ts";

Deno.test("WarningLimiter writes one warning per kind and interval and counts the rest", async () => {
  const lines: Array<[string, Fields | undefined]> = [];
  const limiter = new WarningLimiter(
    (_level, message, fields) => lines.push([message, fields]),
    50,
  );
  for (let i = 0; i < 5; i++) limiter.warn("a", "first kind", { n: i });
  limiter.warn("b", "second kind");
  assertEquals(lines, [["first kind", { n: 0, suppressed: undefined }], [
    "second kind",
    { suppressed: undefined },
  ]]);
  await new Promise((resolve) => setTimeout(resolve, 60));
  limiter.warn("a", "first kind", { n: 5 });
  assertEquals(lines[2], ["first kind", { n: 5, suppressed: 4 }]);
});
