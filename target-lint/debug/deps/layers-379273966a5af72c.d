/work/main/target-lint/debug/deps/layers-379273966a5af72c.d: tests/layers.rs Cargo.toml

/work/main/target-lint/debug/deps/liblayers-379273966a5af72c.rmeta: tests/layers.rs Cargo.toml

tests/layers.rs:
Cargo.toml:

# env-dep:CARGO_MANIFEST_DIR=/work/main
# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
