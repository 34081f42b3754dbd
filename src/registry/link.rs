//! `/link/{id}`: the httprelay.io link method, a synchronous one-to-one hand-off (protocol §2).
//!
//! ```text
//!  GET (receiver) ──► receivers FIFO ──┐
//!                                      ├─► pair ──► delivery in flight ──taken──► sender 200
//!  POST (sender) ───► messages FIFO ───┘                     │
//!                                                            └─not taken──► message back at
//!                                                               the head of the FIFO, next receiver
//! ```
//!
//! A receiver waits `--link-timeout`, then 408. A message waits as long from its POST, whether or
//! not its sender is still connected (a fully received body is meant to be delivered); its
//! sender, if still there, is answered only once a receiver took the whole message (the
//! delivery rule, protocol §2). The first non-empty `wsecret` claims the id for senders
//! until it has been idle for [`CLAIM_IDLE`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::conns::Conns;
use super::held::HeldBody;
use super::{shared_id, Id, LinkMethod, Query, CLAIM_IDLE};
use super::{
    Answer, ConnId, Parked, Party, Registry, RegistryRefusal, Reply, Request, Role, Timer,
};
use crate::auth::same_secret;
use crate::identity::ClientKey;
use crate::limits::{Charged, Footprint, Reservation, ENTRY_COST};
use crate::spare::SpareBoxes;
use crate::wheel::TimerId;

/// One `/link` id: who waits on it and whether a sender claimed it.
#[derive(Debug, Default)]
pub(super) struct Channel {
    receivers: Conns,
    /// What senders left on the id, boxed: an id on which only a receiver waits, the common
    /// case while receivers are parked, costs a pointer for it. The box, with its queue's room
    /// for one message, is reused (`Registry::spare_senders`).
    senders: Option<Box<Senders>>,
}

/// The senders' side of a `/link` id.
#[derive(Debug, Default)]
pub(super) struct Senders {
    pub(super) messages: VecDeque<Charged<Message>>,
    /// Messages being written to a receiver.
    in_flight: u32,
    claim: Option<Charged<Claim>>,
    idle_timer: Option<TimerId>,
}

/// A `/link` id's write claim (`wsecret`): a keyed digest of the first sender's secret, never the
/// secret itself, so a claim costs the same whatever the secret's length, and no secret is kept
/// past its request (nor written to the state file). Charged while it lives: up to
/// [`CLAIM_IDLE`] after its id's last message, with the id's entry it keeps.
#[derive(Debug)]
pub(super) struct Claim {
    digest: [u8; 16],
    id_len: usize,
}

/// What a claim costs besides its id: the senders' side of its channel, the channel's map slot
/// and its idle timer, which it keeps alive alone once the id's messages are gone (the
/// registry's `charges` tests measure it; no connection comes with it).
pub(super) const CLAIM_COST: usize = 320;

impl Footprint for Claim {
    fn footprint(&self) -> usize {
        CLAIM_COST + self.id_len
    }
}

impl Claim {
    /// The claim of a writer presenting the secret whose digest is `digest`, on an id of
    /// `id_len` bytes.
    pub(super) fn new(digest: [u8; 16], id_len: usize) -> Claim {
        Claim { digest, id_len }
    }

    /// Whether a writer presenting the secret whose digest is `digest` (none: no secret) may
    /// write to the claimed id.
    pub(super) fn admits(&self, digest: Option<[u8; 16]>) -> bool {
        digest.is_some_and(|d| same_secret(&self.digest, &d))
    }
}

impl Channel {
    fn is_idle(&self) -> bool {
        self.receivers.is_empty()
            && self.senders.as_ref().is_none_or(|s| s.messages.is_empty() && s.in_flight == 0)
    }

    /// The senders' side, made when first needed, in a spare box if there is one.
    pub(super) fn senders(&mut self, spares: &mut SpareBoxes<Senders>) -> &mut Senders {
        self.senders.get_or_insert_with(|| spares.pop().unwrap_or_default())
    }

    /// The messages waiting for a receiver, in order.
    pub(super) fn messages(&self) -> impl DoubleEndedIterator<Item = &Message> {
        self.senders.iter().flat_map(|s| s.messages.iter().map(|m| &**m))
    }

    fn has_message(&self) -> bool {
        self.senders.as_ref().is_some_and(|s| !s.messages.is_empty())
    }

    fn claim(&self) -> Option<&Claim> {
        self.senders.as_ref()?.claim.as_deref()
    }

