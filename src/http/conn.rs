//! Connection I/O: the only code that reads or writes a client socket (SPEC §4, §8).
//!
//! A worker reads one request under the `--head-timeout` and `--body-timeout` deadlines and the
//! size limits, answers what it can itself (`/`, `/health`, every refusal), and hands relay
//! requests to the registry. Writers send the registry's replies. Every response closes its
//! connection; an answer sent before the request was read in full (a 413, a bad head) lingers,
//! bounded, so the client reads it instead of a reset.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;
use log::{debug, info};

use super::chunked::{ChunkError, ChunkedDecoder};
use super::parse::{parse_head, validate, Framing, Head, HeadError, HeadLimits, Status, Version};
use super::response::Response;
use crate::config::Config;
use crate::cors;
use crate::logging::id_tag;
use crate::metrics::Gauges;
use crate::registry::run::Inbound;
use crate::registry::{ConnId, Request};
use crate::routes::{route, split_target, usage, Route, RouteError};

/// How long a response may take to write before the client is given up on.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long, and how much, unread input is drained after an early answer before closing.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;
/// Largest single read from a socket.
const READ_CHUNK: usize = 16 * 1024;

/// An accepted client connection, counted in the open-connection gauge while it lives.
pub struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    id: ConnId,
    /// Whether the socket is in non-blocking mode, as it stays while parked (to be probed).
    nonblocking: bool,
    gauges: Arc<Gauges>,
}

impl Connection {
    /// Wraps an accepted stream; the caller has counted it with [`Gauges::connection_opened`].
    pub fn new(stream: TcpStream, peer: SocketAddr, id: ConnId, gauges: Arc<Gauges>) -> Connection {
        Connection {
            stream,
            peer,
            id,
            nonblocking: false,
            gauges,
        }
    }

    /// The connection's id, unique for the life of the process.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Whether the client still holds the connection open, asked without blocking (ureq's
    /// `is_open`, with `peek` so that bytes a client pipelined are not eaten): a read that would
    /// block means open; end of stream or an error means gone. The socket stays non-blocking
    /// until the next write, so probing a parked connection again costs one system call.
    pub fn is_open(&mut self) -> bool {
        if !self.nonblocking {
            if self.stream.set_nonblocking(true).is_err() {
                return false;
            }
            self.nonblocking = true;
        }
        match self.stream.peek(&mut [0u8; 1]) {
            Ok(n) => n > 0,
            Err(e) => e.kind() == ErrorKind::WouldBlock,
        }
    }

    /// Puts the socket back in blocking mode, for a write under a timeout.
    fn set_blocking(&mut self) -> io::Result<()> {
        if self.nonblocking {
            self.stream.set_nonblocking(false)?;
            self.nonblocking = false;
        }
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.gauges.connection_closed();
    }
}

/// One request's bookkeeping on the HTTP side: how to answer it and what to log.
pub struct Exchange {
    method: String,
    route: &'static str,
    id_tag: Option<String>,
    /// The browser origin allowed to read the response (SPEC §5), if any.
    cors_origin: Option<String>,
    started: Instant,
}

impl Exchange {
    fn new(started: Instant) -> Exchange {
        Exchange {
            method: "-".into(),
            route: "-",
            id_tag: None,
            cors_origin: None,
            started,
        }
    }

    fn head_only(&self) -> bool {
        self.method == "HEAD"
    }
}

/// A reply on its way to a writer thread.
pub struct WriteJob {
    /// Where to write.
    pub connection: Connection,
    /// The request's bookkeeping.
    pub exchange: Exchange,
    /// What to write.
    pub response: Response,
    /// Report the outcome to the registry (`Inbound::Written`).
    pub report: bool,
}

/// What workers share.
pub struct Front {
    /// The configuration.
    pub config: Arc<Config>,
    /// Where relay requests go.
    pub registry: Sender<Inbound>,
    /// Live numbers.
    pub gauges: Arc<Gauges>,
}

/// Why a request is answered before reaching the registry, or not answered at all.
#[derive(Debug)]
enum Refusal {
    Head(HeadError),
    Route(RouteError),
    Chunk(ChunkError),
    BodyTooLarge {
        limit: usize,
    },
    Expectation,
    TimedOut {
        phase: &'static str,
        flag: &'static str,
        limit: Duration,
    },
    /// The client closed the connection or it failed: nobody to answer.
    Gone,
}

