//! Reading one request, resumably, on a worker thread (protocol §4).
//!
//! A [`Reading`] is a request in progress: its connection, the bytes so far, and its phase (head,
//! then body). A worker feeds it whatever the socket has, without waiting; if the request is
//! still incomplete, the reading goes back to the reader's poller until more bytes arrive or its
//! deadline (`--head-timeout`, then `--body-timeout`) passes. So an idle or trickling client
//! costs memory for its bytes, never a thread. A complete request is answered by the worker
//! (`/`, `/health`, preflights, refusals) or handed to the registry with its connection.
//!
//! Access control (protocol §6) happens once, in [`start`], when the head is complete: the client
//! address (behind trusted proxies) against `--allow-ip`/`--deny-ip` first, then, after routing,
//! the bearer token against the route's scope. A request that parks is never checked again.
//!
//! Every answer, whether the request was read in full or not (a 413, a bad head, a timeout),
//! goes to the [`Outbox`](super::outbox::Outbox), which writes it without blocking and then
//! drains what the client still sends before closing, so that no reset cuts the answer.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::chunked::{ChunkError, ChunkedDecoder};
use super::conn::{Connection, Exchange};
use super::parked::Inbound;
use super::parse::{parse_head, validate, Framing, Head, HeadError, HeadLimits, Status, Version};
use super::server::Front;
use crate::auth::{Denied, Scope};
use crate::cors;
use crate::identity;
use crate::limits::{retry_after, ClientKey, Refused, Shortage, WAITER_COST};
use crate::logging::id_tag;
use crate::registry::Request;
use crate::response::Response;
use crate::routes::{route, split_target, usage, Route, RouteError};
use crate::wheel::deadline_after;

/// A request being read. See the module docs.
pub struct Reading {
    pub(super) connection: Connection,
    exchange: Exchange,
    /// Input not yet consumed: the head so far, then body bytes (or chunked framing).
    input: Vec<u8>,
    /// How much of `input` the head parser has seen: a head can only complete or fail at a line
    /// feed, so bytes without one are not parsed again (a byte-at-a-time client costs O(n)).
    head_seen: usize,
    phase: Phase,
    deadline: Instant,
}

enum Phase {
    Head,
    Body {
        request: Request,
        framing: BodyFraming,
    },
    /// Transient, while a finished request is moved out.
    Done,
}

enum BodyFraming {
    Length(usize),
    Chunked(ChunkedDecoder),
}

impl Reading {
    /// A new connection, whose head must be in by `--head-timeout` from now.
    pub fn new(connection: Connection, head_timeout: Duration) -> Reading {
        let now = Instant::now();
        let exchange = Exchange::new(ClientKey::of(connection.peer().ip()), now);
        Reading {
            connection,
            exchange,
            input: Vec::new(),
            head_seen: 0,
            phase: Phase::Head,
            deadline: deadline_after(now, head_timeout),
        }
    }

    /// When the current phase must be complete.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Consumes buffered input; `Some` once the request is complete or refused.
    fn progress(&mut self, front: &Front) -> Result<Option<Outcome>, Refusal> {
        loop {
            match &mut self.phase {
                Phase::Head => {
                    let limits = &front.config.limits;
                    let new_line = self.input[self.head_seen..].contains(&b'\n');
                    if !new_line && self.input.len() < limits.max_head {
                        return Ok(None);
                    }
                    self.head_seen = self.input.len();
                    let head_limits =
                        HeadLimits { max_head: limits.max_head, max_headers: limits.max_headers };
                    let Status::Complete(head) = parse_head(&self.input, &head_limits)? else {
                        return Ok(None);
                    };
                    let head_len = head.len;
                    match start(&head, &mut self.exchange, &self.connection, front)? {
                        Started::Local(response) => return Ok(Some(Outcome::Local(response))),
                        Started::Relay { request, framing, expect_continue } => {
                            self.input.drain(..head_len);
                            let complete =
                                matches!(framing, BodyFraming::Length(n) if self.input.len() >= n);
                            if expect_continue && !complete {
                                // 25 bytes always fit the empty send buffer of a connection
                                // that has had no answer yet; anything else means it failed.
                                const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
                                let sent = self.connection.write_now(CONTINUE);
                                if !sent.is_ok_and(|n| n == CONTINUE.len()) {
                                    return Err(Refusal::Gone);
                                }
                            }
                            self.deadline =
                                deadline_after(Instant::now(), front.config.timeouts.body);
                            self.phase = Phase::Body { request, framing };
                        }
                    }
                }
                Phase::Body { request, framing } => {
                    let done = match framing {
                        BodyFraming::Length(length) => {
                            let take = (*length - request.body.len()).min(self.input.len());
                            request.body.extend(self.input.drain(..take));
                            request.body.len() == *length
                        }
                        BodyFraming::Chunked(decoder) => {
                            let used = decoder.decode(&self.input, &mut request.body)?;
                            self.input.drain(..used);
                            decoder.is_done()
                        }
                    };
                    if !done {
                        return Ok(None);
                    }
                    let Phase::Body { mut request, .. } =
                        std::mem::replace(&mut self.phase, Phase::Done)
                    else {
                        return Err(Refusal::Gone); // unreachable: matched Body just above
                    };
                    request.reservation.shrink_to(WAITER_COST + request.body.len());
                    return Ok(Some(Outcome::Relay(request)));
                }
                Phase::Done => return Err(Refusal::Gone),
            }
        }
    }

