/work/main/target-lint/debug/deps/limits-2d8fa8923432c198.d: tests/limits.rs tests/common/mod.rs tests/common/sockopt.rs Cargo.toml

/work/main/target-lint/debug/deps/liblimits-2d8fa8923432c198.rmeta: tests/limits.rs tests/common/mod.rs tests/common/sockopt.rs Cargo.toml

tests/limits.rs:
tests/common/mod.rs:
tests/common/sockopt.rs:
Cargo.toml:

# env-dep:CARGO_BIN_EXE_handoff=placeholder:handoff
# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
