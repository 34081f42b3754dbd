//! The gate: everything the relay decides about a connection and a complete request head, in
//! one place and in one order (protocol §4, §5, §6), with the time passed in and no socket.
//!
//! At accept, [`Gate::admit_connection`]: `--max-connections`, then `--max-connections-per-ip`
//! (trusted proxies exempt). For a complete head, [`Gate::decide`], in this order: CORS origin;
//! client identity (behind `--trust-proxy`, `identity.rs`); `--allow-ip`/`--deny-ip`; the head's
//! framing headers; the route; the bearer token against the route's scope (`--token-file`,
//! throttled by `--auth-failures-per-ip`); `--rate-per-ip`; the body's announced size
//! (`--max-body`) and `Expect`; then the memory budget (`--max-memory`, `--max-memory-per-ip`),
//! reserved before a byte of body is read. Its state (rate tables, the failure table, peer
//! counts, the budget, the tokens) is behind these two calls.
//!
//! Not here: the reader's own bounds (`--max-head`, `--max-headers`, the deadlines, a chunked
//! body decoding past `--max-body`: `reader.rs`), and the registry's limits, which need its state
//! (`--rate-per-id`, `--max-parked`, `--max-parked-per-ip`, live waiters per inbox: `registry/`).

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::warn;

use super::conn::Exchange;
use super::parse::{validate, Framing, Head, HeadError, Version};
use super::reader::{BodyFraming, BodyPlan};
use crate::auth::{Denied, Scope, TokenStore};
use crate::config::Config;
use crate::cors;
use crate::identity::{self, ClientKey};
use crate::limits::{
    retry_after, MemoryBudget, PeerConnections, PeerSlot, Rate, RateTable, Shortage, WAITER_COST,
};
use crate::logging::{id_tag, LogThrottle};
use crate::refused::RefusalReason;
use crate::registry::Request;
use crate::response::Response;
use crate::routes::{route, split_target, Route, RouteError};

/// Most clients whose request rate (or failure count) is tracked at once.
const RATE_KEYS: usize = 1 << 20;

/// The gate's state. See the module docs.
pub struct Gate {
    config: Arc<Config>,
    /// The memory budget (`--max-memory`), shared with the registry, which holds reservations.
    memory: Arc<MemoryBudget>,
    /// The bearer tokens in force (`--token-file`); `None`: no token needed.
    tokens: Option<Arc<TokenStore>>,
    /// Requests per client and minute (`--rate-per-ip`).
    rate_per_ip: Option<Mutex<RateTable<ClientKey>>>,
    /// Failed authentications per client and minute (`--auth-failures-per-ip`).
    auth_failures: Option<Mutex<RateTable<ClientKey>>>,
    /// Lets a throttled client be warned about once a minute.
    auth_log: LogThrottle,
    /// Open connections per TCP peer (`--max-connections-per-ip`).
    peers: Option<Arc<PeerConnections>>,
}

/// When a request's head was complete: for deadlines and rates, and its arrival as the
/// `HttpRelay-*` headers show it.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub instant: Instant,
    /// Unix milliseconds.
    pub unix_ms: u64,
}

/// What a complete head comes to, when the gate lets it through.
#[derive(Debug)]
pub enum Decision {
    /// `GET /`: the usage text.
    Usage,
    /// `GET /health`, with the counts or the status alone.
    Health { detailed: bool },
    /// `GET /metrics`.
    Metrics,
    /// An `OPTIONS` preflight, answered.
    Preflight(Response),
    /// A relay request for the registry, once its body (as planned) is read.
    Relay { request: Request, body: BodyPlan },
}

impl Gate {
    /// The gate for `config`, charging `memory` and checking `tokens` if given.
    pub fn new(
        config: Arc<Config>,
        memory: Arc<MemoryBudget>,
        tokens: Option<Arc<TokenStore>>,
    ) -> Gate {
        let limits = &config.limits;
        let table = |per_minute| Mutex::new(RateTable::new(Rate { per_minute }, RATE_KEYS));
        Gate {
            rate_per_ip: limits.rate_per_ip.map(table),
            auth_failures: limits.auth_failures_per_ip.map(table),
            peers: limits.max_connections_per_ip.map(PeerConnections::new),
            auth_log: LogThrottle::default(),
            config,
            memory,
            tokens,
        }
    }

