//! Flags and environment variables → one checked [`Config`] value (protocol §4, §7).
//!
//! Every flag is defined once, in one table ([`FLAGS`]): name, environment variable, placeholder,
//! help, the setter that checks its value and the function that renders it, so `--help` shows
//! the defaults of the `Default` impls, where every default is written once. "`0` disables a
//! limit" becomes `None` here, in the two setters concerned. This module never reads the real
//! environment: [`parse`] is handed a lookup function, so tests pass a map.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeBounds;
use std::path::PathBuf;
use std::time::Duration;

use crate::identity::Cidr;
use crate::identity::Client;
use crate::wheel::MAX_WAIT;

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
    /// Proxies trusted to name the client in `X-Forwarded-For` (`--trust-proxy`). Defaults to none.
    pub trust_proxy: Vec<Cidr>,
    /// Who may use the relay (protocol §6).
    pub access: Access,
    /// Where the stored messages are saved across restarts (`--state-file`). Defaults to none.
    pub state_file: Option<PathBuf>,
    /// This relay's name among several behind one proxy (`--instance`), also sent in the
    /// `Handoff-Instance` response header. Defaults to none: `/health` and `/metrics` then name
    /// the relay by [`host_name`], and no header is sent.
    pub instance: Option<String>,
}

/// Access control (protocol §6); off by default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Access {
    /// Bearer tokens with scopes (`--token-file`). Defaults to none: no token needed.
    pub token_file: Option<PathBuf>,
    /// Only clients in these ranges may connect (`--allow-ip`). Defaults to none: everyone.
    pub allow_ip: Vec<Cidr>,
    /// Clients in these ranges get 403 (`--deny-ip`); wins over `allow_ip`. Defaults to none.
    pub deny_ip: Vec<Cidr>,
}

impl Access {
    /// Whether `client` may use the relay: inside `allow_ip` (when set), not inside `deny_ip`.
    /// A client the proxies named unreadably may use it only when neither list is set: it is
    /// on no allow list, and it could be anyone on a deny list (fail closed).
    pub fn allows(&self, client: Client) -> bool {
        if client == Client::Unidentified {
            return self.allow_ip.is_empty() && self.deny_ip.is_empty();
        }
        (self.allow_ip.is_empty() || client.is_in(&self.allow_ip)) && !client.is_in(&self.deny_ip)
    }
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
    /// Time one whole response may take to be written and, for a `/link` delivery, taken by
    /// its receiver (`--write-timeout`). Defaults to 10 s.
    pub write: Duration,
}

impl Config {
    /// Whether the TCP peer `ip` is a trusted proxy (`--trust-proxy`).
    pub fn is_trusted_proxy(&self, ip: std::net::IpAddr) -> bool {
        self.trust_proxy.iter().any(|cidr| cidr.contains(ip))
    }
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
    /// Most parked requests per client (`--max-parked-per-ip`). Defaults to 100.
    pub max_parked_per_ip: Option<usize>,
    /// Most open connections per TCP peer (`--max-connections-per-ip`). Defaults to 64.
    pub max_connections_per_ip: Option<usize>,
    /// Bytes held in bodies and waiters (`--max-memory`). Defaults to 64 MiB.
    pub max_memory: Option<usize>,
    /// Bytes one client may hold of them (`--max-memory-per-ip`). Defaults to
    /// [`MemoryShare::Auto`], an eighth of `--max-memory`.
    pub max_memory_per_ip: MemoryShare,
    /// Requests per minute per client (`--rate-per-ip`), burst alike. Defaults to 100.
    pub rate_per_ip: Option<u32>,
    /// Writes (POST, DELETE) per minute per id (`--rate-per-id`), burst alike. Defaults to 10.
    pub rate_per_id: Option<u32>,
    /// Failed authentications (401, 403) per minute per client before it gets 429
    /// (`--auth-failures-per-ip`), burst alike. Defaults to 5.
    pub auth_failures_per_ip: Option<u32>,
}

/// `--max-memory-per-ip`: how much of the memory budget one client key (an IPv4 address, an
/// IPv6 /64) may hold in stored bodies and waiters across `/link` and `/inbox`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryShare {
    /// `1/`[`SHARE_OF_MEMORY`] of `--max-memory`, none when that is disabled. The default.
    Auto,
    /// At most this many bytes.
    Bytes(usize),
    /// No per-client share (`0`).
    Off,
}

/// The default `--max-body`: a login token is a few hundred bytes; 64 KiB leaves room for any.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;

/// The default `--max-memory-per-ip` is `--max-memory` divided by this: room for
/// `--max-parked-per-ip` (100) senders of a full `--max-body` (65 KiB each with the request's
/// allowance, 6.5 MiB) within 8 MiB of the default 64 MiB, while one client holds at most an
/// eighth of the budget (protocol §9, A client's share of memory).
pub const SHARE_OF_MEMORY: usize = 8;

