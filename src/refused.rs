//! Why a connection or request was refused, as `/health` and `/metrics` count it (protocol §1):
//! the labels of the refusal counters, shared by the HTTP side, which counts its refusals in the
//! gauges (`metrics.rs`), and the registry, which counts its own and publishes them. A refusal
//! itself (its status and sentence) is each layer's own enum: `http::reader::ReadError`,
//! `http::gate::RequestRefusal`, `registry::RegistryRefusal`.

/// Why a connection or request was refused, for the counters `/health` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    /// `--max-connections`: closed at accept.
    Connections,
    /// `--max-connections-per-ip`: closed at accept.
    ConnectionsPerIp,
    /// `--max-parked`: 503.
    Parked,
    /// `--max-parked-per-ip`: 429.
    ParkedPerIp,
    /// `--max-memory`: 503.
    Memory,
    /// `--max-memory-per-ip`: 429.
    MemoryPerIp,
    /// `--rate-per-ip`: 429.
    RatePerIp,
    /// `--rate-per-id`: 429.
    RatePerId,
    /// More than ten live waiters on one inbox id and kind: 503.
    InboxWaiters,
    /// A request that is not valid HTTP/1.1 for the relay: 400, 417, 431, 501, 505.
    Malformed,
    /// A body over `--max-body`: 413.
    TooLarge,
    /// A head or body that did not arrive within its deadline: 408.
    Slow,
    /// A client outside `--allow-ip` or inside `--deny-ip`: 403.
    IpDenied,
    /// No bearer token, or one not in `--token-file`: 401.
    Unauthorized,
    /// A known token without the scope the request needs: 403.
    Forbidden,
    /// Too many failed authentications from one client (`--auth-failures-per-ip`): 429.
    AuthThrottled,
    /// A reply not taken within `--write-timeout`: the connection is closed.
    SlowReader,
    /// A browser fetching a service worker script (`Service-Worker: script`): 403.
    ServiceWorker,
    /// A write to or a wait on an id burned by `--single-use`: 410.
    Burned,
}

impl RefusalReason {
    /// Every reason, in the order `/health` lists them.
    pub const ALL: [RefusalReason; 19] = [
        RefusalReason::Connections,
        RefusalReason::ConnectionsPerIp,
        RefusalReason::Parked,
        RefusalReason::ParkedPerIp,
        RefusalReason::Memory,
        RefusalReason::MemoryPerIp,
        RefusalReason::RatePerIp,
        RefusalReason::RatePerId,
        RefusalReason::InboxWaiters,
        RefusalReason::Malformed,
        RefusalReason::TooLarge,
        RefusalReason::Slow,
        RefusalReason::IpDenied,
        RefusalReason::Unauthorized,
        RefusalReason::Forbidden,
        RefusalReason::AuthThrottled,
        RefusalReason::SlowReader,
        RefusalReason::ServiceWorker,
        RefusalReason::Burned,
    ];

    /// The reason's name in `/health`.
    pub fn name(self) -> &'static str {
        match self {
            RefusalReason::Connections => "connections",
            RefusalReason::ConnectionsPerIp => "connections_per_ip",
            RefusalReason::Parked => "parked",
            RefusalReason::ParkedPerIp => "parked_per_ip",
            RefusalReason::Memory => "memory",
            RefusalReason::MemoryPerIp => "memory_per_ip",
            RefusalReason::RatePerIp => "rate_per_ip",
            RefusalReason::RatePerId => "rate_per_id",
            RefusalReason::InboxWaiters => "inbox_waiters",
            RefusalReason::Malformed => "malformed",
            RefusalReason::TooLarge => "too_large",
            RefusalReason::Slow => "slow",
            RefusalReason::IpDenied => "ip_denied",
            RefusalReason::Unauthorized => "unauthorized",
            RefusalReason::Forbidden => "forbidden",
            RefusalReason::AuthThrottled => "auth_throttled",
            RefusalReason::SlowReader => "slow_reader",
            RefusalReason::ServiceWorker => "service_worker",
            RefusalReason::Burned => "burned",
        }
    }
}

/// Refusals counted per reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefusalCounts([u64; RefusalReason::ALL.len()]);

impl RefusalCounts {
    /// Counts one refusal.
    pub fn add(&mut self, reason: RefusalReason) {
        self.0[reason as usize] += 1;
    }

    /// Refusals for `reason` so far.
    pub fn get(&self, reason: RefusalReason) -> u64 {
        self.0[reason as usize]
    }
}