impl Refusal {
    fn response(&self) -> Option<Response> {
        let (status, text) = match self {
            Refusal::Head(e) => (e.status(), e.to_string()),
            Refusal::Route(e) => (e.status(), e.to_string()),
            Refusal::Chunk(e) => (e.status(), e.to_string()),
            Refusal::BodyTooLarge { limit } => (
                413,
                format!("Body is larger than the {limit}-byte limit (--max-body)."),
            ),
            Refusal::Expectation => (417, "Only Expect: 100-continue is supported.".into()),
            Refusal::TimedOut { phase, flag, limit } => (
                408,
                format!(
                    "The {phase} did not arrive within {} s ({flag}).",
                    limit.as_secs_f64()
                ),
            ),
            Refusal::Gone => return None,
        };
        let response = Response::text(status, text);
        Some(match self {
            Refusal::Route(RouteError::MethodNotAllowed { allow }) => {
                response.header("Allow", *allow)
            }
            _ => response,
        })
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

/// What a worker makes of a request.
enum Outcome {
    /// For the registry.
    Relay(Request),
    /// Answered by the worker.
    Local(Response),
}

/// Serves one connection on a worker thread: read, then answer or hand over.
pub fn serve(mut connection: Connection, front: &Front) {
    let mut exchange = Exchange::new(Instant::now());
    match read_request(&mut connection, &mut exchange, front) {
        Ok(Outcome::Relay(request)) => {
            let _ = front.registry.send(Inbound::Request {
                connection,
                exchange,
                request,
            });
        }
        Ok(Outcome::Local(response)) => {
            write_response(&mut connection, &exchange, &response);
            close(connection, false);
        }
        Err(refusal) => match refusal.response() {
            Some(response) => {
                write_response(&mut connection, &exchange, &response);
                close(connection, true);
            }
            None => debug!(
                "{} {}: client left before its request was complete",
                exchange.method, exchange.route
            ),
        },
    }
}

/// Writes a registry reply on a writer thread; tells the registry how it went when asked to.
pub fn write_job(job: WriteJob, registry: &Sender<Inbound>) {
    let WriteJob {
        mut connection,
        exchange,
        response,
        report,
    } = job;
    let ok = write_response(&mut connection, &exchange, &response);
    if report {
        let _ = registry.send(Inbound::Written {
            conn: connection.id(),
            ok,
        });
    }
    close(connection, false);
}

fn read_request(
    conn: &mut Connection,
    exchange: &mut Exchange,
    front: &Front,
) -> Result<Outcome, Refusal> {
    let limits = &front.config.limits;
    let timeouts = &front.config.timeouts;
    let head_limits = HeadLimits {
        max_head: limits.max_head,
        max_headers: limits.max_headers,
    };
    let head_deadline = exchange.started + timeouts.head;
    let head_timeout = Refusal::TimedOut {
        phase: "request head",
        flag: "--head-timeout",
        limit: timeouts.head,
    };
    let mut buf = Vec::with_capacity(1024);
    while let Status::Partial = parse_head(&buf, &head_limits)? {
        let cap = limits.max_head;
        if !read_some(&mut conn.stream, &mut buf, cap, head_deadline)? {
            return Err(head_timeout);
        }
    }
    let Ok(Status::Complete(head)) = parse_head(&buf, &head_limits) else {
        return Err(Refusal::Gone); // unreachable: the same bytes parsed Complete just above
    };
    exchange.method = if head.method.len() <= 16 {
        head.method.to_string()
    } else {
        "?".into()
    };
    exchange.cors_origin = cors::allowed_origin(&front.config.cors, head.header("origin"));
    let framing = validate(&head)?;
    let (path, query) = split_target(head.target)?;
    let route = route(head.method, path, limits.max_id)?;
    exchange.route = route.kind();
    let (id, action) = match route {
        Route::Root => return Ok(Outcome::Local(usage())),
        Route::Health => return Ok(Outcome::Local(front.gauges.health(limits))),
        Route::Preflight { allow } => {
            let requested = head.header("access-control-request-headers");
            let response = cors::preflight(allow, exchange.cors_origin.is_some(), requested);
            return Ok(Outcome::Local(response));
        }
        Route::Relay { id, action } => (id, action),
    };
    exchange.id_tag = Some(id_tag(&id));
    let arrived_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let body = read_body(conn, &head, framing, &buf[head.len..], front)?;
    let text = |name: &str| {
        head.header(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    Ok(Outcome::Relay(Request {
        id,
        action,
        client: conn.peer,
        arrived_ms,
        query: query.to_string(),
        content_type: text("content-type"),
        wsecret: text("httprelay-wsecret"),
        body,
    }))
}

/// Reads the body announced by `framing`; `early` holds the bytes that came with the head.
fn read_body(
    conn: &mut Connection,
    head: &Head<'_>,
    framing: Framing,
    early: &[u8],
    front: &Front,
) -> Result<Vec<u8>, Refusal> {
    let max_body = front.config.limits.max_body;
    let timeout = front.config.timeouts.body;
    let too_large = Refusal::BodyTooLarge { limit: max_body };
    let length = match framing {
        Framing::None => return Ok(Vec::new()),
        Framing::Length(n) => Some(
            usize::try_from(n)
                .ok()
                .filter(|&n| n <= max_body)
                .ok_or(too_large)?,
        ),
        Framing::Chunked => None,
    };
    if let Some(expect) = head.header("expect") {
        if !expect.eq_ignore_ascii_case(b"100-continue") {
            return Err(Refusal::Expectation);
        }
        let complete = length.is_some_and(|n| early.len() >= n);
        if head.version == Version::Http11 && !complete {
            conn.stream
                .set_write_timeout(Some(WRITE_TIMEOUT))
                .map_err(|_| Refusal::Gone)?;
            conn.stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .map_err(|_| Refusal::Gone)?;
        }
    }
    let deadline = Instant::now() + timeout;
    let body_timeout = || Refusal::TimedOut {
        phase: "request body",
        flag: "--body-timeout",
        limit: timeout,
    };
    if let Some(length) = length {
        let mut body = Vec::with_capacity(length);
        body.extend_from_slice(&early[..length.min(early.len())]);
        while body.len() < length {
            if !read_some(&mut conn.stream, &mut body, length, deadline)? {
                return Err(body_timeout());
            }
        }
        return Ok(body);
    }
    let mut decoder = ChunkedDecoder::new(max_body);
    let mut body = Vec::new();
    let mut input = early.to_vec();
    loop {
        let used = decoder.decode(&input, &mut body)?;
        input.drain(..used);
        if decoder.is_done() {
            return Ok(body);
        }
        let cap = input.len() + READ_CHUNK;
        if !read_some(&mut conn.stream, &mut input, cap, deadline)? {
            return Err(body_timeout());
        }
    }
}

/// Appends what the socket has (up to `cap` bytes in `buf`) before `deadline`. `Ok(false)` when
/// the deadline passed first; `Err(Gone)` when the client closed or the connection failed.
fn read_some(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    cap: usize,
    deadline: Instant,
) -> Result<bool, Refusal> {
    let start = buf.len();
    let want = cap.saturating_sub(start).min(READ_CHUNK);
    if want == 0 {
        return Err(Refusal::Gone); // unreachable: callers read only below their cap
    }
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Ok(false);
        }
        stream
            .set_read_timeout(Some(remaining))
            .map_err(|_| Refusal::Gone)?;
        buf.resize(start + want, 0);
        let result = stream.read(&mut buf[start..]);
        buf.truncate(start + *result.as_ref().unwrap_or(&0));
        match result {
            Ok(0) => return Err(Refusal::Gone),
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return Err(Refusal::Gone),
        }
    }
}

/// Writes `response` in full and logs the request; `true` when every byte was written.
fn write_response(conn: &mut Connection, exchange: &Exchange, response: &Response) -> bool {
    let mut out = Vec::with_capacity(512 + response.body.len());
    match &exchange.cors_origin {
        Some(origin) => {
            cors::add_headers(response.clone(), origin).write_to(exchange.head_only(), &mut out)
        }
        None => response.write_to(exchange.head_only(), &mut out),
    }
    let written = conn
        .set_blocking()
        .and_then(|()| conn.stream.set_write_timeout(Some(WRITE_TIMEOUT)))
        .and_then(|()| conn.stream.write_all(&out));
    let tag = exchange.id_tag.as_deref().unwrap_or("-");
    let took = exchange.started.elapsed().as_secs_f64() * 1000.0;
    let failed = if written.is_ok() {
        ""
    } else {
        " (write failed)"
    };
    info!(
        "{} {} {tag} {} {took:.1}ms{failed}",
        exchange.method, exchange.route, response.status
    );
    written.is_ok()
}

/// Closes after a response. With `linger` (input may be left unread), first drains it for a
/// bounded time so the close does not reset the connection before the client read the answer.
fn close(conn: Connection, linger: bool) {
    let mut stream = &conn.stream;
    if stream.shutdown(Shutdown::Write).is_err() || !linger {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut drained = 0;
    let mut scratch = [0u8; 4096];
    while drained < LINGER_BYTES {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() || stream.set_read_timeout(Some(remaining)).is_err() {
            return;
        }
        match stream.read(&mut scratch) {
            Ok(0) => return,
            Ok(n) => drained += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}
