//! Snapshots of the stored messages for `--state-file`, and their restoration (see `crate::persist`).
//!
//! Pure: the caller passes both clocks, the monotonic `now` the registry runs on and the
//! wall-clock `now_ms` the file uses, so that the time a relay was down counts against a
//! message's remaining life.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::burned::{DigestKey, Entry};
use super::held::HeldBody;
use super::inbox::Stored;
use super::link::Message;
use super::{ConnId, Id, LinkMethod, Party, Query, Registry, Timer};
use crate::limits::{Charged, MemoryBudget};
use crate::payload::Payload;
use crate::persist::{BurnedEntry, InboxEntry, LinkEntry, Snapshot};
use crate::wheel::{deadline_after, MAX_WAIT};

/// What [`Registry::restore`] did with a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// `/inbox` messages restored.
    pub inbox: usize,
    /// `/link` messages restored.
    pub link: usize,
    /// Entries whose time ran out while the relay was down.
    pub expired: usize,
    /// Entries dropped because the memory budget (`--max-memory`) had no room for them.
    pub over_budget: usize,
    /// Burned ids restored (`--single-use`).
    pub burned: usize,
}

impl Registry {
    /// Every stored message, as plain data; the changes not taken yet are in it, and dropped.
    pub fn snapshot(&mut self, now: Instant, now_ms: u64) -> Snapshot {
        self.touched.clear();
        let mut snapshot = Snapshot::default();
        for (id, inbox) in &self.inboxes {
            if let Some(stored) = &inbox.message {
                snapshot.inbox.push(inbox_entry(id, stored, now, now_ms));
            }
        }
        // A delivery being written is not delivered yet: it is saved ahead of its id's queue.
        let mut deliveries: Vec<(&ConnId, _)> = self.deliveries.iter().collect();
        deliveries.sort_unstable_by_key(|(conn, _)| **conn);
        for (_, delivery) in deliveries {
            snapshot.link.push(link_entry(&delivery.id, &delivery.message, now, now_ms));
        }
        for (id, channel) in &self.links {
            for message in channel.messages() {
                snapshot.link.push(link_entry(id, message, now, now_ms));
            }
        }
        if let Some(burned) = &self.burned {
            snapshot.burn_key = Some(burned.key.to_bytes());
            let live = burned.order.iter().filter(|e| e.until > now);
            let entry = |e: &Charged<Entry>| BurnedEntry {
                digest: e.digest,
                expires_ms: wall(e.until, now, now_ms),
            };
            snapshot.burned = live.map(entry).collect();
        }
        snapshot
    }

    /// Restores the burned ids of `snapshot` with what is left of their time (at most
    /// `--burned-for`), the newest `--max-burned` of them, charged to `budget` to no client.
    fn restore_burned(
        &mut self,
        now: Instant,
        now_ms: u64,
        snapshot: &Snapshot,
        budget: &Arc<MemoryBudget>,
        done: &mut Restored,
    ) {
        let (Some(burned), Some(key)) = (&mut self.burned, snapshot.burn_key) else { return };
        burned.key = DigestKey::from_bytes(key);
        let mut entries: Vec<BurnedEntry> = snapshot.burned.clone();
        entries.sort_by_key(|e| e.expires_ms);
        for entry in entries {
            if entry.expires_ms <= now_ms {
                done.expired += 1;
                continue;
            }
            let left = Duration::from_millis(entry.expires_ms - now_ms).min(burned.retention);
            let until = crate::wheel::deadline_after(now, left);
            let Some(mut charge) = budget.reserve(0) else { continue };
            match burned.insert(entry.digest, until, &mut charge) {
                Ok(true) => done.burned += 1,
                Ok(false) => {}
                Err(_) => done.over_budget += 1,
            }
        }
        if let Some(next) = burned.expire(now) {
            self.burned_timer = Some(self.wheel.insert(next, Timer::Burned));
        }
    }

