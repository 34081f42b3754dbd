//! The HTTP/1.1 front (protocol §4; README "Design"): a pure parser over bytes (`parse`,
//! `chunked`), the pure request reader over it (`reader`: bytes and the time in, a step out),
//! the gate that decides every connection and complete head (`gate`), how the registry's answers
//! are said (`answers`; the responses themselves are plain values in `crate::response`), the
//! connection (`conn`), the worker's loop that drives the reader and the gate over a socket
//! (`read`), the poller and its workers (`server`), the registry thread's loop over parked
//! connections (`parked`), and the one thread that writes every answer (`outbox`). It holds no
//! relay state: relay requests go to the registry over a channel.

pub mod answers;
pub mod chunked;
pub mod conn;
pub mod gate;
pub mod outbox;
pub mod parked;
pub mod parse;
pub mod read;
pub mod reader;
pub mod server;
pub mod writer;
