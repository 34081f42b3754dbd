//! The gate: everything the relay decides about a connection and a complete request head, in
//! one place and in one order (protocol §4, §5, §6), with the time passed in and no socket.
//!
//! At accept, [`Gate::admit_connection`]: `--max-connections`, then `--max-connections-per-ip`
//! (trusted proxies exempt). For a complete head, [`Gate::decide`], in this order: CORS origin;
//! client identity (behind `--trust-proxy`, `identity.rs`); `--allow-ip`/`--deny-ip`; the head's
//! framing headers; the route; a browser fetching a service worker script (refused on every
//! route, protocol §5); the bearer token against the route's scope (`--token-file`,
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

use super::exchange::Exchange;
use super::parse::{validate, Framing, Head, HeadError, Version};
use super::reader::{BodyFraming, BodyPlan, ContentType};
use crate::action::Action;
use crate::auth::{Denied, Scope, TokenStore};
use crate::config::Config;
use crate::cors;
use crate::identity::{self, Client, ClientKey};
use crate::limits::{
    retry_after, MemoryBudget, PeerConnections, PeerSlot, Rate, RateTable, Reservation, Shortage,
    ENTRY_COST,
};
use crate::logging::{id_tag, LogThrottle};
use crate::payload::Payload;
use crate::query;
use crate::refused::RefusalReason;
use crate::registry::{LinkMethod, Request};
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
// `Relay`, the large variant, is the common one: boxing it would add an allocation to every
// relay request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Decision {
    /// `GET /`: the usage text.
    Usage,
    /// `GET /health`, with the counts or the status alone.
    Health { detailed: bool },
    /// `GET /metrics`.
    Metrics,
    /// An `OPTIONS` preflight, answered (boxed: a response keeps its header lines inline).
    Preflight(Box<Response>),
    /// A relay request for the registry, once its body (as planned) is read; its content type
    /// goes into the body's allocation.
    Relay { request: Request, body: BodyPlan, content_type: ContentType },
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

    /// An empty charge for the request heads read from `peer`, grown as they are read
    /// (`worker::on_readable`): a head is charged to the TCP peer's share, as who sent it is not
    /// known before it is whole; a trusted proxy's heads are charged to the budget alone.
    pub fn head_charge(&self, peer: SocketAddr) -> Reservation {
        let trusted = self.config.is_trusted_proxy(peer.ip());
        self.memory.empty_for((!trusted).then(|| ClientKey::of(peer.ip())))
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
    ) -> Result<Decision, RequestRefusal> {
        let client = self.identify(head, peer, exchange)?;
        let framing = validate(head)?;
        let (path, query) = split_target(head.target)?;
        let route = route(head.method, path, self.config.limits.max_id)?;
        exchange.route = route.kind();
        if head.header("service-worker").is_some() {
            return Err(RequestRefusal::ServiceWorker);
        }
        let (id, action) = match route {
            Route::Relay { id, action } => (id, action),
            Route::Root => return Ok(Decision::Usage),
            Route::Health => return self.health(head, exchange.client, now.instant),
            Route::Metrics => return self.metrics(head, client, now.instant),
            Route::Preflight { allow } => {
                return self.preflight(allow, head, exchange, now.instant)
            }
        };
        exchange.id_tag = Some(id_tag(&id));
        let authorization = head.header("authorization");
        self.authorize(authorization, exchange.client, Scope::of(action), now.instant)?;
        self.take_rate(exchange.client, now.instant)?;
        let body = body_plan(head, framing, self.config.limits.max_body)?;
        // Only what the registry keeps: the query a `/link` counterpart is shown, a sender's
        // write secret (of which the registry keeps a digest).
        let seq = (action == Action::McastGet)
            .then(|| query::wanted_seq(query, head.headers("cookie")))
            .flatten();
        let (query, wsecret) = query::kept(action, query, head.header("httprelay-wsecret"));
        let mut request = Request {
            id,
            action,
            client: client.address(),
            arrived_ms: now.unix_ms,
            query,
            wsecret,
            body: Payload::empty(),
            // Routes let only these methods through to `/sync`; the others do not use it.
            method: LinkMethod::of(head.method).unwrap_or(LinkMethod::Get),
            seq,
            reservation: Reservation::default(),
        };
        let content_type = ContentType::of(head.header("content-type"));
        request.reservation = self.reserve(client, &request, body, content_type.len())?;
        Ok(Decision::Relay { request, body, content_type })
    }

    /// CORS origin, then who the client is (behind `--trust-proxy`), then `--allow-ip` and
    /// `--deny-ip`.
    fn identify(
        &self,
        head: &Head<'_>,
        peer: SocketAddr,
        exchange: &mut Exchange,
    ) -> Result<Client, RequestRefusal> {
        exchange.set_method(head.method);
        exchange.cors_origin =
            cors::allowed_origin(&self.config.cors, head.header("origin")).map(Box::new);
        let client = identity::client(
            peer,
            &self.config.trust_proxy,
            head.headers("x-forwarded-for"),
            head.headers("x-real-ip"),
        );
        exchange.client = client.key();
        exchange.via_proxy = self.config.is_trusted_proxy(peer.ip());
        if !self.config.access.allows(client) {
            return Err(RequestRefusal::IpDenied);
        }
        Ok(client)
    }

    /// `/health`: with tokens on, a probe without credentials gets the status alone; the counts
    /// need a token with the stats scope, and credentials that are sent are checked.
    fn health(
        &self,
        head: &Head<'_>,
        client: ClientKey,
        now: Instant,
    ) -> Result<Decision, RequestRefusal> {
        let authorization = head.header("authorization");
        let detailed = self.tokens.is_none() || authorization.is_some();
        if detailed {
            self.authorize(authorization, client, Scope::Stats, now)?;
        }
        Ok(Decision::Health { detailed })
    }

    /// `/metrics`: loopback clients (after `--trust-proxy`) may read it; others need a stats
    /// token.
    fn metrics(
        &self,
        head: &Head<'_>,
        client: Client,
        now: Instant,
    ) -> Result<Decision, RequestRefusal> {
        if !client.is_loopback() {
            if self.tokens.is_none() {
                return Err(RequestRefusal::MetricsNotLoopback);
            }
            self.authorize(head.header("authorization"), client.key(), Scope::Stats, now)?;
        }
        Ok(Decision::Metrics)
    }

    /// An `OPTIONS` preflight: counted in `--rate-per-ip`, then answered.
    fn preflight(
        &self,
        allow: &'static str,
        head: &Head<'_>,
        exchange: &Exchange,
        now: Instant,
    ) -> Result<Decision, RequestRefusal> {
        self.take_rate(exchange.client, now)?;
        let requested = head.header("access-control-request-headers");
        let allowed = exchange.cors_origin.is_some();
        Ok(Decision::Preflight(Box::new(cors::preflight(allow, allowed, requested))))
    }

    /// `--max-memory` and `--max-memory-per-ip`: what `request` may leave held, reserved
    /// before anything is allocated for its body (protocol §4), which holds its content type of
    /// `content_type` bytes too; a chunked body reserves `--max-body` and gives back the rest
    /// once its size is known ([`body_read`]). The registry charges each value it keeps from
    /// this, exactly, and gives the rest back.
    fn reserve(
        &self,
        client: Client,
        request: &Request,
        body: BodyPlan,
        content_type: usize,
    ) -> Result<Reservation, RequestRefusal> {
        let body_bytes = match body.framing {
            BodyFraming::Length(n) => n,
            BodyFraming::Chunked { max } => max,
        };
        let bytes = kept_bytes(request).saturating_add(content_type).saturating_add(body_bytes);
        self.memory.reserve_for(client.memory_key(), bytes).map_err(|shortage| match shortage {
            Shortage::Total => RequestRefusal::Memory,
            Shortage::Client { limit } => RequestRefusal::MemoryPerIp { limit },
        })
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
    ) -> Result<(), RequestRefusal> {
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
                return Err(RequestRefusal::AuthThrottled { per_minute, wait });
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
        Err(RequestRefusal::Auth(denied))
    }

    /// `--rate-per-ip`: takes a token for `client`, or refuses with 429.
    fn take_rate(&self, client: ClientKey, now: Instant) -> Result<(), RequestRefusal> {
        let Some(table) = &self.rate_per_ip else { return Ok(()) };
        let mut table = table.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let per_minute = self.config.limits.rate_per_ip.unwrap_or(0);
        table.take(client, now).map_err(|wait| RequestRefusal::RateLimited { per_minute, wait })
    }
}

