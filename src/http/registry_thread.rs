//! The registry thread: the thin I/O loop around [`Registry`] (README "Design").
//!
//! It owns the connections of parked requests, feeds the registry events (requests from the
//! workers, the ends of deliveries, ticks of the clock, clients found gone) and renders each
//! answer (`render.rs`). It waits in an epoll set that holds its [`Waker`] ([`ToRegistry`] wakes
//! it when the thread sleeps) and the answers it writes itself: when nothing else waits for the
//! thread, it writes its one answer at once and sees it to its close ([`OwnReplies`]), so
//! on a quiet relay a hand-off crosses no other thread once its requests are here; under load it
//! hands its answers, unwritten, to the [`Outbox`] threads. It never waits on one socket. To learn
//! that a waiting client has left, each parked connection is watched in a second epoll set that
//! every tick reads without waiting (so the cost is in the clients that leave or send, not in the
//! ones that wait); whatever a parked client sends is read and dropped there, so a close behind a
//! stray byte is seen too, and a receiver is asked once more the same way right before a
//! delivery. [`Inbound::Drain`] (`SIGTERM`) has the registry answer every parked request.
//!
//! With `--state-file`, it hands the changes to the stored messages to the [`Journal`] after every
//! batch of events, and at most once per [`SAVE_EVERY`] a snapshot when the journal needs one
//! (compaction, or a write failed); once more on [`Inbound::Save`] (the last act of a drain).

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::Connection;
use super::exchange::Exchange;
use super::inbound::{Inbound, ToRegistry};
use super::outbox::{Outbox, OwnReplies};
use super::render::render;
use crate::config::PeerAddress;
use crate::metrics::Gauges;
use crate::persist::{snapshot_len, Journal, BURNED_RECORD_LEN};
use crate::registry::{ConnId, ConnMap, Counts, Event, Registry, Reply, TICK};
use crate::spare::{Slot, SpareBoxes, SPARE_BOXES};
use crate::sys::{Epoll, Interest};
use crate::threads::{mailbox, Mailbox, TakeError, Waker};
use crate::wheel::unix_ms;

/// Parked connections reported per read of the epoll set; a tick reads until there are no more.
pub const WATCH_BATCH: usize = 1024;

/// Messages turned into events per turn of the loop: the ticks and the own replies are not kept
/// waiting behind a burst of requests.
const INBOUND_BATCH: usize = 64;

/// Most answers the registry thread finishes itself at once; beyond, they go to the outbox
/// threads even when nothing else waits (slow readers cost it a little time each).
const OWN_REPLIES_MAX: usize = 16;

/// Shortest time between two looks at whether the journal needs a snapshot.
pub const SAVE_EVERY: Duration = Duration::from_secs(1);

/// What the registry thread waits on: its queue, and its epoll set, which holds the waker of
/// [`ToRegistry`] and the replies the thread writes itself.
pub struct RegistryInput {
    queue: Mailbox<Inbound>,
    waker: Arc<Waker>,
    poller: Epoll,
}

/// The registry thread's queue: where other threads send, and what [`run`] reads.
pub fn channel() -> io::Result<(ToRegistry, RegistryInput)> {
    let (queue, incoming) = mailbox();
    let waker = Waker::new()?;
    let poller = Epoll::new(256)?;
    poller.add(&*waker, Interest::Always, OwnReplies::WAKEUP_TOKEN)?;
    let to = ToRegistry::new(queue, Arc::clone(&waker));
    Ok((to, RegistryInput { queue: incoming, waker, poller }))
}

/// A connection waiting for its answer.
struct Waiting {
    connection: Connection,
    exchange: Exchange,
}

/// The registry thread: the registry, what reaches it, the parked connections and where their
/// answers go. Its loop ([`run`]) takes one step after another, each a method.
struct RegistryThread {
    registry: Registry,
    inbound: Mailbox<Inbound>,
    waker: Arc<Waker>,
    journal: Option<Arc<Journal>>,
    /// Boxed: the map keeps room for up to twice its entries, which costs a pointer, not a
    /// whole `Waiting`, per spare slot. The boxes of those answered or gone are reused.
    waiting: ConnMap<Slot<Waiting>>,
    spare_waiting: SpareBoxes<Option<Waiting>>,
    /// The epoll set of the parked connections, read every tick for the clients that left.
    parked_set: Epoll,
    outbox: Outbox,
    /// The answers this thread writes itself, to their close.
    own: OwnReplies,
    gauges: Arc<Gauges>,
    /// Where a parked client's stray bytes are read into and dropped.
    scratch: Vec<u8>,
    /// Whether `/link` answers name the counterpart's address (`--peer-address`).
    peer: PeerAddress,
    /// What the epoll set of the own replies reported (kept for its capacity).
    ready: Vec<(u64, bool)>,
    /// Requests that arrived in this turn: watched once they are parked.
    arrived: Vec<ConnId>,
    /// The registry's next events, and the replies of the one it handles.
    events: VecDeque<Event>,
    replies: Vec<Reply>,
    /// When the next `Tick` is due, and when the journal was last asked for a snapshot.
    next_tick: Instant,
    last_check: Option<Instant>,
}