    fn take_idle_timer(&mut self) -> Option<TimerId> {
        self.senders.as_mut()?.idle_timer.take()
    }

    /// Gives the senders' side back to `spares` once it holds nothing. A box whose queue grew
    /// past room for one message is freed instead, so a spare holds no more than one's room.
    fn tidy(&mut self, spares: &mut SpareBoxes<Senders>) {
        let empty = |s: &Senders| {
            s.messages.is_empty() && s.in_flight == 0 && s.claim.is_none() && s.idle_timer.is_none()
        };
        if !self.senders.as_deref().is_some_and(empty) {
            return;
        }
        if let Some(senders) = self.senders.take().filter(|s| s.messages.capacity() <= 1) {
            spares.keep(senders);
        }
    }

    /// Messages of this id being written to a receiver.
    #[cfg(test)]
    pub(super) fn in_flight(&self) -> usize {
        self.senders.as_ref().map_or(0, |s| s.in_flight as usize)
    }
}

impl Party {
    /// The party of `request`, which gives it its query (kept as it came: no copy).
    pub(super) fn of(request: &mut Request, method: LinkMethod) -> Party {
        Party {
            ip: request.client.ip(),
            port: request.client.port(),
            arrived_ms: request.arrived_ms,
            method,
            query: Query::new(std::mem::take(&mut request.query)),
        }
    }
}

/// A sender's message waiting for a receiver. `ticket` is the sender's connection id.
#[derive(Debug)]
pub(super) struct Message {
    pub(super) ticket: ConnId,
    pub(super) sender: Party,
    /// The body with its content type.
    pub(super) body: HeldBody,
    pub(super) deadline: Instant,
    pub(super) timer: Option<TimerId>,
    /// The length of its id, charged with it (the id is shared with its channel).
    pub(super) id_len: usize,
}

impl Footprint for Message {
    fn footprint(&self) -> usize {
        ENTRY_COST + self.id_len + self.sender.query.len() + self.body.footprint()
    }
}

/// What [`Registry::charge_writer`] charged, and what is left of the request's reservation.
pub(super) struct Writer {
    pub(super) message: Charged<Message>,
    pub(super) parked: Charged<Parked>,
    pub(super) rest: Reservation,
}

/// A message being written to a receiver, until [`super::Event::DeliveryEnded`].
#[derive(Debug)]
pub(super) struct Delivery {
    pub(super) id: Id,
    pub(super) message: Charged<Message>,
    receiver: Party,
}

impl Registry {
    pub(super) fn link_receive(
        &mut self,
        now: Instant,
        conn: ConnId,
        mut request: Request,
        out: &mut Vec<Reply>,
    ) {
        let client = ClientKey::of(request.client.ip());
        let has_message = self.links.get(&*request.id).is_some_and(Channel::has_message);
        if !has_message {
            if let Err(refusal) = self.admit(client) {
                return out.push(Reply::refused(conn, refusal));
            }
        }
        let role = Role::LinkReceiver(Party::of(&mut request, LinkMethod::Get));
        let mut reservation = request.reservation;
        let id = shared_id(&self.links, &request.id);
        let parked = Parked { id: Arc::clone(&id), role, timer: None };
        let mut parked = match self.charge(parked, &mut reservation) {
            Ok(parked) => parked,
            Err(refusal) => return out.push(Reply::refused(conn, refusal)),
        };
        let channel = self.links.entry(Arc::clone(&id)).or_default();
        if let Some(timer) = channel.take_idle_timer() {
            self.wheel.cancel(timer);
        }
        channel.receivers.push_back(conn);
        let deadline = crate::wheel::deadline_after(now, self.settings.link_timeout);
        parked.timer = Some(self.wheel.insert(deadline, Timer::Waiter(conn)));
        self.park(conn, parked);
        self.link_pair(&id, out);
    }

