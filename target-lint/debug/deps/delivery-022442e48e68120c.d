/work/main/target-lint/debug/deps/delivery-022442e48e68120c.d: tests/delivery.rs tests/common/mod.rs tests/common/sockopt.rs Cargo.toml

/work/main/target-lint/debug/deps/libdelivery-022442e48e68120c.rmeta: tests/delivery.rs tests/common/mod.rs tests/common/sockopt.rs Cargo.toml

tests/delivery.rs:
tests/common/mod.rs:
tests/common/sockopt.rs:
Cargo.toml:

# env-dep:CARGO_BIN_EXE_handoff=placeholder:handoff
# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