    /// How many more bytes the current phase may read: the head up to `--max-head`, a body up
    /// to its length. (A chunked body is bounded by its decoder, which consumes all it is given.)
    fn read_room(&self, front: &Front, scratch: usize) -> usize {
        match &self.phase {
            Phase::Head => front.config.limits.max_head.saturating_sub(self.input.len()),
            Phase::Body { request, framing: BodyFraming::Length(n) } => {
                n.saturating_sub(request.body.len() + self.input.len())
            }
            Phase::Body { .. } | Phase::Done => scratch,
        }
        .min(scratch)
    }
}

/// Serves what has arrived on a reading. `Some` gives it back, incomplete, to wait for more.
pub fn serve(mut reading: Reading, front: &Front, scratch: &mut [u8]) -> Option<Reading> {
    let outcome = loop {
        match reading.progress(front) {
            Ok(Some(outcome)) => break Ok(outcome),
            Ok(None) => {}
            Err(refusal) => break Err(refusal),
        }
        let room = reading.read_room(front, scratch.len());
        match reading.connection.read_now(&mut scratch[..room]) {
            Ok(0) if room > 0 => return Some(reading),
            Ok(n) => reading.input.extend_from_slice(&scratch[..n]),
            Err(_) => break Err(Refusal::Gone),
        }
    };
    let Reading { connection, exchange, .. } = reading;
    match outcome {
        Ok(Outcome::Relay(request)) => {
            let _ = front.registry.send(Inbound::Request { connection, exchange, request });
            None
        }
        Ok(Outcome::Local(response)) => {
            front.outbox.send(connection, exchange, response, false);
            None
        }
        Err(refusal) => {
            answer(connection, exchange, &refusal, front);
            None
        }
    }
}

/// Ends a reading whose deadline passed: 408.
pub fn expire(reading: Reading, front: &Front) {
    let timeouts = &front.config.timeouts;
    let (phase, flag, limit) = match reading.phase {
        Phase::Head => ("request head", "--head-timeout", timeouts.head),
        Phase::Body { .. } => ("request body", "--body-timeout", timeouts.body),
        Phase::Done => return,
    };
    answer(reading.connection, reading.exchange, &Refusal::TimedOut { phase, flag, limit }, front)
}

/// Ends a reading because the relay is shutting down: 503 with `Retry-After: 1`.
pub fn shut_down(reading: Reading, front: &Front) {
    answer(reading.connection, reading.exchange, &Refusal::ShuttingDown, front);
}

/// Answers a refusal through the outbox; a client that left gets nothing.
fn answer(connection: Connection, exchange: Exchange, refusal: &Refusal, front: &Front) {
    if let Some(reason) = refusal.reason() {
        front.gauges.refused(reason);
    }
    if let Some(response) = refusal.response() {
        front.outbox.send(connection, exchange, response, false);
    }
}

/// What a complete request comes to.
enum Outcome {
    /// For the registry.
    Relay(Request),
    /// Answered by the worker.
    Local(Response),
}

/// What a complete head comes to.
enum Started {
    Local(Response),
    Relay { request: Request, framing: BodyFraming, expect_continue: bool },
}

