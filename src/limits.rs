//! Who a client is, and the limits that keep one client from taking the relay (protocol §4).
//!
//! Plain values with the time passed in, so each is table-tested on a fake clock: the client
//! key limits count (an IPv4 address or an IPv6 /64; who the client is comes from
//! `identity.rs`), token buckets and a bounded table of them, per-peer connection slots, the memory
//! budget, and a throttle that lets a refusal be logged once per client per minute. Where each
//! limit is enforced is the caller's business (the poller, the workers, the registry).

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What limits count per client: an IPv4 address, or the /64 of an IPv6 address (one
/// subscriber's network: a client can use any of its 2^64 addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// An IPv4 address (IPv4-mapped IPv6 addresses count as IPv4).
    V4(u32),
    /// The upper 64 bits of an IPv6 address.
    V6(u64),
}

impl ClientKey {
    /// The key `ip` is counted under.
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(v4.into()),
                None => ClientKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            // The key of `identity::UNIDENTIFIED`: no TCP peer has the unspecified address.
            ClientKey::V4(0) => f.write_str("an unidentified client"),
            ClientKey::V4(v4) => write!(f, "{}", std::net::Ipv4Addr::from(v4)),
            ClientKey::V6(prefix) => write!(f, "{}/64", Ipv6Addr::from(u128::from(prefix) << 64)),
        }
    }
}

/// An address range such as `10.0.0.0/8` or `fd00::/8`; a bare address is a range of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in the range (IPv4-mapped IPv6 addresses match IPv4 ranges).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (bits, net, width) = match (ip, self.network) {
            (IpAddr::V4(a), IpAddr::V4(n)) => {
                (u128::from(u32::from(a)), u128::from(u32::from(n)), 32)
            }
            (IpAddr::V6(a), IpAddr::V6(n)) => (u128::from(a), u128::from(n), 128),
            _ => return false,
        };
        let shift = width - u32::from(self.prefix);
        shift >= 128 || bits >> shift == net >> shift
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = ();

    fn from_str(text: &str) -> Result<Cidr, ()> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(drop)?;
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().map_err(drop)?
            }
            Some(_) => return Err(()),
            None => width,
        };
        if prefix > width {
            return Err(());
        }
        Ok(Cidr { network, prefix })
    }
}

/// What a request is charged against `--max-memory` besides its body: an allowance for its
/// connection, registry entry and timer. (Measured on 2026-11-23: 5,000 parked receivers added
/// ~9.4 MB of RSS, ~1.9 KiB each, allocator slack included; the charge is the data itself.)
pub const WAITER_COST: usize = 1024;

/// A `Retry-After` value for a wait: whole seconds, at least one.
pub fn retry_after(wait: Duration) -> String {
    wait.as_secs_f64().ceil().max(1.0).to_string()
}

/// A limit of so many events per minute, allowed in a burst of the same size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Events per minute, and the burst.
    pub per_minute: u32,
}

/// A token bucket for one [`Rate`]: full at first, one token per event, refilled continuously.
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(rate: Rate, now: Instant) -> TokenBucket {
        TokenBucket { tokens: f64::from(rate.per_minute), updated: now }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let per_second = f64::from(rate.per_minute) / 60.0;
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_second).min(f64::from(rate.per_minute));
        self.updated = now;
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let per_second = f64::from(rate.per_minute) / 60.0;
        Err(Duration::from_secs_f64((1.0 - self.tokens) / per_second))
    }

    /// How long until a token is there, without taking one; `None` when one is there now.
    pub fn wait(&mut self, rate: Rate, now: Instant) -> Option<Duration> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            return None;
        }
        let per_second = f64::from(rate.per_minute) / 60.0;
        Some(Duration::from_secs_f64((1.0 - self.tokens) / per_second))
    }

    /// Whether the bucket is full again, so forgetting it changes nothing.
    pub fn is_full(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        self.tokens >= f64::from(rate.per_minute)
    }
}

/// Token buckets by key, for one rate; full buckets are forgotten, so the table holds only the
/// keys active in the last minute or so, and never more than `max_keys`.
#[derive(Debug)]
pub struct RateTable<K> {
    rate: Rate,
    buckets: HashMap<K, TokenBucket>,
    max_keys: usize,
    /// Table size that triggers the next sweep of full buckets (amortised O(1) per take).
    sweep_at: usize,
    /// When a full table was last swept (at most once a second).
    swept: Option<Instant>,
}