impl Limits {
    /// The bytes one client key may hold, `None` when unbounded.
    pub fn memory_per_ip(&self) -> Option<usize> {
        match self.max_memory_per_ip {
            MemoryShare::Auto => self.max_memory.map(|m| (m / SHARE_OF_MEMORY).max(1)),
            MemoryShare::Bytes(n) => Some(n),
            MemoryShare::Off => None,
        }
    }
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

/// One worker per CPU, 2 to 16: a worker only parses bytes already received, never waits, so
/// more workers than CPUs cost memory and no more throughput (BENCHMARKS.md, "Worker threads").
/// Each worker comes with an outbox thread (`src/http/outbox.rs`).
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(4, |cpus| cpus.get()).clamp(2, 16)
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: default_workers(),
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            cors: Cors::Mirror,
            trust_proxy: Vec::new(),
            access: Access::default(),
            state_file: None,
            instance: None,
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            head: Duration::from_secs(10),
            body: Duration::from_secs(10),
            link: Duration::from_secs(600),
            inbox: Duration::from_secs(25),
            inbox_ttl: Duration::from_secs(300),
            write: Duration::from_secs(10),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: DEFAULT_MAX_BODY,
            max_id: 256,
            max_head: 8 * 1024,
            max_headers: 100,
            max_connections: Some(10_000),
            max_parked: Some(50_000),
            max_parked_per_ip: Some(100),
            max_connections_per_ip: Some(64),
            max_memory: Some(64 * 1024 * 1024),
            max_memory_per_ip: MemoryShare::Auto,
            rate_per_ip: Some(100),
            rate_per_id: Some(10),
            auth_failures_per_ip: Some(5),
        }
    }
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq)]
// Made once per process; boxing `Run` would gain nothing.
#[allow(clippy::large_enum_variant)]
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
    /// An argument starting with `-` names no flag (`flag` as typed, `=value` included).
    /// `suggestion` is the closest flag name, if one is within two edits or starts with it.
    UnknownFlag { flag: String, suggestion: Option<String> },
    /// A flag that takes a value was last, or followed by another flag.
    MissingValue { flag: String, placeholder: &'static str },
    /// A value was refused. `setting` is where it came from: the flag (`--max-body`) or the
    /// environment variable (`HANDOFF_MAX_BODY`, `PORT`, `HOST`); `expected` the accepted form.
    InvalidValue { setting: String, value: String, expected: &'static str },
    /// A positional argument: handoff takes flags only.
    UnexpectedArgument { arg: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownFlag { flag, suggestion: Some(name) } => {
                write!(f, "unknown flag {flag} (did you mean {name}?)")
            }
            ConfigError::UnknownFlag { flag, .. } => write!(f, "unknown flag {flag} (see --help)"),
            ConfigError::MissingValue { flag, placeholder } => {
                write!(f, "missing value for {flag}: expected {flag} {placeholder}")
            }
            ConfigError::InvalidValue { setting, value, expected } => {
                write!(f, "invalid value {value:?} for {setting}: expected {expected}")
            }
            ConfigError::UnexpectedArgument { arg } => {
                write!(f, "unexpected argument {arg:?}: handoff takes only flags (see --help)")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// What a setter refuses a value with: the accepted form, completing "expected …".
type Expected = &'static str;

/// One flag: everything `parse` and `--help` know about it.
struct Flag {
    /// Long name without the dashes, e.g. `max-body`.
    name: &'static str,
    /// Environment variable: `HANDOFF_` and the name in upper snake case.
    env: &'static str,
    placeholder: &'static str,
    help: &'static str,
    /// Checks a value and stores it.
    set: fn(&mut Config, &str) -> Result<(), Expected>,
    /// Renders the current value in a form `set` accepts; `--help` shows it for the default.
    show: fn(&Config) -> String,
}

const DURATION: Expected = "a duration such as 500ms, 25s, 10m or 1h";
const SIZE: Expected = "a size such as 65536, 64K or 1M";
const COUNT: Expected = "a whole number such as 100";
const CIDRS: Expected = "address ranges such as 127.0.0.1/32,10.0.0.0/8 or ::1, or none";
const LISTEN: Expected = "a socket address such as 127.0.0.1:8080 or [::]:8080";
const PATH: Expected = "a file path, or none";
const NAME: Expected = "1 to 64 letters, digits, '.', '-' or '_', or none";

/// All flags that take a value, in `--help` order. Kept out of rustfmt so that a flag reads as
/// one block: what it is, how a value is checked and stored, how it is shown.
#[rustfmt::skip]
static FLAGS: &[Flag] = &[
    Flag { name: "listen", env: "HANDOFF_LISTEN", placeholder: "ADDR",
        help: "Address and port to listen on when no socket is passed in by systemd.",
        set: |c, v| { c.listen = v.parse().map_err(|_| LISTEN)?; Ok(()) },
        show: |c| c.listen.to_string() },
    Flag { name: "workers", env: "HANDOFF_WORKERS", placeholder: "N",
        help: "HTTP worker threads reading requests, and as many finishing answers (parked requests hold none). Default: one per CPU, 2 to 16.",
        set: |c, v| {
            c.workers = in_range(count(v)?, 1..=1024, "a number from 1 to 1024")?;
            Ok(())
        },
        show: |c| c.workers.to_string() },
    Flag { name: "head-timeout", env: "HANDOFF_HEAD_TIMEOUT", placeholder: "DURATION",
        help: "Time a client has to send the request head (at most 24h, as every duration).",
        set: |c, v| { c.timeouts.head = timeout(v)?; Ok(()) },
        show: |c| show_duration(c.timeouts.head) },
    Flag { name: "body-timeout", env: "HANDOFF_BODY_TIMEOUT", placeholder: "DURATION",
        help: "Time a client has to send the body once the head is in.",
        set: |c, v| { c.timeouts.body = timeout(v)?; Ok(()) },
        show: |c| show_duration(c.timeouts.body) },
    Flag { name: "link-timeout", env: "HANDOFF_LINK_TIMEOUT", placeholder: "DURATION",
        help: "Longest wait of either side of /link for the other.",
        set: |c, v| { c.timeouts.link = timeout(v)?; Ok(()) },
        show: |c| show_duration(c.timeouts.link) },
    Flag { name: "inbox-timeout", env: "HANDOFF_INBOX_TIMEOUT", placeholder: "DURATION",
        help: "Longest wait of an /inbox GET or /await before it is answered 408.",
        set: |c, v| { c.timeouts.inbox = timeout(v)?; Ok(()) },
        show: |c| show_duration(c.timeouts.inbox) },
    Flag { name: "inbox-ttl", env: "HANDOFF_INBOX_TTL", placeholder: "DURATION",
        help: "Life of a stored /inbox message, from its POST.",
        set: |c, v| { c.timeouts.inbox_ttl = timeout(v)?; Ok(()) },
        show: |c| show_duration(c.timeouts.inbox_ttl) },
    Flag { name: "write-timeout", env: "HANDOFF_WRITE_TIMEOUT", placeholder: "DURATION",
        help: "Time one whole response may take to write (a /link delivery: until the receiver took it).",
        set: |c, v| { c.timeouts.write = timeout(v)?; Ok(()) },
        show: |c| show_duration(c.timeouts.write) },
    Flag { name: "max-body", env: "HANDOFF_MAX_BODY", placeholder: "SIZE",
        help: "Largest request body, at most 1G; a bigger one is refused with 413.",
        set: |c, v| {
            c.limits.max_body = in_range(size(v)?, 1..=MAX_BODY, "a size from 1 byte to 1G")?;
            Ok(())
        },
        show: |c| show_size(c.limits.max_body) },
    Flag { name: "max-id", env: "HANDOFF_MAX_ID", placeholder: "SIZE",
        help: "Longest channel id in bytes after percent-decoding; a longer one gets 400.",
        set: |c, v| {
            c.limits.max_id = in_range(size(v)?, 1..=65535, "a size from 1 to 65535 bytes")?;
            Ok(())
        },
        show: |c| show_size(c.limits.max_id) },
    Flag { name: "max-head", env: "HANDOFF_MAX_HEAD", placeholder: "SIZE",
        help: "Longest request head (request line and headers), at most 1M; a longer one gets 431.",
        set: |c, v| {
            c.limits.max_head =
                in_range(size(v)?, 256..=MAX_HEAD, "a size from 256 bytes to 1M")?;
            Ok(())
        },
        show: |c| show_size(c.limits.max_head) },
    Flag { name: "max-headers", env: "HANDOFF_MAX_HEADERS", placeholder: "N",
        help: "Most header lines in a request, at most 10000; a request with more is refused.",
        set: |c, v| {
            c.limits.max_headers =
                in_range(count(v)?, 1..=MAX_HEADERS, "a number from 1 to 10000")?;
            Ok(())
        },
        show: |c| c.limits.max_headers.to_string() },
    Flag { name: "max-connections", env: "HANDOFF_MAX_CONNECTIONS", placeholder: "N",
        help: "Most open connections; more are closed at accept. 0 disables the limit.",
        set: |c, v| { c.limits.max_connections = Some(count(v)?).filter(|&n| n > 0); Ok(()) },
        show: |c| c.limits.max_connections.unwrap_or(0).to_string() },
    Flag { name: "max-parked", env: "HANDOFF_MAX_PARKED", placeholder: "N",
        help: "Most parked requests over all ids; more get 503. 0 disables the limit.",
        set: |c, v| { c.limits.max_parked = Some(count(v)?).filter(|&n| n > 0); Ok(()) },
        show: |c| c.limits.max_parked.unwrap_or(0).to_string() },
    Flag { name: "max-parked-per-ip", env: "HANDOFF_MAX_PARKED_PER_IP", placeholder: "N",
        help: "Most parked requests per client IP (IPv6: per /64); more get 429. 0 disables.",
        set: |c, v| { c.limits.max_parked_per_ip = Some(count(v)?).filter(|&n| n > 0); Ok(()) },
        show: |c| c.limits.max_parked_per_ip.unwrap_or(0).to_string() },
    Flag { name: "max-connections-per-ip", env: "HANDOFF_MAX_CONNECTIONS_PER_IP", placeholder: "N",
        help: "Most open connections per TCP peer (trusted proxies exempt); more are closed. 0 disables.",
        set: |c, v| {
            c.limits.max_connections_per_ip = Some(count(v)?).filter(|&n| n > 0);
            Ok(())
        },
        show: |c| c.limits.max_connections_per_ip.unwrap_or(0).to_string() },
    Flag { name: "max-memory", env: "HANDOFF_MAX_MEMORY", placeholder: "SIZE",
        help: "Memory held in bodies and waiters, at most 1024G; beyond it requests get 503. \
               0 disables.",
        set: |c, v| { c.limits.max_memory = memory(v)?; Ok(()) },
        show: |c| show_size(c.limits.max_memory.unwrap_or(0)) },
    Flag { name: "max-memory-per-ip", env: "HANDOFF_MAX_MEMORY_PER_IP", placeholder: "SIZE|auto",
        help: "Memory one client IP (IPv6: per /64) may hold in stored bodies and waiters across \
               /link and /inbox; beyond it requests get 429. auto: 1/8 of --max-memory. \
               0 disables.",
        set: |c, v| {
            c.limits.max_memory_per_ip = match v {
                "auto" => MemoryShare::Auto,
                v => memory(v)?.map_or(MemoryShare::Off, MemoryShare::Bytes),
            };
            Ok(())
        },
        show: |c| match c.limits.max_memory_per_ip {
            MemoryShare::Auto => "auto".into(),
            MemoryShare::Bytes(n) => show_size(n),
            MemoryShare::Off => "0".into(),
        } },
    Flag { name: "rate-per-ip", env: "HANDOFF_RATE_PER_IP", placeholder: "N",
        help: "Requests per minute per client IP, in bursts of as many; more get 429. 0 disables.",
        set: |c, v| { c.limits.rate_per_ip = per_minute(v)?; Ok(()) },
        show: |c| c.limits.rate_per_ip.unwrap_or(0).to_string() },
    Flag { name: "rate-per-id", env: "HANDOFF_RATE_PER_ID", placeholder: "N",
        help: "Writes (POST, DELETE) per minute per channel id; more get 429. 0 disables.",
        set: |c, v| { c.limits.rate_per_id = per_minute(v)?; Ok(()) },
        show: |c| c.limits.rate_per_id.unwrap_or(0).to_string() },
    Flag { name: "trust-proxy", env: "HANDOFF_TRUST_PROXY", placeholder: "CIDR[,CIDR...]",
        help: "Proxies whose X-Forwarded-For / X-Real-IP name the client, e.g. 127.0.0.1/32.",
        set: |c, v| { c.trust_proxy = cidrs(v)?; Ok(()) },
        show: |c| show_cidrs(&c.trust_proxy) },
    Flag { name: "token-file", env: "HANDOFF_TOKEN_FILE", placeholder: "PATH",
        help: "Bearer tokens with scopes, one `TOKEN send,receive,stats` a line (mode 600); \
               relay requests then need one. SIGHUP reloads it.",
        set: |c, v| {
            c.access.token_file = match v {
                "" => return Err(PATH),
                "none" => None,
                path => Some(PathBuf::from(path)),
            };
            Ok(())
        },
        show: |c| c.access.token_file.as_ref().map_or("none".into(), |p| p.display().to_string()) },
    Flag { name: "state-file", env: "HANDOFF_STATE_FILE", placeholder: "PATH",
        help: "Saves stored /inbox and undelivered /link messages here (at most a second late, \
               and on SIGTERM) and restores them on start with their remaining time.",
        set: |c, v| {
            c.state_file = match v {
                "" => return Err(PATH),
                "none" => None,
                path => Some(PathBuf::from(path)),
            };
            Ok(())
        },
        show: |c| c.state_file.as_ref().map_or("none".into(), |p| p.display().to_string()) },
    Flag { name: "instance", env: "HANDOFF_INSTANCE", placeholder: "NAME",
        help: "This relay's name among several behind one proxy: shown in /health and /metrics, \
               and sent in a Handoff-Instance header on every response. none: /health and \
               /metrics show the host name, and no header is sent.",
        set: |c, v| {
            c.instance = match v {
                "none" => None,
                name => Some(instance_name(name).ok_or(NAME)?.to_string()),
            };
            Ok(())
        },
        show: |c| c.instance.clone().unwrap_or_else(|| "none".into()) },
    Flag { name: "auth-failures-per-ip", env: "HANDOFF_AUTH_FAILURES_PER_IP", placeholder: "N",
        help: "Failed authentications (401, 403) per minute per client IP before it gets 429. \
               0 disables.",
        set: |c, v| { c.limits.auth_failures_per_ip = per_minute(v)?; Ok(()) },
        show: |c| c.limits.auth_failures_per_ip.unwrap_or(0).to_string() },
    Flag { name: "allow-ip", env: "HANDOFF_ALLOW_IP", placeholder: "CIDR[,CIDR...]",
        help: "Only clients in these ranges may use the relay; others get 403.",
        set: |c, v| { c.access.allow_ip = cidrs(v)?; Ok(()) },
        show: |c| show_cidrs(&c.access.allow_ip) },
    Flag { name: "deny-ip", env: "HANDOFF_DENY_IP", placeholder: "CIDR[,CIDR...]",
        help: "Clients in these ranges get 403 (wins over --allow-ip).",
        set: |c, v| { c.access.deny_ip = cidrs(v)?; Ok(()) },
        show: |c| show_cidrs(&c.access.deny_ip) },
    Flag { name: "cors", env: "HANDOFF_CORS", placeholder: "mirror|off|ORIGIN[,ORIGIN...]",
        help: "Which browser origins may read responses: mirror (any, with credentials), off, \
               or a list.",
        set: |c, v| { c.cors = cors(v)?; Ok(()) },
        show: |c| match &c.cors {
            Cors::Mirror => "mirror".to_string(),
            Cors::Off => "off".to_string(),
            Cors::List(origins) => origins.join(","),
        } },
];

/// Reads flags (`args`, without the program name) over environment variables (`env`) over defaults.
///
/// `--flag value` and `--flag=value` are both accepted; a repeated flag's last value wins. An
/// environment variable set to the empty string counts as unset. `PORT` and `HOST` replace the
/// port and IP of the default listen address when neither `--listen` nor `HANDOFF_LISTEN` is set.
/// `-h`/`--help` and `-V`/`--version` answer at once, whatever follows them.
pub fn parse<I>(args: I, env: impl Fn(&str) -> Option<String>) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = String>,
{
    // First the shape of the command line, so that `--help` wins over a bad value before it.
    let mut given: Vec<(&Flag, String)> = Vec::new();
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help(help())),
            "-V" | "--version" => return Ok(Command::Version(version())),
            _ => {}
        }
        let Some(body) = arg.strip_prefix("--") else {
            return Err(if arg.starts_with('-') && arg.len() > 1 {
                ConfigError::UnknownFlag { flag: arg, suggestion: None }
            } else {
                ConfigError::UnexpectedArgument { arg }
            });
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (body, None),
        };
        let Some(flag) = FLAGS.iter().find(|f| f.name == name) else {
            let suggestion = suggest(name);
            return Err(ConfigError::UnknownFlag { flag: arg, suggestion });
        };
        // No value starts with `--`, so a following long flag means the value is missing; `-1`
        // is taken as a value, to be refused as one.
        let value = match inline {
            Some(value) => value,
            None => match args.next_if(|next| !next.starts_with("--")) {
                Some(value) => value,
                None => {
                    return Err(ConfigError::MissingValue {
                        flag: format!("--{}", flag.name),
                        placeholder: flag.placeholder,
                    })
                }
            },
        };
        given.push((flag, value));
    }

    let env = |name: &str| env(name).filter(|value| !value.is_empty());
    let mut config = Config::default();
    for flag in FLAGS {
        if given.iter().any(|(f, _)| f.name == flag.name) {
            continue;
        }
        if let Some(value) = env(flag.env) {
            apply(&mut config, flag, flag.env.to_string(), value)?;
        }
    }
    if !given.iter().any(|(f, _)| f.name == "listen") && env("HANDOFF_LISTEN").is_none() {
        if let Some(port) = env("PORT") {
            let port = digits(&port).ok_or_else(|| invalid("PORT", &port, PORT))?;
            config.listen.set_port(port);
        }
        if let Some(host) = env("HOST") {
            let bare = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                Some(inner) => inner,
                None => &host,
            };
            let ip: IpAddr = bare.parse().map_err(|_| invalid("HOST", &host, HOST))?;
            config.listen.set_ip(ip);
        }
    }
    for (flag, value) in given {
        apply(&mut config, flag, format!("--{}", flag.name), value)?;
    }
    Ok(Command::Run(config))
}

