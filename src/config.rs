//! Flags and environment variables → one checked [`Config`] value (SPEC §4, §7).
//!
//! Every flag is defined once, in one table: name, environment variable, placeholder, default,
//! help and the setter that checks its value. `--help` is generated from that table. Every
//! default is written once, in the `Default` impls. "`0` disables a limit" becomes `None` here.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Everything the relay is configured with.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Address to bind when no socket is passed in. Defaults to `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// HTTP worker threads reading requests. Defaults to 16.
    pub workers: usize,
    /// Deadlines of each phase.
    pub timeouts: Timeouts,
    /// Size and count limits.
    pub limits: Limits,
    /// Cross-origin policy for browsers.
    pub cors: Cors,
}

/// Deadlines, one per phase.
#[derive(Clone, Debug, PartialEq)]
pub struct Timeouts {
    /// Time a client has to send the request head (`--head-timeout`). Defaults to 10 s.
    pub head: Duration,
    /// Time a client has to send the body once the head is in (`--body-timeout`). Defaults to 10 s.
    pub body: Duration,
    /// Longest wait of either side of `/link` (`--link-timeout`). Defaults to 600 s.
    pub link: Duration,
    /// Longest wait of an `/inbox` GET or `/await` (`--inbox-timeout`). Defaults to 25 s.
    pub inbox: Duration,
    /// Life of a stored `/inbox` message from its POST (`--inbox-ttl`). Defaults to 300 s.
    pub inbox_ttl: Duration,
}

/// Size and count limits. `None` means the limit was disabled with `0`.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Largest request body in bytes (`--max-body`). Defaults to 64 KiB.
    pub max_body: usize,
    /// Longest channel id in bytes after percent-decoding (`--max-id`). Defaults to 256.
    pub max_id: usize,
    /// Longest request head in bytes (`--max-head`). Defaults to 8 KiB.
    pub max_head: usize,
    /// Most header lines in a request (`--max-headers`). Defaults to 100.
    pub max_headers: usize,
    /// Most open connections (`--max-connections`). Defaults to 10,000.
    pub max_connections: Option<usize>,
    /// Most parked requests over all ids (`--max-parked`). Defaults to 50,000.
    pub max_parked: Option<usize>,
}

/// Which browser origins may read the relay's responses (`--cors`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cors {
    /// Echo any `Origin`, with credentials allowed. The default.
    Mirror,
    /// Only these origins (exact match, e.g. `https://app.example`).
    List(Vec<String>),
    /// No CORS headers at all.
    Off,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Run the relay with this configuration.
    Run(Config),
    /// Print this help text and exit 0.
    Help(String),
    /// Print this version line and exit 0.
    Version(String),
}

/// Why the configuration was refused; the message is one line a user can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    // (variants defined by the implementation)
}

impl fmt::Display for ConfigError {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!()
    }
}

impl std::error::Error for ConfigError {}

/// Reads flags (`args`, without the program name) over environment variables (`env`) over defaults.
pub fn parse<I>(args: I, env: impl Fn(&str) -> Option<String>) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = String>,
{
    todo!()
}
