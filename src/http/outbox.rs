//! The outbox: threads that see every response to its end, and never wait on any one client
//! (protocol §2, §4).
//!
//! A worker (its own answers and refusals) renders its reply and writes what the socket takes
//! at once, without waiting; the registry thread (relay answers) hands its replies over
//! unwritten, since its time is every client's (when nothing else waits for it, it writes and
//! finishes its one reply itself instead, with the same machinery: [`OwnReplies`]). Either way
//! the connection goes into the epoll set of one outbox thread (chosen by connection id),
//! edge-triggered, once for its whole reply, and the reply into that thread's queue; the thread
//! writes the rest as the client reads, driven by `EPOLLOUT`, so a client that reads slowly
//! costs the bytes of its reply and a place in the epoll set, never a thread, and never delays
//! anyone else's reply. There is one outbox thread per worker: the write, shutdown and close of
//! each connection are most of a hand-off's kernel work, and one thread for all of it was the
//! relay's bottleneck. Each reply has one absolute deadline, `--write-timeout`, for the whole of
//! it; past it the connection is closed and counted (`slow_reader`).
//!
//! Every reply ends gracefully: the write side is shut (the client sees the end of the response),
//! then what the client still sends is read and dropped until its end of stream, for at most
//! [`LINGER_TIME`] and [`LINGER_BYTES`] ([`LINGER_BYTES_WORKER`] after a worker's reply, which
//! may refuse a body it did not read), [`DRAIN_TURN`] bytes at a time so that a client streaming
//! fast holds no thread. Closing with unread input would make the kernel reset the connection,
//! throw away reply bytes not yet sent, and fail the writes of a proxy still passing a refused
//! body on (one that then loses the answer).
//!
//! A `/link` delivery is reported to the registry as *taken* or not. Taken means: every byte of
//! the reply reached the receiver's TCP and acknowledged, and the receiver then closed its end
//! cleanly, with no reset (RFC 9112 §9.6: a client reads a `close` response to its end, then
//! closes). A write error, a reset, or the deadline first means not taken: the registry gives the
//! message to the next receiver. One exception: a trusted proxy (`--trust-proxy`) that resets
//! the connection after every byte was written has taken it. HAProxy closes each relay
//! connection that way once it has read the whole response; a proxy reads what it is sent at
//! once and passes it on, and from there the hand-off is the proxy's (protocol §2.1).

use std::collections::HashMap;
use std::io;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use log::{debug, info};

use super::conn::Connection;
use super::exchange::Exchange;
use super::inbound::{Inbound, ToRegistry};
use crate::cors;
use crate::logging::refusal_log_allowed;
use crate::metrics::Gauges;
use crate::refused::RefusalReason;
use crate::registry::ConnId;
use crate::response::Response;
use crate::sys::{self, Epoll, Interest};
use crate::threads::{self, drain_wakeups, Waker};
use crate::wheel::{TimerId, TimerWheel};

/// Bytes reserved for a response's head besides its body (see `Sending::new`).
const HEAD_ROOM: usize = 1024;

/// Longest time, after the last byte of a reply, that a client's input is drained before the
/// connection is closed anyway.
pub const LINGER_TIME: Duration = Duration::from_secs(1);
/// Most input drained after a relay answer before the connection is closed anyway: its request
/// was read whole, so what follows is stray.
pub const LINGER_BYTES: usize = 1 << 20;
/// Most input drained after a worker's reply, which may refuse a body before reading it: room
/// for a proxy to finish passing on a body some MiB over `--max-body` (it streams, and the 413
/// came first; cut off, it loses the 413).
pub const LINGER_BYTES_WORKER: usize = 16 << 20;
/// Most input drained from one connection at a time; the rest waits for the thread's next
/// turn, after everyone else's.
const DRAIN_TURN: usize = 256 << 10;
/// Width of the outbox's deadline tick; also how often an unacknowledged delivery is asked again.
const WRITE_TICK: Duration = Duration::from_millis(20);
/// The token of the wake-up socket in the outbox's epoll set (connection ids are above it).
const WAKER: u64 = 0;

/// Where replies go: cheap to clone, one per thread that answers.
#[derive(Clone)]
pub struct Outbox {
    /// One per outbox thread; a connection's reply goes to `shards[id % len]`.
    shards: Arc<[Shard]>,
    gauges: Arc<Gauges>,
    write_timeout: Duration,
}

