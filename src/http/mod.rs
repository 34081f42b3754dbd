//! The HTTP/1.1 front (protocol §4): a pure parser and serializer over bytes (`parse`, `chunked`,
//! `response`), the connection and its writes (`conn`), the resumable request reader (`read`),
//! and the poller with its thread pools (`server`). It holds no relay state: relay requests go
//! to the registry over a channel.

pub mod chunked;
pub mod conn;
pub mod parse;
pub mod read;
pub mod response;
pub mod server;
