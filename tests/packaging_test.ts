/**
 * The packaging files without installing anything: the hardened unit's
 * exposure score, `make dist` refusing what is not a denort, and the
 * hooks' shell syntax. (tests/deb_test.ts builds and installs the .deb.)
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { VERSION } from "../src/version.ts";

const TOP = fileURLToPath(new URL("..", import.meta.url));
const UNIT = `${TOP}packaging/table-allocator-server.service`;
const decoder = new TextDecoder();

async function run(command: string, args: string[], env?: Record<string, string>) {
  const out = await new Deno.Command(command, {
    args,
    cwd: TOP,
    env: { DENO_NO_UPDATE_CHECK: "1", ...env },
    stdin: "null",
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

const has = (command: string) =>
  ["/usr/bin", "/bin", "/usr/sbin"].some((dir) => {
    try {
      return Deno.statSync(`${dir}/${command}`).isFile;
    } catch {
      return false;
    }
  });

Deno.test({
  name: "the server unit is hardened: systemd-analyze security rates its exposure at most 3.0",
  ignore: !has("systemd-analyze"),
  fn: async () => {
    const result = await run("systemd-analyze", ["security", "--offline=yes", UNIT]);
    assertEquals(result.code, 0, result.stderr);
    const score = /Overall exposure level for \S+: (\d+\.\d+)/.exec(result.stdout);
    assert(score, result.stdout);
    assert(Number(score[1]) <= 3.0, `exposure ${score[1]}:\n${result.stdout}`);
    const unit = Deno.readTextFileSync(UNIT);
    for (
      const line of [
        "User=table-allocator",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_UNIX AF_NETLINK",
        "SystemCallFilter=@system-service",
        "UMask=0077",
        "MemoryDenyWriteExecute=no",
        "ExecStart=/usr/sbin/table_allocator_server -c /etc/table-allocator/server.json",
        "Environment=DENO_NO_UPDATE_CHECK=1",
      ]
    ) {
      assert(unit.split("\n").includes(line), `the unit has ${line}`);
    }
    // Why the JIT's memory must stay writable and executable is said where it is allowed.
    assertMatch(unit, /V8[^\n]*\n(#[^\n]*\n)*MemoryDenyWriteExecute=no/);
  },
});

Deno.test("make dist refuses the Deno CLI as DENORT_BIN, before compiling anything", async () => {
  const dist = await Deno.makeTempDir({ prefix: "ta-dist-" });
  try {
    const result = await run("make", [
      "-s",
      "dist",
      `DIST=${dist}`,
      `DENORT_BIN=${Deno.execPath()}`,
    ]);
    assert(result.code !== 0, "make dist failed");
    assertMatch(result.stderr, /DENORT_BIN=\S+ is the Deno CLI, not a denort runtime/);
    assertEquals([...Deno.readDirSync(dist)], [], "nothing built");
  } finally {
    await Deno.remove(dist, { recursive: true });
  }
});

Deno.test("make dist removes a binary that does not print our version, and fails saying so", async () => {
  // deno compile with a runtime that is not a denort writes binaries that
  // print Deno's own version; this stand-in "compiles" exactly that.
  const dir = await Deno.makeTempDir({ prefix: "ta-dist-" });
  try {
    const stub = `${dir}/deno`;
    await Deno.writeTextFile(
      stub,
      `#!/bin/sh
while [ $# -gt 1 ]; do
  if [ "$1" = --output ]; then printf '#!/bin/sh\\necho "deno 2.9.6 (stable, release)"\\n' >"$2"; chmod +x "$2"; fi
  shift
done
`,
    );
    await Deno.chmod(stub, 0o755);
    const result = await run("tools/dist.sh", [`${dir}/out`], { DENO: stub, VERSION });
    assertEquals(result.code, 1, result.stderr);
    assertMatch(
      result.stderr,
      new RegExp(
        `table_allocator_server --version printed "deno 2\\.9\\.6 \\(stable, release\\)", not version ${
          VERSION.replaceAll(".", "\\.")
        }.*the binary was removed`,
      ),
    );
    assert(!(await Deno.stat(`${dir}/out/table_allocator_server`).catch(() => null)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the hook scripts and maintainer scripts are valid POSIX shell (dash -n)", async () => {
  const scripts = [
    ...[...Deno.readDirSync(`${TOP}packaging/hooks`)].filter((e) => e.name !== "README.md")
      .map((e) => `packaging/hooks/${e.name}`),
    "packaging/debian/postinst",
    "packaging/debian/prerm",
    "packaging/debian/postrm",
    "packaging/launcher.in",
  ];
  for (const script of scripts) {
    const result = await run("sh", ["-n", script]);
    assertEquals(result.code, 0, `${script}: ${result.stderr}`);
  }
});