    pub(super) fn link_send(
        &mut self,
        now: Instant,
        conn: ConnId,
        mut request: Request,
        out: &mut Vec<Reply>,
    ) {
        let client = ClientKey::of(request.client.ip());
        let digest = request.wsecret.as_deref().map(|secret| self.secret_digest(secret));
        let channel = self.links.get(&*request.id);
        let claim = channel.and_then(Channel::claim);
        if claim.is_some_and(|claim| !claim.admits(digest)) {
            return out.push(Reply::refused(conn, RegistryRefusal::Claimed));
        }
        let claimed = claim.is_some();
        if channel.is_none_or(|c| c.receivers.is_empty()) {
            if let Err(refusal) = self.admit(client) {
                return out.push(Reply::refused(conn, refusal));
            }
        }
        // Everything the request leaves held is charged before anything changes.
        let sender = Party::of(&mut request, LinkMethod::Post);
        let id = shared_id(&self.links, &request.id);
        let role = Role::LinkSender(client);
        let written = self.charge_writer(now, conn, &id, sender, role, request);
        let Writer { mut message, parked, rest: mut reservation } = match written {
            Ok(written) => written,
            Err(refusal) => return out.push(Reply::refused(conn, refusal)),
        };
        let new_claim = digest
            .filter(|_| !claimed)
            .map(|digest| self.charge(Claim::new(digest, id.len()), &mut reservation));
        let new_claim = match new_claim.transpose() {
            Ok(claim) => claim,
            Err(refusal) => return out.push(Reply::refused(conn, refusal)),
        };
        let deadline = message.deadline;
        let channel = self.links.entry(Arc::clone(&id)).or_default();
        let senders = channel.senders(&mut self.spare_senders);
        if senders.claim.is_none() {
            senders.claim = new_claim;
        }
        if let Some(timer) = senders.idle_timer.take() {
            self.wheel.cancel(timer);
        }
        let timer = Timer::LinkMessage { id: Arc::clone(&id), ticket: conn };
        message.timer = Some(self.wheel.insert(deadline, timer));
        if senders.messages.capacity() == 0 {
            // One message per id is the rule: room for one, not the four a first push makes.
            senders.messages.reserve_exact(1);
        }
        senders.messages.push_back(message);
        self.park(conn, parked);
        self.link_pair(&id, out);
    }

    /// Charges what a writer that waits for its counterpart on `id` leaves held: its message
    /// (`request`'s body with its content type, from `sender` on connection `conn`, deliverable for
    /// `--link-timeout` from `now`) and its parked entry as `role`, charged with the message
    /// (its own footprint is nothing). A `/link` sender and a `/sync` side are such writers.
    pub(super) fn charge_writer(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: &Id,
        sender: Party,
        role: Role,
        request: Request,
    ) -> Result<Writer, RegistryRefusal> {
        let mut rest = request.reservation;
        let message = Message {
            ticket: conn,
            sender,
            body: HeldBody::new(&self.held, request.body),
            deadline: crate::wheel::deadline_after(now, self.settings.link_timeout),
            timer: None,
            id_len: id.len(),
        };
        let message = self.charge(message, &mut rest)?;
        let parked = self.charge(Parked { id: Arc::clone(id), role, timer: None }, &mut rest)?;
        Ok(Writer { message, parked, rest })
    }

    /// Hands waiting messages to waiting receivers, first come first served.
    fn link_pair(&mut self, id: &Id, out: &mut Vec<Reply>) {
        loop {
            let Some(channel) = self.links.get_mut(id) else { return };
            if !channel.has_message() {
                return;
            }
            let parked = &self.parked;
            let Some(conn) = channel.receivers.pop_front(|c| parked.contains_key(&c)) else {
                return;
            };
            let Some(Parked { role: Role::LinkReceiver(receiver), .. }) = self.unpark(conn) else {
                continue;
            };
            let Some(channel) = self.links.get_mut(id) else { return };
            let senders = channel.senders(&mut self.spare_senders);
            let Some(mut message) = senders.messages.pop_front() else { return };
            if let Some(timer) = message.timer.take() {
                self.wheel.cancel(timer);
            }
            let answer = Answer::LinkMessage {
                body: message.body.bytes().clone(),
                own: receiver.clone(),
                sender: message.sender.clone(),
            };
            out.push(Reply { conn, answer, delivery: true });
            senders.in_flight += 1;
            self.deliveries.insert(conn, Delivery { id: Arc::clone(id), message, receiver });
        }
    }