    /// Restores the messages of `snapshot` with what is left of their time, into a registry
    /// that holds none yet. Each restored value is charged to `budget`, to no client, as when
    /// it was first stored.
    pub fn restore(
        &mut self,
        now: Instant,
        now_ms: u64,
        snapshot: Snapshot,
        budget: &Arc<MemoryBudget>,
    ) -> Restored {
        let mut done = Restored::default();
        self.restore_burned(now, now_ms, &snapshot, budget, &mut done);
        // A message still alive: its deadline and an empty charge on the budget to charge it
        // from; else it is counted as expired and left out.
        let admit = |done: &mut Restored, expires_ms: u64| {
            if expires_ms <= now_ms {
                done.expired += 1;
                return None;
            }
            // What is left is at most a day (MAX_WAIT), whatever the file says.
            let left = Duration::from_millis(expires_ms - now_ms).min(MAX_WAIT);
            Some((deadline_after(now, left), budget.reserve(0)?))
        };
        for entry in snapshot.inbox {
            let Some((deadline, mut reservation)) = admit(&mut done, entry.expires_ms) else {
                continue;
            };
            let id = Id::from(entry.id);
            if self.inboxes.contains_key(&id) {
                continue;
            }
            let body = (!entry.acked).then(|| HeldBody::new(&self.held, entry.body));
            let body = body.map(|body| Charged::new(body, &mut reservation)).transpose();
            let Ok(body) = body else {
                done.over_budget += 1;
                continue;
            };
            let timer = self.wheel.insert(deadline, Timer::InboxMessage(Arc::clone(&id)));
            let stored = Stored { body, deadline, timer, id_len: id.len(), awaiters: None };
            let Ok(stored) = Charged::new(stored, &mut reservation) else {
                self.wheel.cancel(timer);
                done.over_budget += 1;
                continue;
            };
            self.inboxes.entry(id).or_default().message = Some(self.spare_stored.slot(stored));
            done.inbox += 1;
        }
        for (n, entry) in snapshot.link.into_iter().enumerate() {
            let Some((deadline, mut reservation)) = admit(&mut done, entry.expires_ms) else {
                continue;
            };
            // Tickets of restored messages count down from the top: no connection has them, so
            // there is no sender to answer, as when a sender has disconnected.
            let ticket = ConnId::MAX - n as ConnId;
            let sender = Party {
                ip: entry.sender_ip,
                port: entry.sender_port,
                arrived_ms: entry.sender_arrived_ms,
                method: LinkMethod::Post,
                query: Query::new(entry.sender_query),
            };
            let message = Message {
                ticket,
                sender,
                body: HeldBody::new(&self.held, entry.body),
                deadline,
                timer: None,
                id_len: entry.id.len(),
            };
            let Ok(mut message) = Charged::new(message, &mut reservation) else {
                done.over_budget += 1;
                continue;
            };
            let id = super::shared_id(&self.links, &entry.id);
            let timer = Timer::LinkMessage { id: Arc::clone(&id), ticket };
            message.timer = Some(self.wheel.insert(deadline, timer));
            self.links
                .entry(id)
                .or_default()
                .senders(&mut self.spare_senders)
                .messages
                .push_back(message);
            done.link += 1;
        }
        done
    }
}

/// `deadline` on the wall clock, Unix milliseconds.
pub(super) fn wall(deadline: Instant, now: Instant, now_ms: u64) -> u64 {
    now_ms + deadline.saturating_duration_since(now).as_millis() as u64
}

/// The stored `/inbox` message of `id`, as plain data.
pub(super) fn inbox_entry(id: &[u8], stored: &Stored, now: Instant, now_ms: u64) -> InboxEntry {
    InboxEntry {
        id: id.to_vec(),
        acked: stored.acked(),
        expires_ms: wall(stored.deadline, now, now_ms),
        // An acknowledged message keeps neither body nor content type: nothing shows them.
        body: stored.body.as_ref().map_or_else(Payload::empty, |b| b.bytes().clone()),
    }
}

/// A `/link` message of `id`, as plain data.
pub(super) fn link_entry(id: &[u8], m: &Message, now: Instant, now_ms: u64) -> LinkEntry {
    LinkEntry {
        id: id.to_vec(),
        ticket: m.ticket,
        expires_ms: wall(m.deadline, now, now_ms),
        body: m.body.bytes().clone(),
        sender_ip: m.sender.ip,
        sender_port: m.sender.port,
        sender_arrived_ms: m.sender.arrived_ms,
        sender_query: m.sender.query.to_string(),
    }
}