/// Runs the registry for the life of the process. `parked_set` is an empty epoll set for this
/// thread alone.
pub fn run(
    registry: Registry,
    input: RegistryInput,
    outbox: Outbox,
    gauges: Arc<Gauges>,
    journal: Option<Arc<Journal>>,
    parked_set: Epoll,
    peer: PeerAddress,
) {
    let RegistryInput { queue: inbound, waker, poller } = input;
    let own = OwnReplies::new(poller, &outbox);
    let mut thread = RegistryThread {
        registry,
        inbound,
        waker,
        journal,
        waiting: ConnMap::default(),
        spare_waiting: SpareBoxes::new(SPARE_BOXES),
        parked_set,
        outbox,
        own,
        gauges,
        scratch: vec![0; 4096],
        peer,
        ready: Vec::new(),
        arrived: Vec::new(),
        events: VecDeque::new(),
        replies: Vec::new(),
        next_tick: Instant::now() + TICK,
        last_check: None,
    };
    loop {
        thread.wait();
        if !thread.take_inbound() {
            return;
        }
        let now = Instant::now();
        thread.tick_if_due(now);
        thread.handle_events(now);
        thread.watch_arrived();
        thread.save(now);
    }
}

/// Hands the registry's changes to `journal`; with `check`, a snapshot too when the journal
/// needs one: a write failed, or the file is over twice the live state (the bytes held are a
/// lower bound of it, so most checks cost no snapshot).
fn keep(registry: &mut Registry, journal: &Journal, now: Instant, check: bool) {
    if registry.has_changes() {
        journal.append(registry.take_changes(now, unix_ms()));
    }
    let stale = || journal.wants_snapshot();
    if check && (stale() || journal.compaction_due(saved_at_least(registry.counts()))) {
        let snapshot = registry.snapshot(now, unix_ms());
        if stale() || journal.compaction_due(snapshot_len(&snapshot)) {
            journal.compact(snapshot);
        }
    }
}

/// A lower bound of a snapshot's length: the bytes held and a record per burned id.
fn saved_at_least(counts: Counts) -> u64 {
    counts.bytes as u64 + counts.burned as u64 * BURNED_RECORD_LEN
}

impl RegistryThread {
    /// Waits until something is to be done: a message in the queue, the end of a reply this
    /// thread writes, or the next tick when anything waits or a save is due (with nothing at
    /// all, it waits without a timeout).
    fn wait(&mut self) {
        // A snapshot to retry, or a compaction to check once the last messages are gone: the
        // loop wakes for them even with nothing else to wait for.
        let held = saved_at_least(self.registry.counts());
        let save_due =
            self.journal.as_ref().is_some_and(|j| j.wants_snapshot() || j.compaction_due(held));
        let timeout = if self.registry.is_idle() && self.waiting.is_empty() && !save_due {
            None
        } else {
            Some(self.next_tick.saturating_duration_since(Instant::now()))
        };
        let woken = if self.inbound.is_empty() {
            self.waker.sleeping();
            // Looked at again once marked asleep: a sender that came just before saw the thread
            // awake and did not wake it.
            let timeout = if self.inbound.is_empty() { timeout } else { Some(Duration::ZERO) };
            let woken = self.own.wait(&mut self.ready, timeout);
            self.waker.awake();
            woken
        } else {
            self.own.in_flight() > 0 && self.own.wait(&mut self.ready, Some(Duration::ZERO))
        };
        if woken {
            self.waker.clear();
        }
        self.note_own_replies_ended();
    }

    /// Turns up to [`INBOUND_BATCH`] messages of the queue into events; false once every sender
    /// is gone (the process is ending).
    fn take_inbound(&mut self) -> bool {
        for _ in 0..INBOUND_BATCH {
            match self.inbound.try_take() {
                Ok(Inbound::Request { connection, exchange, request }) => {
                    let conn = connection.id();
                    let waiting = self.spare_waiting.slot(Waiting { connection, exchange });
                    self.waiting.insert(conn, waiting);
                    self.arrived.push(conn);
                    self.events.push_back(Event::Arrived { conn, request });
                }
                Ok(Inbound::DeliveryEnded { conn, taken }) => {
                    self.events.push_back(Event::DeliveryEnded { conn, taken })
                }
                Ok(Inbound::Drain) => self.events.push_back(Event::Drain),
                Ok(Inbound::Save(done)) => {
                    if let Some(journal) = &self.journal {
                        keep(&mut self.registry, journal, Instant::now(), true);
                    }
                    let _ = done.send(());
                }
                Err(TakeError::Empty) => return true,
                Err(TakeError::Closed) => return false,
            }
        }
        true
    }

