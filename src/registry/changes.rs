//! What changed in the stored messages, for the state file's journal (`crate::persist`).
//!
//! With `--state-file` (`Settings::keeps_messages`), [`Registry::handle`] notes the key of each
//! message it stores, acknowledges, hands over for good or lets expire, as a [`Touched`]; the
//! loop takes them with [`Registry::take_changes`], which reads each message as it is then. A
//! message stored and gone again before that has nothing left to read and is skipped (its
//! removal is still noted, and harmless to replay). The `/link` and `/inbox` rules know nothing
//! of this.

use std::time::Instant;

use super::snapshot::{inbox_entry, link_entry};
use super::{Action, Answer, ConnId, Event, Registry, Reply, Request, Timer};
use crate::persist::Change;

/// The key of a message that changed.
#[derive(Debug)]
pub(super) enum Touched {
    /// Stored or replaced.
    Inbox(Vec<u8>),
    /// Acknowledged.
    InboxAcked(Vec<u8>),
    /// Expired.
    InboxGone(Vec<u8>),
    /// Left by a sender; `receiver`: the connection it went straight to, if any.
    Link { id: Vec<u8>, ticket: ConnId, receiver: Option<ConnId> },
    /// Taken by a receiver, or expired.
    LinkGone { id: Vec<u8>, ticket: ConnId },
    /// An id burned (`--single-use`) until `until`.
    Burned { digest: [u8; 16], until: Instant },
}

/// What an event may change, noted before the registry acts on it.
pub(super) enum Before {
    /// A request that may store (`InboxPost`, `LinkSend`) or acknowledge (`InboxDelete` of a
    /// message not acknowledged yet).
    Request { conn: ConnId, action: Action, id: Vec<u8> },
    /// A delivery that may end taken.
    Delivery(Touched),
}

impl Registry {
    /// What `event` may change in the stored messages, when they are kept.
    pub(super) fn before(&self, event: &Event) -> Option<Before> {
        if !self.settings.keeps_messages {
            return None;
        }
        match event {
            Event::Arrived { conn, request: Request { action, id, .. } } => {
                let unacked = || {
                    let stored = self.inboxes.get(&id[..]).and_then(|i| i.message.as_ref());
                    stored.is_some_and(|s| !s.acked())
                };
                let changes = match action {
                    Action::InboxPost | Action::LinkSend => true,
                    Action::InboxDelete => unacked(),
                    _ => false,
                };
                changes.then(|| Before::Request { conn: *conn, action: *action, id: id.to_vec() })
            }
            Event::DeliveryEnded { conn, taken: true } => {
                let delivery = self.deliveries.get(conn)?;
                let (id, ticket) = (delivery.id.to_vec(), delivery.message.ticket);
                Some(Before::Delivery(Touched::LinkGone { id, ticket }))
            }
            _ => None,
        }
    }

    /// Notes what changed, given what [`before`](Self::before) saw and the replies the event
    /// produced.
    pub(super) fn after(&mut self, before: Before, replies: &[Reply]) {
        let touched = match before {
            Before::Delivery(touched) => touched,
            Before::Request { conn, action, id } => {
                let mine = replies.iter().find(|r| r.conn == conn).map(|r| &r.answer);
                match action {
                    Action::InboxPost if mine == Some(&Answer::Done) => Touched::Inbox(id),
                    Action::InboxDelete if mine == Some(&Answer::Done) => Touched::InboxAcked(id),
                    Action::LinkSend if !matches!(mine, Some(Answer::Refused(_))) => {
                        let receiver = replies.iter().find(|r| r.delivery).map(|r| r.conn);
                        Touched::Link { id, ticket: conn, receiver }
                    }
                    _ => return,
                }
            }
        };
        self.touched.push(touched);
    }

    /// Notes a message whose time ran out.
    pub(super) fn expiring(&mut self, timer: &Timer) {
        if !self.settings.keeps_messages {
            return;
        }
        match timer {
            Timer::InboxMessage(id) => self.touched.push(Touched::InboxGone(id.to_vec())),
            Timer::LinkMessage { id, ticket } => {
                self.touched.push(Touched::LinkGone { id: id.to_vec(), ticket: *ticket })
            }
            Timer::Waiter(_) | Timer::LinkClaim(_) | Timer::McastIdle(_) | Timer::Burned => {}
        }
    }

    /// Whether changes wait for [`take_changes`](Self::take_changes).
    pub fn has_changes(&self) -> bool {
        !self.touched.is_empty()
    }

    /// The changes since the last call (or [`snapshot`](Self::snapshot)), as the journal
    /// records them: each message read as it is now, with its deadline on the wall clock.
    pub fn take_changes(&mut self, now: Instant, now_ms: u64) -> Vec<Change> {
        let mut changes = Vec::with_capacity(self.touched.len());
        for touched in std::mem::take(&mut self.touched) {
            let change = match touched {
                Touched::Inbox(id) => {
                    let stored = self.inboxes.get(&id[..]).and_then(|i| i.message.as_deref());
                    let Some(stored) = stored else { continue };
                    Change::Inbox(inbox_entry(&id, stored, now, now_ms))
                }
                Touched::InboxAcked(id) => Change::InboxAcked(id),
                Touched::InboxGone(id) => Change::InboxGone(id),
                Touched::Link { id, ticket, receiver } => {
                    let delivering = receiver.and_then(|r| self.deliveries.get(&r));
                    let delivering = delivering.map(|d| &*d.message).filter(|m| m.ticket == ticket);
                    // A new message is last in its queue; one that went to another receiver
                    // since (the first took nothing) is found among all deliveries.
                    let queued = || {
                        let channel = self.links.get(&id[..])?;
                        channel.messages().rev().find(|m| m.ticket == ticket)
                    };
                    let redelivered = || {
                        let mut all = self.deliveries.values().map(|d| &*d.message);
                        all.find(|m| m.ticket == ticket)
                    };
                    let found = delivering.or_else(queued).or_else(redelivered);
                    let Some(message) = found else { continue };
                    Change::Link(link_entry(&id, message, now, now_ms))
                }
                Touched::LinkGone { id, ticket } => Change::LinkGone { id, ticket },
                Touched::Burned { digest, until } => {
                    let expires_ms = super::snapshot::wall(until, now, now_ms);
                    Change::Burned(crate::persist::BurnedEntry { digest, expires_ms })
                }
            };
            changes.push(change);
        }
        changes
    }
}
