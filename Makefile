# Thin wrapper: bootstraps the pinned Deno from the npm registry (tools/),
# installs the Debian packages the tests need, then calls deno tasks.

DENO := tools/node_modules/.bin/deno
# make would compare against the symlink's target, whose mtime is the npm
# tarball's: a stamp file records when the install really happened.
DENO_STAMP := tools/node_modules/.installed
DIST := dist
# The one version string, for the package and the --version checks.
VERSION := $(shell sed -n 's/^export const VERSION = "\(.*\)";$$/\1/p' src/version.ts)
ARCH := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)

# Every Deno started from here (tasks, tests, their children) must not look
# for Deno updates over the network; deno.json tasks cannot set it.
export DENO_NO_UPDATE_CHECK := 1

.PHONY: run test check unit bench dist deb deps fmt clean

# `npm install`, not `npm ci`: the lock file lists only the platform package
# of the machine that wrote it; the version is pinned exactly in package.json.
$(DENO_STAMP): tools/package.json tools/package-lock.json
	cd tools && npm install --no-audit --no-fund --loglevel=error
	@test -x $(DENO) || { echo "deno was not installed by npm (see tools/)" >&2; exit 1; }
	touch $@

## run: start the server with the shipped default config (socket tas_socket, ./var/leases.db)
run: $(DENO_STAMP)
	mkdir -p var
	$(DENO) task run

## deps: Debian packages needed by the client and the tests
deps:
	./tools/install-system-deps.sh

## check: formatting, lint and type checks
check: $(DENO_STAMP)
	$(DENO) task check

## unit: every test that needs no root, quickly (no packages installed, no checks);
## tests that need root are skipped even when run as root
unit: $(DENO_STAMP)
	$(DENO) task unit

## test: install everything, check, and run every test (end-to-end ones need root)
test: deps $(DENO_STAMP) check
	$(DENO) task test

## bench: throughput, latency and start-up figures, printed as a table
bench: deps $(DENO_STAMP)
	$(DENO) task bench

## dist: single binaries with deno compile (downloads denort, or set DENORT_BIN), checked
dist: $(DENO_STAMP)
	DENO=$(DENO) VERSION=$(VERSION) ./tools/dist.sh $(DIST)

## deb: dist/table-allocator_<version>_<arch>.deb, built offline (see docs/packaging.md)
deb: $(DENO_STAMP)
	DENO=$(DENO) VERSION=$(VERSION) ARCH=$(ARCH) ./tools/build-deb.sh $(DIST)

fmt: $(DENO_STAMP)
	$(DENO) fmt

clean:
	rm -rf $(DIST) var
