//! The reader's poller and the worker pool (protocol §4; README "Design").
//!
//! One poller thread accepts connections and watches, with epoll, every connection whose request
//! is not complete yet; when one has bytes, it goes to a worker, which reads what is there and
//! either finishes the request or gives it back. The poller also enforces each reading's deadline
//! on a timer wheel. It never gives up its listener: an `accept()` error (too many open files)
//! pauses accepting for a growing interval and is logged; the kernel's backlog holds new clients
//! meanwhile. A worker writes its own answers at once and leaves the rest, and the close, to an
//! outbox thread (`outbox.rs`; one per worker). [`Poller::stop`] (`SIGTERM`) answers the requests still being read 503 and
//! closes the listener.

use std::io;
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use log::{debug, error, warn};

use super::conn::Connection;
use super::parse::HeadLimits;
use super::reader::ReaderLimits;
use super::shared::Shared;
use super::worker::{self, Reading};
use crate::config::Config;
use crate::registry::ConnMap;
use crate::sys::{self, Interest};
use crate::threads::{drain_wakeups, spawn, Waker};
use crate::wheel::{TimerId, TimerWheel, TICK};

/// Largest single read from a socket.
const READ_CHUNK: usize = 16 * 1024;
/// Poller tokens that are not connections (connection ids start above them).
const LISTENER_TOKEN: u64 = 0;
const WAKE_TOKEN: u64 = 1;
/// Connections the kernel may hold for us before we accept them (capped by `somaxconn`).
const BACKLOG: i32 = 4096;
/// Pause after a failed `accept()`, doubled on each failure in a row up to the maximum.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What the poller gives a worker.
enum Job {
    /// A reading with new bytes to read, seen at that time.
    Read(Reading, Instant),
    /// A reading whose deadline passed: answer 408.
    Expire(Reading),
    /// A reading cut short by a drain: answer 503 with `Retry-After`.
    Shutdown(Reading),
}

/// The running poller thread, to stop it.
pub struct Poller {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: thread::JoinHandle<()>,
}

impl Poller {
    /// Stops accepting: the poller answers the requests still being read 503 with
    /// `Retry-After`, closes its listener, and its thread ends. Requests already with a worker
    /// go on to the registry, which answers them 503 once it drains.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.waker.wake();
        let _ = self.thread.join();
    }
}

/// Starts the worker pool and the poller thread, which accepts on `listener` until
/// [`Poller::stop`]. A poller failure is logged and ends accepting.
pub fn start(listener: TcpListener, shared: Shared, workers: usize) -> io::Result<Poller> {
    let stop = Arc::new(AtomicBool::new(false));
    let (waker, wake_rx) = Waker::pair()?;
    let shared = Arc::new(shared);
    // The workers and the epoll set exist before this returns (and the relay says it listens).
    let (jobs, returned) = spawn_workers(&shared, workers, &waker)?;
    listener.set_nonblocking(true)?;
    sys::set_backlog(&listener, BACKLOG)?;
    let epoll = sys::Epoll::new(256)?;
    epoll.add(&listener, Interest::Always, LISTENER_TOKEN)?;
    epoll.add(&wake_rx, Interest::Always, WAKE_TOKEN)?;
    let accepting = Accepting {
        shared,
        listener,
        wake_rx,
        returned,
        jobs,
        pending: ConnMap::default(),
        deadlines: TimerWheel::new(Instant::now(), TICK, 256),
        next_id: WAKE_TOKEN,
        paused_until: None,
        backoff: BACKOFF_MIN,
    };
    let (flag, poller_waker) = (Arc::clone(&stop), Arc::clone(&waker));
    let thread = spawn("poller".into(), move || {
        if let Err(e) = accepting.run(epoll, &poller_waker, &flag) {
            error!("the poller failed, no longer accepting: {e}");
        }
    })?;
    Ok(Poller { stop, waker, thread })
}

/// Starts `workers` worker threads: the queue of jobs for them, and where they give back the
/// readings that are not complete yet.
fn spawn_workers(
    shared: &Arc<Shared>,
    workers: usize,
    waker: &Arc<Waker>,
) -> io::Result<(Sender<Job>, Receiver<Reading>)> {
    let (jobs_tx, jobs) = crossbeam_channel::bounded::<Job>(workers * 64);
    let (returned_tx, returned) = unbounded::<Reading>();
    for n in 0..workers {
        let (shared, jobs, returned_tx, waker) =
            (Arc::clone(shared), jobs.clone(), returned_tx.clone(), Arc::clone(waker));
        spawn(format!("worker-{n}"), move || {
            let mut scratch = vec![0u8; READ_CHUNK];
            for job in jobs {
                let unfinished = match job {
                    Job::Read(reading, now) => {
                        worker::on_readable(reading, &shared, &mut scratch, now)
                    }
                    Job::Expire(reading) => {
                        worker::expire(reading, &shared);
                        None
                    }
                    Job::Shutdown(reading) => {
                        worker::shut_down(reading, &shared);
                        None
                    }
                };
                if let Some(reading) = unfinished {
                    if returned_tx.send(reading).is_ok() {
                        waker.wake();
                    }
                }
            }
        })?;
    }
    Ok((jobs_tx, returned))
}