    /// A delivery ended: taken (the sender hears it was delivered) or not (the message goes back
    /// to the head of its queue, for the next receiver). While draining, a sender whose message
    /// was not taken is answered at once: kept (with a state file) or shutting down.
    pub(super) fn link_delivery_ended(
        &mut self,
        now: Instant,
        conn: ConnId,
        taken: bool,
        out: &mut Vec<Reply>,
    ) {
        let Some(Delivery { id, mut message, receiver }) = self.deliveries.remove(&conn) else {
            return;
        };
        let channel = self.links.entry(Arc::clone(&id)).or_default();
        let senders = channel.senders(&mut self.spare_senders);
        senders.in_flight = senders.in_flight.saturating_sub(1);
        if taken {
            self.counts.link_delivered += 1;
            let (Message { ticket, sender, .. }, mut charge) = message.into_parts();
            if self.unpark(ticket).is_some() {
                out.push(Reply::to(ticket, Answer::LinkDelivered { own: sender, receiver }));
            }
            if self.burn(now, super::Protocol::Link, &id, &mut charge) {
                self.link_refuse_burned(&id, out);
            }
            return self.link_settle(now, &id);
        }
        let ticket = message.ticket;
        let timer = Timer::LinkMessage { id: Arc::clone(&id), ticket };
        message.timer = Some(self.wheel.insert(message.deadline, timer));
        senders.messages.push_front(message);
        if self.draining && self.unpark(ticket).is_some() {
            let answer = if self.settings.keeps_messages {
                Answer::LinkKept
            } else {
                Answer::Refused(RegistryRefusal::ShuttingDown)
            };
            out.push(Reply::to(ticket, answer));
        }
        self.link_pair(&id, out);
    }

    /// An id just burned (`--single-use`) takes nothing more: those waiting on it, receivers and
    /// senders of messages not taken, hear so now rather than at their timeout.
    fn link_refuse_burned(&mut self, id: &Id, out: &mut Vec<Reply>) {
        let Some(channel) = self.links.get_mut(id) else { return };
        let receivers = std::mem::take(&mut channel.receivers).into_ids();
        let messages = channel.senders.as_mut().map(|s| std::mem::take(&mut s.messages));
        let Some(retention) = self.burned.as_ref().map(|b| b.retention) else { return };
        let refusal = Answer::Refused(RegistryRefusal::Burned { retention });
        for conn in receivers {
            if self.unpark(conn).is_some() {
                out.push(Reply::to(conn, refusal.clone()));
            }
        }
        for mut message in messages.into_iter().flatten() {
            if let Some(timer) = message.timer.take() {
                self.wheel.cancel(timer);
            }
            if self.settings.keeps_messages {
                let (id, ticket) = (id.to_vec(), message.ticket);
                self.touched.push(super::changes::Touched::LinkGone { id, ticket });
            }
            if self.unpark(message.ticket).is_some() {
                out.push(Reply::to(message.ticket, refusal.clone()));
            }
        }
    }

    pub(super) fn link_receiver_gone(&mut self, now: Instant, conn: ConnId, id: &Id) {
        if let Some(channel) = self.links.get_mut(id) {
            let parked = &self.parked;
            channel.receivers.remove(conn, |c| parked.contains_key(&c));
        }
        self.link_settle(now, id);
    }

    pub(super) fn link_message_expired(
        &mut self,
        now: Instant,
        id: &Id,
        ticket: ConnId,
        out: &mut Vec<Reply>,
    ) {
        let Some(senders) = self.links.get_mut(id).and_then(|c| c.senders.as_mut()) else {
            return;
        };
        let Some(at) = senders.messages.iter().position(|m| m.ticket == ticket) else {
            return;
        };
        senders.messages.remove(at);
        if self.unpark(ticket).is_some() {
            self.counts.timeouts += 1;
            let after = self.settings.link_timeout;
            let answer = Answer::TimedOut { protocol: super::Protocol::Link, after };
            out.push(Reply::to(ticket, answer));
        }
        self.link_settle(now, id);
    }

    pub(super) fn link_claim_expired(&mut self, id: &[u8]) {
        if self.links.get(id).is_some_and(Channel::is_idle) {
            self.links.remove(id);
        }
    }

    /// Forgets an idle channel, or, if a sender claimed it, starts the claim's idle countdown.
    fn link_settle(&mut self, now: Instant, id: &Id) {
        let Some(channel) = self.links.get_mut(id) else {
            return;
        };
        channel.tidy(&mut self.spare_senders);
        if !channel.is_idle() {
            return;
        }
        match channel.senders.as_mut() {
            None => {
                self.links.remove(id);
            }
            Some(senders) if senders.idle_timer.is_none() => {
                let timer = Timer::LinkClaim(Arc::clone(id));
                senders.idle_timer = Some(self.wheel.insert(now + CLAIM_IDLE, timer));
            }
            Some(_) => {}
        }
    }
}