impl<K: Hash + Eq + Copy> RateTable<K> {
    /// A table for `rate`, tracking at most `max_keys` keys at once.
    pub fn new(rate: Rate, max_keys: usize) -> RateTable<K> {
        RateTable { rate, buckets: HashMap::new(), max_keys, sweep_at: 64, swept: None }
    }

    /// Takes a token for `key`, or says how long until one is there. A key that cannot be
    /// tracked because the table is full is let through: the connection caps still bound it.
    pub fn take(&mut self, key: K, now: Instant) -> Result<(), Duration> {
        let full = self.buckets.len() >= self.max_keys;
        let swept_lately =
            self.swept.is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(1));
        if self.buckets.len() >= self.sweep_at || (full && !swept_lately) {
            let rate = self.rate;
            self.buckets.retain(|_, bucket| !bucket.is_full(rate, now));
            self.sweep_at = (self.buckets.len() * 2).max(64);
            self.swept = Some(now);
        }
        if self.buckets.len() >= self.max_keys && !self.buckets.contains_key(&key) {
            return Ok(());
        }
        let rate = self.rate;
        self.buckets.entry(key).or_insert_with(|| TokenBucket::full(rate, now)).take(rate, now)
    }

    /// How long until `key` has a token again, without taking one; `None` when it has one now
    /// (or is not tracked, which is the same: a new key starts full).
    pub fn wait(&mut self, key: K, now: Instant) -> Option<Duration> {
        let rate = self.rate;
        self.buckets.get_mut(&key)?.wait(rate, now)
    }

    /// Keys currently tracked.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.buckets.len()
    }
}

/// Open connections per TCP peer (`--max-connections-per-ip`), shared by the threads that
/// accept and close connections.
#[derive(Debug)]
pub struct PeerConnections {
    limit: usize,
    open: Mutex<HashMap<ClientKey, usize>>,
}

/// One counted connection; dropping it uncounts it.
#[derive(Debug)]
pub struct PeerSlot {
    table: Arc<PeerConnections>,
    key: ClientKey,
}

impl PeerConnections {
    /// A table allowing `limit` connections per peer.
    pub fn new(limit: usize) -> Arc<PeerConnections> {
        Arc::new(PeerConnections { limit, open: Mutex::new(HashMap::new()) })
    }

    /// Counts a new connection from `key`, or `None` when the peer is at its limit.
    pub fn open(self: &Arc<Self>, key: ClientKey) -> Option<PeerSlot> {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(PeerSlot { table: Arc::clone(self), key })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The bytes the relay may hold in bodies and waiters (`--max-memory`), and of them the share
/// one client key may hold (`--max-memory-per-ip`): a request reserves its bytes before anything
/// is allocated for it, and a [`Reservation`] gives them back, to both, when it is dropped.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: Option<usize>,
    used: AtomicUsize,
    /// Most bytes one client key may hold; `None`: no per-client share.
    per_client: Option<usize>,
    /// Bytes held per client key, for those holding any. Only touched for reservations made
    /// with a key while `per_client` is set.
    held: Mutex<HashMap<ClientKey, usize>>,
}

/// Bytes reserved from a [`MemoryBudget`], charged to a client key when one was given;
/// dropping it gives them back.
#[derive(Debug, Default)]
pub struct Reservation {
    budget: Option<Arc<MemoryBudget>>,
    bytes: usize,
    client: Option<ClientKey>,
}

/// Why [`MemoryBudget::reserve_for`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shortage {
    /// The whole budget would pass `--max-memory`.
    Total,
    /// The client would hold more than its share, `limit` bytes (`--max-memory-per-ip`).
    Client { limit: usize },
}

impl MemoryBudget {
    /// A budget of `limit` bytes (`None`: unlimited, but still counted), without a per-client
    /// share.
    #[cfg(test)]
    pub fn new(limit: Option<usize>) -> Arc<MemoryBudget> {
        MemoryBudget::with_share(limit, None)
    }

