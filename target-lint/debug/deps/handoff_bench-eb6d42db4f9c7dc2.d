/work/main/target-lint/debug/deps/handoff_bench-eb6d42db4f9c7dc2.d: src/bin/handoff-bench.rs Cargo.toml

/work/main/target-lint/debug/deps/libhandoff_bench-eb6d42db4f9c7dc2.rmeta: src/bin/handoff-bench.rs Cargo.toml

src/bin/handoff-bench.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
