/work/main/target-lint/debug/deps/inbox-646c56ec9e113eeb.d: tests/inbox.rs tests/common/mod.rs tests/common/sockopt.rs Cargo.toml

/work/main/target-lint/debug/deps/libinbox-646c56ec9e113eeb.rmeta: tests/inbox.rs tests/common/mod.rs tests/common/sockopt.rs Cargo.toml

tests/inbox.rs:
tests/common/mod.rs:
tests/common/sockopt.rs:
Cargo.toml:

# env-dep:CARGO_BIN_EXE_handoff=placeholder:handoff
# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