/// The poller's state: its listener, and the requests being read, by connection id.
struct Accepting {
    shared: Arc<Shared>,
    listener: TcpListener,
    wake_rx: UnixStream,
    returned: Receiver<Reading>,
    jobs: Sender<Job>,
    pending: ConnMap<(Reading, TimerId)>,
    deadlines: TimerWheel<u64>,
    next_id: u64,
    /// While accepting is paused after an error, when to resume.
    paused_until: Option<Instant>,
    backoff: Duration,
}

impl Accepting {
    /// Runs the poller on this thread until `stop` is set.
    fn run(mut self, mut epoll: sys::Epoll, waker: &Waker, stop: &AtomicBool) -> io::Result<()> {
        let mut ready = Vec::new();
        loop {
            waker.sleeping();
            if self.returned.is_empty() && !stop.load(Ordering::SeqCst) {
                let busy = !self.pending.is_empty() || self.paused_until.is_some();
                epoll.wait(&mut ready, busy.then_some(TICK))?;
            }
            waker.awake();
            self.take_back(&epoll);
            if stop.load(Ordering::SeqCst) {
                // Requests still being read hear 503 + Retry-After rather than a silent close;
                // dropping `self` then closes the listener.
                for (_, (reading, _)) in self.pending.drain() {
                    let _ = self.jobs.send(Job::Shutdown(reading));
                }
                return Ok(());
            }
            let now = Instant::now();
            for token in ready.drain(..) {
                match token {
                    LISTENER_TOKEN => self.accept(&epoll, now),
                    WAKE_TOKEN => drain_wakeups(&self.wake_rx),
                    id => self.dispatch(id, now),
                }
            }
            self.expire(&epoll, now);
            crate::limits::shrink_sparse(&mut self.pending);
        }
    }

    /// Accepts every waiting connection, closing at once those beyond `--max-connections`.
    fn accept(&mut self, poller: &sys::Epoll, now: Instant) {
        loop {
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
                    let _ = poller.remove(&self.listener);
                    self.paused_until = Some(now + self.backoff);
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                    return;
                }
            };
            self.backoff = BACKOFF_MIN;
            let gauges = &self.shared.gauges;
            let open = gauges.connection_opened();
            self.next_id += 1;
            let mut connection = Connection::new(stream, self.next_id, Arc::clone(gauges));
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
            self.watch(poller, Reading::new(connection, peer, limits, now, charge));
        }
    }

    /// Waits for more bytes on `reading`, until its deadline.
    fn watch(&mut self, poller: &sys::Epoll, mut reading: Reading) {
        let id = reading.connection.id();
        let armed = if reading.registered {
            poller.rearm(&reading.connection, id)
        } else {
            poller.add(&reading.connection, Interest::Once, id)
        };
        if let Err(e) = armed {
            debug!("cannot watch a connection: {e}");
            return;
        }
        reading.registered = true;
        let timer = self.deadlines.insert(reading.deadline(), id);
        self.pending.insert(id, (reading, timer));
    }

    /// Takes back the readings workers returned incomplete.
    fn take_back(&mut self, poller: &sys::Epoll) {
        while let Ok(reading) = self.returned.try_recv() {
            self.watch(poller, reading);
        }
    }

    /// Hands a connection that has bytes, seen at `now`, to a worker.
    fn dispatch(&mut self, id: u64, now: Instant) {
        if let Some((reading, timer)) = self.pending.remove(&id) {
            self.deadlines.cancel(timer);
            let _ = self.jobs.send(Job::Read(reading, now));
        }
    }

    /// Sends readings past their deadline to be answered 408, and resumes accepting when due.
    fn expire(&mut self, poller: &sys::Epoll, now: Instant) {
        let mut expired = Vec::new();
        self.deadlines.advance(now, &mut expired);
        for id in expired {
            if let Some((reading, _)) = self.pending.remove(&id) {
                let _ = self.jobs.send(Job::Expire(reading));
            }
        }
        if self.paused_until.is_some_and(|until| now >= until) {
            self.paused_until = None;
            if let Err(e) = poller.add(&self.listener, Interest::Always, LISTENER_TOKEN) {
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
