//! A client connection and the write side: the socket code shared by readers and writers.
//!
//! Connections are non-blocking while a request is read and while parked, so no thread ever
//! waits on a client to send; a response is written in blocking mode under a timeout. Every
//! response closes its connection.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use log::info;

use super::response::Response;
use crate::cors;
use crate::limits::{ClientKey, PeerSlot};
use crate::logging::refusal_log_allowed;
use crate::metrics::Gauges;
use crate::registry::run::Inbound;
use crate::registry::ConnId;

/// How long a response may take to write before the client is given up on.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// An accepted client connection, counted in the open-connection gauge while it lives.
pub struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    id: ConnId,
    /// Whether the socket is in non-blocking mode (while reading and while parked).
    nonblocking: bool,
    /// Whether the reader's poller watches it already.
    pub(super) registered: bool,
    /// Its place in `--max-connections-per-ip`, given back when the connection closes.
    pub(super) peer_slot: Option<PeerSlot>,
    gauges: Arc<Gauges>,
}

impl Connection {
    /// Wraps an accepted stream, non-blocking; the caller has counted it in `gauges`.
    pub fn new(stream: TcpStream, peer: SocketAddr, id: ConnId, gauges: Arc<Gauges>) -> Connection {
        let nonblocking = stream.set_nonblocking(true).is_ok();
        Connection { stream, peer, id, nonblocking, registered: false, peer_slot: None, gauges }
    }

    /// The connection's id, unique for the life of the process.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The TCP peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Reads what the socket has now, without waiting: `Ok(0)` means nothing yet, and the end
    /// of the stream is an error (`UnexpectedEof`), as is any failure.
    pub fn read_now(&mut self, into: &mut [u8]) -> io::Result<usize> {
        self.set_nonblocking()?;
        loop {
            return match self.stream.read(into) {
                Ok(0) => Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    /// Writes a few bytes (`100 Continue`) that fit the empty send buffer of a fresh connection.
    pub fn write_now(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.set_nonblocking()?;
        self.stream.write_all(bytes)
    }

    /// Whether the client still holds the connection open, asked without blocking (ureq's
    /// `is_open`, with `peek` so that bytes a client pipelined are not eaten): a read that would
    /// block means open; end of stream or an error means gone. A parked connection stays
    /// non-blocking, so probing it costs one system call.
    pub fn is_open(&mut self) -> bool {
        if self.set_nonblocking().is_err() {
            return false;
        }
        match self.stream.peek(&mut [0u8; 1]) {
            Ok(n) => n > 0,
            Err(e) => e.kind() == ErrorKind::WouldBlock,
        }
    }

    /// Ends the sending side: the client sees the end of the response.
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    fn set_nonblocking(&mut self) -> io::Result<()> {
        if !self.nonblocking {
            self.stream.set_nonblocking(true)?;
            self.nonblocking = true;
        }
        Ok(())
    }

    fn set_blocking(&mut self) -> io::Result<()> {
        if self.nonblocking {
            self.stream.set_nonblocking(false)?;
            self.nonblocking = false;
        }
        Ok(())
    }
}

impl AsRawFd for Connection {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.gauges.connection_closed();
    }
}

/// One request's bookkeeping on the HTTP side: how to answer it and what to log.
pub struct Exchange {
    pub(super) method: String,
    pub(super) route: &'static str,
    pub(super) id_tag: Option<String>,
    /// The browser origin allowed to read the response (SPEC §5), if any.
    pub(super) cors_origin: Option<String>,
    /// Who asked: the TCP peer until the head names a client behind a trusted proxy.
    pub(super) client: ClientKey,
    pub(super) started: Instant,
}

impl Exchange {
    /// Bookkeeping for a request from `client` whose first byte may arrive from `started` on.
    pub fn new(client: ClientKey, started: Instant) -> Exchange {
        Exchange {
            method: "-".into(),
            route: "-",
            id_tag: None,
            cors_origin: None,
            client,
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

/// Writes a registry reply on a writer thread; tells the registry how it went when asked to.
pub fn write_job(job: WriteJob, registry: &Sender<Inbound>) {
    let WriteJob { mut connection, exchange, response, report } = job;
    let ok = write_response(&mut connection, &exchange, &response);
    if report {
        let _ = registry.send(Inbound::Written { conn: connection.id(), ok });
    }
    close(connection);
}

/// Writes `response` in full and logs the request; `true` when every byte was written.
pub fn write_response(conn: &mut Connection, exchange: &Exchange, response: &Response) -> bool {
    // Counted before the write, so a client that has its answer sees it counted.
    conn.gauges.count_request(exchange.route, response.status);
    let response = &*conn.gauges.with_instance_header(response);
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
    log_request(exchange, response.status, written.is_ok());
    written.is_ok()
}

/// One line per request at `info`; error answers at most once per client and status a minute
/// (SPEC §4), saying how many were held back.
fn log_request(exchange: &Exchange, status: u16, written: bool) {
    let held_back = if status >= 400 {
        match refusal_log_allowed(exchange.client, status) {
            Some(held_back) => held_back,
            None => return,
        }
    } else {
        0
    };
    let tag = exchange.id_tag.as_deref().unwrap_or("-");
    let took = exchange.started.elapsed().as_secs_f64() * 1000.0;
    let failed = if written { "" } else { " (write failed)" };
    let (method, route) = (&exchange.method, exchange.route);
    if held_back > 0 {
        let client = exchange.client;
        info!("{method} {route} {tag} {status} {took:.1}ms{failed} ({held_back} more {status}s to {client} in the last minute)");
    } else {
        info!("{method} {route} {tag} {status} {took:.1}ms{failed}");
    }
}

/// Closes after a response: the end of the stream tells the client the response is complete.
/// The connection's per-peer slot is given back first, so a client that reconnects as soon as it
/// has its answer is not refused for a slot still being released.
pub fn close(mut conn: Connection) {
    conn.peer_slot = None;
    conn.shutdown_write();
}
