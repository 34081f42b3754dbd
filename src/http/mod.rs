//! The HTTP/1.1 front (protocol §4; README "Design"): a pure parser and serializer over bytes
//! (`parse`, `chunked`, `response`), how the registry's answers are said (`answers`), the
//! connection (`conn`), the resumable request reader (`read`), the poller and its workers
//! (`server`), the registry thread's loop over parked connections (`parked`), and the one thread
//! that writes every answer (`outbox`). It holds no relay state: relay requests go to the
//! registry over a channel.

pub mod answers;
pub mod chunked;
pub mod conn;
pub mod outbox;
pub mod parked;
pub mod parse;
pub mod read;
pub mod response;
pub mod server;
