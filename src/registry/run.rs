//! The registry thread: the thin loop around [`Registry`] (SPEC §8).
//!
//! It owns the connections of parked requests, feeds the registry events (requests from the
//! workers, write outcomes from the writers, ticks of the clock, clients found gone) and hands each
//! reply, with its connection, to the writer threads. It never blocks on a socket: the only I/O
//! here is a non-blocking peek to learn whether a waiting client has left. Each parked connection
//! is peeked about once a second, a tenth of them per tick, and once more right before a delivery.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::{ConnId, Event, Registry, Reply, Request, TICK};
use crate::http::conn::{Connection, Exchange, WriteJob};
use crate::metrics::Gauges;

/// Ticks per full round of liveness probes: every parked connection is probed once a second.
const PROBE_ROUND_TICKS: usize = 10;

/// What reaches the registry thread.
pub enum Inbound {
    /// A worker read and validated a relay request.
    Request {
        connection: Connection,
        exchange: Exchange,
        request: Request,
    },
    /// A writer finished a confirmed reply.
    Written { conn: ConnId, ok: bool },
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
) {
    let mut waiting: HashMap<ConnId, Waiting> = HashMap::new();
    let mut probe_order: VecDeque<ConnId> = VecDeque::new();
    let mut events: VecDeque<Event> = VecDeque::new();
    let mut replies: Vec<Reply> = Vec::new();
    let mut next_tick = Instant::now() + TICK;
    loop {
        let received = if registry.is_idle() && waiting.is_empty() {
            inbound.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            inbound.recv_deadline(next_tick)
        };
        match received {
            Ok(Inbound::Request {
                connection,
                exchange,
                request,
            }) => {
                let conn = connection.id();
                waiting.insert(
                    conn,
                    Waiting {
                        connection,
                        exchange,
                    },
                );
                probe_order.push_back(conn);
                events.push_back(Event::Arrived { conn, request });
            }
            Ok(Inbound::Written { conn, ok }) => events.push_back(Event::Written { conn, ok }),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        if now >= next_tick {
            next_tick = now + TICK;
            events.push_back(Event::Tick);
            probe_some(&mut waiting, &mut probe_order, &mut events);
        }
        while let Some(event) = events.pop_front() {
            registry.handle(now, event, &mut replies);
            for reply in replies.drain(..) {
                send_reply(reply, &mut waiting, &writers, &mut events);
            }
        }
        gauges.set_registry(registry.counts());
    }
}

/// Hands one reply to the writers, or turns a delivery to a vanished client into a failed write.
fn send_reply(
    reply: Reply,
    waiting: &mut HashMap<ConnId, Waiting>,
    writers: &Sender<WriteJob>,
    events: &mut VecDeque<Event>,
) {
    let Reply {
        conn,
        response,
        confirm,
    } = reply;
    let Some(Waiting {
        connection,
        exchange,
    }) = waiting.remove(&conn)
    else {
        if confirm {
            events.push_back(Event::Written { conn, ok: false });
        }
        return;
    };
    if confirm && !connection.is_open() {
        events.push_back(Event::Written { conn, ok: false });
        return;
    }
    let job = WriteJob {
        connection,
        exchange,
        response,
        report: confirm,
    };
    if let Err(failed) = writers.send(job) {
        if failed.0.report {
            events.push_back(Event::Written { conn, ok: false });
        }
    }
}

/// Peeks at the next share of parked connections; the ones whose clients left become `Gone`.
fn probe_some(
    waiting: &mut HashMap<ConnId, Waiting>,
    order: &mut VecDeque<ConnId>,
    events: &mut VecDeque<Event>,
) {
    let share = order.len().div_ceil(PROBE_ROUND_TICKS);
    for _ in 0..share {
        let Some(conn) = order.pop_front() else { break };
        let Some(entry) = waiting.get(&conn) else {
            continue;
        };
        if entry.connection.is_open() {
            order.push_back(conn);
        } else {
            waiting.remove(&conn);
            events.push_back(Event::Gone { conn });
        }
    }
}