/// How answering threads reach one outbox thread.
struct Shard {
    queue: Sender<Sending>,
    waker: Arc<Waker>,
    /// The thread's epoll set: an answering thread puts the connection it wrote to there.
    watch: Epoll,
}

impl Outbox {
    /// Starts `threads` outbox threads (at least one). Deliveries are reported to `registry`.
    ///
    /// More than one, because the write, shutdown and close of each connection are most of a
    /// hand-off's kernel work: on one thread they were the relay's bottleneck at high
    /// concurrency (BENCHMARKS.md, "What changed the numbers").
    pub fn start(
        threads: usize,
        write_timeout: Duration,
        registry: ToRegistry,
        gauges: Arc<Gauges>,
    ) -> io::Result<Outbox> {
        let shards = (0..threads.max(1))
            .map(|n| Shard::start(n, registry.clone(), Arc::clone(&gauges)))
            .collect::<io::Result<_>>()?;
        Ok(Outbox { shards, gauges, write_timeout })
    }

    /// Writes `response` on `connection` and closes it. Counted as a request at once, so a
    /// client that has its answer sees it counted.
    ///
    /// The calling thread renders the reply and writes what the socket takes now, without
    /// waiting (usually all of it); the outbox thread does the rest and waits for the client's
    /// close. For the workers, whose time is their own.
    pub fn write(&self, connection: Connection, exchange: Exchange, response: Response) {
        self.queue(connection, exchange, response, false, true);
    }

    /// Like [`write`](Self::write), but the outbox thread writes it all: for the registry
    /// thread, whose time is every client's. `delivery`: report to the registry whether the
    /// client took it (a `/link` hand-off).
    pub fn hand_over(
        &self,
        connection: Connection,
        exchange: Exchange,
        response: Response,
        delivery: bool,
    ) {
        self.queue(connection, exchange, response, delivery, false);
    }

    /// Renders and queues a reply; a worker's is written first, and may be drained after for
    /// longer ([`LINGER_BYTES_WORKER`]). The outbox thread learns of it from its connection's
    /// readiness in its epoll set (or at its next tick), and is woken only when it sleeps with
    /// nothing in flight.
    fn queue(
        &self,
        connection: Connection,
        exchange: Exchange,
        response: Response,
        delivery: bool,
        worker: bool,
    ) {
        let conn = connection.id();
        let shard = &self.shards[(conn % self.shards.len() as u64) as usize];
        let mut sending =
            self.prepare(connection, exchange, response, delivery, worker, &shard.watch);
        if worker {
            sending.drain_max = LINGER_BYTES_WORKER;
        }
        if shard.queue.send(sending).is_ok() {
            shard.waker.wake();
        }
    }

    /// Counts and renders a reply, writes it first if `write_now`, and puts its connection in
    /// `watch`, the epoll set of the thread that is to finish it.
    fn prepare(
        &self,
        connection: Connection,
        exchange: Exchange,
        response: Response,
        delivery: bool,
        write_now: bool,
        watch: &Epoll,
    ) -> Sending {
        self.gauges.count_request(exchange.route.as_str(), response.status);
        let response = self.gauges.with_instance_header(response);
        let now = Instant::now();
        let deadline = now + self.write_timeout;
        let mut sending = Sending::new(connection, exchange, response, delivery, deadline);
        let write_failed = match write_now.then(|| sending.write()) {
            None | Some(Ok(false)) => false,
            Some(Ok(true)) => {
                sending.written_whole(now);
                false
            }
            Some(Err(_)) => true,
        };
        // Watched before it is queued, so no readiness is missed; the outbox thread keeps what
        // it hears of a connection whose reply it has not taken yet. After a failed write, the
        // outbox thread writes once more and ends the reply as failed.
        if !write_failed {
            let conn = sending.connection.id();
            let interest = sending.interest();
            sending.watched = watch.add(&sending.connection, interest, conn).is_ok();
        }
        sending
    }
}

/// The replies one thread wrote itself and finishes in its own loop, for the registry thread:
/// a delivery it writes is taken or not once the receiver closes, and the thread that hears
/// that first answers the sender, so with nothing else to do the registry waits for it in its
/// own epoll set rather than hand it to an outbox thread (one wake-up less on each hand-off of
/// a quiet relay).
pub struct OwnReplies {
    /// The outbox's state machine (its `early` and `due` stay empty here: a reply is taken the
    /// moment it is written).
    writer: Writer,
    /// The owning thread's epoll set; every token in it but [`OwnReplies::WAKER`] is a reply's
    /// connection.
    poller: Epoll,
}

