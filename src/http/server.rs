//! The HTTP front: the worker pool, each worker polling its own connections (protocol §4;
//! README "Design").
//!
//! Every worker thread accepts connections on the shared listener (the kernel wakes one waiting
//! worker per arrival: `EPOLLEXCLUSIVE`), reads each new connection at once, and watches, in
//! its own epoll set, each of its connections whose request is not complete yet; when one has
//! bytes, the worker reads what is there and either finishes the request or waits for more.
//! Most requests arrive with their connection, so most connections never enter the set. A
//! request is read on the thread that accepted it, so it crosses no thread before the registry:
//! a poller thread handing connections to a pool cost a wake-up per request (BENCHMARKS.md,
//! "What changed the numbers"). Each worker keeps its readings' deadlines on a timer wheel of
//! its own. It never gives up the listener: an `accept()` error (too many open files) pauses
//! that worker's accepting for a growing interval and is logged; the kernel's backlog holds new
//! clients meanwhile. A worker writes its own answers at once and leaves the rest, and the
//! close, to an outbox thread (`outbox.rs`; one per worker). [`Front::stop`] (`SIGTERM`) has
//! every worker answer the requests it is still reading 503; the listener closes with the last.

use std::io;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, error, warn};

use super::conn::Connection;
use super::parse::HeadLimits;
use super::reader::ReaderLimits;
use super::shared::Shared;
use super::worker::{self, Reading};
use crate::config::Config;
use crate::registry::ConnMap;
use crate::sys::{self, Interest};
use crate::threads::{spawn, Waker};
use crate::wheel::{TimerId, TimerWheel, TICK};

/// Largest single read from a socket.
const READ_CHUNK: usize = 16 * 1024;
/// Epoll tokens that are not connections (connection ids start above them).
const LISTENER_TOKEN: u64 = 0;
const WAKE_TOKEN: u64 = 1;
/// Connections the kernel may hold for us before we accept them (capped by `somaxconn`).
const BACKLOG: i32 = 4096;
/// Most connections a worker accepts per wake-up: the rest wait in the backlog (the listener
/// stays ready) while it reads what its connections sent, and another worker that waits is
/// woken by the next arrival, so one worker does not take a whole burst.
const ACCEPT_BATCH: usize = 16;
/// Pause after a failed `accept()`, doubled on each failure in a row up to the maximum.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The running workers, to stop them.
pub struct Front {
    stop: Arc<AtomicBool>,
    workers: Vec<(Arc<Waker>, thread::JoinHandle<()>)>,
}

impl Front {
    /// Stops accepting: each worker answers the requests it is still reading 503 with
    /// `Retry-After` and ends; the listener closes with the last. Requests already with the
    /// registry go on there, which answers them 503 once it drains.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for (waker, _) in &self.workers {
            waker.wake();
        }
        for (_, thread) in self.workers {
            let _ = thread.join();
        }
    }
}

/// Starts `workers` worker threads, each accepting on `listener` (one is woken per new
/// connection) and reading its own connections, until [`Front::stop`]. A worker's failure is
/// logged and ends its accepting.
pub fn start(listener: TcpListener, shared: Shared, workers: usize) -> io::Result<Front> {
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(shared);
    listener.set_nonblocking(true)?;
    sys::set_backlog(&listener, BACKLOG)?;
    let listener = Arc::new(listener);
    let next_id = Arc::new(AtomicU64::new(WAKE_TOKEN));
    let mut running = Vec::new();
    for n in 0..workers.max(1) {
        let waker = Waker::new()?;
        // The epoll sets exist before this returns (and the relay says it listens).
        let epoll = sys::Epoll::new(256)?;
        epoll.add(&*listener, Interest::Shared, LISTENER_TOKEN)?;
        epoll.add(&*waker, Interest::Always, WAKE_TOKEN)?;
        let worker = Worker {
            shared: Arc::clone(&shared),
            listener: Arc::clone(&listener),
            next_id: Arc::clone(&next_id),
            pending: ConnMap::default(),
            deadlines: TimerWheel::new(Instant::now(), TICK, 256),
            paused_until: None,
            backoff: BACKOFF_MIN,
            scratch: vec![0u8; READ_CHUNK],
        };
        let (flag, thread_waker) = (Arc::clone(&stop), Arc::clone(&waker));
        let thread = spawn(format!("worker-{n}"), move || {
            if let Err(e) = worker.run(epoll, &thread_waker, &flag) {
                error!("a worker failed, no longer accepting: {e}");
            }
        })?;
        running.push((waker, thread));
    }
    Ok(Front { stop, workers: running })
}

/// A worker's state: the shared listener, and the requests it is reading, by connection id.
struct Worker {
    shared: Arc<Shared>,
    listener: Arc<TcpListener>,
    /// The last connection id given, shared by the workers.
    next_id: Arc<AtomicU64>,
    pending: ConnMap<(Reading, TimerId)>,
    deadlines: TimerWheel<u64>,
    /// While accepting is paused after an error, when to resume.
    paused_until: Option<Instant>,
    backoff: Duration,
    scratch: Vec<u8>,
}

