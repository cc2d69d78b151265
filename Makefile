# Thin wrapper: bootstraps the pinned Deno from the npm registry (tools/),
# installs the Debian packages the tests need, then calls deno tasks.

DENO_DIR_TOOLS := tools/node_modules
DENO := $(DENO_DIR_TOOLS)/.bin/deno
DIST := dist

.PHONY: run test check unit bench dist deps fmt clean

$(DENO): tools/package.json tools/package-lock.json
	cd tools && npm ci --no-audit --no-fund --loglevel=error
	@test -x $(DENO) || { echo "deno was not installed by npm (see tools/)" >&2; exit 1; }
	touch $(DENO)

## run: start the server with the shipped default config (socket tas_socket, ./var/leases.db)
run: $(DENO)
	mkdir -p var
	$(DENO) task run

## deps: Debian packages needed by the client and the tests
deps:
	./tools/install-system-deps.sh

## check: formatting, lint and type checks
check: $(DENO)
	$(DENO) task check

## test: install everything, check, and run every test (end-to-end ones need root)
test: deps $(DENO) check
	$(DENO) task test

## bench: throughput, latency and start-up figures, printed as a table
bench: deps $(DENO)
	$(DENO) task bench

## dist: single binaries with deno compile (downloads denort, or set DENORT_BIN)
dist: $(DENO)
	mkdir -p $(DIST)
	$(DENO) compile --allow-all --output $(DIST)/table-allocator-server server.ts
	$(DENO) compile --allow-all --output $(DIST)/table-allocator-client client.ts

fmt: $(DENO)
	$(DENO) fmt

clean:
	rm -rf $(DIST) var