/// Validates and routes a complete head; for relay requests, checks the body's size first.
fn start(
    head: &Head<'_>,
    exchange: &mut Exchange,
    conn: &Connection,
    front: &Front,
) -> Result<Started, Refusal> {
    let limits = &front.config.limits;
    exchange.set_method(head.method);
    exchange.cors_origin =
        cors::allowed_origin(&front.config.cors, head.header("origin")).map(Box::from);
    let client = identity::client(
        conn.peer(),
        &front.config.trust_proxy,
        head.headers("x-forwarded-for"),
        head.headers("x-real-ip"),
    );
    exchange.client = client.key();
    exchange.via_proxy = front.config.is_trusted_proxy(conn.peer().ip());
    if !front.config.access.allows(client) {
        return Err(Refusal::IpDenied);
    }
    let framing = validate(head)?;
    let (path, query) = split_target(head.target)?;
    let route = route(head.method, path, limits.max_id)?;
    exchange.route = route.kind();
    let authorization = head.header("authorization");
    let (id, action) = match route {
        Route::Root => return Ok(Started::Local(usage(&front.gauges.summary()))),
        Route::Health => {
            // With tokens on, a probe without credentials gets the status alone; the counts
            // need a token with the stats scope, and credentials that are sent are checked.
            let detailed = !front.tokens_required() || authorization.is_some();
            if detailed {
                front.authorize(authorization, exchange.client, Scope::Stats)?;
            }
            return Ok(Started::Local(front.gauges.health(limits, &front.memory, detailed)));
        }
        Route::Metrics => {
            // Loopback clients (after --trust-proxy) may read it; others need a stats token.
            if !client.is_loopback() {
                if !front.tokens_required() {
                    return Err(Refusal::MetricsNotLoopback);
                }
                front.authorize(authorization, exchange.client, Scope::Stats)?;
            }
            return Ok(Started::Local(front.gauges.prometheus(&front.memory)));
        }
        Route::Preflight { allow } => {
            front.check_rate(exchange.client)?;
            let requested = head.header("access-control-request-headers");
            let allowed = exchange.cors_origin.is_some();
            return Ok(Started::Local(cors::preflight(allow, allowed, requested)));
        }
        Route::Relay { id, action } => (id, action),
    };
    exchange.id_tag = Some(id_tag(&id));
    front.authorize(authorization, exchange.client, Scope::of(action))?;
    front.check_rate(exchange.client)?;
    let too_large = Refusal::BodyTooLarge { limit: limits.max_body };
    let (framing, body_bytes) = match framing {
        Framing::None => (BodyFraming::Length(0), 0),
        Framing::Length(n) => {
            let n = usize::try_from(n).ok().filter(|&n| n <= limits.max_body).ok_or(too_large)?;
            (BodyFraming::Length(n), n)
        }
        Framing::Chunked => {
            (BodyFraming::Chunked(ChunkedDecoder::new(limits.max_body)), limits.max_body)
        }
    };
    let expect_continue = match head.header("expect") {
        None => false,
        Some(value) if value.eq_ignore_ascii_case(b"100-continue") => {
            head.version == Version::Http11 && !matches!(framing, BodyFraming::Length(0))
        }
        Some(_) => return Err(Refusal::Expectation),
    };
    // Reserved before anything is allocated for the body (protocol §4); a chunked body reserves
    // --max-body and gives back the rest once its size is known.
    let reservation = front
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
        arrived_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        query: query.to_string(),
        content_type: text("content-type"),
        wsecret: text("httprelay-wsecret"),
        body: Vec::new(),
        reservation,
    };
    Ok(Started::Relay { request, framing, expect_continue })
}

/// Why a request is answered before reaching the registry, or not answered at all.
#[derive(Debug)]
pub(super) enum Refusal {
    Head(HeadError),
    Route(RouteError),
    Chunk(ChunkError),
    /// The announced body is larger than `--max-body` (413).
    BodyTooLarge {
        limit: usize,
    },
    /// An `Expect` other than `100-continue` (417).
    Expectation,
    /// A phase of the request did not arrive in time (408).
    TimedOut {
        phase: &'static str,
        flag: &'static str,
        limit: Duration,
    },
    /// `--rate-per-ip` (429).
    RateLimited {
        per_minute: u32,
        wait: Duration,
    },
    /// `--max-memory` (503).
    Memory,
    /// `--max-memory-per-ip`: the client holds its share already (429).
    MemoryPerIp {
        limit: usize,
    },
    /// The relay is draining on `SIGTERM` (503).
    ShuttingDown,
    /// A client outside `--allow-ip` or inside `--deny-ip` (403).
    IpDenied,
    /// `/metrics` from a client that is not on loopback, without `--token-file` (403).
    MetricsNotLoopback,
    /// `--token-file`: no token or an unknown one (401), or a token without the scope (403).
    Auth(Denied),
    /// `--auth-failures-per-ip` (429).
    AuthThrottled {
        per_minute: u32,
        wait: Duration,
    },
    /// The client closed the connection or it failed: nobody to answer.
    Gone,
}

