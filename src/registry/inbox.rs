//! `/inbox/{id}`: Pubky http-relay 0.7's store and forward with acknowledgement (protocol §3).
//!
//! ```text
//!            POST (store, wake GET waiters 200, /await waiters 404)
//!   empty ───────────────────────────────► stored ──DELETE──► acked ──┐
//!     ▲            ▲  POST (replace)         │                   │    │ /await waiters 200
//!     │            └─────────────────────────┴───────────────────┘    │
//!     └──────────── --inbox-ttl after the POST (an ack does not extend it)
//! ```
//!
//! A stored, unacknowledged message answers every GET at once and stays; GETs on an empty or
//! acknowledged inbox wait up to `--inbox-timeout` and get 408. At most [`MAX_WAITERS`] live
//! waiters per id and kind; a waiter whose client left is removed at once and does not count.

use std::sync::Arc;
use std::time::Instant;

use super::conns::Conns;
use super::held::HeldBody;
use super::shared_id;
use super::{
    Action, Answer, ConnId, Parked, Registry, RegistryRefusal, Reply, Request, Role, Timer,
};
use crate::identity::ClientKey;
use crate::limits::{Charged, Footprint, ENTRY_COST};
use crate::payload::Payload;
use crate::refused::RefusalReason;
use crate::spare::Slot;
use crate::wheel::TimerId;

/// Most live waiters per inbox id and kind (GET, `/await`); the next one gets 503.
pub const MAX_WAITERS: usize = 10;

/// One `/inbox` id. The message is boxed: an id with only waiters keeps a pointer for it. Its
/// box is reused (`Registry::spare_stored`).
#[derive(Debug, Default)]
pub(super) struct Inbox {
    pub(super) message: Option<Slot<Charged<Stored>>>,
    /// GETs waiting for a message; the `/await`s are the stored message's (an `Inbox` is 24
    /// bytes; `registry::tests` keeps it at 32 or less).
    getters: Conns,
}

/// A stored message. Acknowledging drops the body with its content type, and their charge, but
/// keeps the entry, charged, until its TTL, for `/ack`.
#[derive(Debug)]
pub(super) struct Stored {
    /// The body with its content type, charged apart from the entry, until the message is
    /// acknowledged.
    pub(super) body: Option<Charged<HeldBody>>,
    /// The end of its TTL.
    pub(super) deadline: Instant,
    pub(super) timer: TimerId,
    /// The length of its id, charged with the entry (the map's key holds the id).
    pub(super) id_len: usize,
    /// Who awaits the acknowledgement (an `/await` parks only on a message not acknowledged
    /// yet): boxed, and only while there are any.
    pub(super) awaiters: Option<Box<Conns>>,
}

impl Footprint for Stored {
    fn footprint(&self) -> usize {
        ENTRY_COST + self.id_len
    }
}

impl Stored {
    /// Takes every `/await` waiter, first come first served.
    fn take_awaiters(&mut self) -> Conns {
        self.awaiters.take().map(|awaiters| *awaiters).unwrap_or_default()
    }

    /// Whether the message was acknowledged (`DELETE`), which dropped its body.
    pub(super) fn acked(&self) -> bool {
        self.body.is_none()
    }
}

/// Which list of an inbox a parked request waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WaitsFor {
    /// A GET or HEAD waiting for a message.
    Message,
    /// A `/await` waiting for the acknowledgement.
    Ack,
}

