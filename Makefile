# handoff. `make help` lists every target. `make` builds, `make run` serves on the defaults,
# `make test` runs the unit and black-box tests (the interop tests only compile: `make interop`).
# Packaging: `make static` (x86_64 and aarch64 musl binaries), then `make deb`, `make image`,
# `make dist`, each from those binaries.

CARGO ?= cargo
PREFIX ?= /usr/local
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n 1)

.PHONY: all build release run test lint clean fuzz install uninstall static deb image dist \
	interop-deps interop interop-systemd bench bench-peers bench-scale soak help

all: build ## the release build, target/release/handoff (the same as make build)

build: ## the release build for this machine: target/release/handoff
	$(CARGO) build --release --locked
	@ls -l target/release/handoff | awk '{ print "target/release/handoff: " $$5 " bytes" }'

release: build ## the same as make build

run: ## build and serve on 127.0.0.1:8080 (HOST=0.0.0.0 PORT=8095 make run to change)
	$(CARGO) run --release --locked --bin handoff

test: ## unit and black-box tests (interop tests are only compiled)
	$(CARGO) test --locked --no-fail-fast
	# What each kind of held state costs on the heap against its charge (the counting allocator
	# counts every thread: one test at a time).
	$(CARGO) test --locked --features count-allocs --bin handoff measured -- --test-threads=1

lint: ## rustfmt --check and clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked --all-targets --features count-allocs -- -D warnings

clean: ## cargo clean (removes target/, packages and archives included)
	$(CARGO) clean

# Static musl binaries for x86_64 and aarch64 (Raspberry Pi), linked by the toolchain's rust-lld
# (.cargo/config.toml), so no C cross toolchain is needed. std is compiled again with the
# release profile and without its backtrace symbolizer (std's prebuilt copy keeps ~300 KB of
# it alive even with panic = "abort"; panics still print their message). That is cargo's
# build-std, which the stable compiler accepts with RUSTC_BOOTSTRAP=1 for this build only;
# README "Static binaries" has the sizes and the plain build without it.
STATIC_TARGETS = x86_64-unknown-linux-musl aarch64-unknown-linux-musl
STATIC_STD = -Z build-std=std,panic_abort -Z build-std-features=

static: ## static musl binaries for x86_64 and aarch64 (Raspberry Pi)
	rustup component add rust-src
	rustup target add $(STATIC_TARGETS)
	@for target in $(STATIC_TARGETS); do \
		RUSTC_BOOTSTRAP=1 $(CARGO) build --release --locked --target $$target $(STATIC_STD) || exit 1; \
	done
	@for target in $(STATIC_TARGETS); do \
		ls -l target/$$target/release/handoff | awk '{ print $$9 ": " $$5 " bytes" }'; \
	done

# `make && sudo make install`: BINARY (default the host build) to $(DESTDIR)$(PREFIX)/bin, the
# units to $(DESTDIR)$(UNITDIR), with ExecStart pointed at $(PREFIX)/bin/handoff. It does not
# build (root may have no cargo), nor enable anything: see README "Deploy". For a static or
# cross-built binary (a Raspberry Pi): `sudo make install BINARY=path/to/handoff`.
UNITDIR ?= /etc/systemd/system
BINARY ?= target/release/handoff

install: ## (root) install BINARY (default: the host build) and the units; enables nothing
	@test -x $(BINARY) || { echo "no executable $(BINARY): run make first, or pass BINARY=path/to/handoff" >&2; exit 1; }
	install -D -m 755 $(BINARY) $(DESTDIR)$(PREFIX)/bin/handoff
	install -D -m 644 systemd/handoff.socket $(DESTDIR)$(UNITDIR)/handoff.socket
	sed 's|^ExecStart=/usr/local/bin/handoff|ExecStart=$(PREFIX)/bin/handoff|' systemd/handoff.service \
		| install -D -m 644 /dev/stdin $(DESTDIR)$(UNITDIR)/handoff.service

