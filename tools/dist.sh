#!/usr/bin/env bash
# make dist: single binaries with `deno compile`, under the original's names,
# checked before they are called built.
#
#   DENO=tools/node_modules/.bin/deno VERSION=0.1.0 tools/dist.sh OUTDIR
#
# `deno compile` copies a runtime (denort) and appends the program to it. It
# downloads denort unless DENORT_BIN names one. Handed the Deno CLI instead,
# it "succeeds" and writes binaries that ignore the program and print Deno's
# own help; so DENORT_BIN is refused when it behaves like the CLI, and every
# binary built must print our version with --version.
set -euo pipefail

out=${1:?usage: tools/dist.sh OUTDIR}
: "${DENO:?DENO must name the deno executable}" "${VERSION:?VERSION must be set}"
export DENO_NO_UPDATE_CHECK=1

die() {
  echo "make dist: $*" >&2
  exit 1
}

if [ -n "${DENORT_BIN:-}" ]; then
  [ -f "$DENORT_BIN" ] && [ -x "$DENORT_BIN" ] ||
    die "DENORT_BIN=$DENORT_BIN is not an executable file"
  # A denort runs only the program appended to it; the CLI has subcommands.
  if probe=$(timeout 30 "$DENORT_BIN" eval 'console.log("deno-cli")' 2>/dev/null) &&
    [ "$probe" = deno-cli ]; then
    die "DENORT_BIN=$DENORT_BIN is the Deno CLI, not a denort runtime: the binaries would print Deno's help. Set DENORT_BIN to denort of Deno $("$DENO" --version | sed -n '1s/^deno \([^ ]*\).*/\1/p') (denort-<target>.zip of the Deno release) or unset it to let deno compile download it"
  fi
fi

# name, entry point, a module loaded only on demand (a dynamic import),
# flags of its own: the server runs without V8's code cache, as its
# launcher does (docs/packaging.md says why).
binaries=(
  "table_allocator_server|server.ts|src/store/postgres_store.ts|--no-code-cache"
  "table_allocator_client|client.ts||"
  "table-allocator-ctl|ctl.ts||"
)

mkdir -p "$out"
for entry in "${binaries[@]}"; do
  IFS='|' read -r name module extra flags <<<"$entry"
  options=()
  [ -z "$extra" ] || options+=(--include "$extra")
  [ -z "$flags" ] || options+=("$flags")
  "$DENO" compile --quiet --allow-all "${options[@]}" --output "$out/$name" "$module"
done

for entry in "${binaries[@]}"; do
  IFS='|' read -r name _ <<<"$entry"
  printed=$(timeout 30 "$out/$name" --version 2>&1 | head -n 1) || true
  if ! grep -Eq "(^| )$VERSION( |$)" <<<"$printed"; then
    rm -f "$out/$name"
    die "$out/$name --version printed \"$printed\", not version $VERSION: the runtime it was built on (DENORT_BIN=${DENORT_BIN:-downloaded}) is not a denort of this Deno; the binary was removed"
  fi
done
echo "make dist: built and checked ${binaries[*]%%|*} in $out (version $VERSION)" >&2
