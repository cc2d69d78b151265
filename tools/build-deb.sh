#!/usr/bin/env bash
# make deb: builds OUTDIR/table-allocator_<version>_<arch>.deb with dpkg-deb,
# offline (everything comes from this tree and tools/node_modules).
#
#   DENO=tools/node_modules/.bin/deno VERSION=0.1.0 ARCH=amd64 tools/build-deb.sh OUTDIR
#
# The programs: with a denort at hand (DENORT_BIN, or DENORT_DOWNLOAD=1 to
# let deno compile fetch it), the binaries of tools/dist.sh. Otherwise (as
# on our build machines) the pinned Deno runtime of tools/node_modules, the
# code, its npm dependencies (node_modules/, for nodeModulesDir "manual")
# and a prepared module cache, behind small launchers (packaging/launcher.in)
# that fetch nothing at run time. Layout: docs/packaging.md.
set -euo pipefail

out=${1:?usage: tools/build-deb.sh OUTDIR}
: "${DENO:?DENO must name the deno executable}" "${VERSION:?}" "${ARCH:?}"
export DENO_NO_UPDATE_CHECK=1
top=$(pwd)
lib=/usr/lib/table-allocator

work=$(mktemp -d "${TMPDIR:-/tmp}/table-allocator-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

die() {
  echo "make deb: $*" >&2
  exit 1
}

# put MODE SOURCE DESTINATION: installs one file into the package tree.
put() {
  install -D -m "$1" "$2" "$root$3"
}

# The launchers: name, path, entry module, what it is, flags of its own
# (the server runs without V8's code cache: docs/packaging.md says why).
launchers=(
  "table_allocator_server|/usr/sbin|server.ts|the table-allocator server|--no-code-cache"
  "table_allocator_client|/usr/sbin|client.ts|the table-allocator client|"
  "table-allocator-ctl|/usr/bin|ctl.ts|administers a running table-allocator server|"
)

if [ -n "${DENORT_BIN:-}" ] || [ "${DENORT_DOWNLOAD:-}" = 1 ]; then
  runtime="The programs are single binaries built with deno compile."
  DENO=$DENO VERSION=$VERSION ./tools/dist.sh "$work/dist"
  for entry in "${launchers[@]}"; do
    IFS='|' read -r name dir _ _ <<<"$entry"
    put 0755 "$work/dist/$name" "$dir/$name"
  done
else
  runtime="The programs run on the Deno runtime the package carries, from a\n prepared module cache: nothing is fetched at run time."
  real_deno=$(readlink -f "$DENO")
  put 0755 "$real_deno" "$lib/deno"

  # The code the programs load (not the tests, benchmarks or docs).
  app=$root$lib/app
  while IFS= read -r file; do
    put 0644 "$file" "$lib/app/$file"
  done < <(find server.ts client.ts ctl.ts config ffi src -name '*.ts' ! -name '*_test.ts' | sort)

  # Its configuration: the project's import map; npm packages from
  # node_modules/ ("manual": nothing is resolved against a registry); no
  # lock file (Deno would write one next to it).
  "$DENO" eval --quiet '
    const config = JSON.parse(Deno.readTextFileSync("deno.json"));
    const app = { imports: config.imports, nodeModulesDir: "manual", lock: false };
    Deno.writeTextFileSync(Deno.args[0], JSON.stringify(app, null, 2) + "\n");
  ' "$app/deno.json"

  # The npm dependencies, as the project resolved them (deno.lock): copied
  # out of node_modules/, symlinks followed, without their documentation.
  "$DENO" install --quiet --frozen
  for package in $("$DENO" eval --quiet '
    const { imports } = JSON.parse(Deno.readTextFileSync("deno.json"));
    for (const target of Object.values(imports)) {
      const name = /^npm:(@?[^@]+)@/.exec(target)?.[1];
      if (name) console.log(name);
    }'); do
    mkdir -p "$app/node_modules/$(dirname "$package")"
    cp -rL "node_modules/$package" "$app/node_modules/$package"
    find "$app/node_modules/$package" -iname '*.md' -delete
  done

  # The prepared module cache: every module transpiled once, here. Deno
  # files its cache by the module's path, so the cache made for the staging
  # tree is moved to the installed path (postinst copies it to DENO_DIR).
  DENO_DIR=$work/deno-dir "$DENO" cache --quiet --config "$app/deno.json" \
    "$app/server.ts" "$app/client.ts" "$app/ctl.ts" "$app/src/store/postgres_store.ts"
  [ -d "$work/deno-dir/gen/file$app" ] ||
    die "deno cache left no gen/file$app in DENO_DIR: the cache layout of this Deno is not the one expected"
  mkdir -p "$root$lib/deno-dir/gen/file$lib"
  mv "$work/deno-dir/gen/file$app" "$root$lib/deno-dir/gen/file$lib/app"

  for entry in "${launchers[@]}"; do
    IFS='|' read -r name dir module what flags <<<"$entry"
    sed -e "s|@NAME@|$name|g" -e "s|@MODULE@|$module|g" -e "s|@WHAT@|$what|g" \
      -e "s|@FLAGS@|$flags|g" \
      packaging/launcher.in >"$work/$name"
    put 0755 "$work/$name" "$dir/$name"
  done
fi

# systemd units: every one in packaging/ (the agent's too, once it is there).
units=()
for unit in packaging/*.service; do
  put 0644 "$unit" "/lib/systemd/system/$(basename "$unit")"
  units+=("$(basename "$unit")")
done

# Configuration (conffiles): the server's, the hooks' settings.
put 0644 config/production.json /etc/table-allocator/server.json
put 0644 packaging/table-allocator.default /etc/default/table-allocator

# The hooks, where their callers look for them.
put 0644 packaging/hooks/dhclient-enter-hook /etc/dhcp/dhclient-enter-hooks.d/table-allocator
put 0644 packaging/hooks/dhclient-exit-hook /etc/dhcp/dhclient-exit-hooks.d/table-allocator
put 0755 packaging/hooks/ifupdown-if-up /etc/network/if-up.d/table-allocator
put 0755 packaging/hooks/ifupdown-if-down /etc/network/if-down.d/table-allocator
nm=/usr/lib/NetworkManager/dispatcher.d
put 0755 packaging/hooks/networkmanager-dispatcher "$nm/50-table-allocator"
mkdir -p "$root$nm/pre-down.d"
ln -s ../50-table-allocator "$root$nm/pre-down.d/50-table-allocator"
nd=/usr/lib/networkd-dispatcher
put 0755 packaging/hooks/networkd-dispatcher "$nd/routable.d/50-table-allocator"
for state in off no-carrier; do
  mkdir -p "$root$nd/$state.d"
  ln -s ../routable.d/50-table-allocator "$root$nd/$state.d/50-table-allocator"
done

# Manual pages, compressed reproducibly.
for page in packaging/man/*.[0-9]; do
  section=${page##*.}
  put 0644 "$page" "/usr/share/man/man$section/$(basename "$page")"
  gzip -9n "$root/usr/share/man/man$section/$(basename "$page")"
done

# Documentation, the copyright (with the licenses of what the package carries)
# and a changelog (a native package: changelog.gz).
doc=/usr/share/doc/table-allocator
put 0644 README.md "$doc/README.md"
for page in docs/*.md; do put 0644 "$page" "$doc/docs/$(basename "$page")"; done
put 0644 packaging/hooks/README.md "$doc/hooks.md"
find "$root$doc" -name '*.md' -exec gzip -9n {} +
{
  cat packaging/debian/copyright
  if [ -e "$root$lib/deno" ]; then
    printf '\nFiles: usr/lib/table-allocator/deno\nCopyright: 2018-2026 the Deno authors\nLicense: MIT\n'
    sed -e 's/^$/./' -e 's/^/ /' "$(dirname "$(readlink -f "$DENO")")/LICENSE"
    printf '\nFiles: usr/lib/table-allocator/app/node_modules/postgres/*\nCopyright: Rasmus Porsager\nLicense: Unlicense\n See /usr/share/doc/table-allocator/copyright, License: Unlicense, below.\n'
    printf '\nLicense: Unlicense\n'
    sed -e 's/^$/./' -e 's/^/ /' packaging/debian/unlicense.txt
  fi
} >"$work/copyright"
put 0644 "$work/copyright" "$doc/copyright"
when=$(git log -1 --format=%ct 2>/dev/null || date +%s)
{
  printf 'table-allocator (%s) unstable; urgency=medium\n\n' "$VERSION"
  printf '  * Version %s, built from the table-allocator sources (see README.md).\n\n' "$VERSION"
  printf ' -- %s  %s\n' "$(sed -n 's/^Maintainer: //p' packaging/debian/control.in)" \
    "$(LC_ALL=C date -u -R -d "@$when")"
} | gzip -9n >"$work/changelog.gz"
put 0644 "$work/changelog.gz" "$doc/changelog.gz"
put 0644 packaging/debian/lintian-overrides /usr/share/lintian/overrides/table-allocator

# Control files.
mkdir -p "$root/DEBIAN"
(cd "$root" && find etc -type f | sed 's|^|/|' | sort) >"$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  sed "s|@UNITS@|${units[*]}|" "packaging/debian/$script" >"$root/DEBIAN/$script"
  chmod 0755 "$root/DEBIAN/$script"
done
# The shared libraries of the binaries, as dpkg-shlibdeps finds them.
mkdir -p "$work/shlibs/debian"
printf 'Source: table-allocator\n\nPackage: table-allocator\nArchitecture: any\n' \
  >"$work/shlibs/debian/control"
elves=$(find "$root" -type f -perm -u+x -exec sh -c 'head -c 4 "$1" | grep -q ELF' _ {} \; -print)
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O $elves 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no shared library dependencies of: $elves"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@SIZE@|$size|" \
  -e "s|@SHLIBS@|$shlibs|" -e "s|@RUNTIME@|$runtime|" packaging/debian/control.in \
  >"$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
  xargs -0 md5sum) >"$root/DEBIAN/md5sums"

# Reproducible times, then the package.
find "$root" -exec touch -h -d "@$when" {} +
mkdir -p "$out"
deb=$out/table-allocator_${VERSION}_${ARCH}.deb
SOURCE_DATE_EPOCH=$when dpkg-deb --root-owner-group -Zgzip -z6 --build "$root" "$deb" >/dev/null
echo "make deb: built $deb ($(du -h "$deb" | cut -f1))" >&2
cd "$top"
