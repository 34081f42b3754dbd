//! The HTTP/1.1 front (SPEC §4, §8): a pure parser and serializer over bytes (`parse`, `chunked`,
//! `response`), the only socket code (`conn`), and the accept loop with its thread pools
//! (`server`). It holds no relay state: relay requests go to the registry over a channel.

pub mod chunked;
pub mod conn;
pub mod parse;
pub mod response;
pub mod server;