uninstall: ## (root) remove what make install installed
	rm -f $(DESTDIR)$(PREFIX)/bin/handoff $(DESTDIR)$(UNITDIR)/handoff.socket $(DESTDIR)$(UNITDIR)/handoff.service

# Packages and archives from the static binaries (`make static` first, run by each). Output in
# target/deb/ and target/dist/. `make deb` uses only dpkg-deb (packaging/deb.sh); `make image`
# uses podman, or CONTAINER=docker.
CONTAINER ?= podman
IMAGE ?= handoff

deb: static ## .deb packages for amd64 and arm64 in target/deb/ (dpkg-deb)
	packaging/deb.sh amd64 target/x86_64-unknown-linux-musl/release/handoff $(VERSION) target/deb
	packaging/deb.sh arm64 target/aarch64-unknown-linux-musl/release/handoff $(VERSION) target/deb

image: static ## OCI images FROM scratch: handoff:VERSION (amd64), handoff:VERSION-arm64
	$(CONTAINER) build --platform linux/amd64 --build-arg TARGET=x86_64-unknown-linux-musl \
		-t $(IMAGE):$(VERSION) -t $(IMAGE):latest -f Containerfile .
	$(CONTAINER) build --platform linux/arm64 --build-arg TARGET=aarch64-unknown-linux-musl \
		-t $(IMAGE):$(VERSION)-arm64 -f Containerfile .

dist: static ## release archives handoff-VERSION-{x86_64,aarch64}-linux-musl.tar.gz + SHA256SUMS
	packaging/dist.sh $(VERSION) target/dist

help: ## this list
	@awk -F ':.*## ' '/^[a-z][a-z0-9-]*:.*## / { printf "  make %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

# Fuzzing, not part of `make test`: each target in fuzz/ (its own crate and workspace) for
# FUZZ_RUNS inputs, e.g. `make fuzz FUZZ_RUNS=10000000`; new inputs go to fuzz/corpus/, crashes to
# fuzz/artifacts/. cargo-fuzz passes nightly -Z flags (AddressSanitizer, coverage); RUSTC_BOOTSTRAP=1
# lets the stable compiler accept them.
FUZZ_RUNS ?= 5000000
FUZZ_RUN = RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run

fuzz: ## the parser's fuzz targets, FUZZ_RUNS inputs each (cargo-fuzz)
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
# tests/packaging.rs checks what `make deb`, `make image` and `make dist` make: lintian, the
# amd64 package installed and purged under the booted systemd, the image run by podman (with
# runc, which also runs where crun cannot: cgroup v1/v2 hybrids). tests/monitoring.rs runs the
# rules and dashboard of monitoring/ through promtool and a real Prometheus scraping relays;
# tests/example.rs the pages of examples/browser/ in Chromium, their QR codes read by zbarimg
# (zbar-tools).
INTEROP_PROGRAMS = nginx caddy haproxy chromium openssl curl promtool prometheus qemu-aarch64-static node npm \
	debootstrap systemd-nspawn lintian podman runc zbarimg

interop-deps: ## (root) install what make interop needs, from Debian's packages
	apt-get install -y nginx caddy haproxy chromium openssl curl prometheus qemu-user-static \
		debootstrap systemd-container
	apt-get install -y lintian podman runc zbar-tools
	command -v node >/dev/null && command -v npm >/dev/null || apt-get install -y nodejs npm
	@for p in $(INTEROP_PROGRAMS); do command -v $$p >/dev/null || { echo "$$p is missing"; exit 1; }; done
	rustup target add aarch64-unknown-linux-musl
	rustup component add rust-src
	cd interop/pubky && npm ci --no-audit --no-fund
	$(CARGO) fetch --locked --manifest-path interop/pubky-rs/Cargo.toml

# The static binaries are what users run: the black-box suite and the interop tests run against
# the x86_64 one (HANDOFF_BINARY), the qemu test against the aarch64 one.
STATIC_X86_64 = $(CURDIR)/target/x86_64-unknown-linux-musl/release/handoff