/// `--max-body` against the announced length (a chunked body is bounded as it is decoded),
/// then `Expect`: only `100-continue`, owed for an HTTP/1.1 body.
fn body_plan(
    head: &Head<'_>,
    framing: Framing,
    max_body: usize,
) -> Result<BodyPlan, RequestRefusal> {
    let framing = match framing {
        Framing::None => BodyFraming::Length(0),
        Framing::Length(n) => usize::try_from(n)
            .ok()
            .filter(|&n| n <= max_body)
            .map(BodyFraming::Length)
            .ok_or(RequestRefusal::BodyTooLarge { limit: max_body })?,
        Framing::Chunked => BodyFraming::Chunked { max: max_body },
    };
    let expect_continue = match head.header("expect") {
        None => false,
        Some(value) if value.eq_ignore_ascii_case(b"100-continue") => {
            head.version == Version::Http11 && framing != BodyFraming::Length(0)
        }
        Some(_) => return Err(RequestRefusal::Expectation),
    };
    Ok(BodyPlan { framing, expect_continue })
}

/// A relay request whose body is read in full: the memory reserved for an unknown (chunked)
/// size shrinks to what it holds.
pub fn body_read(request: &mut Request) {
    request.reservation.shrink_to(kept_bytes(request) + request.body.footprint());
}

