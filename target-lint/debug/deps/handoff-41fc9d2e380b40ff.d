/work/main/target-lint/debug/deps/handoff-41fc9d2e380b40ff.d: src/main.rs src/action.rs src/auth.rs src/config.rs src/cors.rs src/http/mod.rs src/http/answers.rs src/http/chunked.rs src/http/conn.rs src/http/outbox.rs src/http/parked.rs src/http/parse.rs src/http/read.rs src/http/server.rs src/identity.rs src/limits.rs src/logging.rs src/metrics.rs src/registry/mod.rs src/registry/answer.rs src/registry/inbox.rs src/registry/link.rs src/registry/state.rs src/registry/tests.rs src/response.rs src/routes.rs src/state.rs src/sys.rs src/testutil.rs src/wheel.rs Cargo.toml

/work/main/target-lint/debug/deps/libhandoff-41fc9d2e380b40ff.rmeta: src/main.rs src/action.rs src/auth.rs src/config.rs src/cors.rs src/http/mod.rs src/http/answers.rs src/http/chunked.rs src/http/conn.rs src/http/outbox.rs src/http/parked.rs src/http/parse.rs src/http/read.rs src/http/server.rs src/identity.rs src/limits.rs src/logging.rs src/metrics.rs src/registry/mod.rs src/registry/answer.rs src/registry/inbox.rs src/registry/link.rs src/registry/state.rs src/registry/tests.rs src/response.rs src/routes.rs src/state.rs src/sys.rs src/testutil.rs src/wheel.rs Cargo.toml

src/main.rs:
src/action.rs:
src/auth.rs:
src/config.rs:
src/cors.rs:
src/http/mod.rs:
src/http/answers.rs:
src/http/chunked.rs:
src/http/conn.rs:
src/http/outbox.rs:
src/http/parked.rs:
src/http/parse.rs:
src/http/read.rs:
src/http/server.rs:
src/identity.rs:
src/limits.rs:
src/logging.rs:
src/metrics.rs:
src/registry/mod.rs:
src/registry/answer.rs:
src/registry/inbox.rs:
src/registry/link.rs:
src/registry/state.rs:
src/registry/tests.rs:
src/response.rs:
src/routes.rs:
src/state.rs:
src/sys.rs:
src/testutil.rs:
src/wheel.rs:
Cargo.toml:

# env-dep:CARGO_PKG_VERSION=0.1.0
# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