    /// The memory budget, for `/health` and `/metrics`.
    pub fn memory(&self) -> &MemoryBudget {
        &self.memory
    }

    /// A connection just accepted from `peer`, `open` connections counting it: its slot in
    /// `--max-connections-per-ip` (if counted), or why it is closed at once.
    pub fn admit_connection(
        &self,
        peer: SocketAddr,
        open: usize,
    ) -> Result<Option<PeerSlot>, ConnectionRefusal> {
        if self.config.limits.max_connections.is_some_and(|max| open > max) {
            return Err(ConnectionRefusal::Connections { open });
        }
        let Some(peers) = &self.peers else { return Ok(None) };
        if self.config.is_trusted_proxy(peer.ip()) {
            return Ok(None);
        }
        peers.open(ClientKey::of(peer.ip())).map(Some).ok_or(ConnectionRefusal::ConnectionsPerIp)
    }

    /// Decides a complete head from the TCP peer `peer`; notes what the answer and the log
    /// need in `exchange` as it goes, so a refusal is answered with what was learnt so far.
    pub fn decide(
        &self,
        head: &Head<'_>,
        peer: SocketAddr,
        now: Now,
        exchange: &mut Exchange,
    ) -> Result<Decision, Refusal> {
        let limits = &self.config.limits;
        exchange.method =
            if head.method.len() <= 16 { head.method.to_string() } else { "?".into() };
        exchange.cors_origin = cors::allowed_origin(&self.config.cors, head.header("origin"));
        let client = identity::client(
            peer,
            &self.config.trust_proxy,
            head.headers("x-forwarded-for"),
            head.headers("x-real-ip"),
        );
        exchange.client = client.key();
        exchange.via_proxy = self.config.is_trusted_proxy(peer.ip());
        if !self.config.access.allows(client) {
            return Err(Refusal::IpDenied);
        }
        let framing = validate(head)?;
        let (path, query) = split_target(head.target)?;
        let route = route(head.method, path, limits.max_id)?;
        exchange.route = route.kind();
        let authorization = head.header("authorization");
        let (id, action) = match route {
            Route::Root => return Ok(Decision::Usage),
            Route::Health => {
                // With tokens on, a probe without credentials gets the status alone; the counts
                // need a token with the stats scope, and credentials that are sent are checked.
                let detailed = self.tokens.is_none() || authorization.is_some();
                if detailed {
                    self.authorize(authorization, exchange.client, Scope::Stats, now.instant)?;
                }
                return Ok(Decision::Health { detailed });
            }
            Route::Metrics => {
                // Loopback clients (after --trust-proxy) may read it; others need a stats token.
                if !client.is_loopback() {
                    if self.tokens.is_none() {
                        return Err(Refusal::MetricsNotLoopback);
                    }
                    self.authorize(authorization, exchange.client, Scope::Stats, now.instant)?;
                }
                return Ok(Decision::Metrics);
            }
            Route::Preflight { allow } => {
                self.take_rate(exchange.client, now.instant)?;
                let requested = head.header("access-control-request-headers");
                let allowed = exchange.cors_origin.is_some();
                return Ok(Decision::Preflight(cors::preflight(allow, allowed, requested)));
            }
            Route::Relay { id, action } => (id, action),
        };
        exchange.id_tag = Some(id_tag(&id));
        self.authorize(authorization, exchange.client, Scope::of(action), now.instant)?;
        self.take_rate(exchange.client, now.instant)?;
        let too_large = Refusal::BodyTooLarge { limit: limits.max_body };
        let (framing, body_bytes) = match framing {
            Framing::None => (BodyFraming::Length(0), 0),
            Framing::Length(n) => {
                let n =
                    usize::try_from(n).ok().filter(|&n| n <= limits.max_body).ok_or(too_large)?;
                (BodyFraming::Length(n), n)
            }
            Framing::Chunked => (BodyFraming::Chunked { max: limits.max_body }, limits.max_body),
        };
        let expect_continue = match head.header("expect") {
            None => false,
            Some(value) if value.eq_ignore_ascii_case(b"100-continue") => {
                head.version == Version::Http11 && framing != BodyFraming::Length(0)
            }
            Some(_) => return Err(Refusal::Expectation),
        };
        // Reserved before anything is allocated for the body (protocol §4); a chunked body
        // reserves --max-body and gives back the rest once its size is known (`body_read`).
        let reservation = self
            .memory
            .reserve_for(client.memory_key(), WAITER_COST.saturating_add(body_bytes))
            .map_err(|shortage| match shortage {
                Shortage::Total => Refusal::Memory,
                Shortage::Client { limit } => Refusal::MemoryPerIp { limit },
            })?;
        let text = |name: &str| head.header(name).map(|v| String::from_utf8_lossy(v).into_owned());
        let request = Request {
            id,
            action,
            client: client.address(),
            arrived_ms: now.unix_ms,
            query: query.to_string(),
            content_type: text("content-type"),
            wsecret: text("httprelay-wsecret"),
            body: Vec::new(),
            reservation,
        };
        Ok(Decision::Relay { request, body: BodyPlan { framing, expect_continue } })
    }

