# handoff: `make` builds, `make run` runs on defaults, `make test` runs every test,
# `make install` installs the binary and the systemd units.

CARGO ?= cargo
PREFIX ?= /usr/local

.PHONY: all build release run test lint clean fuzz install uninstall static interop-deps interop bench

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

# Static musl binaries for x86_64 and aarch64 (Raspberry Pi), linked by the toolchain's rust-lld
# (.cargo/config.toml), so no C cross toolchain is needed. Needs `rustup target add $(STATIC_TARGETS)`.
STATIC_TARGETS = x86_64-unknown-linux-musl aarch64-unknown-linux-musl

static:
	@for target in $(STATIC_TARGETS); do \
		$(CARGO) build --release --locked --target $$target || exit 1; \
	done
	@for target in $(STATIC_TARGETS); do \
		ls -l target/$$target/release/handoff | awk '{ print $$9 ": " $$5 " bytes" }'; \
	done

# `make && sudo make install`: the binary to $(DESTDIR)$(PREFIX)/bin, the units to
# $(DESTDIR)/etc/systemd/system, with ExecStart pointed at $(PREFIX)/bin/handoff. It does not
# build (root may have no cargo), nor enable anything: see README "Run it as a service".
UNITDIR ?= /etc/systemd/system

install:
	@test -x target/release/handoff || { echo "run make first: no target/release/handoff" >&2; exit 1; }
	install -D -m 755 target/release/handoff $(DESTDIR)$(PREFIX)/bin/handoff
	install -D -m 644 systemd/handoff.socket $(DESTDIR)$(UNITDIR)/handoff.socket
	sed 's|^ExecStart=/usr/local/bin/handoff|ExecStart=$(PREFIX)/bin/handoff|' systemd/handoff.service > target/handoff.service
	install -D -m 644 target/handoff.service $(DESTDIR)$(UNITDIR)/handoff.service

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/handoff $(DESTDIR)$(UNITDIR)/handoff.socket $(DESTDIR)$(UNITDIR)/handoff.service

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

# Interop, not part of `make test` (which only compiles them): tests/interop.rs runs handoff
# behind the real nginx and Caddy with the configurations in proxy/, and talks to it with curl
# (over TLS) and headless Chromium; checks /metrics with promtool; and runs the static aarch64
# build under qemu-aarch64-static. `make interop-deps` installs those from Debian's packages
# (prometheus brings promtool) and adds the aarch64 musl target to the toolchain. It also runs
# the real Pubky SDK (interop/pubky/, pinned in its package-lock.json) in Node against handoff;
# Node and npm come from Debian unless some node is installed already.
INTEROP_PROGRAMS = nginx caddy chromium openssl curl promtool qemu-aarch64-static node npm

interop-deps:
	apt-get install -y nginx caddy chromium openssl curl prometheus qemu-user-static
	command -v node >/dev/null && command -v npm >/dev/null || apt-get install -y nodejs npm
	@for p in $(INTEROP_PROGRAMS); do command -v $$p >/dev/null || { echo "$$p is missing"; exit 1; }; done
	rustup target add aarch64-unknown-linux-musl
	cd interop/pubky && npm ci --no-audit --no-fund

interop:
	$(CARGO) build --release --locked --target aarch64-unknown-linux-musl
	$(CARGO) test --locked --release --test interop -- --ignored --test-threads=1

# Benchmarks, not part of `make test`: a fresh relay on a free port, every handoff-bench scenario,
# a table on stdout (BENCHMARKS.md has the method and the results).
bench:
	CARGO="$(CARGO)" benches/run.sh
