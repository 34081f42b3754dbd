/work/main/target-lint/debug/deps/state-1e4673d32ba49491.d: tests/state.rs tests/common/mod.rs tests/common/sockopt.rs Cargo.toml

/work/main/target-lint/debug/deps/libstate-1e4673d32ba49491.rmeta: tests/state.rs tests/common/mod.rs tests/common/sockopt.rs Cargo.toml

tests/state.rs:
tests/common/mod.rs:
tests/common/sockopt.rs:
Cargo.toml:

# env-dep:CARGO_BIN_EXE_handoff=placeholder:handoff
# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