impl Registry {
    pub(super) fn inbox(
        &mut self,
        now: Instant,
        conn: ConnId,
        mut request: Request,
        out: &mut Vec<Reply>,
    ) {
        // Kept as it came until it is stored: a GET answered at once needs no shared copy.
        let id: &[u8] = &request.id;
        let reply = |answer| Reply::to(conn, answer);
        match request.action {
            Action::InboxPost => {
                let mut reservation = request.reservation;
                let body = HeldBody::new(&self.held, request.body);
                let body = match self.charge(body, &mut reservation) {
                    Ok(body) => body,
                    Err(refusal) => return out.push(Reply::refused(conn, refusal)),
                };
                let message = message_answer(body.bytes());
                let deadline = crate::wheel::deadline_after(now, self.settings.inbox_ttl);
                let id = shared_id(&self.inboxes, id);
                let timer = self.wheel.insert(deadline, Timer::InboxMessage(Arc::clone(&id)));
                let stored =
                    Stored { body: Some(body), deadline, timer, id_len: id.len(), awaiters: None };
                let stored = match self.charge(stored, &mut reservation) {
                    Ok(stored) => stored,
                    Err(refusal) => {
                        self.wheel.cancel(timer);
                        return out.push(Reply::refused(conn, refusal));
                    }
                };
                let awaiters = self.inbox_drop_message(&id).into_ids();
                let inbox = self.inboxes.entry(id).or_default();
                inbox.message = Some(self.spare_stored.slot(stored));
                let getters = std::mem::take(&mut inbox.getters).into_ids();
                out.push(reply(Answer::Done));
                // Ids whose waiter left may still be in the lists: they are not parked.
                for waiter in getters {
                    if self.unpark(waiter).is_none() {
                        continue;
                    }
                    self.counts.inbox_fetched += 1;
                    out.push(Reply::to(waiter, message.clone()));
                }
                for waiter in awaiters {
                    if self.unpark(waiter).is_none() {
                        continue;
                    }
                    out.push(Reply::to(waiter, Answer::Replaced));
                }
            }
            Action::InboxGet => {
                match self.inboxes.get(id).and_then(|i| i.message.as_deref().map(|m| &**m)) {
                    Some(Stored { body: Some(body), .. }) => {
                        out.push(reply(message_answer(body.bytes())));
                        self.counts.inbox_fetched += 1;
                    }
                    _ => self.inbox_park(now, conn, request, WaitsFor::Message, out),
                }
            }
            Action::InboxDelete => {
                match self.inboxes.get_mut(id).and_then(|i| i.message.as_mut()) {
                    Some(stored) => {
                        let acked_now = !stored.acked();
                        stored.body = None;
                        let awaiters = stored.take_awaiters();
                        out.push(reply(Answer::Done));
                        for waiter in awaiters.into_ids() {
                            if self.unpark(waiter).is_none() {
                                continue; // left: not parked any more
                            }
                            out.push(Reply::to(waiter, Answer::Done));
                        }
                        if acked_now {
                            self.burn(now, super::Protocol::Inbox, id, &mut request.reservation);
                        }
                    }
                    None => out.push(reply(Answer::NoMessage)),
                }
            }
            Action::InboxAck => match self.inboxes.get(id).and_then(|i| i.message.as_ref()) {
                Some(stored) => out.push(reply(Answer::Acknowledged(stored.acked()))),
                None => out.push(reply(Answer::NoMessage)),
            },
            Action::InboxAwait => match self.inboxes.get(id).and_then(|i| i.message.as_ref()) {
                Some(stored) if stored.acked() => out.push(reply(Answer::Done)),
                Some(_) => self.inbox_park(now, conn, request, WaitsFor::Ack, out),
                None => out.push(reply(Answer::NoMessage)),
            },
            Action::LinkReceive
            | Action::LinkSend
            | Action::Sync
            | Action::McastPost
            | Action::McastGet => {}
        }
    }

