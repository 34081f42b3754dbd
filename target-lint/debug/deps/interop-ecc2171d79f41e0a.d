/work/main/target-lint/debug/deps/interop-ecc2171d79f41e0a.d: tests/interop.rs tests/common/mod.rs tests/common/sockopt.rs Cargo.toml

/work/main/target-lint/debug/deps/libinterop-ecc2171d79f41e0a.rmeta: tests/interop.rs tests/common/mod.rs tests/common/sockopt.rs Cargo.toml

tests/interop.rs:
tests/common/mod.rs:
tests/common/sockopt.rs:
Cargo.toml:

# env-dep:CARGO_BIN_EXE_handoff=placeholder:handoff
# env-dep:CARGO_MANIFEST_DIR=/work/main
# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
