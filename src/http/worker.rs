//! The worker's side of reading a request (protocol §4): a thin loop that moves bytes from the
//! socket into the pure [`RequestReader`], asks the [`Gate`](super::gate::Gate) about the head,
//! and acts on each step: write `100 Continue`, hand the request to the registry, hand an answer
//! or a refusal to the outbox, or keep the reading to wait for more bytes in the worker's epoll
//! set (`server.rs`).
//!
//! A [`Reading`] is a request in progress: its connection, its bookkeeping ([`Exchange`]), its
//! reader, and once the gate admitted it, the relay request whose body is being read. So an idle
//! or trickling client costs memory for its bytes, never a thread. Deadlines are the reader's,
//! decided by the time the worker saw the bytes; the worker's timer wheel ends a reading that
//! gets none ([`expire`]). Every answer goes to the [`Outbox`](super::outbox::Outbox), which
//! writes it without blocking and closes gracefully, so that no reset cuts it.

use std::net::SocketAddr;
use std::time::Instant;

use super::conn::Connection;
use super::exchange::Exchange;
use super::gate::{body_read, Decision, Now, RequestRefusal};
use super::inbound::Inbound;
use super::reader::{ReaderLimits, RequestReader, Step};
use super::render::shutting_down;
use super::shared::Shared;
use crate::identity::ClientKey;
use crate::limits::{Reservation, Shortage, HEAD_ALLOWANCE};
use crate::refused::RefusalReason;
use crate::registry::Request;
use crate::response::Response;
use crate::routes::usage;
use crate::wheel::unix_ms;

/// A request being read. See the module docs.
pub struct Reading {
    pub(super) connection: Connection,
    /// The TCP peer's address, for the gate (kept here: a parked connection does not need it).
    peer: SocketAddr,
    /// Whether its worker's epoll set holds the connection already.
    pub(super) registered: bool,
    exchange: Exchange,
    reader: RequestReader,
    /// The relay request the gate admitted, while the rest of its body is awaited: boxed, so
    /// that every connection's reading is not as large as a request with its inline id, and
    /// only when its body did not come with its head (see [`advance`]).
    request: Option<Box<Request>>,
    /// The memory budget's charge for the reader's buffer, grown before each read.
    charge: Reservation,
}

impl Reading {
    /// A connection from `peer` accepted at `now`, whose head is due by `--head-timeout`; its
    /// buffer is charged to `charge` ([`Gate::head_charge`](super::gate::Gate::head_charge)).
    pub fn new(
        connection: Connection,
        peer: SocketAddr,
        limits: ReaderLimits,
        now: Instant,
        charge: Reservation,
    ) -> Reading {
        Reading {
            connection,
            peer,
            registered: false,
            exchange: Exchange::new(ClientKey::of(peer.ip()), now),
            reader: RequestReader::new(limits, now),
            request: None,
            charge,
        }
    }

    /// When the current phase must be complete.
    pub fn deadline(&self) -> Instant {
        self.reader.deadline()
    }
}

/// How a reading ends.
enum ReadingEnd {
    /// A relay request, read in full, for the registry.
    Relay(Request),
    /// Answered by the worker (`/`, `/health`, `/metrics`, a preflight).
    Answer(Response),
    /// Refused: counted under the reason, if any, and answered, if anyone is there.
    Refused(Option<RefusalReason>, Option<Response>),
    /// The client left or the connection failed: nobody to answer.
    Gone,
}

/// Serves the bytes that arrived on a reading by `now` (when its worker saw them). `Some` gives
/// it back, incomplete, to wait for more.
pub fn on_readable(
    mut reading: Reading,
    shared: &Shared,
    scratch: &mut [u8],
    now: Instant,
) -> Option<Reading> {
    let mut filled = 0;
    let end = loop {
        if let Some(end) = advance(&mut reading, &scratch[..filled], shared, now) {
            break end;
        }
        let room = reading.reader.room(scratch.len());
        match reading.connection.read_now(&mut scratch[..room]) {
            Ok(0) if room > 0 => return Some(reading),
            // Bytes wait in the worker's scratch buffer until the connection's own buffer may
            // grow to take them: the growth past the allowance is charged first, or the
            // request is refused.
            Ok(n) => match reading.charge.resize(head_charge(reading.reader.capacity_for(n))) {
                Ok(()) => filled = n,
                Err(shortage) => {
                    let refusal = match shortage {
                        Shortage::Total => RequestRefusal::Memory,
                        Shortage::Client { limit } => RequestRefusal::MemoryPerIp { limit },
                    };
                    break ReadingEnd::Refused(refusal.reason(), Some(refusal.response()));
                }
            },
            Err(_) => break ReadingEnd::Gone,
        }
    };
    finish(reading, end, shared);
    None
}

