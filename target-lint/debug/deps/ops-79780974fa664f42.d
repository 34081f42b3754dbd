/work/main/target-lint/debug/deps/ops-79780974fa664f42.d: tests/ops.rs tests/common/mod.rs tests/common/sockopt.rs Cargo.toml

/work/main/target-lint/debug/deps/libops-79780974fa664f42.rmeta: tests/ops.rs tests/common/mod.rs tests/common/sockopt.rs Cargo.toml

tests/ops.rs:
tests/common/mod.rs:
tests/common/sockopt.rs:
Cargo.toml:

# env-dep:CARGO_BIN_EXE_handoff=placeholder:handoff
# env-dep:CARGO_MANIFEST_DIR=/work/main
# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