impl OwnReplies {
    /// The token the owning thread's wake-up socket has in the epoll set.
    pub const WAKER: u64 = WAKER;

    /// For a thread whose epoll set is `poller`.
    pub fn new(poller: Epoll, gauges: Arc<Gauges>) -> OwnReplies {
        OwnReplies { writer: Writer::new(gauges), poller }
    }

    /// The deliveries that ended since last asked: the connection, and whether it was taken.
    pub fn ended(&mut self) -> std::vec::Drain<'_, (ConnId, bool)> {
        self.writer.ended.drain(..)
    }

    /// Writes `response` now, like [`Outbox::write`], and keeps the connection to its close.
    pub fn write(
        &mut self,
        outbox: &Outbox,
        connection: Connection,
        exchange: Exchange,
        response: Response,
        delivery: bool,
    ) {
        let sending = outbox.prepare(connection, exchange, response, delivery, true, &self.poller);
        let now = Instant::now();
        if let Some((conn, input)) = self.writer.receive(sending) {
            self.writer.progress(&self.poller, conn, input, now);
        }
    }

    /// How many replies are in flight.
    pub fn in_flight(&self) -> usize {
        self.writer.sending.len()
    }

    /// Waits in the epoll set for at most `timeout` (`None`: until woken); moves on the replies
    /// whose connections are ready, fires deadlines and asks the deliveries waiting for their
    /// last acknowledgement again (as an outbox thread does each time it wakes). Returns whether
    /// the wake-up socket was among the ready.
    pub fn wait(&mut self, ready: &mut Vec<(u64, bool)>, timeout: Option<Duration>) -> bool {
        let timeout = match (timeout, self.writer.wait_limit()) {
            (Some(timeout), Some(limit)) => Some(timeout.min(limit)),
            (timeout, limit) => timeout.or(limit),
        };
        if self.poller.wait_input(ready, timeout).is_err() {
            // EINTR is handled by wait; anything else leaves nothing to wait on.
            std::thread::sleep(WRITE_TICK);
        }
        let now = Instant::now();
        let mut woken = false;
        for (token, input) in ready.drain(..) {
            match token {
                WAKER => woken = true,
                conn => self.writer.progress(&self.poller, conn, input, now),
            }
        }
        self.writer.tick(&self.poller, now);
        self.writer.publish();
        woken
    }
}

impl Shard {
    /// Starts outbox thread number `n`.
    fn start(n: usize, registry: ToRegistry, gauges: Arc<Gauges>) -> io::Result<Shard> {
        let (queue, incoming) = unbounded();
        let (waker, watched) = Waker::pair()?;
        let mut poller = Epoll::new(256)?;
        poller.add(&watched, Interest::Always, WAKER)?;
        let watch = poller.handle();
        let thread_waker = Arc::clone(&waker);
        threads::spawn(format!("outbox-{n}"), move || {
            let mut writer = Writer::new(gauges);
            writer.run(&mut poller, &incoming, &watched, &thread_waker, &registry);
        })?;
        Ok(Shard { queue, waker, watch })
    }
}

/// Where a reply is in its life.
#[derive(Debug, PartialEq, Eq)]
enum Stage {
    /// Bytes left to write.
    Writing,
    /// All written and the write side shut: reading to the client's end of stream.
    Draining,
    /// The client closed; waiting for its acknowledgement of the last bytes (deliveries only).
    Acknowledging,
}

/// A reply being written.
struct Sending {
    connection: Connection,
    exchange: Exchange,
    status: u16,
    bytes: Vec<u8>,
    written: usize,
    drained: usize,
    /// Most input drained after the reply ([`LINGER_BYTES`] or [`LINGER_BYTES_WORKER`]).
    drain_max: usize,
    stage: Stage,
    delivery: bool,
    /// Whether the connection is in its thread's epoll set (edge-triggered, for good).
    watched: bool,
    /// Whether the client sent something (bytes, its end of stream, a reset) not read yet.
    input: bool,
    /// When the reply is given up (`--write-timeout`), or when a client that has its answer
    /// is closed on (`LINGER_TIME`).
    deadline: Instant,
    /// Its place on its thread's wheel, once it is there.
    timer: Option<TimerId>,
}

