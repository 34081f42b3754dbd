//! The registry thread: the thin loop around [`Registry`] (README "Design").
//!
//! It owns the connections of parked requests, feeds the registry events (requests from the
//! workers, write outcomes from the writers, ticks of the clock, clients found gone) and hands each
//! reply, with its connection, to the writer threads. It never blocks on a socket. To learn that
//! a waiting client has left, each parked connection is watched for its hang-up in an epoll set
//! that every tick reads without waiting (so the cost is in the clients that leave, not in the
//! ones that wait), and peeked at once more right before a delivery.
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
use crate::sys::{Interest, Poller};

/// Hang-ups read from the epoll set per call; a tick reads until there are no more.
pub const HANGUP_BATCH: usize = 1024;

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

/// Runs the registry until every sender of `inbound` is gone. `hangups` is an empty epoll set
/// for this thread alone.
pub fn run(
    mut registry: Registry,
    inbound: Receiver<Inbound>,
    writers: Sender<WriteJob>,
    gauges: Arc<Gauges>,
    persister: Option<Arc<Persister>>,
    mut hangups: Poller,
) {
    let mut last_save: Option<Instant> = None;
    let mut waiting: HashMap<ConnId, Waiting> = HashMap::new();
    let mut arrived: Vec<ConnId> = Vec::new();
    let mut gone: Vec<ConnId> = Vec::new();
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
                arrived.push(conn);
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
            notice_hangups(&mut hangups, &mut gone, &mut waiting, &mut events);
            super::shrink(&mut waiting);
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
        // Watched only once parked: a request answered at once costs no system call here.
        // Should the kernel refuse (out of memory), a client's leaving is noticed at its
        // delivery or its timeout instead.
        for conn in arrived.drain(..) {
            if let Some(parked) = waiting.get(&conn) {
                let _ = hangups.add(&parked.connection, Interest::Hangup, conn);
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

/// Turns the parked connections whose clients hung up into `Gone` events, without waiting.
/// A report for a connection no longer parked (answered meanwhile) is ignored: each
/// registration reports once, and closing the connection ends it.
fn notice_hangups(
    hangups: &mut Poller,
    gone: &mut Vec<ConnId>,
    waiting: &mut HashMap<ConnId, Waiting>,
    events: &mut VecDeque<Event>,
) {
    loop {
        gone.clear();
        if hangups.wait(gone, Some(Duration::ZERO)).is_err() {
            return;
        }
        for conn in gone.iter().copied() {
            if waiting.remove(&conn).is_some() {
                events.push_back(Event::Gone { conn });
            }
        }
        if gone.len() < HANGUP_BATCH {
            return;
        }
    }
}
