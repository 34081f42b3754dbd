//! `/mcast/{id}`: httprelay.io's buffered one-to-many channel (protocol §11).
//!
//! ```text
//!  POST ──► kept as message `next` (0, 1, 2, ...), 200 at once ──► every waiting reader gets it
//!            └─ oldest evicted while the kept bodies pass --mcast-retain (never the newest)
//!  GET  ──► wanted (SeqId in the query, else the cookie, else none):
//!            none: the newest, or wait · > next: wait · < oldest: the oldest
//!            otherwise that one, waiting when it is `next`
//!  --mcast-idle after the last POST: the messages and the write claim are dropped
//! ```
//!
//! Messages stay while kept: any number of readers read each. A waiting reader is parked as a
//! `/link` receiver is (`--link-timeout`, then 408) and always waits for `next`, so a POST
//! answers every waiting reader. Readers are never sent a delivery: nothing is taken from the
//! channel, so there is nothing to put back. The first non-empty `wsecret` claims the channel
//! for producers, as on `/link`, until its messages are dropped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::conns::Conns;
use super::held::HeldBody;
use super::link::Claim;
use super::{
    shared_id, Answer, ConnId, Id, LinkMethod, Parked, Party, Registry, RegistryRefusal, Reply,
};
use super::{Request, Role, Timer};
use crate::identity::ClientKey;
use crate::limits::{Charged, Footprint, ENTRY_COST};
use crate::wheel::TimerId;

/// One `/mcast` channel.
#[derive(Debug, Default)]
pub(super) struct Channel {
    /// Kept messages, oldest first, numbered without gaps.
    messages: VecDeque<Charged<Kept>>,
    /// The number the next message gets.
    next: u64,
    /// Body bytes of `messages`, held to `--mcast-retain`.
    bytes: usize,
    readers: Conns,
    claim: Option<Charged<Claim>>,
    /// `--mcast-idle` after the last POST.
    idle_timer: Option<TimerId>,
}

/// A kept message, with what its readers are shown of its producer.
#[derive(Debug)]
pub(super) struct Kept {
    seq: u64,
    producer: Party,
    /// The body with its content type.
    body: HeldBody,
    /// The length of its id, charged with it (the id is the channel's map key).
    id_len: usize,
}

impl Footprint for Kept {
    fn footprint(&self) -> usize {
        ENTRY_COST + self.id_len + self.producer.query.len() + self.body.footprint()
    }
}

impl Channel {
    /// The bodies it keeps, for the registry's recount.
    #[cfg(test)]
    pub(super) fn bodies(&self) -> impl Iterator<Item = &HeldBody> {
        self.messages.iter().map(|kept| &kept.body)
    }

    /// The kept message a reader who wants `wanted` gets now, or `None` when it waits for
    /// `next` (protocol §11).
    fn pick(&self, wanted: Option<i64>) -> Option<&Kept> {
        let oldest = self.messages.front()?.seq;
        let at = match wanted {
            None => self.messages.len() - 1,
            Some(wanted) => match u64::try_from(wanted) {
                Ok(wanted) if wanted >= self.next => return None,
                Ok(wanted) if wanted >= oldest => usize::try_from(wanted - oldest).ok()?,
                _ => 0,
            },
        };
        self.messages.get(at).map(|kept| &**kept)
    }

    fn is_idle(&self) -> bool {
        self.messages.is_empty() && self.readers.is_empty() && self.idle_timer.is_none()
    }
}

/// What a reader who arrived at `arrived_ms` is answered with `kept` of channel `id`.
fn answer(id: &Id, kept: &Kept, arrived_ms: u64) -> Answer {
    Answer::McastMessage {
        body: kept.body.bytes().clone(),
        arrived_ms,
        producer: kept.producer.clone(),
        seq: kept.seq,
        id: Arc::clone(id),
    }
}

