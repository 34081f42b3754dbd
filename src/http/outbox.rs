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
//! then what the client still sends is read and dropped until its end of stream, within bounds
//! of time and bytes, a turn's share at a time so that a client streaming fast holds no thread.
//! Closing with unread input would make the kernel reset the connection, throw away reply bytes
//! not yet sent, and fail the writes of a proxy still passing a refused body on (one that then
//! loses the answer).
//!
//! What to do next with a reply, and how it ended (for a `/link` delivery: *taken* or not,
//! protocol §2.1), is decided by its [`ReplyWriter`] (`writer.rs`), which holds those rules and
//! bounds and makes no system call; the loops here perform its steps on the sockets, keep the
//! deadlines and turns, report each delivery's end to the registry, and log.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use log::{debug, info};

use super::conn::Connection;
use super::exchange::Exchange;
use super::inbound::{Inbound, ToRegistry};
use super::writer::{Kind, Loss, Outcome, Readiness, ReplyWriter, Step, LINGER_TIME};
use crate::cors;
use crate::logging::refusal_log_allowed;
use crate::metrics::Gauges;
use crate::refused::RefusalReason;
use crate::registry::{ConnId, ConnMap};
use crate::response::Response;
use crate::sys::{self, Epoll, Interest};
use crate::threads::{self, mailbox, Mailbox, Post, TakeError, Waker};
use crate::wheel::{TimerId, TimerWheel};

/// Bytes reserved for a response's head besides its body (see `Sending::new`).
const HEAD_ROOM: usize = 1024;

/// Most reply buffers kept for reuse, and the largest kept ([`ReplyBuffers`]): at most 512 KiB.
const SPARE_BUFFERS: usize = 64;
const SPARE_BUFFER_MAX: usize = 8 * 1024;

/// Width of the outbox's deadline tick; also how often an unacknowledged delivery is asked again.
const WRITE_TICK: Duration = Duration::from_millis(20);
/// The token of the thread's waker in the outbox's epoll set (connection ids are above it).
const WAKEUP_TOKEN: u64 = 0;

/// Where replies go: cheap to clone, one per thread that answers.
#[derive(Clone)]
pub struct Outbox {
    /// One per outbox thread; a connection's reply goes to `shards[id % len]`.
    shards: Arc<[Shard]>,
    buffers: Arc<ReplyBuffers>,
    gauges: Arc<Gauges>,
    write_timeout: Duration,
}

/// How answering threads reach one outbox thread.
struct Shard {
    queue: Post<Sending>,
    waker: Arc<Waker>,
    /// The thread's epoll set: an answering thread puts the connection it wrote to there.
    epoll: Epoll,
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
        let buffers = Arc::new(ReplyBuffers::default());
        let shards = (0..threads.max(1))
            .map(|n| Shard::start(n, registry.clone(), Arc::clone(&buffers), Arc::clone(&gauges)))
            .collect::<io::Result<_>>()?;
        Ok(Outbox { shards, buffers, gauges, write_timeout })
    }

    /// Writes `response` on `connection` and closes it. Counted as a request at once, so a
    /// client that has its answer sees it counted.
    ///
    /// The calling thread renders the reply and writes what the socket takes now, without
    /// waiting (usually all of it); the outbox thread does the rest and waits for the client's
    /// close. For the workers, whose time is their own.
    pub fn write(&self, connection: Connection, exchange: Exchange, response: Response) {
        self.queue(connection, exchange, response, Kind::FromWorker);
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
        self.queue(connection, exchange, response, registry_kind(delivery));
    }

    /// Renders and queues a reply; a worker's is written first. The outbox thread learns of it
    /// from its connection's readiness in its epoll set (or at its next tick), and is woken only
    /// when it sleeps with nothing in flight.
    fn queue(&self, connection: Connection, exchange: Exchange, response: Response, kind: Kind) {
        let conn = connection.id();
        let shard = &self.shards[(conn % self.shards.len() as u64) as usize];
        let write_now = kind == Kind::FromWorker;
        let sending = self.prepare(connection, exchange, response, kind, write_now, &shard.epoll);
        if shard.queue.post(sending) {
            shard.waker.wake();
        }
    }

    /// Counts and renders a reply, writes it first if `write_now`, and puts its connection in
    /// `epoll`, the epoll set of the thread that is to finish it.
    fn prepare(
        &self,
        connection: Connection,
        exchange: Exchange,
        response: Response,
        kind: Kind,
        write_now: bool,
        epoll: &Epoll,
    ) -> Sending {
        self.gauges.count_request(exchange.route.as_str(), response.status);
        let response = self.gauges.with_instance_header(response);
        let now = Instant::now();
        let buffer = self.buffers.take();
        let mut sending =
            Sending::new(connection, exchange, response, buffer, kind, now, self.write_timeout);
        if write_now {
            // Nothing was reported on the connection yet, so this stops at the first wait.
            sending.perform(&mut [0; 64], &self.buffers, now);
        }
        // Watched before it is queued, so no readiness is missed; the outbox thread keeps what
        // it hears of a connection whose reply it has not taken yet. A reply that ended (its
        // write failed) is not: the outbox thread ends it at once.
        if !matches!(sending.reply.step(), Step::Done(_)) {
            let interest = interest(sending.reply.readiness());
            let conn = sending.connection.id();
            sending.in_epoll = epoll.add(&sending.connection, interest, conn).is_ok();
        }
        sending
    }
}

