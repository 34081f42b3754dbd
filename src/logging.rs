//! Logging setup, and the keyed hash that stands for a channel id in logs (SPEC §7).
//!
//! Channel ids are capabilities: whoever knows one can take the message. Logs show only a short
//! hash of an id, keyed with a random per-process key, so lines about one channel can be matched
//! within a run without the log revealing or confirming the id.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::Write;
use std::sync::{LazyLock, OnceLock};
use std::time::Instant;

use crate::limits::{ClientKey, LogThrottle};

/// Starts `env_logger` on stderr: level from `RUST_LOG`, `info` by default.
pub fn init() {
    env_logger::Builder::new()
        .parse_filters(&std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .format(|out, record| writeln!(out, "{} {}", record.level(), record.args()))
        .init();
}

/// Eight hex digits standing for `id` in logs.
pub fn id_tag(id: &[u8]) -> String {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    let hash = KEY.get_or_init(RandomState::new).hash_one(id);
    format!("{:08x}", hash >> 32)
}

/// `Some(lines held back)` when an error answer to `client` with `status` may be logged now:
/// once per client and status a minute, so a flood cannot flood the journal.
pub fn refusal_log_allowed(client: ClientKey, status: u16) -> Option<u64> {
    static THROTTLE: LazyLock<LogThrottle> = LazyLock::new(LogThrottle::default);
    THROTTLE.allow(client, status, Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_is_stable_short_and_not_the_id() {
        assert_eq!(id_tag(b"secret-id"), id_tag(b"secret-id"));
        assert_ne!(id_tag(b"secret-id"), id_tag(b"secret-ie"));
        assert_eq!(id_tag(b"secret-id").len(), 8);
        assert!(!id_tag(b"abcdef01").contains("abcdef01"));
    }
}
