//! Logging setup, and the keyed hash that stands for a channel id in logs (protocol §7).
//!
//! Lines carry no timestamp (journald and most supervisors add their own). When stderr is the
//! journal's stream (`JOURNAL_STREAM` names its device and inode, as systemd sets it), each line
//! starts with a syslog priority (`<3>` error … `<7>` debug) instead of the level's name, so
//! `journalctl -p warning` filters them.
//!
//! Channel ids are capabilities: whoever knows one can take the message. Logs show only a short
//! hash of an id, keyed with a random per-process key, so lines about one channel can be matched
//! within a run without the log revealing or confirming the id.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::io::Write;
use std::sync::{LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::identity::ClientKey;

/// Starts `env_logger` on stderr: level from `RUST_LOG`, `info` by default; journald
/// priority prefixes when stderr is the journal.
pub fn init() {
    let journald =
        std::env::var("JOURNAL_STREAM").is_ok_and(|stream| is_journal(&stream, stderr_identity()));
    env_logger::Builder::new()
        .parse_filters(&std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .format(move |out, record| {
            writeln!(out, "{}{}", Prefix(record.level(), journald), record.args())
        })
        .init();
}

/// Device and inode of this process's stderr, as `JOURNAL_STREAM` would name them.
fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata("/proc/self/fd/2").ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Whether `journal_stream` (`DEVICE:INODE`, decimal) names `stderr`: a child whose stderr was
/// redirected elsewhere inherits the variable but must not use the prefixes.
fn is_journal(journal_stream: &str, stderr: Option<(u64, u64)>) -> bool {
    let named = journal_stream
        .split_once(':')
        .and_then(|(dev, ino)| Some((dev.trim().parse().ok()?, ino.trim().parse().ok()?)));
    named.is_some() && named == stderr
}

/// What starts a line: the syslog priority for journald (`sd-daemon.h`), else the level's name.
/// Written straight into the line (no allocation per line).
struct Prefix(log::Level, bool);

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Prefix(level, journald) = *self;
        if !journald {
            return write!(f, "{level} ");
        }
        let priority = match level {
            log::Level::Error => 3,
            log::Level::Warn => 4,
            log::Level::Info => 6,
            log::Level::Debug | log::Level::Trace => 7,
        };
        write!(f, "<{priority}>")
    }
}

/// What stands for a channel id in logs: kept as a number while its request waits, written as
/// eight hex digits only when a line is logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdTag(u32);

impl fmt::Display for IdTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// The tag standing for `id` in logs.
pub fn id_tag(id: &[u8]) -> IdTag {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    let hash = KEY.get_or_init(RandomState::new).hash_one(id);
    IdTag((hash >> 32) as u32)
}

/// `Some(lines held back)` when an error answer to `client` with `status` may be logged now:
/// once per client and status a minute, so a flood cannot flood the journal.
pub fn refusal_log_allowed(client: ClientKey, status: u16) -> Option<u64> {
    static THROTTLE: LazyLock<LogThrottle> = LazyLock::new(LogThrottle::default);
    THROTTLE.allow(client, status, Instant::now())
}

/// Lets a refusal be logged once per client and kind per minute, counting the ones held back.
#[derive(Debug, Default)]
pub struct LogThrottle {
    seen: Mutex<HashMap<(ClientKey, u16), (Instant, u64)>>,
}

/// How often one client's refusals of one kind may be logged.
pub const LOG_EVERY: Duration = Duration::from_secs(60);
/// Most (client, kind) pairs remembered; beyond it the oldest minute is forgotten.
const LOG_KEYS: usize = 10_000;

impl LogThrottle {
    /// `Some(held back since the last line)` when a line may be logged now for `key` and `kind`.
    pub fn allow(&self, key: ClientKey, kind: u16, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.len() >= LOG_KEYS {
            seen.retain(|_, (at, _)| now.saturating_duration_since(*at) < LOG_EVERY);
            if seen.len() >= LOG_KEYS {
                seen.clear();
            }
        }
        match seen.get_mut(&(key, kind)) {
            Some((at, held)) if now.saturating_duration_since(*at) < LOG_EVERY => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                *at = now;
                Some(std::mem::take(held))
            }
            None => {
                seen.insert((key, kind), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_stderr() {
        assert!(is_journal("64769:1234", Some((64769, 1234))));
        assert!(!is_journal("64769:1234", Some((64769, 1235))), "stderr redirected elsewhere");
        assert!(!is_journal("64769:1234", None));
        assert!(!is_journal("nonsense", Some((0, 0))));
    }

    #[test]
    fn journald_lines_start_with_a_syslog_priority() {
        assert_eq!(Prefix(log::Level::Error, true).to_string(), "<3>");
        assert_eq!(Prefix(log::Level::Warn, true).to_string(), "<4>");
        assert_eq!(Prefix(log::Level::Info, true).to_string(), "<6>");
        assert_eq!(Prefix(log::Level::Debug, true).to_string(), "<7>");
        assert_eq!(Prefix(log::Level::Info, false).to_string(), "INFO ");
    }

    #[test]
    fn tag_is_stable_short_and_not_the_id() {
        assert_eq!(id_tag(b"secret-id"), id_tag(b"secret-id"));
        assert_ne!(id_tag(b"secret-id"), id_tag(b"secret-ie"));
        assert_eq!(id_tag(b"secret-id").to_string().len(), 8);
        assert!(!id_tag(b"abcdef01").to_string().contains("abcdef01"));
        assert_eq!(IdTag(0xab).to_string(), "000000ab");
    }

    #[test]
    fn log_throttle_allows_one_line_per_minute_per_client_and_kind() {
        let throttle = LogThrottle::default();
        let start = Instant::now();
        let key = ClientKey::of("192.0.2.1".parse().unwrap());
        assert_eq!(throttle.allow(key, 429, start), Some(0));
        assert_eq!(throttle.allow(key, 429, start + Duration::from_secs(1)), None);
        assert_eq!(throttle.allow(key, 429, start + Duration::from_secs(2)), None);
        assert_eq!(throttle.allow(key, 503, start), Some(0));
        assert_eq!(throttle.allow(key, 429, start + LOG_EVERY), Some(2));
    }
}