/// The kind of a reply of the registry thread: a delivery, or another answer.
fn registry_kind(delivery: bool) -> Kind {
    if delivery {
        Kind::Delivery
    } else {
        Kind::FromRegistry
    }
}

/// The replies one thread wrote itself and finishes in its own loop, for the registry thread:
/// a delivery it writes is taken or not once the receiver closes, and the thread that hears
/// that first answers the sender, so with nothing else to do the registry waits for it in its
/// own epoll set rather than hand it to an outbox thread (one wake-up less on each hand-off of
/// a quiet relay).
pub struct OwnReplies {
    /// The outbox's loop (its `early` and `due` stay empty here: a reply joins it the moment it
    /// is written).
    replies: ReplyLoop,
    /// The owning thread's epoll set; every token in it but [`OwnReplies::WAKEUP_TOKEN`] is a
    /// reply's connection.
    poller: Epoll,
}

impl OwnReplies {
    /// The token the owning thread's waker has in the epoll set.
    pub const WAKEUP_TOKEN: u64 = WAKEUP_TOKEN;

    /// For a thread whose epoll set is `poller`, answering through `outbox`.
    pub fn new(poller: Epoll, outbox: &Outbox) -> OwnReplies {
        let buffers = Arc::clone(&outbox.buffers);
        OwnReplies { replies: ReplyLoop::new(buffers, Arc::clone(&outbox.gauges)), poller }
    }

    /// The deliveries that ended since last asked: the connection, and whether it was taken.
    pub fn ended(&mut self) -> std::vec::Drain<'_, (ConnId, bool)> {
        self.replies.ended.drain(..)
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
        let kind = registry_kind(delivery);
        let sending = outbox.prepare(connection, exchange, response, kind, true, &self.poller);
        let now = Instant::now();
        if let Some((conn, input)) = self.replies.receive(sending) {
            self.replies.progress(&self.poller, conn, input, now);
        }
    }

    /// How many replies are in flight.
    pub fn in_flight(&self) -> usize {
        self.replies.sending.len()
    }

    /// Waits in the epoll set for at most `timeout` (`None`: until woken); moves on the replies
    /// whose connections are ready, fires deadlines and asks the deliveries waiting for their
    /// last acknowledgement again (as an outbox thread does each time it wakes). Returns whether
    /// the waker was among the ready.
    pub fn wait(&mut self, ready: &mut Vec<(u64, bool)>, timeout: Option<Duration>) -> bool {
        let timeout = match (timeout, self.replies.wait_limit()) {
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
                WAKEUP_TOKEN => woken = true,
                conn => self.replies.progress(&self.poller, conn, input, now),
            }
        }
        self.replies.tick(&self.poller, now);
        self.replies.publish();
        woken
    }
}

impl Shard {
    /// Starts outbox thread number `n`.
    fn start(
        n: usize,
        registry: ToRegistry,
        buffers: Arc<ReplyBuffers>,
        gauges: Arc<Gauges>,
    ) -> io::Result<Shard> {
        let (queue, mut incoming) = mailbox();
        let waker = Waker::new()?;
        let mut poller = Epoll::new(256)?;
        poller.add(&*waker, Interest::Always, WAKEUP_TOKEN)?;
        let epoll = poller.handle();
        let thread_waker = Arc::clone(&waker);
        threads::spawn(format!("outbox-{n}"), move || {
            let mut replies = ReplyLoop::new(buffers, gauges);
            replies.run(&mut poller, &mut incoming, &thread_waker, &registry);
        })?;
        Ok(Shard { queue, waker, epoll })
    }
}

