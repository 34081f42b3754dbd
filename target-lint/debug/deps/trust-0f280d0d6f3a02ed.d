/work/main/target-lint/debug/deps/trust-0f280d0d6f3a02ed.d: tests/trust.rs tests/common/mod.rs tests/common/sockopt.rs Cargo.toml

/work/main/target-lint/debug/deps/libtrust-0f280d0d6f3a02ed.rmeta: tests/trust.rs tests/common/mod.rs tests/common/sockopt.rs Cargo.toml

tests/trust.rs:
tests/common/mod.rs:
tests/common/sockopt.rs:
Cargo.toml:

# env-dep:CARGO_BIN_EXE_handoff=placeholder:handoff
# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