impl Sending {
    /// Renders `response` for `exchange` (CORS headers, no body for `HEAD`).
    fn new(
        connection: Connection,
        exchange: Exchange,
        response: Response,
        delivery: bool,
        deadline: Instant,
    ) -> Sending {
        let status = response.status;
        // Room for the longest head the relay writes (a CORS `/link` delivery with its
        // metadata and the inert-document headers is ~650 bytes): written without regrowth.
        let mut bytes = Vec::with_capacity(HEAD_ROOM + response.body.len());
        let head_only = exchange.method == "HEAD";
        match &exchange.cors_origin {
            Some(origin) => cors::add_headers(response, origin).write_to(head_only, &mut bytes),
            None => response.write_to(head_only, &mut bytes),
        }
        Sending {
            connection,
            exchange,
            status,
            bytes,
            written: 0,
            drained: 0,
            drain_max: LINGER_BYTES,
            stage: Stage::Writing,
            delivery,
            watched: false,
            input: false,
            deadline,
            timer: None,
        }
    }

    /// What the outbox's epoll set is to report for it: room to write while there are bytes
    /// left, else only the client's input and close.
    fn interest(&self) -> Interest {
        if self.stage == Stage::Writing {
            Interest::Reply
        } else {
            Interest::Closing
        }
    }

    /// After the last byte: a client that has its answer is waited for only briefly (a
    /// delivery keeps `--write-timeout`, since its client's close is what counts).
    fn written_whole(&mut self, now: Instant) {
        if !self.delivery {
            self.deadline = now + LINGER_TIME;
        }
    }

    /// Writes what the socket takes now: `Ok(true)` once every byte is written, and then the
    /// write side is shut and the reply [`Stage::Draining`].
    fn write(&mut self) -> io::Result<bool> {
        while self.written < self.bytes.len() {
            match self.connection.write_now(&self.bytes[self.written..])? {
                0 => return Ok(false),
                n => self.written += n,
            }
        }
        self.connection.shutdown_write();
        self.bytes = Vec::new();
        self.stage = Stage::Draining;
        Ok(true)
    }
}

/// How a reply ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Written whole and closed gracefully (for a delivery: taken).
    Done,
    /// The client reset, failed or left before taking the whole reply.
    Failed,
    /// `--write-timeout` passed first.
    TimedOut,
}

/// The state of an outbox thread, or of the replies the registry thread finishes itself.
struct Writer {
    sending: HashMap<ConnId, Sending>,
    /// Deliveries in [`Stage::Acknowledging`], asked again every tick.
    acknowledging: Vec<ConnId>,
    /// Replies whose client sent more than [`DRAIN_TURN`] at once: drained on in the next turn
    /// (edge-triggered, their connections report nothing new for input already there).
    draining_on: Vec<ConnId>,
    /// Connections that reported readiness before their reply was taken from the queue: whether
    /// that included input, and when (one never claimed is forgotten after [`LINGER_TIME`]).
    early: HashMap<ConnId, (bool, Instant)>,
    /// Replies to move on in this turn of the loop (kept for its allocation).
    due: Vec<(ConnId, bool)>,
    deadlines: TimerWheel<ConnId>,
    /// Deliveries ended and not reported yet: the connection, and whether it was taken.
    ended: Vec<(ConnId, bool)>,
    gauges: Arc<Gauges>,
    /// The replies in flight as last published to `gauges`.
    published: usize,
    scratch: Vec<u8>,
}

impl Writer {
    fn new(gauges: Arc<Gauges>) -> Writer {
        Writer {
            sending: HashMap::new(),
            acknowledging: Vec::new(),
            draining_on: Vec::new(),
            early: HashMap::new(),
            due: Vec::new(),
            deadlines: TimerWheel::new(Instant::now(), WRITE_TICK, 1024),
            ended: Vec::new(),
            gauges,
            published: 0,
            scratch: vec![0u8; 16 * 1024],
        }
    }

    /// How long the thread may wait in its epoll set: until woken when it has no replies, not
    /// at all when input is left to drain, else a tick.
    fn wait_limit(&self) -> Option<Duration> {
        if self.sending.is_empty() {
            None
        } else if self.draining_on.is_empty() {
            Some(WRITE_TICK)
        } else {
            Some(Duration::ZERO)
        }
    }

    /// Publishes how many replies this thread has in flight, if that changed.
    fn publish(&mut self) {
        if self.sending.len() != self.published {
            self.gauges.writing_changed(self.published, self.sending.len());
            self.published = self.sending.len();
        }
    }