/// What a relay request holds on its way to the registry besides its body (with its content
/// type), and at most what it may leave held there but a write claim: an entry
/// ([`ENTRY_COST`]) with its id, its kept query and its write secret.
fn kept_bytes(request: &Request) -> usize {
    let secret = request.wsecret.as_ref().map_or(0, Vec::len);
    ENTRY_COST + request.id.len() + request.query.len() + secret
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
/// [`RequestRefusal::response`] and its `Display`, once.
#[derive(Clone, Debug, PartialEq)]
pub enum RequestRefusal {
    /// A client outside `--allow-ip` or inside `--deny-ip` (403).
    IpDenied,
    /// The head's framing headers are invalid (400, 501: see [`HeadError`]).
    Head(HeadError),
    /// No such route, a bad target or id, or a method the route does not take.
    Route(RouteError),
    /// `/metrics` from a client that is not on loopback, without `--token-file` (403).
    MetricsNotLoopback,
    /// A `Service-Worker` header: a browser fetching the script of a service worker it is
    /// registering or updating (403). A relayed script as a worker would serve any page it likes
    /// under its path on the relay's origin, past the sandbox of protocol §5.
    ServiceWorker,
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

impl RequestRefusal {
    /// The answer.
    pub fn response(&self) -> Response {
        let status = match self {
            RequestRefusal::Head(e) => e.status(),
            RequestRefusal::Route(e) => e.status(),
            RequestRefusal::BodyTooLarge { .. } => 413,
            RequestRefusal::Expectation => 417,
            RequestRefusal::RateLimited { .. }
            | RequestRefusal::MemoryPerIp { .. }
            | RequestRefusal::AuthThrottled { .. } => 429,
            RequestRefusal::Memory => 503,
            RequestRefusal::IpDenied
            | RequestRefusal::MetricsNotLoopback
            | RequestRefusal::ServiceWorker => 403,
            RequestRefusal::Auth(denied) => denied.status(),
        };
        let response = Response::text(status, self);
        match self {
            RequestRefusal::Route(RouteError::MethodNotAllowed { allow }) => {
                response.header("Allow", *allow)
            }
            RequestRefusal::RateLimited { wait, .. }
            | RequestRefusal::AuthThrottled { wait, .. } => {
                response.header("Retry-After", retry_after(*wait))
            }
            RequestRefusal::Auth(denied) => response.header("WWW-Authenticate", denied.challenge()),
            RequestRefusal::Memory | RequestRefusal::MemoryPerIp { .. } => {
                response.header("Retry-After", "1")
            }
            _ => response,
        }
    }

    /// The counter it goes to; `None` for answers `/health` does not count as refusals (a
    /// route that does not exist, `/metrics` off loopback).
    pub fn reason(&self) -> Option<RefusalReason> {
        Some(match self {
            RequestRefusal::Head(_) | RequestRefusal::Expectation => RefusalReason::Malformed,
            RequestRefusal::BodyTooLarge { .. } => RefusalReason::TooLarge,
            RequestRefusal::RateLimited { .. } => RefusalReason::RatePerIp,
            RequestRefusal::Memory => RefusalReason::Memory,
            RequestRefusal::MemoryPerIp { .. } => RefusalReason::MemoryPerIp,
            RequestRefusal::IpDenied => RefusalReason::IpDenied,
            RequestRefusal::Auth(Denied::Missing | Denied::Unknown) => RefusalReason::Unauthorized,
            RequestRefusal::Auth(Denied::Scope(_)) => RefusalReason::Forbidden,
            RequestRefusal::AuthThrottled { .. } => RefusalReason::AuthThrottled,
            RequestRefusal::ServiceWorker => RefusalReason::ServiceWorker,
            RequestRefusal::Route(_) | RequestRefusal::MetricsNotLoopback => return None,
        })
    }
}

impl fmt::Display for RequestRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestRefusal::Head(e) => e.fmt(f),
            RequestRefusal::Route(e) => e.fmt(f),
            RequestRefusal::BodyTooLarge { limit } => {
                write!(f, "Body is larger than the {limit}-byte limit (--max-body).")
            }
            RequestRefusal::Expectation => f.write_str("Only Expect: 100-continue is supported."),
            RequestRefusal::RateLimited { per_minute, .. } => write!(
                f,
                "Too many requests: at most {per_minute} a minute per client (--rate-per-ip)."
            ),
            RequestRefusal::Memory => f.write_str(
                "The relay holds as much as its memory budget allows (--max-memory); retry \
                 shortly.",
            ),
            RequestRefusal::MemoryPerIp { limit } => write!(
                f,
                "This client holds its {limit}-byte share of the relay's memory \
                 (--max-memory-per-ip); retry once its messages are delivered."
            ),
            RequestRefusal::IpDenied => {
                f.write_str("This address may not use the relay (--allow-ip, --deny-ip).")
            }
            RequestRefusal::MetricsNotLoopback => f.write_str(
                "/metrics is answered to loopback clients only, or with a stats token \
                 (--token-file).",
            ),
            RequestRefusal::ServiceWorker => f.write_str(
                "The relay serves no service worker scripts: what it relays never runs on its \
                 origin.",
            ),
            RequestRefusal::Auth(denied) => denied.fmt(f),
            RequestRefusal::AuthThrottled { per_minute, .. } => write!(
                f,
                "Too many failed authentications: at most {per_minute} a minute per client \
                 (--auth-failures-per-ip); retry later."
            ),
        }
    }
}

impl From<HeadError> for RequestRefusal {
    fn from(e: HeadError) -> RequestRefusal {
        RequestRefusal::Head(e)
    }
}