const PORT: Expected = "a port number from 0 to 65535";
const HOST: Expected = "an IP address such as 0.0.0.0, :: or [::1]";

fn apply(
    config: &mut Config,
    flag: &Flag,
    setting: String,
    value: String,
) -> Result<(), ConfigError> {
    (flag.set)(config, &value).map_err(|expected| ConfigError::InvalidValue {
        setting,
        value,
        expected,
    })
}

fn invalid(setting: &str, value: &str, expected: Expected) -> ConfigError {
    ConfigError::InvalidValue { setting: setting.to_string(), value: value.to_string(), expected }
}

/// The closest flag name to `typed` (as `--name`), if within two edits or `typed` starts it.
fn suggest(typed: &str) -> Option<String> {
    let names = FLAGS.iter().map(|f| f.name).chain(["help", "version"]);
    names
        .map(|name| (edit_distance(typed, name), name))
        .filter(|&(distance, name)| distance <= 2 || (typed.len() >= 3 && name.starts_with(typed)))
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, name)| format!("--{name}"))
}

/// Levenshtein distance over bytes (flag names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.bytes().enumerate() {
        let mut current = vec![i + 1];
        for (j, y) in b.bytes().enumerate() {
            let substitute = previous[j] + usize::from(x != y);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

fn in_range(
    n: usize,
    range: impl RangeBounds<usize>,
    expected: Expected,
) -> Result<usize, Expected> {
    if range.contains(&n) {
        Ok(n)
    } else {
        Err(expected)
    }
}

/// A whole number of ASCII digits; no sign, no spaces.
/// `name` if it can name an instance: 1 to 64 ASCII letters, digits, `.`, `-` or `_`, so that it
/// goes into a header, a JSON string and a Prometheus label as it is, with no escaping.
fn instance_name(name: &str) -> Option<&str> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b);
    (1..=64).contains(&name.len()).then_some(name).filter(|n| n.bytes().all(allowed))
}

