# handoff: `make` builds, `make run` runs on defaults, `make test` runs every test.

CARGO ?= cargo
PREFIX ?= /usr/local

.PHONY: all build release run test lint clean fuzz bench

all: build

build:
	$(CARGO) build --release --locked
	@ls -l target/release/handoff | awk '{ print "target/release/handoff: " $$5 " bytes" }'

release: build

run:
	$(CARGO) run --release --locked --bin handoff

test:
	$(CARGO) test --locked

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

clean:
	$(CARGO) clean

# Fuzzing, not part of `make test`: each target in fuzz/ (its own crate and workspace) for
# FUZZ_RUNS inputs, e.g. `make fuzz FUZZ_RUNS=10000000`; new inputs go to fuzz/corpus/, crashes to
# fuzz/artifacts/. cargo-fuzz passes nightly -Z flags (AddressSanitizer, coverage); RUSTC_BOOTSTRAP=1
# lets the stable compiler accept them.
FUZZ_RUNS ?= 5000000
FUZZ_RUN = RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run

fuzz:
	$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install --locked cargo-fuzz
	mkdir -p fuzz/corpus/parse_head fuzz/corpus/chunked
	$(FUZZ_RUN) parse_head fuzz/corpus/parse_head fuzz/seeds/parse_head -- -runs=$(FUZZ_RUNS) -max_len=10000
	$(FUZZ_RUN) chunked fuzz/corpus/chunked fuzz/seeds/chunked -- -runs=$(FUZZ_RUNS)

# Benchmarks, not part of `make test`: a fresh relay on a free port, every handoff-bench scenario,
# a table on stdout (BENCHMARKS.md has the method and the results).
bench:
	CARGO="$(CARGO)" benches/run.sh