    /// A budget of `limit` bytes of which one client key may hold `per_client`.
    pub fn with_share(limit: Option<usize>, per_client: Option<usize>) -> Arc<MemoryBudget> {
        let held = Mutex::new(HashMap::new());
        Arc::new(MemoryBudget { limit, used: AtomicUsize::new(0), per_client, held })
    }

    /// Reserves `bytes` without charging a client (messages restored from the state file), or
    /// `None` when that would pass the limit.
    pub fn reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        self.reserve_for(None, bytes).ok()
    }

    /// Reserves `bytes` for `client` (`None`: a trusted proxy itself, charged to no share):
    /// refused when the client would pass its share, or the whole budget its limit.
    pub fn reserve_for(
        self: &Arc<Self>,
        client: Option<ClientKey>,
        bytes: usize,
    ) -> Result<Reservation, Shortage> {
        let (Some(key), Some(share)) = (client, self.per_client) else {
            self.take(bytes)?;
            return Ok(Reservation { budget: Some(Arc::clone(self)), bytes, client: None });
        };
        // Held while the total is taken, so that the two never disagree.
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mine = held.get(&key).copied().unwrap_or(0);
        if mine.checked_add(bytes).is_none_or(|total| total > share) {
            return Err(Shortage::Client { limit: share });
        }
        self.take(bytes)?;
        held.insert(key, mine + bytes);
        Ok(Reservation { budget: Some(Arc::clone(self)), bytes, client: Some(key) })
    }

    /// Adds `bytes` to the total, or refuses when that would pass the limit.
    fn take(&self, bytes: usize) -> Result<(), Shortage> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let total = used.checked_add(bytes).ok_or(Shortage::Total)?;
            if self.limit.is_some_and(|limit| total > limit) {
                return Err(Shortage::Total);
            }
            match self.used.compare_exchange_weak(used, total, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }

    /// Gives back `bytes` from the total and from `client`'s share.
    fn give_back(&self, client: Option<ClientKey>, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
        if let Some(key) = client {
            let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(mine) = held.get_mut(&key) {
                *mine = mine.saturating_sub(bytes);
                if *mine == 0 {
                    held.remove(&key);
                }
            }
        }
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Bytes `client` holds now.
    #[cfg(test)]
    pub fn held_by(&self, client: ClientKey) -> usize {
        let held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        held.get(&client).copied().unwrap_or(0)
    }

    /// The limit, if any.
    pub fn limit(&self) -> Option<usize> {
        self.limit
    }
}

impl Reservation {
    /// Gives back what is reserved beyond `bytes` (a body turned out smaller than allowed for).
    pub fn shrink_to(&mut self, bytes: usize) {
        if let Some(budget) = &self.budget {
            if bytes < self.bytes {
                budget.give_back(self.client, self.bytes - bytes);
                self.bytes = bytes;
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.give_back(self.client, self.bytes);
        }
    }
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

/// Why a connection or request was refused, for the counters `/health` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
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
}

impl Refused {
    /// Every reason, in the order `/health` lists them.
    pub const ALL: [Refused; 17] = [
        Refused::Connections,
        Refused::ConnectionsPerIp,
        Refused::Parked,
        Refused::ParkedPerIp,
        Refused::Memory,
        Refused::MemoryPerIp,
        Refused::RatePerIp,
        Refused::RatePerId,
        Refused::InboxWaiters,
        Refused::Malformed,
        Refused::TooLarge,
        Refused::Slow,
        Refused::IpDenied,
        Refused::Unauthorized,
        Refused::Forbidden,
        Refused::AuthThrottled,
        Refused::SlowReader,
    ];

    /// The reason's name in `/health`.
    pub fn name(self) -> &'static str {
        match self {
            Refused::Connections => "connections",
            Refused::ConnectionsPerIp => "connections_per_ip",
            Refused::Parked => "parked",
            Refused::ParkedPerIp => "parked_per_ip",
            Refused::Memory => "memory",
            Refused::MemoryPerIp => "memory_per_ip",
            Refused::RatePerIp => "rate_per_ip",
            Refused::RatePerId => "rate_per_id",
            Refused::InboxWaiters => "inbox_waiters",
            Refused::Malformed => "malformed",
            Refused::TooLarge => "too_large",
            Refused::Slow => "slow",
            Refused::IpDenied => "ip_denied",
            Refused::Unauthorized => "unauthorized",
            Refused::Forbidden => "forbidden",
            Refused::AuthThrottled => "auth_throttled",
            Refused::SlowReader => "slow_reader",
        }
    }
}