/// A reply being written: its connection, and the [`ReplyWriter`] that says what to do with it.
struct Sending {
    connection: Connection,
    exchange: Exchange,
    status: u16,
    reply: ReplyWriter,
    /// Whether the connection is in its thread's epoll set (edge-triggered, for good).
    in_epoll: bool,
    /// Its place on its thread's wheel, once it is there.
    timer: Option<TimerId>,
}

impl Sending {
    /// Renders `response` for `exchange` (CORS headers, no body for `HEAD`) into `bytes` (an
    /// empty buffer), due by `now + write_timeout`.
    fn new(
        connection: Connection,
        exchange: Exchange,
        response: Response,
        mut bytes: Vec<u8>,
        kind: Kind,
        now: Instant,
        write_timeout: Duration,
    ) -> Sending {
        let status = response.status;
        // Room for the longest head the relay writes (a CORS `/link` delivery with its
        // metadata and the inert-document headers is ~650 bytes): written without regrowth.
        bytes.reserve(HEAD_ROOM + response.body.len());
        let head_only = exchange.method == "HEAD";
        match &exchange.cors_origin {
            Some(origin) => cors::add_headers(response, origin).write_to(head_only, &mut bytes),
            None => response.write_to(head_only, &mut bytes),
        }
        let reply = ReplyWriter::new(bytes, kind, exchange.via_proxy, now, write_timeout);
        Sending { connection, exchange, status, reply, in_epoll: false, timer: None }
    }

    /// Does what the reply's writer says on the connection (writes, shuts the write side,
    /// reads into `scratch` and drops, asks `SIOCOUTQ`) until it says to wait or that the reply
    /// is over; returns that step. The reply's buffer goes back to `buffers` once written.
    fn perform(&mut self, scratch: &mut [u8], buffers: &ReplyBuffers, now: Instant) -> Step {
        let reply = &mut self.reply;
        let mut step = reply.step();
        loop {
            step = match step {
                Step::Write => match self.connection.write_before_end(reply.unwritten()) {
                    Ok(n) => reply.wrote(n),
                    Err(_) => reply.write_failed(),
                },
                Step::ShutDown => {
                    buffers.give(reply.take_spent());
                    self.connection.shutdown_write();
                    reply.shut(now)
                }
                Step::Drain => read_into(&mut self.connection, reply, scratch),
                // A reset after the client's end of stream (bytes arrived after it closed)
                // shows here.
                Step::Probe => read_into(&mut self.connection, reply, &mut [0; 1]),
                Step::AskUnacknowledged => {
                    reply.unacknowledged(sys::unacknowledged(&self.connection).ok())
                }
                Step::Wait { .. } | Step::DrainNextTurn | Step::AskNextTick | Step::Done(_) => {
                    return step
                }
            };
        }
    }

    /// Puts the connection in `epoll` if the answering thread could not: the reply's next
    /// step, which is over when the connection cannot be watched.
    fn watch_in(&mut self, epoll: &Epoll, conn: ConnId, waiting: Step) -> Step {
        if self.in_epoll {
            return waiting;
        }
        match epoll.add(&self.connection, interest(self.reply.readiness()), conn) {
            Ok(()) => {
                self.in_epoll = true;
                waiting
            }
            Err(_) => self.reply.unwatchable(),
        }
    }
}

/// Reads what `connection` has now into `into` and tells `reply`.
fn read_into(connection: &mut Connection, reply: &mut ReplyWriter, into: &mut [u8]) -> Step {
    match connection.read_now(into) {
        Ok(n) => reply.read(n),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => reply.end_of_input(),
        Err(_) => reply.reset(),
    }
}

/// What the outbox's epoll set is to report for a reply that waits for `readiness`.
fn interest(readiness: Readiness) -> Interest {
    match readiness {
        Readiness::Writable => Interest::Reply,
        Readiness::Input => Interest::Closing,
    }
}