/// What a connection's request buffer of `capacity` bytes is charged: what passes the
/// allowance every connection has ([`HEAD_ALLOWANCE`]).
fn head_charge(capacity: usize) -> usize {
    capacity.saturating_sub(HEAD_ALLOWANCE)
}

/// Feeds `bytes` to the reader and acts on its steps until it needs more (`None`) or the request
/// ends.
fn advance(
    reading: &mut Reading,
    bytes: &[u8],
    shared: &Shared,
    now: Instant,
) -> Option<ReadingEnd> {
    let Reading { connection, peer, exchange, reader, request, charge, .. } = reading;
    // A request admitted in this call: boxed into the reading only if its body must be awaited.
    let mut admitted = None;
    let mut step = reader.feed(bytes, now);
    loop {
        step = match step {
            Step::NeedMore => {
                if let Some(admitted) = admitted {
                    *request = Some(Box::new(admitted));
                }
                return None;
            }
            Step::Head(head) => {
                // The head is read: its charge ends here, and its buffer soon after (the
                // reader frees it once the bytes after the head are in the body, which the gate
                // charges). So the gate, and a `/health` answer, do not count it.
                charge.shrink_to(0);
                let arrived = Now { instant: now, unix_ms: unix_ms() };
                match shared.gate.decide(&head, *peer, arrived, exchange) {
                    Ok(Decision::Relay { request, body, content_type }) => {
                        admitted = Some(request);
                        reader.read_body(body, content_type, bytes, now)
                    }
                    Ok(Decision::Usage) => {
                        return Some(ReadingEnd::Answer(usage(&shared.gauges.summary())))
                    }
                    Ok(Decision::Health { detailed }) => {
                        let (limits, memory) = (&shared.config.limits, shared.gate.memory());
                        return Some(ReadingEnd::Answer(
                            shared.gauges.health(limits, memory, detailed),
                        ));
                    }
                    Ok(Decision::Metrics) => {
                        let (limits, memory) = (&shared.config.limits, shared.gate.memory());
                        return Some(ReadingEnd::Answer(shared.gauges.prometheus(limits, memory)));
                    }
                    Ok(Decision::Preflight(response)) => {
                        return Some(ReadingEnd::Answer(*response))
                    }
                    Err(refusal) => {
                        return Some(ReadingEnd::Refused(
                            refusal.reason(),
                            Some(refusal.response()),
                        ))
                    }
                }
            }
            Step::SendContinue => {
                // 25 bytes always fit the empty send buffer of a connection that has had no
                // answer yet; anything else means it failed.
                const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
                if !connection.write_now(CONTINUE).is_ok_and(|n| n == CONTINUE.len()) {
                    return Some(ReadingEnd::Gone);
                }
                reader.continue_sent();
                reader.feed(&[], now)
            }
            Step::Complete(body) => {
                // unreachable without a request: a body is only read after the gate admitted it
                let Some(mut request) = admitted.take().or_else(|| request.take().map(|r| *r))
                else {
                    return Some(ReadingEnd::Gone);
                };
                // Shared from here on without a copy (no body nor content type: the shared
                // empty one).
                request.body = body;
                body_read(&mut request);
                return Some(ReadingEnd::Relay(request));
            }
            Step::Refuse(error) => {
                return Some(ReadingEnd::Refused(error.reason(), error.response()))
            }
        }
    }
}

/// Ends a reading whose deadline passed: 408.
pub fn expire(reading: Reading, shared: &Shared) {
    let end = match reading.reader.timed_out() {
        Some(error) => ReadingEnd::Refused(error.reason(), error.response()),
        None => ReadingEnd::Gone,
    };
    finish(reading, end, shared);
}

/// Ends a reading because the relay is shutting down: 503 with `Retry-After: 1`.
pub fn shut_down(reading: Reading, shared: &Shared) {
    finish(reading, ReadingEnd::Answer(shutting_down()), shared);
}

/// Hands the request to the registry, or its answer to the outbox; a client that left gets
/// nothing.
fn finish(reading: Reading, end: ReadingEnd, shared: &Shared) {
    let Reading { connection, exchange, .. } = reading;
    let response = match end {
        ReadingEnd::Relay(request) => {
            shared.registry.send(Inbound::Request { connection, exchange, request });
            return;
        }
        ReadingEnd::Answer(response) => response,
        ReadingEnd::Gone => return,
        ReadingEnd::Refused(reason, response) => {
            if let Some(reason) = reason {
                shared.gauges.refused(reason);
            }
            let Some(response) = response else { return };
            response
        }
    };
    shared.outbox.write(connection, exchange, response);
}
