# corecast: the only entry points a user needs.
#   make run    install what is missing, build (release), serve the demo stream
#   make test   install what is missing, build, run every check
SHELL := /bin/bash
# A fresh machine's rustup puts cargo in ~/.cargo/bin, which this shell's PATH may lack.
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
RUN_ARGS ?=

.PHONY: run test deps test-deps build check fmt lint unit clean

run: deps
	$(CARGO) build --release -p corecast
	"$${CARGO_TARGET_DIR:-target}/release/corecast" run $(RUN_ARGS)

test: test-deps fmt lint unit

deps:
	scripts/install-deps.sh

test-deps:
	scripts/install-deps.sh --test

build: deps
	$(CARGO) build --workspace --all-targets

fmt:
	$(CARGO) fmt --all --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Unit, integration and end-to-end tests (the e2e tests in tests/ start the corecast binary
# and real peers: ffmpeg, ffprobe). nextest runs them in parallel when it is installed.
unit:
	$(CARGO) build --workspace --all-targets
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --no-fail-fast; \
	else \
	  $(CARGO) test --workspace --no-fail-fast; \
	fi
	# No heap allocation per request on the delivery threads (a build with a counting allocator).
	$(CARGO) test -p corecast-engine --features count-allocations --test alloc_per_request

clean:
	$(CARGO) clean

# Capacity run (docs/capacity.md): BENCH_VIEWERS viewers for BENCH_SECONDS against the demo stream.
BENCH_VIEWERS ?= 1000
BENCH_SECONDS ?= 40
.PHONY: bench
bench: deps
	bench/run-viewers.sh $(BENCH_VIEWERS) $(BENCH_SECONDS)

# corecast vs nginx on the same bytes, same pinned core, alternating rounds (docs/capacity.md).
.PHONY: bench-nginx
bench-nginx: test-deps
	bench/compare-nginx.sh $(BENCH_NGINX_ARGS)