/// The loop of an outbox thread, or of the replies the registry thread finishes itself: it
/// performs what each reply's [`ReplyWriter`] says, and keeps their deadlines and turns.
struct ReplyLoop {
    sending: ConnMap<Sending>,
    /// Deliveries whose client closed with bytes unacknowledged, asked again every tick.
    acknowledging: Vec<ConnId>,
    /// Replies whose client sent more than [`DRAIN_TURN`](super::writer::DRAIN_TURN) at once:
    /// drained on in the next turn (edge-triggered, their connections report nothing new for
    /// input already there).
    draining_on: Vec<ConnId>,
    /// Connections that reported readiness before their reply was taken from the queue: whether
    /// that included input, and when (one never claimed is forgotten after [`LINGER_TIME`]).
    early: ConnMap<(bool, Instant)>,
    /// Replies to move on in this turn of the loop (kept for its allocation).
    due: Vec<(ConnId, bool)>,
    deadlines: TimerWheel<ConnId>,
    /// Deliveries ended and not reported yet: the connection, and whether it was taken.
    ended: Vec<(ConnId, bool)>,
    gauges: Arc<Gauges>,
    /// The replies in flight as last published to `gauges`.
    published: usize,
    scratch: Vec<u8>,
    buffers: Arc<ReplyBuffers>,
}