# Each run has an id and a TMPDIR of its own, which every process it starts inherits;
# tests/leftovers.sh then checks that none of them outlives the run.
INTEROP_RUN := $(shell date +%s%N)
INTEROP_TMP := $(or $(TMPDIR),/tmp)/handoff-interop-$(INTEROP_RUN)

interop: export HANDOFF_INTEROP_RUN = $(INTEROP_RUN)
interop: export TMPDIR = $(INTEROP_TMP)
interop: ## the interop, packaging and systemd tests against the static build (root)
	mkdir -p $(INTEROP_TMP)
	$(MAKE) static deb image dist
	$(CARGO) build --release --locked --manifest-path interop/pubky-rs/Cargo.toml
	HANDOFF_BINARY=$(STATIC_X86_64) $(CARGO) test --locked --release --tests
	HANDOFF_BINARY=$(STATIC_X86_64) $(CARGO) test --locked --release --test interop -- --ignored --test-threads=1
	HANDOFF_BINARY=$(STATIC_X86_64) $(CARGO) test --locked --release --test packaging -- --ignored --test-threads=1
	HANDOFF_BINARY=$(STATIC_X86_64) $(CARGO) test --locked --release --test cluster -- --ignored --test-threads=1 --nocapture
	HANDOFF_BINARY=$(STATIC_X86_64) $(CARGO) test --locked --release --test monitoring -- --ignored --test-threads=1 --nocapture
	HANDOFF_BINARY=$(STATIC_X86_64) $(CARGO) test --locked --release --test example -- --ignored --test-threads=1 --nocapture
	tests/leftovers.sh $(INTEROP_RUN) $(INTEROP_TMP)
	rm -rf $(INTEROP_TMP)

# Only the systemd part of `make interop` (as root), on the build `make` makes: the units in
# systemd/ installed and run under a real systemd in a container; about 5 s once its root file
# system is cached, 45 s before.
interop-systemd: build ## (root) only the systemd units under a booted systemd
	systemd/test-under-systemd.sh target/release/handoff

# Benchmarks, not part of `make test`: a fresh relay on a free port, every handoff-bench scenario,
# a table on stdout (BENCHMARKS.md has the method and the results).
bench: ## the load generator against a fresh relay (BENCHMARKS.md)
	CARGO="$(CARGO)" benches/run.sh

# Side by side with Pubky's relay (http-relay from crates.io, installed once into target/peers):
# every handoff-bench scenario against it, the glibc build and the static x86_64 build in one
# run, then one table with ratios; allocations per hand-off (valgrind's dhat for both, and a
# counting allocator, --features count-allocs, for handoff). 5-10 minutes.
bench-peers: ## handoff and Pubky's relay side by side, one table of ratios (BENCHMARKS.md)
	$(MAKE) static STATIC_TARGETS=x86_64-unknown-linux-musl
	CARGO="$(CARGO)" benches/peers.sh

# The registry core and its timer wheel at 10^4, 10^5 and 10^6 parked fake connections and
# stored messages, without sockets: memory per entry and the cost of an event and of a tick
# (src/bench_scale.rs, an ignored test; about a minute and 1 GB).
bench-scale: ## the registry and timer wheel at 10^4..10^6 entries, no sockets
	@uptime
	$(CARGO) test --release --locked --features count-allocs --bin handoff bench_scale -- \
		--ignored --nocapture --test-threads=1

# Mixed load for SOAK_SECS (default 30 minutes), each load thread at most SOAK_RATE operations a
# second (default 250), against a fresh relay, its RSS, descriptors and threads sampled every
# 10 s; fails unless RSS stays flat and nothing is left behind (benches/soak.sh; RELAY=path for
# another build).
SOAK_SECS ?= 1800
SOAK_RATE ?= 250

soak: ## mixed load for SOAK_SECS (default 1800) at SOAK_RATE, RSS, descriptors, threads sampled
	CARGO="$(CARGO)" SOAK_SECS=$(SOAK_SECS) SOAK_RATE=$(SOAK_RATE) benches/soak.sh