    /// `--token-file`: checks the `Authorization` header for `scope`, once, as the request
    /// arrives. A client over `--auth-failures-per-ip` gets 429 whatever it presents (else a
    /// right guess would show through the throttle); each 401 or 403 is counted against it.
    fn authorize(
        &self,
        authorization: Option<&[u8]>,
        client: ClientKey,
        scope: Scope,
        now: Instant,
    ) -> Result<(), Refusal> {
        let Some(store) = &self.tokens else { return Ok(()) };
        if let Some(failures) = &self.auth_failures {
            let mut failures = failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(wait) = failures.wait(client, now) {
                let per_minute = self.config.limits.auth_failures_per_ip.unwrap_or(0);
                if let Some(held) = self.auth_log.allow(client, 429, now) {
                    warn!(
                        "{client}: {per_minute} or more failed authentications within a minute; \
                         answering its requests 429 for {} s (--auth-failures-per-ip; {held} \
                         more refused since the last warning)",
                        retry_after(wait)
                    );
                }
                return Err(Refusal::AuthThrottled { per_minute, wait });
            }
        }
        let denied = match store.current().check(authorization, scope) {
            Ok(()) => return Ok(()),
            Err(denied) => denied,
        };
        if let Some(failures) = &self.auth_failures {
            let mut failures = failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let _ = failures.take(client, now);
        }
        Err(Refusal::Auth(denied))
    }

    /// `--rate-per-ip`: takes a token for `client`, or refuses with 429.
    fn take_rate(&self, client: ClientKey, now: Instant) -> Result<(), Refusal> {
        let Some(table) = &self.rate_per_ip else { return Ok(()) };
        let mut table = table.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let per_minute = self.config.limits.rate_per_ip.unwrap_or(0);
        table.take(client, now).map_err(|wait| Refusal::RateLimited { per_minute, wait })
    }
}

/// A relay request whose body is read in full: the memory reserved for an unknown (chunked)
/// size shrinks to what it holds.
pub fn body_read(request: &mut Request) {
    request.reservation.shrink_to(WAITER_COST + request.body.len());
}

/// Why a connection is closed as soon as it is accepted (nothing is written to it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionRefusal {
    /// `--max-connections`: `open` connections counting this one.
    Connections { open: usize },
    /// `--max-connections-per-ip`: the TCP peer holds its share.
    ConnectionsPerIp,
}

impl ConnectionRefusal {
    /// The counter it goes to.
    pub fn reason(self) -> RefusalReason {
        match self {
            ConnectionRefusal::Connections { .. } => RefusalReason::Connections,
            ConnectionRefusal::ConnectionsPerIp => RefusalReason::ConnectionsPerIp,
        }
    }
}

impl fmt::Display for ConnectionRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionRefusal::Connections { open } => {
                write!(f, "{open} open (--max-connections)")
            }
            ConnectionRefusal::ConnectionsPerIp => f.write_str("at --max-connections-per-ip"),
        }
    }
}

/// Why the gate refused a request. Each variant's status, headers and sentence are in
/// [`Refusal::response`] and its `Display`, once.
#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    /// A client outside `--allow-ip` or inside `--deny-ip` (403).
    IpDenied,
    /// The head's framing headers are invalid (400, 501: see [`HeadError`]).
    Head(HeadError),
    /// No such route, a bad target or id, or a method the route does not take.
    Route(RouteError),
    /// `/metrics` from a client that is not on loopback, without `--token-file` (403).
    MetricsNotLoopback,
    /// `--token-file`: no token or an unknown one (401), or a token without the scope (403).
    Auth(Denied),
    /// `--auth-failures-per-ip` (429).
    AuthThrottled { per_minute: u32, wait: Duration },
    /// `--rate-per-ip` (429).
    RateLimited { per_minute: u32, wait: Duration },
    /// The announced body is larger than `--max-body` (413).
    BodyTooLarge { limit: usize },
    /// An `Expect` other than `100-continue` (417).
    Expectation,
    /// `--max-memory` (503).
    Memory,
    /// `--max-memory-per-ip`: the client holds its share already (429).
    MemoryPerIp { limit: usize },
}

