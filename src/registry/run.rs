//! The registry thread: the thin loop around [`Registry`] (SPEC §8).
//!
//! It owns the connections of parked requests, feeds the registry events (requests from the
//! workers, write outcomes from the writers, ticks of the clock, clients found gone) and hands each
//! reply, with its connection, to the writer threads. It never blocks on a socket: the only I/O
//! here is a non-blocking peek to learn whether a waiting client has left. Each parked connection
//! is peeked about once a second, a tenth of them per tick, and once more right before a delivery.
//! [`Inbound::Drain`] (`SIGTERM`) makes it answer every parked request 503.
//!
//! With `--state-file`, when the stored messages changed it hands a snapshot to the [`Persister`]
//! at most once per [`SAVE_EVERY`], and once more on [`Inbound::Save`] (the last act of a drain).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::{ConnId, Event, Registry, Reply, Request, TICK};
use crate::http::conn::{Connection, Exchange, WriteJob};
use crate::metrics::Gauges;
use crate::state::{unix_ms, Persister};

/// Ticks per full round of liveness probes: every parked connection is probed once a second.
const PROBE_ROUND_TICKS: usize = 10;

/// Shortest time between two snapshots while the relay runs: a crash loses at most this much.
pub const SAVE_EVERY: Duration = Duration::from_secs(1);

/// What reaches the registry thread.
pub enum Inbound {
    /// A worker read and validated a relay request.
    Request { connection: Connection, exchange: Exchange, request: Request },
    /// A writer finished a confirmed reply.
    Written { conn: ConnId, ok: bool },
    /// The relay is shutting down: answer every parked request 503, and every later one too.
    Drain,
    /// Hand a snapshot of the stored messages to the persister now, then answer on the channel.
    Save(Sender<()>),
}

/// A connection waiting for its reply.
struct Waiting {
    connection: Connection,
    exchange: Exchange,
}

/// Runs the registry until every sender of `inbound` is gone.
pub fn run(
    mut registry: Registry,
    inbound: Receiver<Inbound>,
    writers: Sender<WriteJob>,
    gauges: Arc<Gauges>,
    persister: Option<Arc<Persister>>,
) {
    let mut last_save: Option<Instant> = None;
    let mut waiting: HashMap<ConnId, Waiting> = HashMap::new();
    let mut prober = Prober::default();
    let mut events: VecDeque<Event> = VecDeque::new();
    let mut replies: Vec<Reply> = Vec::new();
    let mut next_tick = Instant::now() + TICK;
    loop {
        let save_due = persister.is_some() && registry.is_dirty();
        let received = if registry.is_idle() && waiting.is_empty() && !save_due {
            inbound.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            inbound.recv_deadline(next_tick)
        };
        match received {
            Ok(Inbound::Request { connection, exchange, request }) => {
                let conn = connection.id();
                waiting.insert(conn, Waiting { connection, exchange });
                prober.order.push_back(conn);
                events.push_back(Event::Arrived { conn, request });
            }
            Ok(Inbound::Written { conn, ok }) => events.push_back(Event::Written { conn, ok }),
            Ok(Inbound::Drain) => events.push_back(Event::Drain),
            Ok(Inbound::Save(done)) => {
                if let Some(persister) = &persister {
                    persister.offer(registry.snapshot(Instant::now(), unix_ms()));
                    last_save = Some(Instant::now());
                }
                let _ = done.send(());
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        if now >= next_tick {
            next_tick = now + TICK;
            events.push_back(Event::Tick);
            prober.probe_some(&mut waiting, &mut events);
            super::shrink(&mut waiting);
            if prober.order.capacity() > 64 && prober.order.len() * 4 < prober.order.capacity() {
                prober.order.shrink_to(prober.order.len() * 2);
            }
        }
        while let Some(event) = events.pop_front() {
            registry.handle(now, event, &mut replies);
            // Published before the replies go out, so a client that got its answer sees the
            // counts that answer left behind.
            gauges.set_registry(registry.counts());
            for reply in replies.drain(..) {
                send_reply(reply, &mut waiting, &writers, &mut events);
            }
        }
        if let Some(persister) = &persister {
            if registry.is_dirty() && last_save.is_none_or(|at| now >= at + SAVE_EVERY) {
                persister.offer(registry.snapshot(now, unix_ms()));
                last_save = Some(now);
            }
        }
    }
}

/// Hands one reply to the writers, or turns a delivery to a vanished client into a failed write.
fn send_reply(
    reply: Reply,
    waiting: &mut HashMap<ConnId, Waiting>,
    writers: &Sender<WriteJob>,
    events: &mut VecDeque<Event>,
) {
    let Reply { conn, response, confirm } = reply;
    let Some(Waiting { mut connection, exchange }) = waiting.remove(&conn) else {
        if confirm {
            events.push_back(Event::Written { conn, ok: false });
        }
        return;
    };
    if confirm && !connection.is_open() {
        events.push_back(Event::Written { conn, ok: false });
        return;
    }
    let job = WriteJob { connection, exchange, response, report: confirm };
    if let Err(failed) = writers.send(job) {
        if failed.0.report {
            events.push_back(Event::Written { conn, ok: false });
        }
    }
}

/// Round-robin liveness probes of parked connections: each round lasts [`PROBE_ROUND_TICKS`]
/// ticks and probes every connection that was parked when it began, an equal share per tick.
#[derive(Default)]
struct Prober {
    /// Connections in probe order; ids of connections answered meanwhile are dropped when met.
    order: VecDeque<ConnId>,
    /// Connections to probe per tick in this round.
    share: usize,
    /// Ticks left in this round.
    ticks_left: usize,
}

impl Prober {
    /// Peeks at this tick's share; the connections whose clients left become `Gone` events.
    fn probe_some(&mut self, waiting: &mut HashMap<ConnId, Waiting>, events: &mut VecDeque<Event>) {
        if self.ticks_left == 0 {
            self.ticks_left = PROBE_ROUND_TICKS;
            self.share = self.order.len().div_ceil(PROBE_ROUND_TICKS);
        }
        self.ticks_left -= 1;
        for _ in 0..self.share {
            let Some(conn) = self.order.pop_front() else {
                break;
            };
            let Some(entry) = waiting.get_mut(&conn) else {
                continue;
            };
            if entry.connection.is_open() {
                self.order.push_back(conn);
            } else {
                waiting.remove(&conn);
                events.push_back(Event::Gone { conn });
            }
        }
    }
}
