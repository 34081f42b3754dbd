/work/main/target-lint/debug/deps/auth-b4f891c39e3379f7.d: tests/auth.rs tests/common/mod.rs tests/common/sockopt.rs Cargo.toml

/work/main/target-lint/debug/deps/libauth-b4f891c39e3379f7.rmeta: tests/auth.rs tests/common/mod.rs tests/common/sockopt.rs Cargo.toml

tests/auth.rs:
tests/common/mod.rs:
tests/common/sockopt.rs:
Cargo.toml:

# env-dep:CARGO_BIN_EXE_handoff=placeholder:handoff
# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