impl Refusal {
    /// The answer.
    pub fn response(&self) -> Response {
        let status = match self {
            Refusal::Head(e) => e.status(),
            Refusal::Route(e) => e.status(),
            Refusal::BodyTooLarge { .. } => 413,
            Refusal::Expectation => 417,
            Refusal::RateLimited { .. }
            | Refusal::MemoryPerIp { .. }
            | Refusal::AuthThrottled { .. } => 429,
            Refusal::Memory => 503,
            Refusal::IpDenied | Refusal::MetricsNotLoopback => 403,
            Refusal::Auth(denied) => denied.status(),
        };
        let response = Response::text(status, self);
        match self {
            Refusal::Route(RouteError::MethodNotAllowed { allow }) => {
                response.header("Allow", *allow)
            }
            Refusal::RateLimited { wait, .. } | Refusal::AuthThrottled { wait, .. } => {
                response.header("Retry-After", retry_after(*wait))
            }
            Refusal::Auth(denied) => response.header("WWW-Authenticate", denied.challenge()),
            Refusal::Memory | Refusal::MemoryPerIp { .. } => response.header("Retry-After", "1"),
            _ => response,
        }
    }

    /// The counter it goes to; `None` for answers `/health` does not count as refusals (a
    /// route that does not exist, `/metrics` off loopback).
    pub fn reason(&self) -> Option<RefusalReason> {
        Some(match self {
            Refusal::Head(_) | Refusal::Expectation => RefusalReason::Malformed,
            Refusal::BodyTooLarge { .. } => RefusalReason::TooLarge,
            Refusal::RateLimited { .. } => RefusalReason::RatePerIp,
            Refusal::Memory => RefusalReason::Memory,
            Refusal::MemoryPerIp { .. } => RefusalReason::MemoryPerIp,
            Refusal::IpDenied => RefusalReason::IpDenied,
            Refusal::Auth(Denied::Missing | Denied::Unknown) => RefusalReason::Unauthorized,
            Refusal::Auth(Denied::Scope(_)) => RefusalReason::Forbidden,
            Refusal::AuthThrottled { .. } => RefusalReason::AuthThrottled,
            Refusal::Route(_) | Refusal::MetricsNotLoopback => return None,
        })
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Head(e) => e.fmt(f),
            Refusal::Route(e) => e.fmt(f),
            Refusal::BodyTooLarge { limit } => {
                write!(f, "Body is larger than the {limit}-byte limit (--max-body).")
            }
            Refusal::Expectation => f.write_str("Only Expect: 100-continue is supported."),
            Refusal::RateLimited { per_minute, .. } => write!(
                f,
                "Too many requests: at most {per_minute} a minute per client (--rate-per-ip)."
            ),
            Refusal::Memory => f.write_str(
                "The relay holds as much as its memory budget allows (--max-memory); retry \
                 shortly.",
            ),
            Refusal::MemoryPerIp { limit } => write!(
                f,
                "This client holds its {limit}-byte share of the relay's memory \
                 (--max-memory-per-ip); retry once its messages are delivered."
            ),
            Refusal::IpDenied => {
                f.write_str("This address may not use the relay (--allow-ip, --deny-ip).")
            }
            Refusal::MetricsNotLoopback => f.write_str(
                "/metrics is answered to loopback clients only, or with a stats token \
                 (--token-file).",
            ),
            Refusal::Auth(denied) => denied.fmt(f),
            Refusal::AuthThrottled { per_minute, .. } => write!(
                f,
                "Too many failed authentications: at most {per_minute} a minute per client \
                 (--auth-failures-per-ip); retry later."
            ),
        }
    }
}

impl From<HeadError> for Refusal {
    fn from(e: HeadError) -> Refusal {
        Refusal::Head(e)
    }
}

impl From<RouteError> for Refusal {
    fn from(e: RouteError) -> Refusal {
        Refusal::Route(e)
    }
}