/// The machine's host name (`/proc/sys/kernel/hostname`, else `/etc/hostname`), which names the
/// relay in `/health` and `/metrics` when `--instance` is not given; `handoff` if neither file
/// holds a usable name.
pub fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .find_map(|text| instance_name(text.trim()).map(str::to_string))
        .unwrap_or_else(|| "handoff".into())
}

/// A comma-separated list of address ranges; `none` is the empty list.
fn cidrs(value: &str) -> Result<Vec<Cidr>, Expected> {
    if value == "none" {
        return Ok(Vec::new());
    }
    value.split(',').map(|part| part.trim().parse::<Cidr>().map_err(|()| CIDRS)).collect()
}

/// Address ranges as [`cidrs`] reads them.
fn show_cidrs(cidrs: &[Cidr]) -> String {
    match cidrs {
        [] => "none".into(),
        cidrs => cidrs.iter().map(Cidr::to_string).collect::<Vec<_>>().join(","),
    }
}

/// A rate in events per minute; `0` disables it.
fn per_minute(value: &str) -> Result<Option<u32>, Expected> {
    let n = u32::try_from(count(value)?).map_err(|_| COUNT)?;
    Ok(Some(n).filter(|&n| n > 0))
}

fn count(value: &str) -> Result<usize, Expected> {
    digits(value).ok_or(COUNT)
}

/// ASCII digits only (no sign, no spaces, no `_`) that fit in `T`.
fn digits<T: std::str::FromStr>(value: &str) -> Option<T> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// The leading ASCII digits of `value`, and the rest.
fn split_digits(value: &str) -> (&str, &str) {
    value.split_at(value.bytes().take_while(u8::is_ascii_digit).count())
}

/// A size in bytes: digits, then optionally `B`, `K`/`KiB`, `M`/`MiB` or `G`/`GiB` (any case;
/// powers of 1024). Overflow is an error.
fn size(value: &str) -> Result<usize, Expected> {
    let (number, unit) = split_digits(value);
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => return Err(SIZE),
    };
    let n: usize = digits(number).ok_or(SIZE)?;
    n.checked_mul(1 << shift).ok_or(SIZE)
}

/// The largest unit that divides `n` exactly: `65536` → `64K`, `256` → `256`.
fn show_size(n: usize) -> String {
    let units = [(30, "G"), (20, "M"), (10, "K")];
    match units.iter().find(|&&(shift, _)| n != 0 && n.is_multiple_of(1 << shift)) {
        Some(&(shift, unit)) => format!("{}{unit}", n >> shift),
        None => n.to_string(),
    }
}

/// A duration: digits, then `ms`, `s`, `m` or `h`; a bare number is seconds. Overflow is an error.
fn duration(value: &str) -> Result<Duration, Expected> {
    let (number, unit) = split_digits(value);
    let n: u64 = digits(number).ok_or(DURATION)?;
    let seconds = |factor: u64| n.checked_mul(factor).map(Duration::from_secs).ok_or(DURATION);
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        _ => Err(DURATION),
    }
}

/// Largest `--max-body`: 1 GiB (a body is held in memory whole).
const MAX_BODY: usize = 1 << 30;
/// Largest `--max-head`: 1 MiB.
const MAX_HEAD: usize = 1 << 20;
/// Most `--max-headers`.
const MAX_HEADERS: usize = 10_000;
/// Largest `--max-memory` and `--max-memory-per-ip`: 1 TiB (`1024G`), so that sums of
/// reservations stay far from overflowing on 64-bit systems.
const MAX_MEMORY: u64 = 1 << 40;

/// A duration above zero and at most [`MAX_WAIT`]: every wait in the relay is bounded.
fn timeout(value: &str) -> Result<Duration, Expected> {
    match duration(value)? {
        Duration::ZERO => Err("a duration above zero (every wait in the relay is bounded)"),
        d if d > MAX_WAIT => Err("a duration of at most 24h"),
        d => Ok(d),
    }
}

/// A memory size of at most [`MAX_MEMORY`]; `0` disables the limit.
fn memory(value: &str) -> Result<Option<usize>, Expected> {
    let n = size(value)?;
    if u64::try_from(n).map_or(true, |n| n > MAX_MEMORY) {
        return Err("a size of at most 1024G, or 0 for no limit");
    }
    Ok(Some(n).filter(|&n| n > 0))
}

/// The largest unit that divides `d` exactly: 600 s → `10m`, 25 s → `25s`, 1.5 s → `1500ms`.
fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let units = [(3_600_000, "h"), (60_000, "m"), (1000, "s")];
    match units.iter().find(|&&(per, _)| ms != 0 && ms.is_multiple_of(per)) {
        Some(&(per, unit)) => format!("{}{unit}", ms / per),
        None => format!("{ms}ms"),
    }
}