impl Refusal {
    fn response(&self) -> Option<Response> {
        let status = match self {
            Refusal::Head(e) => e.status(),
            Refusal::Route(e) => e.status(),
            Refusal::Chunk(e) => e.status(),
            Refusal::BodyTooLarge { .. } => 413,
            Refusal::Expectation => 417,
            Refusal::TimedOut { .. } => 408,
            Refusal::RateLimited { .. } | Refusal::MemoryPerIp { .. } => 429,
            Refusal::Memory | Refusal::ShuttingDown => 503,
            Refusal::IpDenied | Refusal::MetricsNotLoopback => 403,
            Refusal::Auth(denied) => denied.status(),
            Refusal::AuthThrottled { .. } => 429,
            Refusal::Gone => return None,
        };
        let response = Response::text(status, self);
        Some(match self {
            Refusal::Route(RouteError::MethodNotAllowed { allow }) => {
                response.header("Allow", *allow)
            }
            Refusal::RateLimited { wait, .. } | Refusal::AuthThrottled { wait, .. } => {
                response.header("Retry-After", retry_after(*wait))
            }
            Refusal::Auth(denied) => response.header("WWW-Authenticate", denied.challenge()),
            Refusal::Memory | Refusal::MemoryPerIp { .. } | Refusal::ShuttingDown => {
                response.header("Retry-After", "1")
            }
            _ => response,
        })
    }

    /// The limit that refused, for the counters; `None` for answers that are not refusals.
    fn reason(&self) -> Option<Refused> {
        Some(match self {
            Refusal::Head(_) | Refusal::Expectation => Refused::Malformed,
            Refusal::Chunk(ChunkError::TooLarge { .. }) | Refusal::BodyTooLarge { .. } => {
                Refused::TooLarge
            }
            Refusal::Chunk(_) => Refused::Malformed,
            Refusal::TimedOut { .. } => Refused::Slow,
            Refusal::RateLimited { .. } => Refused::RatePerIp,
            Refusal::Memory => Refused::Memory,
            Refusal::MemoryPerIp { .. } => Refused::MemoryPerIp,
            Refusal::IpDenied => Refused::IpDenied,
            Refusal::Auth(Denied::Missing | Denied::Unknown) => Refused::Unauthorized,
            Refusal::Auth(Denied::Scope(_)) => Refused::Forbidden,
            Refusal::AuthThrottled { .. } => Refused::AuthThrottled,
            Refusal::Route(_)
            | Refusal::MetricsNotLoopback
            | Refusal::ShuttingDown
            | Refusal::Gone => return None,
        })
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Head(e) => e.fmt(f),
            Refusal::Route(e) => e.fmt(f),
            Refusal::Chunk(e) => e.fmt(f),
            Refusal::BodyTooLarge { limit } => {
                write!(f, "Body is larger than the {limit}-byte limit (--max-body).")
            }
            Refusal::Expectation => f.write_str("Only Expect: 100-continue is supported."),
            Refusal::TimedOut { phase, flag, limit } => {
                write!(f, "The {phase} did not arrive within {} s ({flag}).", limit.as_secs_f64())
            }
            Refusal::RateLimited { per_minute, .. } => {
                write!(f, "Too many requests: at most {per_minute} a minute per client (--rate-per-ip).")
            }
            Refusal::Memory => {
                f.write_str("The relay holds as much as its memory budget allows (--max-memory); retry shortly.")
            }
            Refusal::MemoryPerIp { limit } => write!(
                f,
                "This client holds its {limit}-byte share of the relay's memory \
                 (--max-memory-per-ip); retry once its messages are delivered."
            ),
            Refusal::IpDenied => {
                f.write_str("This address may not use the relay (--allow-ip, --deny-ip).")
            }
            Refusal::ShuttingDown => f.write_str("The relay is shutting down; retry in a moment."),
            Refusal::MetricsNotLoopback => f.write_str(
                "/metrics is answered to loopback clients only, or with a stats token (--token-file).",
            ),
            Refusal::Auth(denied) => denied.fmt(f),
            Refusal::AuthThrottled { per_minute, .. } => write!(
                f,
                "Too many failed authentications: at most {per_minute} a minute per client \
                 (--auth-failures-per-ip); retry later."
            ),
            Refusal::Gone => f.write_str("The client left."),
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

impl From<ChunkError> for Refusal {
    fn from(e: ChunkError) -> Refusal {
        Refusal::Chunk(e)
    }
}