    fn run(
        &mut self,
        poller: &mut Epoll,
        incoming: &Receiver<Sending>,
        watched: &UnixStream,
        waker: &Waker,
        registry: &ToRegistry,
    ) {
        let mut ready = Vec::new();
        loop {
            // With replies in flight it wakes every tick anyway, and on its connections'
            // readiness, so answering threads need not wake it; with none it sleeps until woken.
            let idle = self.sending.is_empty();
            if idle {
                waker.sleeping();
            }
            if incoming.is_empty() && poller.wait_input(&mut ready, self.wait_limit()).is_err() {
                // EINTR is handled by wait; anything else leaves nothing to wait on.
                std::thread::sleep(WRITE_TICK);
            }
            waker.awake();
            let now = Instant::now();
            // The queue first: a connection can be ready before its reply is taken from it.
            // Replies are only taken here; what is due is moved on after, so a reply finished
            // now cannot be taken for one not queued yet.
            let mut due = std::mem::take(&mut self.due);
            loop {
                match incoming.try_recv() {
                    Ok(sending) => due.extend(self.receive(sending)),
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        if self.sending.is_empty() {
                            return;
                        }
                        break;
                    }
                }
            }
            for (token, input) in ready.drain(..) {
                match token {
                    WAKER => drain_wakeups(watched),
                    conn if self.sending.contains_key(&conn) => due.push((conn, input)),
                    conn => self.early.entry(conn).or_insert((false, now)).0 |= input,
                }
            }
            for (conn, input) in due.drain(..) {
                self.progress(poller, conn, input, now);
            }
            self.due = due;
            self.tick(poller, now);
            for (conn, taken) in self.ended.drain(..) {
                registry.send(Inbound::DeliveryEnded { conn, taken });
            }
            self.publish();
        }
    }

    /// Takes a reply from an answering thread; due to be moved on (with whether input was
    /// heard) if its connection reported readiness already, or if it is not watched yet.
    fn receive(&mut self, mut sending: Sending) -> Option<(ConnId, bool)> {
        let conn = sending.connection.id();
        sending.timer = Some(self.deadlines.insert(sending.deadline, conn));
        let watched = sending.watched;
        self.sending.insert(conn, sending);
        match self.early.remove(&conn) {
            Some((input, _)) => Some((conn, input)),
            None => (!watched).then_some((conn, true)),
        }
    }

    /// Moves a reply on as far as its socket allows now; `input`: the connection reported
    /// input, an end of stream or an error since it was last asked.
    fn progress(&mut self, poller: &Epoll, conn: ConnId, input: bool, now: Instant) {
        let Some(sending) = self.sending.get_mut(&conn) else { return };
        sending.input |= input;
        let mut drained_now = 0;
        let end = loop {
            match sending.stage {
                Stage::Writing => match sending.write() {
                    Ok(false) => break watch(poller, sending, conn),
                    Ok(true) => {
                        sending.written_whole(now);
                        if let Some(timer) = sending.timer.take() {
                            self.deadlines.cancel(timer);
                        }
                        sending.timer = Some(self.deadlines.insert(sending.deadline, conn));
                        // Edge-triggered: input that arrived while writing was reported then.
                        if !sending.input {
                            break watch(poller, sending, conn);
                        }
                    }
                    Err(_) => break Some(End::Failed),
                },
                Stage::Draining => match sending.connection.read_now(&mut self.scratch) {
                    Ok(0) => {
                        sending.input = false;
                        break watch(poller, sending, conn);
                    }
                    Ok(n) => {
                        sending.drained += n;
                        drained_now += n;
                        if sending.drained > sending.drain_max {
                            break Some(if sending.delivery { End::Failed } else { End::Done });
                        }
                        if drained_now >= DRAIN_TURN {
                            self.draining_on.push(conn);
                            break None;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        if !sending.delivery {
                            break Some(End::Done);
                        }
                        // Usually every byte is acknowledged by now; else it is asked again
                        // every tick (and a reset is reported by the epoll set meanwhile).
                        if let Ok(0) = sys::unacknowledged(&sending.connection) {
                            break Some(End::Done);
                        }
                        sending.stage = Stage::Acknowledging;
                        self.acknowledging.push(conn);
                        break acknowledged(sending);
                    }
                    Err(_) => break Some(reset_after_the_reply(sending)),
                },
                Stage::Acknowledging => break acknowledged(sending),
            }
        };
        if let Some(end) = end {
            self.finish(conn, end);
        }
    }

    /// Fires deadlines, drains on what was left from the last turn, and asks the deliveries
    /// waiting for their last acknowledgement again.
    fn tick(&mut self, poller: &Epoll, now: Instant) {
        if !self.early.is_empty() {
            self.early.retain(|_, (_, at)| now.duration_since(*at) < LINGER_TIME);
        }
        if self.sending.is_empty() {
            return;
        }
        let mut expired = Vec::new();
        self.deadlines.advance(now, &mut expired);
        for conn in expired {
            let Some(sending) = self.sending.get_mut(&conn) else { continue };
            let end = match (&sending.stage, sending.delivery) {
                (Stage::Draining, false) => End::Done,
                _ => End::TimedOut,
            };
            self.finish(conn, end);
        }
        let mut draining_on = std::mem::take(&mut self.draining_on);
        // One that was also reported ready this turn may be listed twice.
        draining_on.sort_unstable();
        draining_on.dedup();
        for conn in draining_on {
            self.progress(poller, conn, true, now);
        }
        let mut waiting = std::mem::take(&mut self.acknowledging);
        waiting.retain(|conn| self.sending.contains_key(conn));
        for conn in waiting.clone() {
            self.progress(poller, conn, false, now);
        }
        waiting.retain(|conn| self.sending.contains_key(conn));
        self.acknowledging.append(&mut waiting);
        crate::limits::shrink_sparse(&mut self.sending);
    }

    /// Ends a reply: reports a delivery, logs, closes.
    fn finish(&mut self, conn: ConnId, end: End) {
        let Some(mut sending) = self.sending.remove(&conn) else { return };
        if let Some(timer) = sending.timer {
            self.deadlines.cancel(timer);
        }
        if end == End::TimedOut {
            self.gauges.refused(RefusalReason::SlowReader);
            debug!("closed a connection: its reply was not taken within --write-timeout");
        }
        if sending.delivery {
            let taken = end == End::Done;
            self.ended.push((conn, taken));
        }
        // Whatever happens to the connection now, the per-peer slot is free: a client that
        // reconnects as soon as it has its answer is not refused for a slot still held.
        sending.connection.peer_slot = None;
        log_request(&sending.exchange, sending.status, end);
    }
}