/// Validates `mirror`, `off` or a comma-separated list of `scheme://host[:port]` origins.
fn cors(value: &str) -> Result<Cors, Expected> {
    const CORS: Expected =
        "mirror, off, or origins such as https://app.example,http://localhost:3000";
    if value.eq_ignore_ascii_case("mirror") {
        return Ok(Cors::Mirror);
    }
    if value.eq_ignore_ascii_case("off") {
        return Ok(Cors::Off);
    }
    let origins: Option<Vec<String>> = value
        .split(',')
        .map(str::trim)
        .map(|o| is_origin(o).then(|| o.to_ascii_lowercase()))
        .collect();
    origins.map(Cors::List).ok_or(CORS)
}

/// `scheme://host[:port]`, as browsers send it in `Origin`: no path, no trailing slash.
fn is_origin(origin: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    // A bracketed IPv6 host may hold colons; otherwise the first colon starts the port.
    let (host, port) = match authority.find(']') {
        Some(end) if authority.starts_with('[') => authority.split_at(end + 1),
        _ => authority.split_at(authority.find(':').unwrap_or(authority.len())),
    };
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
        }
    };
    let port_ok = port.is_empty() || port.strip_prefix(':').and_then(digits::<u16>).is_some();
    scheme_ok && host_ok && port_ok
}

fn version() -> String {
    concat!("handoff ", env!("CARGO_PKG_VERSION")).to_string()
}

