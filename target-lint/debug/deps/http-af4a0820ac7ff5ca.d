/work/main/target-lint/debug/deps/http-af4a0820ac7ff5ca.d: tests/http.rs tests/common/mod.rs tests/common/sockopt.rs Cargo.toml

/work/main/target-lint/debug/deps/libhttp-af4a0820ac7ff5ca.rmeta: tests/http.rs tests/common/mod.rs tests/common/sockopt.rs Cargo.toml

tests/http.rs:
tests/common/mod.rs:
tests/common/sockopt.rs:
Cargo.toml:

# env-dep:CARGO_BIN_EXE_handoff=placeholder:handoff
# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
