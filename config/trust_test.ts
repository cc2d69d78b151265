import { assert, assertEquals, assertMatch, assertThrowsType } from "../tests/helpers/assert.ts";
import { VALID_CONFIG } from "../tests/helpers/config.ts";
import { ConfigError, validateConfig } from "./config.ts";
import { PskFileError, readPskFile } from "./psk_file.ts";
import { DEFAULT_MAX_LEASES_PER_UID, parseTrust } from "./trust.ts";

const VALID = VALID_CONFIG;

function rejects(change: Record<string, unknown>, key: string, message: RegExp): void {
  const error = assertThrowsType(() => validateConfig({ ...VALID, ...change }), ConfigError);
  assertEquals(error.key, key);
  assertMatch(error.message, message);
}

Deno.test("trust defaults: 8 leases per non-root uid, no message authentication", () => {
  assertEquals(validateConfig(VALID).trust, { maxLeasesPerUid: 8, auth: undefined });
  assertEquals(DEFAULT_MAX_LEASES_PER_UID, 8);
  assertEquals(parseTrust({ max_leases_per_uid: 0 }).maxLeasesPerUid, 0);
});

Deno.test("auth: psk_file required, require defaults to true, clock_skew to 10 s", () => {
  assertEquals(validateConfig({ ...VALID, auth: { psk_file: "/etc/ta/psk" } }).trust.auth, {
    pskFile: "/etc/ta/psk",
    require: true,
    clockSkew: 10,
  });
  assertEquals(
    parseTrust({ auth: { psk_file: "k", require: false, clock_skew: 30 } }).auth,
    { pskFile: "k", require: false, clockSkew: 30 },
  );
});

Deno.test("trust keys: every bad value names the key, the expected form and the value", () => {
  rejects({ max_leases_per_uid: -1 }, "max_leases_per_uid", /integer from 0 to \d+, got -1/);
  rejects({ max_leases_per_uid: "8" }, "max_leases_per_uid", /got "8"/);
  rejects({ auth: "psk" }, "auth", /"auth" must be an object like \{"psk_file"/);
  rejects({ auth: {} }, "auth.psk_file", /"auth.psk_file" is required.*got nothing/);
  rejects({ auth: { psk_file: 3 } }, "auth.psk_file", /got 3/);
  rejects({ auth: { psk_file: "k", require: "yes" } }, "auth.require", /true or false, got "yes"/);
  rejects({ auth: { psk_file: "k", clock_skew: 0 } }, "auth.clock_skew", /1 to 3600, got 0/);
  rejects(
    { auth: { psk_file: "k", key: "x" } },
    "auth.key",
    /not a known key; known keys: psk_file/,
  );
});

Deno.test("readPskFile() takes a private hex key file and refuses one others can read", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ta-psk-" });
  try {
    const path = `${dir}/psk`;
    const key = "ab".repeat(32);
    Deno.writeTextFileSync(path, `${key}\n`, { mode: 0o600 });
    Deno.chmodSync(path, 0o600);
    assertEquals(readPskFile(path).bytes, new Uint8Array(32).fill(0xab));
    Deno.chmodSync(path, 0o400);
    assertEquals(readPskFile(path).bytes.length, 32, "read-only for the owner is fine");

    for (const [mode, who] of [[0o640, "group"], [0o604, "others"], [0o644, "group and others"]]) {
      Deno.chmodSync(path, mode as number);
      const error = assertThrowsType(() => readPskFile(path), PskFileError);
      assertEquals(
        error.message,
        `Cannot use PSK file "${path}": it is readable by ${who} (mode 0${
          (mode as number).toString(8)
        }); a key others can read is no secret: chmod 600 ${path}`,
      );
    }
    Deno.chmodSync(path, 0o600);
    Deno.writeTextFileSync(path, "not a key\n");
    const bad = assertThrowsType(() => readPskFile(path), PskFileError);
    assertMatch(bad.message, /^Cannot use PSK file ".*": the PSK must be hex digits/);
    assertMatch(
      assertThrowsType(() => readPskFile(`${dir}/absent`), PskFileError).message,
      /Cannot use PSK file ".*absent": .*No such file/,
    );
    assertMatch(
      assertThrowsType(() => readPskFile(dir), PskFileError).message,
      /not a regular file/,
    );
    assert(!bad.message.includes(key));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