impl From<RouteError> for RequestRefusal {
    fn from(e: RouteError) -> RequestRefusal {
        RequestRefusal::Route(e)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::action::Action;
    use crate::auth::Tokens;
    use crate::config::MemoryShare;
    use crate::http::parse::{parse_head, HeadLimits, Status};
    use crate::http::reader::{ReadError, ReaderLimits, RequestReader, Step};

    const SECOND: Duration = Duration::from_secs(1);
    const SEND: &str = "ssssssssssssssss-send";
    const STATS: &str = "tttttttttttttttt-stats";

    fn config(change: impl FnOnce(&mut Config)) -> Arc<Config> {
        let mut config = Config::default();
        change(&mut config);
        Arc::new(config)
    }

    fn gate(config: Arc<Config>, tokens: bool) -> Gate {
        let memory =
            MemoryBudget::with_share(config.limits.max_memory, config.limits.memory_per_ip());
        let tokens = tokens.then(|| {
            let text = format!("{SEND} send\n{STATS} stats\n");
            Arc::new(TokenStore::fixed(Tokens::parse(&text).unwrap()))
        });
        Gate::new(config, memory, tokens)
    }

    fn peer(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    const CLIENT: &str = "192.0.2.1:4000";

    /// The gate's decision on `request` (a head) from `from` at `now`, and what it noted.
    fn decide_at(
        gate: &Gate,
        request: &str,
        from: &str,
        now: Instant,
    ) -> (Result<Decision, RequestRefusal>, Exchange) {
        let limits = HeadLimits { max_head: 8192, max_headers: 100 };
        let Ok(Status::Complete(head)) = parse_head(request.as_bytes(), &limits) else {
            panic!("not a whole head: {request:?}")
        };
        let from = peer(from);
        let mut exchange = Exchange::new(ClientKey::of(from.ip()), now);
        let decided = gate.decide(&head, from, Now { instant: now, unix_ms: 7 }, &mut exchange);
        (decided, exchange)
    }

    fn decide(gate: &Gate, request: &str) -> Result<Decision, RequestRefusal> {
        decide_at(gate, request, CLIENT, Instant::now()).0
    }

    fn refusal(gate: &Gate, request: &str) -> RequestRefusal {
        match decide(gate, request) {
            Err(refusal) => refusal,
            Ok(decision) => panic!("let through: {decision:?}"),
        }
    }

    fn get(path: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n")
    }

    fn post(path: &str, extra: &str) -> String {
        format!("POST {path} HTTP/1.1\r\nHost: h\r\n{extra}\r\n")
    }

    fn plan(decision: Result<Decision, RequestRefusal>) -> BodyPlan {
        match decision {
            Ok(Decision::Relay { body, .. }) => body,
            other => panic!("not a relay request: {other:?}"),
        }
    }

    #[test]
    fn decides_each_route() {
        let open = gate(config(|_| {}), false);
        assert!(matches!(decide(&open, &get("/")), Ok(Decision::Usage)));
        assert!(matches!(decide(&open, &get("/health")), Ok(Decision::Health { detailed: true })));
        let (metrics, _) = decide_at(&open, &get("/metrics"), "127.0.0.1:9", Instant::now());
        assert!(matches!(metrics, Ok(Decision::Metrics)));
        let preflight = "OPTIONS /link/a HTTP/1.1\r\nHost: h\r\nOrigin: https://a.example\r\n\r\n";
        let (decided, exchange) = decide_at(&open, preflight, CLIENT, Instant::now());
        let Ok(Decision::Preflight(response)) = decided else { panic!("{decided:?}") };
        assert_eq!(response.status, 204);
        assert_eq!(exchange.cors_origin.as_deref().map(String::as_str), Some("https://a.example"));
        let request = post(
            "/link/abc?x=1",
            "Content-Length: 5\r\nContent-Type: text/plain\r\nHttpRelay-WSecret: w\r\n",
        );
        let (decided, exchange) = decide_at(&open, &request, CLIENT, Instant::now());
        let Ok(Decision::Relay { request, body, content_type }) = decided else {
            panic!("{decided:?}")
        };
        assert_eq!((request.id.as_slice(), request.action), (&b"abc"[..], Action::LinkSend));
        assert_eq!((request.query.as_str(), request.arrived_ms), ("x=1", 7));
        assert_eq!(content_type.as_str(), Some("text/plain"));
        assert_eq!(request.wsecret.as_deref(), Some(&b"w"[..]));
        assert_eq!(request.client, peer(CLIENT));
        assert_eq!(body, BodyPlan { framing: BodyFraming::Length(5), expect_continue: false });
        assert_eq!((exchange.method.as_str(), exchange.route.as_str()), ("POST", "link"));
        assert!(exchange.id_tag.is_some());
    }

    #[test]
    fn an_mcast_reader_names_its_message_and_a_sync_side_its_method() {
        let open = gate(config(|_| {}), false);
        let relayed = |request: &str| match decide(&open, request) {
            Ok(Decision::Relay { request, .. }) => request,
            other => panic!("not a relay request: {other:?}"),
        };
        let cookie =
            |path: &str| format!("GET {path} HTTP/1.1\r\nHost: h\r\nCookie: a=1; SeqId=7\r\n\r\n");
        assert_eq!(relayed(&get("/mcast/m")).seq, None);
        assert_eq!(relayed(&get("/mcast/m?seqid=4")).seq, Some(4));
        assert_eq!(relayed(&cookie("/mcast/m")).seq, Some(7));
        assert_eq!(relayed(&cookie("/mcast/m?SeqId=-2")).seq, Some(-2));
        assert_eq!(relayed(&cookie("/link/m")).seq, None, "only /mcast readers ask for one");
        let put = relayed("PUT /sync/s?wsecret=w&k=v HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((put.action, put.method), (Action::Sync, crate::registry::LinkMethod::Put));
        assert_eq!((put.query.as_str(), put.wsecret), ("k=v", None), "no write claims on /sync");
    }

    #[test]
    fn body_plans_and_expect() {
        let gate = gate(config(|c| c.limits.max_body = 100), false);
        let length = |n| BodyPlan { framing: BodyFraming::Length(n), expect_continue: false };
        assert_eq!(plan(decide(&gate, &get("/inbox/a"))), length(0));
        assert_eq!(plan(decide(&gate, &post("/inbox/a", "Content-Length: 100\r\n"))), length(100));
        let chunked = post("/inbox/a", "Transfer-Encoding: chunked\r\n");
        assert_eq!(
            plan(decide(&gate, &chunked)),
            BodyPlan { framing: BodyFraming::Chunked { max: 100 }, expect_continue: false }
        );
        let expect = post("/inbox/a", "Content-Length: 3\r\nExpect: 100-Continue\r\n");
        assert!(plan(decide(&gate, &expect)).expect_continue);
        // Not for HTTP/1.0, nor for an empty body.
        let old = "POST /inbox/a HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n";
        assert!(!plan(decide(&gate, old)).expect_continue);
        let empty = post("/inbox/a", "Content-Length: 0\r\nExpect: 100-continue\r\n");
        assert!(!plan(decide(&gate, &empty)).expect_continue);
        let other = post("/inbox/a", "Content-Length: 3\r\nExpect: something\r\n");
        assert_eq!(refusal(&gate, &other), RequestRefusal::Expectation);
        let large = post("/inbox/a", "Content-Length: 101\r\n");
        assert_eq!(refusal(&gate, &large), RequestRefusal::BodyTooLarge { limit: 100 });
        let huge = post("/inbox/a", "Content-Length: 18446744073709551615\r\n");
        assert_eq!(refusal(&gate, &huge), RequestRefusal::BodyTooLarge { limit: 100 });
    }

    #[test]
    fn the_first_check_that_fails_decides() {
        // Each request fails this check and every later one; the earliest answers.
        let strict = config(|c| {
            c.access.deny_ip = vec!["192.0.2.0/24".parse().unwrap()];
            c.limits.rate_per_ip = Some(1);
            c.limits.max_body = 10;
            c.limits.max_memory = Some(1);
            c.limits.max_memory_per_ip = MemoryShare::Off;
        });
        let bad_framing = "Content-Length: 99\r\nTransfer-Encoding: chunked\r\nExpect: x\r\n";
        let everything = post("/nowhere", bad_framing);
        let gate = gate(Arc::clone(&strict), true);
        assert_eq!(refusal(&gate, &everything), RequestRefusal::IpDenied);
        let allowed = config(|c| {
            c.limits = strict.limits.clone();
        });
        let gate = self::gate(allowed, true);
        assert_eq!(
            refusal(&gate, &everything),
            RequestRefusal::Head(HeadError::LengthWithTransferEncoding)
        );
        let unrouted =
            post("/nowhere", "Content-Length: 99\r\nExpect: x\r\nService-Worker: script\r\n");
        assert_eq!(refusal(&gate, &unrouted), RequestRefusal::Route(RouteError::NotFound));
        let worker =
            post("/link/a", "Content-Length: 99\r\nExpect: x\r\nService-Worker: script\r\n");
        assert_eq!(refusal(&gate, &worker), RequestRefusal::ServiceWorker);
        let anonymous = post("/link/a", "Content-Length: 99\r\nExpect: x\r\n");
        assert_eq!(refusal(&gate, &anonymous), RequestRefusal::Auth(Denied::Missing));
        let signed = format!("Authorization: Bearer {SEND}\r\nContent-Length: 99\r\nExpect: x\r\n");
        let signed = post("/link/a", &signed);
        assert!(matches!(refusal(&gate, &signed), RequestRefusal::BodyTooLarge { limit: 10 }));
        assert!(matches!(
            refusal(&gate, &signed),
            RequestRefusal::RateLimited { per_minute: 1, .. }
        ));
        let tight = config(|c| {
            c.limits.max_memory = Some(1);
            c.limits.max_memory_per_ip = MemoryShare::Off;
        });
        let gate = self::gate(tight, false);
        let expecting = post("/link/a", "Content-Length: 9\r\nExpect: x\r\n");
        assert_eq!(refusal(&gate, &expecting), RequestRefusal::Expectation);
        assert_eq!(
            refusal(&gate, &post("/link/a", "Content-Length: 9\r\n")),
            RequestRefusal::Memory
        );
    }

    #[test]
    fn a_service_worker_script_is_refused_on_every_route_taking_nothing() {
        let gate = gate(
            config(|c| {
                c.limits.rate_per_ip = Some(1);
                c.limits.max_memory = Some(1 << 20);
            }),
            false,
        );
        let worker = |path: &str| {
            format!("GET {path} HTTP/1.1\r\nHost: h\r\nService-Worker: script\r\n\r\n")
        };
        for path in ["/", "/health", "/metrics", "/link/a", "/inbox/a", "/inbox/a/await"] {
            assert_eq!(refusal(&gate, &worker(path)), RequestRefusal::ServiceWorker, "{path}");
        }
        // Whatever the value: only browsers send the header, and only for a worker's script.
        let other = "GET /inbox/a HTTP/1.1\r\nHost: h\r\nservice-worker: x\r\n\r\n";
        assert_eq!(refusal(&gate, other), RequestRefusal::ServiceWorker);
        assert_eq!(RequestRefusal::ServiceWorker.reason(), Some(RefusalReason::ServiceWorker));
        // No rate token and no memory were taken: the one request a minute is still there.
        assert_eq!(gate.memory().used(), 0);
        assert!(matches!(decide(&gate, &get("/link/a")), Ok(Decision::Relay { .. })));
    }

    #[test]
    fn each_refusal_answers_its_status_headers_and_sentence() {
        let wait = 2 * SECOND + SECOND / 10;
        let cases = [
            (RequestRefusal::IpDenied, 403, None, "This address may not use the relay (--allow-ip, --deny-ip)."),
            (RequestRefusal::Head(HeadError::BadHost), 400, None, "Request must have exactly one Host header (HTTP/1.0: at most one)."),
            (RequestRefusal::Route(RouteError::MethodNotAllowed { allow: "GET" }), 405, Some(("Allow", "GET")), "Method not allowed here; allowed: GET."),
            (RequestRefusal::MetricsNotLoopback, 403, None, "/metrics is answered to loopback clients only, or with a stats token (--token-file)."),
            (RequestRefusal::ServiceWorker, 403, None, "The relay serves no service worker scripts: what it relays never runs on its origin."),
            (RequestRefusal::Auth(Denied::Missing), 401, Some(("WWW-Authenticate", "Bearer realm=\"handoff\"")), "Missing"),
            (RequestRefusal::Auth(Denied::Scope(Scope::Send)), 403, None, "Scope"),
            (RequestRefusal::AuthThrottled { per_minute: 5, wait }, 429, Some(("Retry-After", "3")), "Too many failed authentications: at most 5 a minute per client (--auth-failures-per-ip); retry later."),
            (RequestRefusal::RateLimited { per_minute: 100, wait }, 429, Some(("Retry-After", "3")), "Too many requests: at most 100 a minute per client (--rate-per-ip)."),
            (RequestRefusal::BodyTooLarge { limit: 10 }, 413, None, "Body is larger than the 10-byte limit (--max-body)."),
            (RequestRefusal::Expectation, 417, None, "Only Expect: 100-continue is supported."),
            (RequestRefusal::Memory, 503, Some(("Retry-After", "1")), "The relay holds as much as its memory budget allows (--max-memory); retry shortly."),
            (RequestRefusal::MemoryPerIp { limit: 8 }, 429, Some(("Retry-After", "1")), "This client holds its 8-byte share of the relay's memory (--max-memory-per-ip); retry once its messages are delivered."),
        ];
        for (refusal, status, header, sentence) in cases {
            let response = refusal.response();
            assert_eq!(response.status, status, "{refusal:?}");
            if let Some((name, value)) = header {
                assert_eq!(response.header_value(name), Some(value), "{refusal:?}");
            }
            match refusal {
                RequestRefusal::Auth(denied) => assert_eq!(refusal.to_string(), denied.to_string()),
                _ => assert_eq!(refusal.to_string(), sentence),
            }
            let body = String::from_utf8_lossy(&response.body).into_owned();
            assert!(body.contains(&refusal.to_string()), "{body}");
        }
    }

    #[test]
    fn rate_per_ip_with_the_time_passed_in() {
        let gate = gate(config(|c| c.limits.rate_per_ip = Some(60)), false);
        let start = Instant::now();
        let request = get("/link/a");
        for _ in 0..60 {
            assert!(decide_at(&gate, &request, CLIENT, start).0.is_ok());
        }
        let (refused, _) = decide_at(&gate, &request, CLIENT, start);
        let Err(RequestRefusal::RateLimited { per_minute: 60, wait }) = refused else {
            panic!("{refused:?}")
        };
        assert!(wait <= SECOND && wait > SECOND / 2, "{wait:?}");
        // Preflights count too; another client has its own bucket; a second later one more.
        let preflight = "OPTIONS /link/a HTTP/1.1\r\nHost: h\r\n\r\n";
        assert!(decide_at(&gate, preflight, CLIENT, start).0.is_err());
        assert!(decide_at(&gate, &request, "192.0.2.2:1", start).0.is_ok());
        assert!(decide_at(&gate, &request, CLIENT, start + SECOND).0.is_ok());
        // /, /health and /metrics are not counted.
        assert!(decide_at(&gate, &get("/health"), CLIENT, start).0.is_ok());
    }

    #[test]
    fn failed_authentications_throttle_even_a_good_token() {
        let gate = gate(config(|c| c.limits.auth_failures_per_ip = Some(2)), true);
        let start = Instant::now();
        let bad = post("/link/a", "Authorization: Bearer nope-nope-nope-nope\r\n");
        let good = post("/link/a", &format!("Authorization: Bearer {SEND}\r\n"));
        let wrong_scope =
            format!("GET /link/a HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {SEND}\r\n\r\n");
        let at = |request: &str, t| decide_at(&gate, request, CLIENT, t).0;
        assert!(matches!(at(&bad, start), Err(RequestRefusal::Auth(Denied::Unknown))));
        let scoped = at(&wrong_scope, start);
        assert!(
            matches!(scoped, Err(RequestRefusal::Auth(Denied::Scope(Scope::Receive)))),
            "{scoped:?}"
        );
        let throttled = at(&good, start);
        let Err(RequestRefusal::AuthThrottled { per_minute: 2, wait }) = throttled else {
            panic!("{throttled:?}")
        };
        assert_eq!(retry_after(wait), "30");
        assert!(decide_at(&gate, &good, "192.0.2.2:1", start).0.is_ok(), "others unaffected");
        assert!(at(&good, start + 30 * SECOND).is_ok(), "a token back after 30 s");
    }

    #[test]
    fn health_and_metrics_with_tokens() {
        let gate = gate(config(|_| {}), true);
        let stats = format!("Authorization: Bearer {STATS}\r\n");
        let with = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: h\r\n{stats}\r\n");
        assert!(matches!(decide(&gate, &get("/health")), Ok(Decision::Health { detailed: false })));
        assert!(matches!(decide(&gate, &with("/health")), Ok(Decision::Health { detailed: true })));
        let wrong = "GET /health HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer x\r\n\r\n";
        assert_eq!(refusal(&gate, wrong), RequestRefusal::Auth(Denied::Unknown));
        assert_eq!(refusal(&gate, &get("/metrics")), RequestRefusal::Auth(Denied::Missing));
        assert!(matches!(decide(&gate, &with("/metrics")), Ok(Decision::Metrics)));
        let loopback = decide_at(&gate, &get("/metrics"), "[::1]:9", Instant::now()).0;
        assert!(matches!(loopback, Ok(Decision::Metrics)));
        let open = self::gate(config(|_| {}), false);
        assert_eq!(refusal(&open, &get("/metrics")), RequestRefusal::MetricsNotLoopback);
    }

    #[test]
    fn memory_is_reserved_before_the_body() {
        let gate = gate(
            config(|c| {
                c.limits.max_body = 2000;
                c.limits.max_memory = Some(9_000);
                c.limits.max_memory_per_ip = MemoryShare::Bytes(5100);
                c.trust_proxy = vec!["10.0.0.1".parse().unwrap()];
            }),
            false,
        );
        let sized = post("/inbox/a", "Content-Length: 1000\r\n");
        let Ok(Decision::Relay { request: first, .. }) = decide(&gate, &sized) else { panic!() };
        // An entry with its one-byte id, no query and no content type, and the body.
        let kept = ENTRY_COST + 1;
        assert_eq!(gate.memory().used(), kept + 1000);
        // A chunked body reserves --max-body, and gives back the rest once read.
        let chunked = post("/inbox/a", "Transfer-Encoding: chunked\r\n");
        let Ok(Decision::Relay { request: mut second, .. }) = decide(&gate, &chunked) else {
            panic!()
        };
        assert_eq!(gate.memory().used(), 2 * kept + 3000);
        assert_eq!(refusal(&gate, &sized), RequestRefusal::MemoryPerIp { limit: 5100 });
        second.body = Payload::from(&[0; 10][..]);
        body_read(&mut second);
        assert_eq!(gate.memory().used(), 2 * kept + 1010);
        // The whole budget: other clients, then the proxy itself, which has no share.
        let big = post("/inbox/a", "Content-Length: 2000\r\n");
        let (other, _) = decide_at(&gate, &big, "192.0.2.2:1", Instant::now());
        assert!(other.is_ok(), "{other:?}");
        let (last, _) = decide_at(&gate, &big, "10.0.0.1:1", Instant::now());
        assert!(last.is_ok(), "{last:?}");
        let (full, _) = decide_at(&gate, &big, "10.0.0.1:1", Instant::now());
        assert_eq!(full.unwrap_err(), RequestRefusal::Memory);
        drop((first, second, other, last));
    }

    #[test]
    fn the_client_behind_a_trusted_proxy() {
        let gate = gate(
            config(|c| {
                c.trust_proxy = vec!["10.0.0.0/8".parse().unwrap()];
                c.access.deny_ip = vec!["198.51.100.7".parse().unwrap()];
            }),
            false,
        );
        let forwarded = |entry: &str| {
            format!("GET /link/a HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: {entry}\r\n\r\n")
        };
        let (decided, exchange) =
            decide_at(&gate, &forwarded("198.51.100.7"), "10.1.1.1:80", Instant::now());
        assert_eq!(decided.unwrap_err(), RequestRefusal::IpDenied);
        assert_eq!(exchange.client, ClientKey::of("198.51.100.7".parse().unwrap()));
        assert!(exchange.via_proxy);
        let (decided, exchange) =
            decide_at(&gate, &forwarded("198.51.100.8:4711"), "10.1.1.1:80", Instant::now());
        let Ok(Decision::Relay { request, .. }) = decided else { panic!() };
        assert_eq!(request.client, peer("198.51.100.8:4711"));
        assert!(exchange.via_proxy);
        // An untrusted peer's header is ignored; an unreadable entry is refused when lists are set.
        let (decided, exchange) =
            decide_at(&gate, &forwarded("198.51.100.7"), CLIENT, Instant::now());
        assert!(decided.is_ok());
        assert!(!exchange.via_proxy);
        let (decided, _) = decide_at(&gate, &forwarded("unknown"), "10.1.1.1:80", Instant::now());
        assert_eq!(decided.unwrap_err(), RequestRefusal::IpDenied);
    }

    #[test]
    fn connections_at_accept() {
        let gate = gate(
            config(|c| {
                c.limits.max_connections = Some(3);
                c.limits.max_connections_per_ip = Some(1);
                c.trust_proxy = vec!["10.0.0.1".parse().unwrap()];
            }),
            false,
        );
        let slot = gate.admit_connection(peer(CLIENT), 1).unwrap();
        assert!(slot.is_some());
        assert_eq!(
            gate.admit_connection(peer("192.0.2.1:5"), 2).unwrap_err(),
            ConnectionRefusal::ConnectionsPerIp
        );
        assert!(gate.admit_connection(peer("10.0.0.1:1"), 2).unwrap().is_none(), "proxy exempt");
        assert!(gate.admit_connection(peer("10.0.0.1:2"), 3).is_ok());
        let over = gate.admit_connection(peer("192.0.2.9:1"), 4).unwrap_err();
        assert_eq!(over, ConnectionRefusal::Connections { open: 4 });
        assert_eq!(over.to_string(), "4 open (--max-connections)");
        drop(slot);
        assert!(gate.admit_connection(peer("192.0.2.1:6"), 2).unwrap().is_some(), "slot back");
        let unlimited = self::gate(
            config(|c| {
                c.limits.max_connections = None;
                c.limits.max_connections_per_ip = None;
            }),
            false,
        );
        assert!(unlimited.admit_connection(peer(CLIENT), usize::MAX).unwrap().is_none());
    }

    /// Where each counted reason is produced outside the reader and the gate.
    const ELSEWHERE: [(RefusalReason, &str); 6] = [
        (RefusalReason::Parked, "--max-parked: the registry"),
        (RefusalReason::ParkedPerIp, "--max-parked-per-ip: the registry"),
        (RefusalReason::RatePerId, "--rate-per-id: the registry"),
        (RefusalReason::InboxWaiters, "live waiters per inbox id: the registry"),
        (RefusalReason::SlowReader, "--write-timeout: the outbox"),
        (RefusalReason::Burned, "--single-use, --burned-for, --max-burned: the registry"),
    ];

    /// Refusals the reader and the gate actually make, each run here: (reason, status, sentence).
    fn produced() -> Vec<(Option<RefusalReason>, u16, String)> {
        let mut out = Vec::new();
        let now = Instant::now();
        let mut refused =
            |r: RequestRefusal| out.push((r.reason(), r.response().status, r.to_string()));
        let strict = gate(
            config(|c| {
                c.limits.max_body = 10;
                c.limits.max_id = 4;
                c.limits.rate_per_ip = Some(1);
                c.limits.auth_failures_per_ip = Some(1);
                c.limits.max_memory = Some(2000);
                c.limits.max_memory_per_ip = MemoryShare::Bytes(1100);
                c.access.deny_ip = vec!["192.0.2.66".parse().unwrap()];
            }),
            true,
        );
        let send = format!("Authorization: Bearer {STATS}\r\n");
        let cases = [
            (post("/link/a", "Content-Length: 11\r\n"), CLIENT),
            (get("/link/abcde"), CLIENT),
            (post("/link/a", "Content-Length: 1\r\nContent-Length: 1\r\n"), CLIENT),
            (post("/link/a", "Expect: nothing\r\n"), CLIENT),
            (get("/link/a"), "192.0.2.66:1"),
            (get("/link/a"), "192.0.2.2:1"),         // no token: 401
            (get("/link/a"), "192.0.2.2:1"),         // throttled: 429
            (post("/link/a", &send), "192.0.2.3:1"), // wrong scope: 403
            (get("/inbox/a").replace("\r\n\r\n", "\r\nService-Worker: script\r\n\r\n"), CLIENT),
        ];
        for (request, from) in &cases {
            refused(decide_at(&strict, request, from, now).0.unwrap_err());
        }
        let open = gate(
            config(|c| {
                c.limits.rate_per_ip = Some(1);
                c.limits.max_memory = Some(1200);
                c.limits.max_memory_per_ip = MemoryShare::Bytes(1100);
            }),
            false,
        );
        refused(decide_at(&open, &get("/metrics"), CLIENT, now).0.unwrap_err());
        let _held = decide_at(&open, &get("/link/a"), CLIENT, now).0.unwrap();
        refused(decide_at(&open, &get("/link/a"), CLIENT, now).0.unwrap_err()); // rate
        let _held2 = decide_at(&open, &get("/link/a"), "192.0.2.4:1", now).0.unwrap();
        refused(decide_at(&open, &get("/link/a"), "192.0.2.5:1", now).0.unwrap_err()); // memory
        let shared = gate(config(|c| c.limits.max_memory_per_ip = MemoryShare::Bytes(100)), false);
        refused(decide_at(&shared, &get("/link/a"), CLIENT, now).0.unwrap_err());
        // The reader's own: a head too large, too many headers, a late head and body, a chunked
        // body past --max-body, a malformed chunk.
        let limits = ReaderLimits {
            head: HeadLimits { max_head: 64, max_headers: 2 },
            head_timeout: SECOND,
            body_timeout: SECOND,
        };
        let mut read = |input: &[u8], plan: Option<BodyPlan>, at: Instant| {
            let mut reader = RequestReader::new(limits, now);
            let mut step = reader.feed(input, at);
            if let (Step::Head(_), Some(plan)) = (&step, plan) {
                step = reader.read_body(plan, ContentType::default(), input, at);
            }
            let Step::Refuse(e) = step else { panic!("not refused: {input:?}") };
            let e: ReadError = e;
            let status = e.response().map_or(0, |r| r.status);
            out.push((e.reason(), status, e.to_string()));
        };
        read(&[b'a'; 64], None, now);
        read(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n", None, now);
        read(b"GET / HT", None, now + SECOND);
        let chunked = b"POST / HTTP/1.1\r\nHost: h\r\n\r\n4\r\nabcd\r\n0\r\n\r\n";
        read(
            chunked,
            Some(BodyPlan { framing: BodyFraming::Chunked { max: 3 }, expect_continue: false }),
            now,
        );
        read(
            b"POST / HTTP/1.1\r\nHost: h\r\n\r\nq\r\n",
            Some(BodyPlan { framing: BodyFraming::Chunked { max: 3 }, expect_continue: false }),
            now,
        );
        let mut reader = RequestReader::new(limits, now);
        let head = b"POST / HTTP/1.1\r\nHost: h\r\n\r\n";
        let _ = reader.feed(head, now);
        let plan = BodyPlan { framing: BodyFraming::Length(3), expect_continue: false };
        let _ = reader.read_body(plan, ContentType::default(), head, now);
        let Step::Refuse(late) = reader.feed(b"ab", now + SECOND) else { panic!("body in time") };
        out.push((late.reason(), 408, late.to_string()));
        // And at accept.
        let accept = gate(
            config(|c| {
                c.limits.max_connections = Some(1);
                c.limits.max_connections_per_ip = Some(1);
            }),
            false,
        );
        let _slot = accept.admit_connection(peer(CLIENT), 1).unwrap();
        for refusal in [
            accept.admit_connection(peer(CLIENT), 1).unwrap_err(),
            accept.admit_connection(peer("192.0.2.9:1"), 2).unwrap_err(),
        ] {
            out.push((Some(refusal.reason()), 0, refusal.to_string()));
        }
        out
    }

    /// The `--flags` named in `text`.
    fn flags_in(text: &str) -> BTreeSet<String> {
        text.match_indices("--")
            .map(|(at, _)| {
                let name: String = text[at + 2..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                format!("--{name}")
            })
            .filter(|flag| flag.len() > 2)
            .collect()
    }

    #[test]
    fn every_counted_reason_and_readme_limit_is_produced() {
        let produced = produced();
        let made: BTreeSet<&str> =
            produced.iter().filter_map(|(reason, ..)| reason.map(RefusalReason::name)).collect();
        let elsewhere: BTreeSet<&str> = ELSEWHERE.iter().map(|(r, _)| r.name()).collect();
        // /health's "refused" keys: each made here, or by the layer named in ELSEWHERE, not both.
        for reason in RefusalReason::ALL {
            let (here, there) = (made.contains(reason.name()), elsewhere.contains(reason.name()));
            assert!(here != there, "{}: made here {here}, listed elsewhere {there}", reason.name());
        }
        // Each refusal answers the status its reason's documentation gives.
        for (reason, status, sentence) in &produced {
            let allowed: &[u16] = match reason {
                Some(RefusalReason::Malformed) => &[400, 417, 431, 501, 505],
                Some(RefusalReason::TooLarge) => &[413],
                Some(RefusalReason::Slow) => &[408],
                Some(RefusalReason::Unauthorized) => &[401],
                Some(
                    RefusalReason::Forbidden
                    | RefusalReason::IpDenied
                    | RefusalReason::ServiceWorker,
                ) => &[403],
                Some(
                    RefusalReason::RatePerIp
                    | RefusalReason::MemoryPerIp
                    | RefusalReason::AuthThrottled,
                ) => &[429],
                Some(RefusalReason::Memory) => &[503],
                Some(RefusalReason::Connections | RefusalReason::ConnectionsPerIp) => &[0],
                _ => &[400, 403, 404, 405],
            };
            assert!(allowed.contains(status), "{reason:?} answered {status}: {sentence}");
        }
        // README "Limits": every flag in its table is named by a refusal made here, or its
        // limit is one of ELSEWHERE's.
        let readme = include_str!("../../README.md");
        let start = readme.find("\n## Limits\n").expect("README has a Limits section") + 1;
        let table: Vec<&str> = readme[start..]
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .filter(|line| line.starts_with("| ") && !line.starts_with("| What"))
            .collect();
        assert!(table.len() >= 15, "the Limits table: {table:?}");
        let named: BTreeSet<String> =
            produced.iter().flat_map(|(_, _, sentence)| flags_in(sentence)).collect();
        let named_elsewhere: BTreeSet<String> =
            ELSEWHERE.iter().flat_map(|(_, owner)| flags_in(owner)).collect();
        for row in table {
            let flags = flags_in(row);
            if flags.is_empty() {
                assert!(row.contains("inbox id"), "a Limits row without a flag: {row}");
            }
            for flag in flags {
                assert!(
                    named.contains(&flag) || named_elsewhere.contains(&flag),
                    "README Limits names {flag}, which no refusal here names: {row}"
                );
            }
        }
    }
}