impl ReplyLoop {
    fn new(buffers: Arc<ReplyBuffers>, gauges: Arc<Gauges>) -> ReplyLoop {
        ReplyLoop {
            sending: ConnMap::default(),
            acknowledging: Vec::new(),
            draining_on: Vec::new(),
            early: ConnMap::default(),
            due: Vec::new(),
            deadlines: TimerWheel::new(Instant::now(), WRITE_TICK, 1024),
            ended: Vec::new(),
            gauges,
            published: 0,
            scratch: vec![0u8; 16 * 1024],
            buffers,
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
        incoming: &mut Mailbox<Sending>,
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
            if !self.take_queued(incoming, &mut due) {
                return;
            }
            for (token, input) in ready.drain(..) {
                match token {
                    WAKEUP_TOKEN => waker.clear(),
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

    /// Takes every reply queued for the thread, adding those to move on now to `due`; `false`
    /// once the answering threads are gone and no reply is in flight: the thread's work is over.
    fn take_queued(
        &mut self,
        incoming: &mut Mailbox<Sending>,
        due: &mut Vec<(ConnId, bool)>,
    ) -> bool {
        loop {
            match incoming.try_take() {
                Ok(sending) => due.extend(self.receive(sending)),
                Err(TakeError::Empty) => return true,
                Err(TakeError::Closed) => return !self.sending.is_empty(),
            }
        }
    }

    /// Takes a reply from an answering thread; due to be moved on (with whether input was
    /// heard) if its connection reported readiness already, or if it is not watched yet.
    fn receive(&mut self, mut sending: Sending) -> Option<(ConnId, bool)> {
        let conn = sending.connection.id();
        sending.timer = Some(self.deadlines.insert(sending.reply.deadline(), conn));
        let in_epoll = sending.in_epoll;
        self.sending.insert(conn, sending);
        match self.early.remove(&conn) {
            Some((input, _)) => Some((conn, input)),
            None => (!in_epoll).then_some((conn, true)),
        }
    }

    /// Moves a reply on as far as its socket allows now; `input`: the connection reported
    /// input, an end of stream or an error since it was last asked.
    fn progress(&mut self, epoll: &Epoll, conn: ConnId, input: bool, now: Instant) {
        let Some(sending) = self.sending.get_mut(&conn) else { return };
        let deadline = sending.reply.deadline();
        sending.reply.resume(input);
        let step = match sending.perform(&mut self.scratch, &self.buffers, now) {
            waiting @ Step::Wait { .. } => sending.watch_in(epoll, conn, waiting),
            step => step,
        };
        if sending.reply.deadline() != deadline {
            if let Some(timer) = sending.timer.take() {
                self.deadlines.cancel(timer);
            }
            sending.timer = Some(self.deadlines.insert(sending.reply.deadline(), conn));
        }
        match step {
            Step::DrainNextTurn => self.draining_on.push(conn),
            Step::AskNextTick => self.acknowledging.push(conn),
            Step::Done(outcome) => self.finish(conn, outcome),
            _ => {}
        }
    }

    /// Fires deadlines, drains on what was left from the last turn, and asks the deliveries
    /// waiting for their last acknowledgement again.
    fn tick(&mut self, epoll: &Epoll, now: Instant) {
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
            if let Step::Done(outcome) = sending.reply.deadline_passed() {
                self.finish(conn, outcome);
            }
        }
        // One that was also reported ready this turn may be listed twice (and a delivery asked
        // again on readiness, in `acknowledging` twice).
        for conn in deduplicated(std::mem::take(&mut self.draining_on)) {
            self.progress(epoll, conn, true, now);
        }
        for conn in deduplicated(std::mem::take(&mut self.acknowledging)) {
            self.progress(epoll, conn, false, now);
        }
        crate::limits::shrink_sparse(&mut self.sending);
    }

    /// Ends a reply: reports a delivery, logs, closes.
    fn finish(&mut self, conn: ConnId, outcome: Outcome) {
        let Some(mut sending) = self.sending.remove(&conn) else { return };
        if let Some(timer) = sending.timer {
            self.deadlines.cancel(timer);
        }
        if outcome == Outcome::NotTaken(Loss::WriteTimeout) {
            self.gauges.refused(RefusalReason::SlowReader);
            debug!("closed a connection: its reply was not taken within --write-timeout");
        }
        if sending.reply.is_delivery() {
            self.ended.push((conn, outcome == Outcome::Taken));
        }
        // Whatever happens to the connection now, the per-peer slot is free: a client that
        // reconnects as soon as it has its answer is not refused for a slot still held.
        sending.connection.peer_slot = None;
        self.buffers.give(sending.reply.take_spent());
        log_request(&sending.exchange, sending.status, outcome);
    }
}

/// Reply buffers kept for reuse: the threads that render replies take them, the loops that
/// finish replies give them back, so a busy relay's replies allocate nothing. Bounded: at most
/// [`SPARE_BUFFERS`] of at most [`SPARE_BUFFER_MAX`] bytes each (a larger one is freed).
struct ReplyBuffers {
    spare: Mutex<Vec<Vec<u8>>>,
}

impl Default for ReplyBuffers {
    fn default() -> ReplyBuffers {
        ReplyBuffers { spare: Mutex::new(Vec::with_capacity(SPARE_BUFFERS)) }
    }
}

impl ReplyBuffers {
    /// An empty buffer: a spare one if there is one.
    fn take(&self) -> Vec<u8> {
        self.spare.lock().unwrap_or_else(PoisonError::into_inner).pop().unwrap_or_default()
    }

    /// Keeps `buffer` for reuse if there is room for it; else it is freed (after the lock: the
    /// guard, declared last, is dropped first).
    fn give(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() == 0 || buffer.capacity() > SPARE_BUFFER_MAX {
            return;
        }
        buffer.clear();
        let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
        if spare.len() < SPARE_BUFFERS {
            spare.push(buffer);
        }
    }
}

/// `list` sorted, each connection once.
fn deduplicated(mut list: Vec<ConnId>) -> Vec<ConnId> {
    list.sort_unstable();
    list.dedup();
    list
}

/// One line per request at `info`; error answers at most once per client and status a minute
/// (protocol §4), saying how many were held back.
fn log_request(exchange: &Exchange, status: u16, outcome: Outcome) {
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
    let failed = match outcome {
        Outcome::Taken => "",
        Outcome::NotTaken(Loss::WriteTimeout) => " (not taken within --write-timeout)",
        Outcome::NotTaken(_) | Outcome::Failed(_) => " (not taken: the client failed or left)",
    };
    let (method, route) = (&exchange.method, exchange.route);
    if held_back > 0 {
        let client = exchange.client;
        info!("{method} {route} {tag} {status} {took:.1}ms{failed} ({held_back} more {status}s to {client} in the last minute)");
    } else {
        info!("{method} {route} {tag} {status} {took:.1}ms{failed}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_buffers_are_reused_and_what_is_kept_stays_bounded() {
        let buffers = ReplyBuffers::default();
        let mut first = buffers.take();
        first.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        let (room, at) = (first.capacity(), first.as_ptr());
        buffers.give(first);
        let again = buffers.take();
        assert_eq!((again.len(), again.capacity(), again.as_ptr()), (0, room, at), "the same one");
        buffers.give(again);
        buffers.give(Vec::with_capacity(SPARE_BUFFER_MAX + 1));
        assert_eq!(buffers.spare.lock().unwrap().len(), 1, "too large to keep");
        (0..2 * SPARE_BUFFERS).for_each(|_| buffers.give(Vec::with_capacity(64)));
        assert_eq!(buffers.spare.lock().unwrap().len(), SPARE_BUFFERS);
        assert_eq!(buffers.spare.lock().unwrap().capacity(), SPARE_BUFFERS, "never regrown");
    }
}