impl Worker {
    /// Runs the worker on this thread until `stop` is set.
    fn run(mut self, mut epoll: sys::Epoll, waker: &Waker, stop: &AtomicBool) -> io::Result<()> {
        let mut ready = Vec::new();
        loop {
            waker.sleeping();
            if !stop.load(Ordering::SeqCst) {
                let busy = !self.pending.is_empty() || self.paused_until.is_some();
                epoll.wait(&mut ready, busy.then_some(TICK))?;
            }
            waker.awake();
            if stop.load(Ordering::SeqCst) {
                // Requests still being read hear 503 + Retry-After rather than a silent close.
                for (_, (reading, _)) in self.pending.drain() {
                    worker::shut_down(reading, &self.shared);
                }
                return Ok(());
            }
            let now = Instant::now();
            for token in ready.drain(..) {
                match token {
                    LISTENER_TOKEN => self.accept(&epoll, now),
                    WAKE_TOKEN => waker.clear(),
                    id => self.read(&epoll, id, now),
                }
            }
            self.expire(&epoll, now);
            crate::limits::shrink_sparse(&mut self.pending);
        }
    }

    /// Accepts the connections that wait (as many as the listener says, at least one and at
    /// most [`ACCEPT_BATCH`]), closing at once those beyond `--max-connections`. The listener
    /// says how many, because an `accept` that finds none costs the kernel about what one that
    /// finds a connection does (BENCHMARKS.md, "What changed the numbers"); at least one, so a
    /// system that says 0 wrongly still has its connections accepted, one per wake-up.
    fn accept(&mut self, epoll: &sys::Epoll, now: Instant) {
        let waiting = sys::waiting_connections(&self.listener).unwrap_or(ACCEPT_BATCH);
        for _ in 0..waiting.clamp(1, ACCEPT_BATCH) {
            let (stream, peer) = match sys::accept(&self.listener) {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // A connection that failed before it was accepted, or (not on a TCP listener)
                // one whose address is not IP: skip it, keep accepting.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::InvalidData
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    warn!(
                        "accept failed: {e}; pausing accepts for {} ms",
                        self.backoff.as_millis()
                    );
                    let _ = epoll.remove(&*self.listener);
                    self.paused_until = Some(now + self.backoff);
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                    return;
                }
            };
            self.backoff = BACKOFF_MIN;
            let gauges = &self.shared.gauges;
            let open = gauges.connection_opened();
            let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
            let mut connection = Connection::new(stream, id, Arc::clone(gauges));
            // Dropping a refused connection closes it and uncounts it.
            match self.shared.gate.admit_connection(peer, open) {
                Ok(slot) => connection.peer_slot = slot,
                Err(refusal) => {
                    gauges.refused(refusal.reason());
                    debug!("refused a connection from {peer}: {refusal}");
                    continue;
                }
            }
            let limits = reader_limits(&self.shared.config);
            let charge = self.shared.gate.head_charge(peer);
            // Read at once: a client's request usually arrives with, or right behind, its
            // connection, and one read now saves watching the connection in the epoll set
            // (and the removal from it at its close).
            self.serve(epoll, Reading::new(connection, peer, limits, now, charge), now);
        }
    }

    /// Reads what a connection has, seen at `now`; an incomplete request waits for more.
    fn serve(&mut self, epoll: &sys::Epoll, reading: Reading, now: Instant) {
        if let Some(reading) = worker::on_readable(reading, &self.shared, &mut self.scratch, now) {
            self.watch(epoll, reading);
        }
    }

    /// Waits for more bytes on `reading`, until its deadline.
    fn watch(&mut self, epoll: &sys::Epoll, mut reading: Reading) {
        let id = reading.connection.id();
        let armed = if reading.registered {
            epoll.rearm(&reading.connection, id)
        } else {
            epoll.add(&reading.connection, Interest::Once, id)
        };
        if let Err(e) = armed {
            debug!("cannot watch a connection: {e}");
            return;
        }
        reading.registered = true;
        let timer = self.deadlines.insert(reading.deadline(), id);
        self.pending.insert(id, (reading, timer));
    }

    /// Reads what arrived on a watched connection, seen at `now`.
    fn read(&mut self, epoll: &sys::Epoll, id: u64, now: Instant) {
        if let Some((reading, timer)) = self.pending.remove(&id) {
            self.deadlines.cancel(timer);
            self.serve(epoll, reading, now);
        }
    }

    /// Answers readings past their deadline 408, and resumes accepting when due.
    fn expire(&mut self, epoll: &sys::Epoll, now: Instant) {
        let mut expired = Vec::new();
        self.deadlines.advance(now, &mut expired);
        for id in expired {
            if let Some((reading, _)) = self.pending.remove(&id) {
                worker::expire(reading, &self.shared);
            }
        }
        if self.paused_until.is_some_and(|until| now >= until) {
            self.paused_until = None;
            if let Err(e) = epoll.add(&*self.listener, Interest::Shared, LISTENER_TOKEN) {
                warn!("cannot resume accepting: {e}");
                self.paused_until = Some(now + self.backoff);
            }
        }
    }
}

/// The reader's bounds in `config`.
fn reader_limits(config: &Config) -> ReaderLimits {
    let limits = &config.limits;
    ReaderLimits {
        head: HeadLimits { max_head: limits.max_head, max_headers: limits.max_headers },
        head_timeout: config.timeouts.head,
        body_timeout: config.timeouts.body,
    }
}
