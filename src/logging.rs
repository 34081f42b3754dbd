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
use std::fmt;
use std::hash::BuildHasher;
use std::io::Write;
use std::sync::{LazyLock, OnceLock};
use std::time::Instant;

use crate::limits::{ClientKey, LogThrottle};

/// Starts `env_logger` on stderr: level from `RUST_LOG`, `info` by default; journald
/// priority prefixes when stderr is the journal.
pub fn init() {
    let journald =
        std::env::var("JOURNAL_STREAM").is_ok_and(|stream| is_journal(&stream, stderr_identity()));
    env_logger::Builder::new()
        .parse_filters(&std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .format(move |out, record| {
            writeln!(out, "{}{}", prefix(record.level(), journald), record.args())
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
fn prefix(level: log::Level, journald: bool) -> String {
    if !journald {
        return format!("{level} ");
    }
    let priority = match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    };
    format!("<{priority}>")
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
        assert_eq!(prefix(log::Level::Error, true), "<3>");
        assert_eq!(prefix(log::Level::Warn, true), "<4>");
        assert_eq!(prefix(log::Level::Info, true), "<6>");
        assert_eq!(prefix(log::Level::Debug, true), "<7>");
        assert_eq!(prefix(log::Level::Info, false), "INFO ");
    }

    #[test]
    fn tag_is_stable_short_and_not_the_id() {
        assert_eq!(id_tag(b"secret-id"), id_tag(b"secret-id"));
        assert_ne!(id_tag(b"secret-id"), id_tag(b"secret-ie"));
        assert_eq!(id_tag(b"secret-id").to_string().len(), 8);
        assert!(!id_tag(b"abcdef01").to_string().contains("abcdef01"));
        assert_eq!(IdTag(0xab).to_string(), "000000ab");
    }
}