impl Registry {
    pub(super) fn mcast_post(
        &mut self,
        now: Instant,
        conn: ConnId,
        mut request: Request,
        out: &mut Vec<Reply>,
    ) {
        let digest = request.wsecret.as_deref().map(|secret| self.secret_digest(secret));
        let claim = self.mcasts.get(&request.id[..]).and_then(|c| c.claim.as_deref());
        if claim.is_some_and(|claim| !claim.admits(digest)) {
            return out.push(Reply::refused(conn, RegistryRefusal::Claimed));
        }
        let claimed = claim.is_some();
        let producer = Party::of(&mut request, LinkMethod::Post);
        let mut reservation = request.reservation;
        let id_len = request.id.len();
        let new_claim = digest
            .filter(|_| !claimed)
            .map(|digest| self.charge(Claim::new(digest, id_len), &mut reservation));
        let new_claim = match new_claim.transpose() {
            Ok(claim) => claim,
            Err(refusal) => return out.push(Reply::refused(conn, refusal)),
        };
        let body = HeldBody::new(&self.held, request.body);
        let kept = Kept { seq: 0, producer, body, id_len };
        let mut kept = match self.charge(kept, &mut reservation) {
            Ok(kept) => kept,
            Err(refusal) => return out.push(Reply::refused(conn, refusal)),
        };
        let id = shared_id(&self.mcasts, &request.id);
        let channel = self.mcasts.entry(Arc::clone(&id)).or_default();
        if channel.claim.is_none() {
            channel.claim = new_claim;
        }
        kept.seq = channel.next;
        channel.next += 1;
        out.push(Reply::to(conn, Answer::McastKept { seq: kept.seq }));
        // Every waiting reader gets it; ids whose reader left may still be in the list: they
        // are not parked.
        let mut answers = Vec::new();
        for reader in std::mem::take(&mut channel.readers).into_ids() {
            if let Some(&Role::McastReader(_, arrived)) = self.parked.get(&reader).map(|p| &p.role)
            {
                let arrived_ms = u64::from_ne_bytes(arrived);
                answers.push(Reply::to(reader, answer(&id, &kept, arrived_ms)));
            }
        }
        channel.bytes += kept.body.bytes().len();
        if channel.messages.capacity() == 0 {
            // Room for one, not the four a first push makes: most channels are short-lived.
            channel.messages.reserve_exact(1);
        }
        channel.messages.push_back(kept);
        while channel.bytes > self.settings.mcast_retain && channel.messages.len() > 1 {
            if let Some(evicted) = channel.messages.pop_front() {
                channel.bytes -= evicted.body.bytes().len();
            }
        }
        if let Some(timer) = channel.idle_timer.take() {
            self.wheel.cancel(timer);
        }
        let idle_end = crate::wheel::deadline_after(now, self.settings.mcast_idle);
        channel.idle_timer = Some(self.wheel.insert(idle_end, Timer::McastIdle(Arc::clone(&id))));
        for reply in answers {
            self.unpark(reply.conn);
            self.counts.mcast_fetched += 1;
            out.push(reply);
        }
    }

    pub(super) fn mcast_get(
        &mut self,
        now: Instant,
        conn: ConnId,
        request: Request,
        out: &mut Vec<Reply>,
    ) {
        if let Some((id, channel)) = self.mcasts.get_key_value(&request.id[..]) {
            if let Some(kept) = channel.pick(request.seq) {
                self.counts.mcast_fetched += 1;
                return out.push(Reply::to(conn, answer(id, kept, request.arrived_ms)));
            }
        }
        let client = ClientKey::of(request.client.ip());
        if let Err(refusal) = self.admit(client) {
            return out.push(Reply::refused(conn, refusal));
        }
        let mut reservation = request.reservation;
        let id = shared_id(&self.mcasts, &request.id);
        let role = Role::McastReader(client, request.arrived_ms.to_ne_bytes());
        let parked = Parked { id: Arc::clone(&id), role, timer: None };
        let mut parked = match self.charge(parked, &mut reservation) {
            Ok(parked) => parked,
            Err(refusal) => return out.push(Reply::refused(conn, refusal)),
        };
        self.mcasts.entry(id).or_default().readers.push_back(conn);
        let deadline = crate::wheel::deadline_after(now, self.settings.link_timeout);
        parked.timer = Some(self.wheel.insert(deadline, Timer::Waiter(conn)));
        self.park(conn, parked);
    }

    /// A waiting reader left or timed out.
    pub(super) fn mcast_reader_gone(&mut self, conn: ConnId, id: &[u8]) {
        let parked = &self.parked;
        if let Some(channel) = self.mcasts.get_mut(id) {
            channel.readers.remove(conn, |c| parked.contains_key(&c));
        }
        self.mcast_settle(id);
    }

    /// `--mcast-idle` passed since the channel's last POST: its messages and its claim go.
    /// Readers waiting still wait for `next`; without any, the channel is forgotten, and its
    /// numbers start again at 0.
    pub(super) fn mcast_expired(&mut self, id: &[u8]) {
        if let Some(channel) = self.mcasts.get_mut(id) {
            channel.idle_timer = None;
            channel.messages.clear();
            channel.bytes = 0;
            channel.claim = None;
        }
        self.mcast_settle(id);
    }

    /// Forgets a channel that keeps nothing and has nobody waiting.
    fn mcast_settle(&mut self, id: &[u8]) {
        if self.mcasts.get(id).is_some_and(Channel::is_idle) {
            self.mcasts.remove(id);
        }
    }
}