/// Puts a connection in the epoll set if the answering thread could not: `None` (keep going)
/// when watched, else the reply fails, since a connection that cannot be watched cannot finish.
fn watch(poller: &Epoll, sending: &mut Sending, conn: ConnId) -> Option<End> {
    if sending.watched {
        return None;
    }
    match poller.add(&sending.connection, sending.interest(), conn) {
        Ok(()) => {
            sending.watched = true;
            None
        }
        // A client that has its whole answer is done with; anyone else failed.
        Err(_) if sending.stage == Stage::Draining && !sending.delivery => Some(End::Done),
        Err(_) => Some(End::Failed),
    }
}

/// For a delivery whose client closed: done once the client acknowledged every byte; failed on
/// a reset; `None` while bytes are still on their way.
fn acknowledged(sending: &mut Sending) -> Option<End> {
    // A reset after the client's end of stream (bytes arrived after it closed) shows here.
    let mut probe = [0u8; 1];
    match sending.connection.read_now(&mut probe) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
        Err(_) => return Some(reset_after_the_reply(sending)),
    }
    match sys::unacknowledged(&sending.connection) {
        Ok(0) => Some(End::Done),
        Ok(_) => None,
        Err(_) => Some(End::Failed),
    }
}

/// How a reply ends when its connection is reset after every byte was written: taken when the
/// peer is a trusted proxy (see the module docs), else failed.
fn reset_after_the_reply(sending: &Sending) -> End {
    if sending.exchange.via_proxy {
        End::Done
    } else {
        End::Failed
    }
}

/// One line per request at `info`; error answers at most once per client and status a minute
/// (protocol §4), saying how many were held back.
fn log_request(exchange: &Exchange, status: u16, end: End) {
    let held_back = if status >= 400 {
        match refusal_log_allowed(exchange.client, status) {
            Some(held_back) => held_back,
            None => return,
        }
    } else {
        0
    };
    let tag = exchange.tag();
    let took = exchange.started.elapsed().as_secs_f64() * 1000.0;
    let failed = match end {
        End::Done => "",
        End::Failed => " (not taken: the client failed or left)",
        End::TimedOut => " (not taken within --write-timeout)",
    };
    let (method, route) = (&exchange.method, exchange.route);
    if held_back > 0 {
        let client = exchange.client;
        info!("{method} {route} {tag} {status} {took:.1}ms{failed} ({held_back} more {status}s to {client} in the last minute)");
    } else {
        info!("{method} {route} {tag} {status} {took:.1}ms{failed}");
    }
}
