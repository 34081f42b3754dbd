/work/main/target-lint/debug/deps/bench-6f7075091369df80.d: tests/bench.rs tests/common/mod.rs tests/common/sockopt.rs Cargo.toml

/work/main/target-lint/debug/deps/libbench-6f7075091369df80.rmeta: tests/bench.rs tests/common/mod.rs tests/common/sockopt.rs Cargo.toml

tests/bench.rs:
tests/common/mod.rs:
tests/common/sockopt.rs:
Cargo.toml:

# env-dep:CARGO_BIN_EXE_handoff=placeholder:handoff
# env-dep:CARGO_BIN_EXE_handoff-bench=placeholder:handoff-bench
# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
