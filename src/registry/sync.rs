//! `/sync/{id}`: httprelay.io's two-way exchange (protocol §10).
//!
//! ```text
//!  1st request ──► waits on the id (--link-timeout, then 408)
//!  2nd request ──► pairs with it: the 1st is written the 2nd's body (a delivery)
//!                    ├─ taken ─────► the 2nd is written the 1st's body (a delivery)
//!                    └─ not taken ─► the 1st is dropped; the 2nd waits on the id as a 1st
//!  3rd request ──► waits on the id: a new pair, whatever became of the first
//! ```
//!
//! A side is kept as a `/link` message is (its body, content type and metadata, charged), and
//! each answer is a delivery (protocol §2.1). The two answers go one after the other, the side
//! that waited first first: its client is the one that may have left while it waited, so its
//! answer settles whether the exchange happens, and the second side, whose client just spoke,
//! hears its answer only once the first took the second's body whole. A waiting side is the
//! only state an id has, and it is removed by its own connection, never by id: a side that
//! arrives as another leaves is never orphaned.

use std::time::Instant;

#[cfg(test)]
use super::held::HeldBody;
use super::link::{Message, Writer};
use super::{
    shared_id, Answer, ConnId, Id, Party, Registry, RegistryRefusal, Reply, Request, Role, Timer,
};
use crate::identity::ClientKey;
use crate::limits::Charged;

/// A `/sync` answer being written, by the connection it is written to.
#[derive(Debug)]
pub(super) enum Delivery {
    /// To the side that waited first: the second side's body.
    First(Box<Exchange>),
    /// To the second side: the first side's body, which ends the exchange.
    Second,
}

/// A pair whose first side's answer is being written: the second is told nothing until then.
#[derive(Debug)]
pub(super) struct Exchange {
    id: Id,
    first: Charged<Message>,
    second: Charged<Message>,
}

impl Delivery {
    /// The side waiting for this delivery to end, if any.
    pub(super) fn waiting(&self) -> Option<ConnId> {
        match self {
            Delivery::First(exchange) => Some(exchange.second.ticket),
            Delivery::Second => None,
        }
    }

    /// The bodies it holds, for the registry's recount.
    #[cfg(test)]
    pub(super) fn bodies(&self) -> impl Iterator<Item = &HeldBody> {
        let sides = match self {
            Delivery::First(pair) => [Some(&pair.first.body), Some(&pair.second.body)],
            Delivery::Second => [None, None],
        };
        sides.into_iter().flatten()
    }
}

/// The answer to `own`: its counterpart `other`'s body and metadata.
fn answer(own: &Message, other: &Message) -> Answer {
    Answer::LinkMessage {
        body: other.body.bytes().clone(),
        own: own.sender.clone(),
        sender: other.sender.clone(),
    }
}

impl Registry {
    pub(super) fn sync(
        &mut self,
        now: Instant,
        conn: ConnId,
        mut request: Request,
        out: &mut Vec<Reply>,
    ) {
        let client = ClientKey::of(request.client.ip());
        // A side that finds another waiting is answered as soon as that one took its answer.
        if !self.syncs.contains_key(&request.id[..]) {
            if let Err(refusal) = self.admit(client) {
                return out.push(Reply::refused(conn, refusal));
            }
        }
        let method = request.method;
        let side = Party::of(&mut request, method);
        let id = shared_id(&self.syncs, &request.id);
        match self.charge_writer(now, conn, &id, side, Role::Sync(client), request) {
            Ok(Writer { message, parked, .. }) => {
                self.park(conn, parked);
                self.sync_meet(id, message, out);
            }
            Err(refusal) => out.push(Reply::refused(conn, refusal)),
        }
    }

    /// `side`, parked, meets the side waiting on `id`, whose answer is written first; with
    /// none there, it waits, until its own deadline.
    fn sync_meet(&mut self, id: Id, side: Charged<Message>, out: &mut Vec<Reply>) {
        let Some(first) = self.syncs.remove(&id) else {
            let timer = self.wheel.insert(side.deadline, Timer::Waiter(side.ticket));
            if let Some(parked) = self.parked.get_mut(&side.ticket) {
                parked.timer = Some(timer);
            }
            self.syncs.insert(id, side);
            return;
        };
        // A waiting side is parked: it leaves `syncs` when it leaves (`sync_side_gone`).
        let conn = first.ticket;
        self.unpark(conn);
        out.push(Reply { conn, answer: answer(&first, &side), delivery: true });
        let exchange = Exchange { id, first, second: side };
        self.sync_deliveries.insert(conn, Delivery::First(Box::new(exchange)));
    }

    /// A `/sync` answer was written: taken or not. The first side's answer taken, the second
    /// side is written its own; not taken, the second side waits for another counterpart (or,
    /// while draining, is told to retry).
    pub(super) fn sync_delivery_ended(&mut self, conn: ConnId, taken: bool, out: &mut Vec<Reply>) {
        let Some(delivery) = self.sync_deliveries.remove(&conn) else {
            return;
        };
        if taken {
            self.counts.sync_taken += 1;
        }
        let Delivery::First(exchange) = delivery else {
            return;
        };
        let Exchange { id, first, second } = *exchange;
        let waiting = second.ticket;
        if taken {
            if self.unpark(waiting).is_some() {
                out.push(Reply { conn: waiting, answer: answer(&second, &first), delivery: true });
                self.sync_deliveries.insert(waiting, Delivery::Second);
            }
        } else if self.draining {
            if self.unpark(waiting).is_some() {
                out.push(Reply::refused(waiting, RegistryRefusal::ShuttingDown));
            }
        } else if self.parked.contains_key(&waiting) {
            self.sync_meet(id, second, out);
        }
    }

    /// A waiting side left or timed out: it is taken off its id, if it is the one waiting
    /// there. A second side whose counterpart's answer is being written stays in that
    /// exchange, with nobody to answer.
    pub(super) fn sync_side_gone(&mut self, conn: ConnId, id: &[u8]) {
        if self.syncs.get(id).is_some_and(|side| side.ticket == conn) {
            self.syncs.remove(id);
        }
    }
}
