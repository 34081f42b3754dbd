/work/main/target-lint/debug/deps/env_filter-396f146b14e4e43f.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/env_filter-2.0.0/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/env_filter-2.0.0/src/directive.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/env_filter-2.0.0/src/filter.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/env_filter-2.0.0/src/filtered_log.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/env_filter-2.0.0/src/op.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/env_filter-2.0.0/src/parser.rs

/work/main/target-lint/debug/deps/libenv_filter-396f146b14e4e43f.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/env_filter-2.0.0/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/env_filter-2.0.0/src/directive.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/env_filter-2.0.0/src/filter.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/env_filter-2.0.0/src/filtered_log.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/env_filter-2.0.0/src/op.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/env_filter-2.0.0/src/parser.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/env_filter-2.0.0/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/env_filter-2.0.0/src/directive.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/env_filter-2.0.0/src/filter.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/env_filter-2.0.0/src/filtered_log.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/env_filter-2.0.0/src/op.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/env_filter-2.0.0/src/parser.rs:
