# handoff: `make` builds, `make run` runs on defaults, `make test` runs every test,
# `make install` installs the binary and the systemd units.

CARGO ?= cargo
PREFIX ?= /usr/local

.PHONY: all build release run test lint clean fuzz install uninstall static interop-deps interop interop-systemd bench

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
# (.cargo/config.toml), so no C cross toolchain is needed. std is compiled again with the
# release profile and without its backtrace symbolizer (std's prebuilt copy keeps ~300 KB of
# it alive even with panic = "abort"; panics still print their message). That is cargo's
# build-std, which the stable compiler accepts with RUSTC_BOOTSTRAP=1 for this build only;
# README "Static binaries" has the sizes and the plain build without it.
STATIC_TARGETS = x86_64-unknown-linux-musl aarch64-unknown-linux-musl
STATIC_STD = -Z build-std=std,panic_abort -Z build-std-features=

static:
	rustup component add rust-src
	rustup target add $(STATIC_TARGETS)
	@for target in $(STATIC_TARGETS); do \
		RUSTC_BOOTSTRAP=1 $(CARGO) build --release --locked --target $$target $(STATIC_STD) || exit 1; \
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
# behind the real nginx and Caddy with the configurations in proxy/, and tests/cluster.rs three
# relays behind nginx and behind HAProxy (proxy/nginx-cluster.conf, proxy/haproxy.cfg: sharding
# by channel id, a relay killed and restarted, about 10 s); both talk to it with curl
# (over TLS) and headless Chromium; checks /metrics with promtool; runs the static aarch64 build
# under qemu-aarch64-static; and runs the units in systemd/ under a real, booted systemd in a
# Debian container (systemd/test-under-systemd.sh, as root: systemd-nspawn, the root file system
# made by debootstrap once and cached in /var/cache/handoff-systemd-rootfs). `make interop-deps`
# installs those from Debian's packages (prometheus brings promtool, systemd-container
# systemd-nspawn), adds the aarch64 musl target and rust-src to the toolchain. It
# also runs the real Pubky SDKs against handoff: the Rust crate (interop/pubky-rs/, its own
# Cargo project, pinned in its Cargo.lock) and the JavaScript one in Node (interop/pubky/,
# pinned in its package-lock.json); Node and npm come from Debian unless some node is installed.
INTEROP_PROGRAMS = nginx caddy haproxy chromium openssl curl promtool qemu-aarch64-static node \
	npm debootstrap systemd-nspawn

interop-deps:
	apt-get install -y nginx caddy haproxy chromium openssl curl prometheus qemu-user-static \
		debootstrap systemd-container
	command -v node >/dev/null && command -v npm >/dev/null || apt-get install -y nodejs npm
	@for p in $(INTEROP_PROGRAMS); do command -v $$p >/dev/null || { echo "$$p is missing"; exit 1; }; done
	rustup target add aarch64-unknown-linux-musl
	rustup component add rust-src
	cd interop/pubky && npm ci --no-audit --no-fund
	$(CARGO) fetch --locked --manifest-path interop/pubky-rs/Cargo.toml

# The static binaries are what users run: the black-box suite and the interop tests run against
# the x86_64 one (HANDOFF_BINARY), the qemu test against the aarch64 one.
STATIC_X86_64 = $(CURDIR)/target/x86_64-unknown-linux-musl/release/handoff

interop:
	$(MAKE) static
	$(CARGO) build --release --locked --manifest-path interop/pubky-rs/Cargo.toml
	HANDOFF_BINARY=$(STATIC_X86_64) $(CARGO) test --locked --release --tests
	HANDOFF_BINARY=$(STATIC_X86_64) $(CARGO) test --locked --release --test interop -- --ignored --test-threads=1
	HANDOFF_BINARY=$(STATIC_X86_64) $(CARGO) test --locked --release --test cluster -- --ignored --test-threads=1 --nocapture

# Only the systemd part of `make interop` (as root), on the build `make` makes: the units in
# systemd/ installed and run under a real systemd in a container; about 5 s once its root file
# system is cached, 45 s before.
interop-systemd: build
	systemd/test-under-systemd.sh target/release/handoff

# Benchmarks, not part of `make test`: a fresh relay on a free port, every handoff-bench scenario,
# a table on stdout (BENCHMARKS.md has the method and the results).
bench:
	CARGO="$(CARGO)" benches/run.sh