    /// Once per [`TICK`]: the registry's tick, the clients that left, and memory given back.
    fn tick_if_due(&mut self, now: Instant) {
        if now >= self.next_tick {
            self.next_tick = now + TICK;
            self.events.push_back(Event::Tick);
            self.notice_leavers();
            crate::limits::shrink_sparse(&mut self.waiting);
        }
    }

    /// Has the registry handle every event, and each reply answered.
    fn handle_events(&mut self, now: Instant) {
        while let Some(event) = self.events.pop_front() {
            self.registry.handle(now, event, &mut self.replies);
            // Published before the answers go out, so a client that got its answer sees the
            // counts that answer left behind.
            self.gauges.set_registry(self.registry.counts());
            // With nothing else waiting for this thread, its time is nobody's: it writes its
            // answer itself and finishes it in its own loop, which saves the answer a wake-up of
            // an outbox thread, and a delivery's sender another (BENCHMARKS.md, "What changed
            // the numbers").
            let own = self.replies.len() == 1
                && self.events.is_empty()
                && self.inbound.is_empty()
                && self.own.in_flight() < OWN_REPLIES_MAX;
            let mut replies = std::mem::take(&mut self.replies);
            for reply in replies.drain(..) {
                self.answer(reply, own);
            }
            self.replies = replies;
            // A reply that failed at its first write has ended already.
            self.note_own_replies_ended();
        }
    }

    /// The ends of the replies this thread wrote itself, as events.
    fn note_own_replies_ended(&mut self) {
        for (conn, taken) in self.own.ended() {
            self.events.push_back(Event::DeliveryEnded { conn, taken });
        }
    }

    /// Watches the requests that arrived and are still parked. Only then: a request answered
    /// at once costs no system call here. Should the kernel refuse (out of memory), a client's
    /// leaving is noticed at its delivery or its timeout instead.
    fn watch_arrived(&mut self) {
        for conn in self.arrived.drain(..) {
            if let Some(parked) = self.waiting.get(&conn) {
                let _ = self.parked_set.add(&parked.connection, Interest::Once, conn);
            }
        }
    }

    /// With `--state-file`, hands the journal this turn's changes, and at most once per
    /// [`SAVE_EVERY`] a snapshot if it needs one.
    fn save(&mut self, now: Instant) {
        if let Some(journal) = &self.journal {
            let check = self.last_check.is_none_or(|at| now >= at + SAVE_EVERY);
            if check {
                self.last_check = Some(now);
            }
            keep(&mut self.registry, journal, now, check);
        }
    }

    /// Hands one answer to the outbox, or with `own` writes and finishes it on this thread. A
    /// delivery to a receiver found gone first ends at once, not taken, so the registry gives
    /// the message to the next receiver.
    fn answer(&mut self, reply: Reply, own: bool) {
        let Reply { conn, answer, delivery } = reply;
        let waiting = self.waiting.remove(&conn).map(|w| self.spare_waiting.take(w));
        let Some(Waiting { mut connection, exchange }) = waiting else {
            if delivery {
                self.events.push_back(Event::DeliveryEnded { conn, taken: false });
            }
            return;
        };
        if delivery && !connection.still_there(&mut self.scratch) {
            self.events.push_back(Event::DeliveryEnded { conn, taken: false });
            return;
        }
        if own {
            self.own.write(&self.outbox, connection, exchange, render(answer, self.peer), delivery);
        } else {
            self.outbox.hand_over(connection, exchange, render(answer, self.peer), delivery);
        }
    }

    /// Reads, without waiting, which parked connections had input or a hang-up: drops what they
    /// sent and turns those whose clients left into `Gone` events. A report for a connection no
    /// longer parked (answered meanwhile) is ignored.
    fn notice_leavers(&mut self) {
        let mut ready = Vec::new();
        loop {
            ready.clear();
            if self.parked_set.wait(&mut ready, Some(Duration::ZERO)).is_err() {
                return;
            }
            for &conn in &ready {
                let Some(parked) = self.waiting.get_mut(&conn) else { continue };
                let there = parked.connection.still_there(&mut self.scratch)
                    && self.parked_set.rearm(&parked.connection, conn).is_ok();
                if !there {
                    if let Some(gone) = self.waiting.remove(&conn) {
                        self.spare_waiting.take(gone);
                    }
                    self.events.push_back(Event::Gone { conn });
                }
            }
            if ready.len() < WATCH_BATCH {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// musl's allocator hands out a block of its size plus a 4-byte header rounded up to a size
    /// class (…, 96, 112, 128, 144, 160, 192, …): at 108 bytes or less a boxed `Waiting` takes
    /// 112 bytes per parked request, at 109–124 it takes 128, 157–188 costs 192 (BENCHMARKS.md,
    /// "memory per parked receiver"). A field added to `Connection` or `Exchange` must keep this.
    #[test]
    fn a_parked_connection_fits_musls_112_byte_class() {
        let size = std::mem::size_of::<Waiting>();
        assert!(
            size <= 108,
            "Waiting is {size} bytes: over 108, every parked request costs 16 bytes more in the \
             static build"
        );
    }
}
