# handoff: `make` builds, `make run` runs on defaults, `make test` runs every test.

CARGO ?= cargo
PREFIX ?= /usr/local

.PHONY: all build release run test lint clean

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