    /// Parks a GET or `/await` (`request`) on its inbox.
    fn inbox_park(
        &mut self,
        now: Instant,
        conn: ConnId,
        request: Request,
        kind: WaitsFor,
        out: &mut Vec<Reply>,
    ) {
        let waiting = self.inboxes.get(&*request.id).map_or(0, |inbox| match kind {
            WaitsFor::Message => inbox.getters.len(),
            WaitsFor::Ack => {
                let awaiters = inbox.message.as_ref().and_then(|stored| stored.awaiters.as_ref());
                awaiters.map_or(0, |awaiters| awaiters.len())
            }
        });
        if waiting >= MAX_WAITERS {
            self.counts.refused.add(RefusalReason::InboxWaiters);
            let refusal = RegistryRefusal::InboxWaiters { max: MAX_WAITERS };
            return out.push(Reply::refused(conn, refusal));
        }
        let client = ClientKey::of(request.client.ip());
        if let Err(refusal) = self.admit(client) {
            return out.push(Reply::refused(conn, refusal));
        }
        let mut reservation = request.reservation;
        let id = shared_id(&self.inboxes, &request.id);
        let parked = Parked { id: Arc::clone(&id), role: Role::Inbox(kind, client), timer: None };
        let mut parked = match self.charge(parked, &mut reservation) {
            Ok(parked) => parked,
            Err(refusal) => return out.push(Reply::refused(conn, refusal)),
        };
        let inbox = self.inboxes.entry(id).or_default();
        match kind {
            WaitsFor::Message => inbox.getters.push_back(conn),
            WaitsFor::Ack => match inbox.message.as_mut() {
                Some(stored) => stored.awaiters.get_or_insert_with(Box::default).push_back(conn),
                // Unreachable: an `/await` parks only on a stored message (`inbox` above).
                None => return out.push(Reply::to(conn, Answer::NoMessage)),
            },
        }
        let deadline = crate::wheel::deadline_after(now, self.settings.inbox_timeout);
        parked.timer = Some(self.wheel.insert(deadline, Timer::Waiter(conn)));
        self.park(conn, parked);
    }

    /// Removes a waiter that left or timed out from its inbox's list.
    pub(super) fn inbox_waiter_gone(&mut self, conn: ConnId, id: &[u8], kind: WaitsFor) {
        let parked = &self.parked;
        if let Some(inbox) = self.inboxes.get_mut(id) {
            match kind {
                WaitsFor::Message => inbox.getters.remove(conn, |c| parked.contains_key(&c)),
                WaitsFor::Ack => {
                    if let Some(stored) = inbox.message.as_mut() {
                        if let Some(awaiters) = &mut stored.awaiters {
                            awaiters.remove(conn, |c| parked.contains_key(&c));
                            if awaiters.is_empty() {
                                stored.awaiters = None;
                            }
                        }
                    }
                }
            }
        }
        self.inbox_settle(id);
    }

    /// The message's TTL ran out: it is gone, and those awaiting its acknowledgement hear 404.
    pub(super) fn inbox_message_expired(&mut self, id: &[u8], out: &mut Vec<Reply>) {
        let Some(inbox) = self.inboxes.get_mut(id) else {
            return;
        };
        let Some(stored) = inbox.message.take() else {
            return;
        };
        let mut stored = self.spare_stored.take(stored);
        let awaiters = stored.take_awaiters();
        for waiter in awaiters.into_ids() {
            if self.unpark(waiter).is_none() {
                continue; // left: not parked any more
            }
            out.push(Reply::to(waiter, Answer::NoMessage));
        }
        self.inbox_settle(id);
    }

    /// Drops the stored message of `id`, if any, before it is replaced.
    /// Gives back those who awaited its acknowledgement, to be told it was replaced.
    fn inbox_drop_message(&mut self, id: &[u8]) -> Conns {
        let Some(stored) = self.inboxes.get_mut(id).and_then(|i| i.message.take()) else {
            return Conns::default();
        };
        let mut stored = self.spare_stored.take(stored);
        self.wheel.cancel(stored.timer);
        stored.take_awaiters()
    }

    /// Forgets an inbox with no message and nobody waiting.
    fn inbox_settle(&mut self, id: &[u8]) {
        let idle = |i: &Inbox| i.message.is_none() && i.getters.is_empty();
        if self.inboxes.get(id).is_some_and(idle) {
            self.inboxes.remove(id);
        }
    }
}

/// A stored message, as a GET gets it: shared with the store, content type and all.
fn message_answer(body: &Payload) -> Answer {
    Answer::InboxMessage { body: body.clone() }
}
