//! The HTTP/1.1 front (protocol §4; README "Design"), bottom up: a pure parser over bytes (`parse`,
//! `chunked`); the pure request reader over it (`reader`: bytes and the time in, a step out); the
//! pure reply writer (`writer`: what the socket did and the time in, a step out, and whether a
//! delivery was taken); a request's bookkeeping (`exchange`) and the gate that decides every
//! connection and complete head (`gate`); how the registry's answers are said (`render`; the
//! responses themselves are plain values in `crate::response`); the connection, the one owner of a
//! socket (`conn`); what reaches the registry thread (`inbound`); the outbox threads that see every
//! answer to its end, one per worker (`outbox`); what the workers share (`shared`); the worker's
//! loop that drives the reader and the gate over a socket (`worker`); the registry thread's loop
//! over parked connections (`registry_thread`); and the workers, each accepting and watching its
//! own connections in an epoll set (`server`). No file names one above it (`tests/layers.rs`). It
//! holds no relay state: relay requests go to the registry over a channel.

pub mod chunked;
pub mod conn;
pub mod exchange;
pub mod gate;
pub mod inbound;
pub mod outbox;
pub mod parse;
pub mod reader;
pub mod registry_thread;
pub mod render;
pub mod server;
pub mod shared;
pub mod worker;
pub mod writer;
