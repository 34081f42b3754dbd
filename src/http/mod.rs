//! The HTTP/1.1 front (protocol §4; README "Design"): a pure parser over bytes (`parse`,
//! `chunked`), how the registry's answers are said (`answers`; the responses themselves are
//! plain values in `crate::response`), the connection (`conn`), the resumable request reader
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