/// The `--help` text, generated from [`FLAGS`] with the defaults of [`Config::default`].
fn help() -> String {
    let defaults = Config::default();
    let mut text = String::from(
        "Usage: handoff [OPTIONS]\n\n\
         handoff is a small self-hosted HTTP relay where one party leaves an encrypted blob\n\
         for another to pick up (httprelay.io /link and Pubky /inbox).\n\nOptions:\n",
    );
    for flag in FLAGS {
        text += &format!(
            "  --{} {}\n          {}\n          [default: {}] [env: {}]\n",
            flag.name,
            flag.placeholder,
            flag.help,
            (flag.show)(&defaults),
            flag.env
        );
    }
    text += "  -h, --help\n          Print this help and exit.\n";
    text += "  -V, --version\n          Print the version and exit.\n\n";
    text += "DURATION: digits and ms, s, m or h (bare: seconds). \
             SIZE: digits and an optional K, M or G (x1024).\n\n";
    text += "Environment:\n";
    text += "  PORT, HOST  Port and IP of the default address, used when neither --listen\n";
    text += "              nor HANDOFF_LISTEN is set.\n";
    text += "  RUST_LOG    Log filter, e.g. debug or handoff=trace [default: info].\n";
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::fmt::Debug;

    fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Command, ConfigError> {
        let env: HashMap<String, String> =
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        parse(args.iter().map(|a| a.to_string()), |name| env.get(name).cloned())
    }

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        match parse_with(args, env)? {
            Command::Run(config) => Ok(config),
            other => panic!("expected Run, got {other:?}"),
        }
    }

    fn invalid(setting: &str, value: &str, expected: &'static str) -> ConfigError {
        super::invalid(setting, value, expected)
    }

    /// The checks every flag gets: `--flag good`, `--flag=good`, its env twin, the flag over its
    /// env twin, and `bad` refused with `expected`, named by the flag or by the env var.
    fn check<T: PartialEq + Debug>(
        name: &str,
        get: fn(&Config) -> T,
        good: &str,
        want: T,
        bad: &str,
        expected: &'static str,
    ) {
        let flag = format!("--{name}");
        let env = format!("HANDOFF_{}", name.to_uppercase().replace('-', "_"));
        let config = run(&[&flag, good], &[]).unwrap();
        assert_eq!(get(&config), want, "{flag} {good}");
        let joined = format!("{flag}={good}");
        assert_eq!(run(&[&joined], &[]), Ok(config.clone()), "{joined}");
        assert_eq!(run(&[], &[(&env, good)]), Ok(config.clone()), "{env}={good}");
        // The flag wins over its env var, which is then not even checked.
        assert_eq!(run(&[&flag, good], &[(&env, bad)]), Ok(config));
        assert_eq!(run(&[&flag, bad], &[]), Err(invalid(&flag, bad, expected)));
        assert_eq!(run(&[], &[(&env, bad)]), Err(invalid(&env, bad, expected)));
    }

    #[test]
    fn defaults() {
        let c = run(&[], &[]).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.workers, default_workers());
        assert!((2..=16).contains(&c.workers), "{}", c.workers);
        let t = &c.timeouts;
        let secs = |d: Duration| d.as_secs();
        assert_eq!(
            [t.head, t.body, t.link, t.inbox, t.inbox_ttl].map(secs),
            [10, 10, 600, 25, 300]
        );
        let l = &c.limits;
        assert_eq!([l.max_body, l.max_id, l.max_head, l.max_headers], [65536, 256, 8192, 100]);
        assert_eq!(l.max_connections, Some(10_000));
        assert_eq!(l.max_parked, Some(50_000));
        assert_eq!(c.cors, Cors::Mirror);
    }

    #[test]
    fn table_is_consistent() {
        let defaults = Config::default();
        for flag in FLAGS {
            let env = format!("HANDOFF_{}", flag.name.to_uppercase().replace('-', "_"));
            assert_eq!(flag.env, env);
            // The default as --help shows it reads back as the default.
            let mut config = defaults.clone();
            assert_eq!((flag.set)(&mut config, &(flag.show)(&defaults)), Ok(()));
            assert_eq!(config, defaults, "--{}", flag.name);
        }
    }

    #[test]
    fn flag_listen() {
        let v6: SocketAddr = "[::]:9000".parse().unwrap();
        let expected = "a socket address such as 127.0.0.1:8080 or [::]:8080";
        check("listen", |c| c.listen, "[::]:9000", v6, "localhost", expected);
        let v4 = run(&["--listen", "0.0.0.0:80"], &[]).unwrap().listen;
        assert_eq!(v4, "0.0.0.0:80".parse().unwrap());
    }

    #[test]
    fn flag_workers() {
        let expected = "a number from 1 to 1024";
        check("workers", |c| c.workers, "4", 4, "0", expected);
        assert_eq!(run(&["--workers", "1024"], &[]).unwrap().workers, 1024);
        let err = invalid("--workers", "1025", expected);
        assert_eq!(run(&["--workers", "1025"], &[]), Err(err));
        assert_eq!(run(&["--workers", "four"], &[]), Err(invalid("--workers", "four", COUNT)));
    }

    #[test]
    fn flag_head_timeout() {
        let want = Duration::from_millis(500);
        check("head-timeout", |c| c.timeouts.head, "500ms", want, "5x", DURATION);
    }

    #[test]
    fn flag_body_timeout() {
        let want = Duration::from_secs(30);
        check("body-timeout", |c| c.timeouts.body, "30", want, "-1", DURATION);
    }

    #[test]
    fn flag_link_timeout() {
        let want = Duration::from_secs(3600);
        check("link-timeout", |c| c.timeouts.link, "1h", want, "10x", DURATION);
    }

    #[test]
    fn flag_inbox_timeout() {
        let want = Duration::from_secs(30);
        check("inbox-timeout", |c| c.timeouts.inbox, "30s", want, "30 s", DURATION);
    }

    #[test]
    fn flag_write_timeout() {
        let want = Duration::from_secs(30);
        check("write-timeout", |c| c.timeouts.write, "30s", want, "-5", DURATION);
    }

    #[test]
    fn flag_inbox_ttl() {
        let want = Duration::from_secs(600);
        check("inbox-ttl", |c| c.timeouts.inbox_ttl, "10m", want, "10min", DURATION);
    }

    #[test]
    fn zero_timeout_is_refused() {
        let expected = "a duration above zero (every wait in the relay is bounded)";
        for zero in ["0", "0s", "0ms", "0h"] {
            let err = invalid("--link-timeout", zero, expected);
            assert_eq!(run(&["--link-timeout", zero], &[]), Err(err));
        }
        let err = invalid("HANDOFF_INBOX_TTL", "0", expected);
        assert_eq!(run(&[], &[("HANDOFF_INBOX_TTL", "0")]), Err(err));
    }

    /// Every duration flag at its maximum is accepted; one millisecond more, and `u64::MAX` in
    /// each unit, are refused at parse time with the maximum in the message.
    #[test]
    fn durations_are_bounded() {
        let flags = ["head-timeout", "body-timeout", "link-timeout", "inbox-timeout", "inbox-ttl"];
        let timeouts = |c: Config| {
            let t = c.timeouts;
            [t.head, t.body, t.link, t.inbox, t.inbox_ttl]
        };
        let expected = "a duration of at most 24h";
        for (n, name) in flags.into_iter().enumerate() {
            let flag = format!("--{name}");
            for most in ["24h", "1440m", "86400", "86400000ms"] {
                let config = run(&[&flag, most], &[]).unwrap();
                assert_eq!(timeouts(config)[n], MAX_WAIT, "{flag} {most}");
            }
            let max = u64::MAX.to_string();
            for over in
                ["86401", "86400001ms", "25h", &max, &format!("{max}ms"), &format!("{max}s")]
            {
                assert_eq!(run(&[&flag, over], &[]), Err(invalid(&flag, over, expected)));
            }
            // Past u64 it is not a number at all.
            let beyond = format!("{max}0");
            assert_eq!(run(&[&flag, &beyond], &[]), Err(invalid(&flag, &beyond, DURATION)));
        }
    }

    #[test]
    fn flag_max_memory_per_ip() {
        let get = |c: &Config| c.limits.memory_per_ip();
        let expected = "a size of at most 1024G, or 0 for no limit";
        check("max-memory-per-ip", get, "512K", Some(512 << 10), "1025G", expected);
        assert_eq!(get(&run(&[], &[]).unwrap()), Some(8 << 20), "an eighth of 64 MiB");
        assert_eq!(get(&run(&["--max-memory", "4M"], &[]).unwrap()), Some(512 << 10));
        let off = run(&["--max-memory-per-ip", "0"], &[]).unwrap();
        assert_eq!((off.limits.max_memory_per_ip, get(&off)), (MemoryShare::Off, None));
        assert_eq!(get(&run(&["--max-memory", "0"], &[]).unwrap()), None, "no budget, no share");
        let auto = run(&["--max-memory-per-ip", "1M", "--max-memory-per-ip", "auto"], &[]).unwrap();
        assert_eq!(auto.limits.max_memory_per_ip, MemoryShare::Auto);
        let bad = "1.5M";
        let err = invalid("--max-memory-per-ip", bad, SIZE);
        assert_eq!(run(&["--max-memory-per-ip", bad], &[]), Err(err));
        let at_most = run(&["--max-memory", "1024G"], &[]).unwrap().limits.max_memory;
        assert_eq!(at_most, Some(1 << 40));
    }

    #[test]
    fn flag_max_body() {
        check("max-body", |c| c.limits.max_body, "1M", 1 << 20, "1.5M", SIZE);
        let expected = "a size from 1 byte to 1G";
        let err = invalid("--max-body", "0", expected);
        assert_eq!(run(&["--max-body", "0"], &[]), Err(err));
        assert_eq!(run(&["--max-body", "1G"], &[]).unwrap().limits.max_body, 1 << 30);
        let err = invalid("--max-body", "1025M", expected);
        assert_eq!(run(&["--max-body", "1025M"], &[]), Err(err));
    }

    #[test]
    fn flag_max_id() {
        let expected = "a size from 1 to 65535 bytes";
        check("max-id", |c| c.limits.max_id, "64", 64, "64K", expected);
        assert_eq!(run(&["--max-id", "65535"], &[]).unwrap().limits.max_id, 65535);
        assert_eq!(run(&["--max-id", "0"], &[]), Err(invalid("--max-id", "0", expected)));
    }

    #[test]
    fn flag_max_head() {
        let expected = "a size from 256 bytes to 1M";
        check("max-head", |c| c.limits.max_head, "16KiB", 16384, "255", expected);
        assert_eq!(run(&["--max-head", "256"], &[]).unwrap().limits.max_head, 256);
        assert_eq!(run(&["--max-head", "1M"], &[]).unwrap().limits.max_head, 1 << 20);
        let err = invalid("--max-head", "1025K", expected);
        assert_eq!(run(&["--max-head", "1025K"], &[]), Err(err));
    }

    #[test]
    fn flag_max_headers() {
        let expected = "a number from 1 to 10000";
        check("max-headers", |c| c.limits.max_headers, "50", 50, "0", expected);
        assert_eq!(run(&["--max-headers", "10000"], &[]).unwrap().limits.max_headers, 10_000);
        let err = invalid("--max-headers", "10001", expected);
        assert_eq!(run(&["--max-headers", "10001"], &[]), Err(err));
        assert_eq!(run(&["--max-headers", "5K"], &[]), Err(invalid("--max-headers", "5K", COUNT)));
    }

    #[test]
    fn flag_max_connections() {
        let get = |c: &Config| c.limits.max_connections;
        check("max-connections", get, "500", Some(500), "lots", COUNT);
        assert_eq!(run(&["--max-connections", "0"], &[]).map(|c| get(&c)), Ok(None));
    }

    #[test]
    fn flag_max_parked_per_ip() {
        let get = |c: &Config| c.limits.max_parked_per_ip;
        check("max-parked-per-ip", get, "7", Some(7), "x", COUNT);
        assert_eq!(run(&["--max-parked-per-ip", "0"], &[]).map(|c| get(&c)), Ok(None));
    }

    #[test]
    fn flag_max_connections_per_ip() {
        let get = |c: &Config| c.limits.max_connections_per_ip;
        check("max-connections-per-ip", get, "8", Some(8), "-1", COUNT);
        assert_eq!(run(&["--max-connections-per-ip=0"], &[]).map(|c| get(&c)), Ok(None));
    }

    #[test]
    fn flag_max_memory() {
        let get = |c: &Config| c.limits.max_memory;
        check("max-memory", get, "16M", Some(16 << 20), "lots", SIZE);
        assert_eq!(run(&["--max-memory", "0"], &[]).map(|c| get(&c)), Ok(None));
    }

    #[test]
    fn flag_rate_per_ip() {
        let get = |c: &Config| c.limits.rate_per_ip;
        check("rate-per-ip", get, "30", Some(30), "5000000000", COUNT);
        assert_eq!(run(&["--rate-per-ip", "0"], &[]).map(|c| get(&c)), Ok(None));
    }

    #[test]
    fn flag_rate_per_id() {
        let get = |c: &Config| c.limits.rate_per_id;
        check("rate-per-id", get, "3", Some(3), "3/min", COUNT);
        assert_eq!(run(&["--rate-per-id", "0"], &[]).map(|c| get(&c)), Ok(None));
    }

    #[test]
    fn flag_trust_proxy() {
        let get = |c: &Config| c.trust_proxy.clone();
        let want: Vec<Cidr> = vec!["127.0.0.1/32".parse().unwrap(), "fd00::/8".parse().unwrap()];
        check("trust-proxy", get, "127.0.0.1/32, fd00::/8", want, "10.0.0.0/33", CIDRS);
    }

    #[test]
    fn flag_token_file() {
        let get = |c: &Config| c.access.token_file.clone();
        let want = Some(PathBuf::from("/etc/handoff/tokens"));
        let flag = run(&["--token-file", "/etc/handoff/tokens"], &[]).map(|c| get(&c));
        assert_eq!(flag, Ok(want.clone()));
        let env = run(&[], &[("HANDOFF_TOKEN_FILE", "/etc/handoff/tokens")]).map(|c| get(&c));
        assert_eq!(env, Ok(want));
        let over = run(&["--token-file=/a"], &[("HANDOFF_TOKEN_FILE", "/b")]).map(|c| get(&c));
        assert_eq!(over, Ok(Some(PathBuf::from("/a"))));
        assert_eq!(run(&["--token-file", "none"], &[]).map(|c| get(&c)), Ok(None));
        // An empty environment variable counts as unset; an empty flag value is refused.
        assert_eq!(run(&[], &[("HANDOFF_TOKEN_FILE", "")]).map(|c| get(&c)), Ok(None));
        assert_eq!(run(&["--token-file", ""], &[]), Err(invalid("--token-file", "", PATH)));
    }

    #[test]
    fn flag_state_file() {
        let get = |c: &Config| c.state_file.clone();
        assert_eq!(run(&[], &[]).map(|c| get(&c)), Ok(None));
        let want = Some(PathBuf::from("/var/lib/handoff/state"));
        let flag = run(&["--state-file", "/var/lib/handoff/state"], &[]).map(|c| get(&c));
        assert_eq!(flag, Ok(want.clone()));
        let env = run(&[], &[("HANDOFF_STATE_FILE", "/var/lib/handoff/state")]).map(|c| get(&c));
        assert_eq!(env, Ok(want));
        let over = run(&["--state-file=/a"], &[("HANDOFF_STATE_FILE", "/b")]).map(|c| get(&c));
        assert_eq!(over, Ok(Some(PathBuf::from("/a"))));
        assert_eq!(run(&["--state-file", "none"], &[]).map(|c| get(&c)), Ok(None));
        assert_eq!(run(&["--state-file", ""], &[]), Err(invalid("--state-file", "", PATH)));
    }

    #[test]
    fn flag_instance() {
        let get = |c: &Config| c.instance.clone();
        assert_eq!(Config::default().instance, None);
        check("instance", get, "relay-2.eu_1", Some("relay-2.eu_1".to_string()), "a b", NAME);
        assert_eq!(run(&["--instance", "none"], &[]).map(|c| get(&c)), Ok(None));
        let longest = "x".repeat(64);
        assert_eq!(run(&["--instance", &longest], &[]).map(|c| get(&c)), Ok(Some(longest)));
        // Nothing that would need escaping in a header, JSON or a Prometheus label.
        for bad in ["", &"x".repeat(65), "r\"1", "r\\1", "r:1", "r/1", "r\u{e9}", "r\r\nX: 1"] {
            assert_eq!(run(&["--instance", bad], &[]), Err(invalid("--instance", bad, NAME)));
        }
        // The host name is a usable name.
        assert!(instance_name(&host_name()).is_some(), "{}", host_name());
    }

    #[test]
    fn flag_auth_failures_per_ip() {
        let get = |c: &Config| c.limits.auth_failures_per_ip;
        assert_eq!(Config::default().limits.auth_failures_per_ip, Some(5));
        check("auth-failures-per-ip", get, "20", Some(20), "5/min", COUNT);
        assert_eq!(run(&["--auth-failures-per-ip", "0"], &[]).map(|c| get(&c)), Ok(None));
    }

    #[test]
    fn flag_allow_ip() {
        let get = |c: &Config| c.access.allow_ip.clone();
        let want: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap(), "2001:db8::/32".parse().unwrap()];
        check("allow-ip", get, "10.0.0.0/8,2001:db8::/32", want, "10.0.0.0/8,", CIDRS);
        assert_eq!(run(&["--allow-ip", "none"], &[]).map(|c| get(&c)), Ok(vec![]));
    }

    #[test]
    fn flag_deny_ip() {
        let get = |c: &Config| c.access.deny_ip.clone();
        let want: Vec<Cidr> = vec!["192.0.2.7".parse().unwrap()];
        check("deny-ip", get, "192.0.2.7", want, "192.0.2.7/", CIDRS);
    }

    #[test]
    fn allow_and_deny_lists() {
        let ip = |s: &str| Client::Known { ip: s.parse().unwrap(), port: None, trusted: false };
        let open = Access::default();
        assert!(open.allows(ip("203.0.113.1")));
        assert!(open.allows(Client::Unidentified), "no list: nothing to check");
        let access = run(&["--allow-ip", "10.0.0.0/8, fd00::/8", "--deny-ip", "10.6.0.0/16"], &[])
            .unwrap()
            .access;
        assert!(access.allows(ip("10.1.2.3")));
        assert!(access.allows(ip("::ffff:10.1.2.3")), "IPv4-mapped counts as IPv4");
        assert!(access.allows(ip("fd12::1")));
        assert!(!access.allows(ip("10.6.0.1")), "deny wins over allow");
        assert!(!access.allows(ip("192.0.2.1")));
        assert!(!access.allows(ip("2001:db8::1")));
        assert!(!access.allows(Client::Unidentified), "on no allow list");
        let everyone = run(&["--allow-ip", "0.0.0.0/0,::/0"], &[]).unwrap().access;
        assert!(!everyone.allows(Client::Unidentified), "not even one of everyone");
        let deny = run(&["--deny-ip", "192.0.2.0/24"], &[]).unwrap().access;
        assert!(deny.allows(ip("198.51.100.1")));
        assert!(!deny.allows(Client::Unidentified), "could be anyone denied");
    }

    #[test]
    fn flag_max_parked() {
        let get = |c: &Config| c.limits.max_parked;
        check("max-parked", get, "7", Some(7), "+7", COUNT);
        let env = [("HANDOFF_MAX_PARKED", "0")];
        assert_eq!(run(&[], &env).map(|c| get(&c)), Ok(None));
    }

    #[test]
    fn flag_cors() {
        let expected = "mirror, off, or origins such as https://app.example,http://localhost:3000";
        let list = |o: &[&str]| Cors::List(o.iter().map(|s| s.to_string()).collect());
        let want = list(&["https://app.example", "http://localhost:3000"]);
        let good = "https://app.example, http://localhost:3000";
        check("cors", |c| c.cors.clone(), good, want, "https://app.example/", expected);
        assert_eq!(run(&["--cors", "off"], &[]).unwrap().cors, Cors::Off);
        assert_eq!(run(&["--cors=MIRROR"], &[]).unwrap().cors, Cors::Mirror);
        let odd = "HTTPS://App.Example:8443,http://[::1]:3000,app+x://a-b.c";
        let want = list(&["https://app.example:8443", "http://[::1]:3000", "app+x://a-b.c"]);
        assert_eq!(run(&["--cors", odd], &[]).unwrap().cors, want);
        for bad in [
            "",
            "app.example",
            "https://",
            "https://app.example/path",
            "https://app.example:",
            "https://app.example:99999",
            "https://a,",
            "https://a,,https://b",
            "http://[::1",
            "http://[zz]:80",
            "1http://a",
            "*",
        ] {
            assert_eq!(
                run(&["--cors", bad], &[]),
                Err(invalid("--cors", bad, expected)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn port_and_host() {
        let listen = |env: &[(&str, &str)]| run(&[], env).map(|c| c.listen.to_string());
        assert_eq!(listen(&[("PORT", "3000")]), Ok("127.0.0.1:3000".into()));
        assert_eq!(listen(&[("HOST", "0.0.0.0")]), Ok("0.0.0.0:8080".into()));
        assert_eq!(listen(&[("HOST", "::")]), Ok("[::]:8080".into()));
        let both = [("HOST", "[::1]"), ("PORT", "9")];
        assert_eq!(listen(&both), Ok("[::1]:9".into()));
        // --listen and HANDOFF_LISTEN both win over PORT and HOST, which are then not checked.
        let ignored = [("PORT", "x"), ("HOST", "y")];
        let flag = run(&["--listen", "10.0.0.1:1"], &ignored).unwrap().listen;
        assert_eq!(flag.to_string(), "10.0.0.1:1");
        let env = [ignored[0], ignored[1], ("HANDOFF_LISTEN", "10.0.0.2:2")];
        assert_eq!(listen(&env), Ok("10.0.0.2:2".into()));
        // Empty counts as unset.
        assert_eq!(listen(&[("PORT", ""), ("HOST", "")]), Ok("127.0.0.1:8080".into()));
        for bad in ["65536", "+80", "http"] {
            assert_eq!(listen(&[("PORT", bad)]), Err(invalid("PORT", bad, PORT)));
        }
        let err = invalid("HOST", "localhost", HOST);
        assert_eq!(listen(&[("HOST", "localhost")]), Err(err));
        let err = invalid("HOST", "[1.2.3.4", HOST);
        assert_eq!(listen(&[("HOST", "[1.2.3.4")]), Err(err));
    }

    #[test]
    fn sizes() {
        assert_eq!(size("0"), Ok(0));
        assert_eq!(size("512b"), Ok(512));
        assert_eq!(size("64K"), Ok(65536));
        assert_eq!(size("64kib"), Ok(65536));
        assert_eq!(size("2M"), Ok(2 << 20));
        assert_eq!(size("1GiB"), Ok(1 << 30));
        for bad in ["", "K", "1KB", "1.5K", " 1", "1 K", "-1", "1_000", "1T"] {
            assert_eq!(size(bad), Err(SIZE), "{bad:?}");
        }
        // Both sides of overflow.
        assert_eq!(size(&usize::MAX.to_string()), Ok(usize::MAX));
        assert_eq!(size(&format!("{}0", usize::MAX)), Err(SIZE));
        let most = usize::MAX >> 10;
        assert_eq!(size(&format!("{most}K")), Ok(most << 10));
        assert_eq!(size(&format!("{}K", most + 1)), Err(SIZE));
        assert_eq!(show_size(65536), "64K");
        assert_eq!(show_size(3 << 20), "3M");
        assert_eq!(show_size(1000), "1000");
        assert_eq!(show_size(0), "0");
    }

    #[test]
    fn durations() {
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("25"), Ok(Duration::from_secs(25)));
        assert_eq!(duration("25s"), Ok(Duration::from_secs(25)));
        assert_eq!(duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(duration("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["", "s", "1.5s", "1S", "1d", "1 s", "-1s", "1sec"] {
            assert_eq!(duration(bad), Err(DURATION), "{bad:?}");
        }
        // Both sides of overflow.
        assert_eq!(duration(&u64::MAX.to_string()), Ok(Duration::from_secs(u64::MAX)));
        assert_eq!(duration(&format!("{}0", u64::MAX)), Err(DURATION));
        let most = u64::MAX / 3600;
        assert_eq!(duration(&format!("{most}h")), Ok(Duration::from_secs(most * 3600)));
        assert_eq!(duration(&format!("{}h", most + 1)), Err(DURATION));
        assert_eq!(show_duration(Duration::from_secs(600)), "10m");
        assert_eq!(show_duration(Duration::from_secs(25)), "25s");
        assert_eq!(show_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(show_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn unknown_flag() {
        let unknown = |flag: &str, suggestion: Option<&str>| {
            let flag = flag.to_string();
            let suggestion = suggestion.map(str::to_string);
            Err(ConfigError::UnknownFlag { flag, suggestion })
        };
        let err = parse_with(&["--max-bdy", "1"], &[]);
        assert_eq!(err, unknown("--max-bdy", Some("--max-body")));
        let message = err.unwrap_err().to_string();
        assert_eq!(message, "unknown flag --max-bdy (did you mean --max-body?)");
        let err = parse_with(&["--max-conn=5"], &[]);
        assert_eq!(err, unknown("--max-conn=5", Some("--max-connections")));
        assert_eq!(parse_with(&["--hepl"], &[]), unknown("--hepl", Some("--help")));
        let err = parse_with(&["--frobnicate"], &[]);
        assert_eq!(err, unknown("--frobnicate", None));
        let message = err.unwrap_err().to_string();
        assert_eq!(message, "unknown flag --frobnicate (see --help)");
        assert_eq!(parse_with(&["-x"], &[]), unknown("-x", None));
    }

    #[test]
    fn missing_value() {
        let missing = |flag: &str, placeholder| {
            let flag = flag.to_string();
            Err(ConfigError::MissingValue { flag, placeholder })
        };
        assert_eq!(parse_with(&["--max-body"], &[]), missing("--max-body", "SIZE"));
        let err = parse_with(&["--workers", "--max-body", "1"], &[]);
        assert_eq!(err, missing("--workers", "N"));
        let message = err.unwrap_err().to_string();
        assert_eq!(message, "missing value for --workers: expected --workers N");
    }

    #[test]
    fn unexpected_argument() {
        let err = parse_with(&["serve"], &[]);
        let arg = "serve".to_string();
        assert_eq!(err, Err(ConfigError::UnexpectedArgument { arg }));
        let message = err.unwrap_err().to_string();
        let want = "unexpected argument \"serve\": handoff takes only flags (see --help)";
        assert_eq!(message, want);
    }

    #[test]
    fn invalid_value_messages() {
        let err = run(&["--link-timeout", "10x"], &[]).unwrap_err().to_string();
        let want = "invalid value \"10x\" for --link-timeout: \
                    expected a duration such as 500ms, 25s, 10m or 1h";
        assert_eq!(err, want);
        let err = run(&[], &[("HANDOFF_MAX_BODY", "abc")]).unwrap_err().to_string();
        let want = "invalid value \"abc\" for HANDOFF_MAX_BODY: \
                    expected a size such as 65536, 64K or 1M";
        assert_eq!(err, want);
    }

    #[test]
    fn last_value_wins() {
        let c = run(&["--workers", "2", "--workers=3"], &[]).unwrap();
        assert_eq!(c.workers, 3);
    }

    #[test]
    fn help() {
        for arg in ["-h", "--help"] {
            // Help answers even after a bad value.
            let Ok(Command::Help(text)) = parse_with(&["--workers", "0", arg], &[]) else {
                panic!("{arg} gives no help");
            };
            for flag in FLAGS {
                let line = format!("  --{} {}\n", flag.name, flag.placeholder);
                assert!(text.contains(&line), "{line:?}");
                let default = (flag.show)(&Config::default());
                let tail = format!("[default: {default}] [env: {}]\n", flag.env);
                assert!(text.contains(&tail), "{tail:?}");
            }
            for needle in ["[default: 64K]", "[default: 10m]", "PORT", "HOST", "RUST_LOG"] {
                assert!(text.contains(needle), "{needle}");
            }
        }
    }

    #[test]
    fn version() {
        let want = format!("handoff {}", env!("CARGO_PKG_VERSION"));
        for arg in ["-V", "--version"] {
            assert_eq!(parse_with(&[arg], &[]), Ok(Command::Version(want.clone())));
        }
    }

    #[test]
    #[ignore = "prints --help; run with --ignored --nocapture"]
    fn print_help() {
        print!("{}", super::help());
    }
}