/// Refusals counted per reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefusalCounts([u64; Refused::ALL.len()]);

impl RefusalCounts {
    /// Counts one refusal.
    pub fn add(&mut self, reason: Refused) {
        self.0[reason as usize] += 1;
    }

    /// Refusals for `reason` so far.
    pub fn get(&self, reason: Refused) -> u64 {
        self.0[reason as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn client_keys() {
        assert_eq!(ClientKey::of(ip("192.0.2.1")).to_string(), "192.0.2.1");
        assert_eq!(ClientKey::of(ip("::ffff:192.0.2.1")), ClientKey::of(ip("192.0.2.1")));
        let a = ClientKey::of(ip("2001:db8:1:2:aaaa::1"));
        assert_eq!(a, ClientKey::of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")));
        assert_ne!(a, ClientKey::of(ip("2001:db8:1:3::1")));
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn cidrs() {
        let cases = [
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("10.0.0.0/8", "::ffff:10.1.1.1", true),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "::1", false),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("::/0", "2001:db8::1", true),
            ("::1", "::1", true),
        ];
        for (cidr, address, expected) in cases {
            let cidr: Cidr = cidr.parse().unwrap();
            assert_eq!(cidr.contains(ip(address)), expected, "{cidr:?} {address}");
        }
        for bad in ["10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0/8", "x", "10.0.0.0/+8", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn token_bucket_allows_a_burst_then_the_rate() {
        let rate = Rate { per_minute: 60 };
        let start = Instant::now();
        let mut bucket = TokenBucket::full(rate, start);
        for _ in 0..60 {
            assert_eq!(bucket.take(rate, start), Ok(()));
        }
        let wait = bucket.take(rate, start).unwrap_err();
        assert!(wait > Duration::from_millis(990) && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(bucket.take(rate, start + Duration::from_millis(900)).is_err());
        assert_eq!(bucket.take(rate, start + Duration::from_millis(1001)), Ok(()));
        assert!(!bucket.is_full(rate, start + Duration::from_secs(30)));
        assert!(bucket.is_full(rate, start + Duration::from_secs(61)));
    }

    #[test]
    fn pubky_flow_fits_the_default_rate() {
        // A 25 s poll after each 408 for ten minutes, then POST and DELETE, plus preflights.
        let rate = Rate { per_minute: 100 };
        let start = Instant::now();
        let mut bucket = TokenBucket::full(rate, start);
        for poll in 0..24 {
            let now = start + Duration::from_secs(25 * poll);
            assert_eq!(bucket.take(rate, now), Ok(()));
            assert_eq!(bucket.take(rate, now), Ok(()), "preflight");
        }
        let end = start + Duration::from_secs(600);
        for _ in 0..4 {
            assert_eq!(bucket.take(rate, end), Ok(()));
        }
    }

    #[test]
    fn rate_table_forgets_full_buckets_and_stays_bounded() {
        let rate = Rate { per_minute: 1 };
        let start = Instant::now();
        let mut table = RateTable::new(rate, 100);
        for key in 0..100u32 {
            assert_eq!(table.take(key, start), Ok(()));
        }
        assert!(table.take(7, start).is_err());
        // Full: new keys pass untracked.
        assert_eq!(table.take(1000, start), Ok(()));
        assert_eq!(table.take(1000, start), Ok(()));
        assert!(table.len() <= 100);
        // A minute later every bucket is full again and the next sweep forgets them.
        let later = start + Duration::from_secs(61);
        assert_eq!(table.take(5000, later), Ok(()));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn rate_table_wait_does_not_take() {
        // The failed-authentication throttle: failures take, every attempt asks `wait` first.
        let rate = Rate { per_minute: 5 };
        let start = Instant::now();
        let mut table = RateTable::new(rate, 100);
        assert_eq!(table.wait(1u32, start), None, "an unknown key is not waiting");
        for _ in 0..5 {
            assert_eq!(table.wait(1, start), None);
            let _ = table.take(1, start);
        }
        let wait = table.wait(1, start).unwrap();
        assert_eq!(retry_after(wait), "12");
        assert_eq!(
            table.wait(1, start + Duration::from_secs(6)),
            table.wait(1, start + Duration::from_secs(6))
        );
        assert!(table.wait(1, start + Duration::from_secs(11)).is_some());
        assert_eq!(table.wait(1, start + Duration::from_secs(12)), None, "cool-down over");
        assert_eq!(table.wait(2, start), None, "other clients are not affected");
    }

    #[test]
    fn peer_slots_count_and_release() {
        let table = PeerConnections::new(2);
        let key = ClientKey::of(ip("192.0.2.1"));
        let a = table.open(key).unwrap();
        let _b = table.open(key).unwrap();
        assert!(table.open(key).is_none());
        assert!(table.open(ClientKey::of(ip("192.0.2.2"))).is_some());
        drop(a);
        assert!(table.open(key).is_some());
    }

    #[test]
    fn memory_budget_refuses_before_passing_the_limit() {
        let budget = MemoryBudget::new(Some(100));
        let mut a = budget.reserve(60).unwrap();
        assert!(budget.reserve(41).is_none());
        let b = budget.reserve(40).unwrap();
        assert_eq!(budget.used(), 100);
        a.shrink_to(10);
        assert_eq!(budget.used(), 50);
        drop(b);
        drop(a);
        assert_eq!(budget.used(), 0);
        assert!(budget.reserve(usize::MAX).is_none());
        assert_eq!(Reservation::default().bytes, 0);
    }

    #[test]
    fn memory_share_per_client() {
        let budget = MemoryBudget::with_share(Some(100), Some(40));
        let (a, b) = (ClientKey::of(ip("192.0.2.1")), ClientKey::of(ip("192.0.2.2")));
        let a1 = budget.reserve_for(Some(a), 30).unwrap();
        assert_eq!(budget.reserve_for(Some(a), 11).unwrap_err(), Shortage::Client { limit: 40 });
        let mut a2 = budget.reserve_for(Some(a), 10).unwrap();
        assert_eq!(budget.held_by(a), 40);
        // Another client has its own share; a client-less reservation has none.
        let b1 = budget.reserve_for(Some(b), 40).unwrap();
        assert_eq!(budget.reserve_for(None, 21).unwrap_err(), Shortage::Total);
        let none = budget.reserve_for(None, 20).unwrap();
        assert_eq!(budget.used(), 100);
        // Shrinking and dropping give back to both the total and the share.
        a2.shrink_to(4);
        assert_eq!((budget.used(), budget.held_by(a)), (94, 34));
        drop(a1);
        assert_eq!((budget.used(), budget.held_by(a)), (64, 4));
        // The total refuses before the share when it is the one short.
        drop(a2);
        let _a3 = budget.reserve_for(Some(a), 40).unwrap();
        assert_eq!(
            budget.reserve_for(Some(ClientKey::of(ip("192.0.2.3"))), 1).unwrap_err(),
            Shortage::Total
        );
        drop((b1, none));
        assert_eq!(budget.held_by(b), 0);
        assert_eq!(
            budget.reserve_for(Some(a), usize::MAX).unwrap_err(),
            Shortage::Client { limit: 40 }
        );
        // No share: the total alone.
        let unshared = MemoryBudget::new(Some(10));
        let _all = unshared.reserve_for(Some(a), 10).unwrap();
        assert_eq!(unshared.held_by(a), 0);
    }

    #[test]
    fn log_throttle_allows_one_line_per_minute_per_client_and_kind() {
        let throttle = LogThrottle::default();
        let start = Instant::now();
        let key = ClientKey::of(ip("192.0.2.1"));
        assert_eq!(throttle.allow(key, 429, start), Some(0));
        assert_eq!(throttle.allow(key, 429, start + Duration::from_secs(1)), None);
        assert_eq!(throttle.allow(key, 429, start + Duration::from_secs(2)), None);
        assert_eq!(throttle.allow(key, 503, start), Some(0));
        assert_eq!(throttle.allow(key, 429, start + LOG_EVERY), Some(2));
    }
}
