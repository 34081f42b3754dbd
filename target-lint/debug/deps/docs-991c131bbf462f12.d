/work/main/target-lint/debug/deps/docs-991c131bbf462f12.d: tests/docs.rs Cargo.toml

/work/main/target-lint/debug/deps/libdocs-991c131bbf462f12.rmeta: tests/docs.rs Cargo.toml

tests/docs.rs:
Cargo.toml:

# env-dep:CARGO_MANIFEST_DIR=/work/main
# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
