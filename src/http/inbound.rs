//! What the other threads send the registry thread ([`Inbound`]), and how ([`ToRegistry`]): its
//! mailbox and a wake-up for the epoll set the thread waits in. The receiving end is the registry
//! thread's own (`registry_thread::channel`).

use std::sync::Arc;

use crossbeam_channel::Sender;

use super::conn::Connection;
use super::exchange::Exchange;
use crate::registry::{ConnId, Request};
use crate::threads::{Post, Waker};

/// What reaches the registry thread.
// `Request`, the large variant, is the common one: boxing it would add an allocation to every
// relay request.
#[allow(clippy::large_enum_variant)]
pub enum Inbound {
    /// A worker read and validated a relay request.
    Request { connection: Connection, exchange: Exchange, request: Request },
    /// An outbox thread finished a delivery: the receiver took it, or not. (The deliveries the
    /// registry thread finishes itself are reported to it directly.)
    DeliveryEnded { conn: ConnId, taken: bool },
    /// The relay is shutting down: answer every parked request, and every later one too.
    Drain,
    /// Hand the changes to the stored messages to the journal now (a snapshot if it needs one),
    /// then answer on the channel.
    Save(Sender<()>),
}

/// How other threads reach the registry thread: its mailbox, and a wake-up for the epoll set it
/// waits in. Cheap to clone.
#[derive(Clone)]
pub struct ToRegistry {
    queue: Post<Inbound>,
    waker: Arc<Waker>,
}

impl ToRegistry {
    /// Posts to `queue`, waking the thread through `waker`: made by the registry thread's
    /// `registry_thread::channel`, which owns the mailbox.
    pub(super) fn new(queue: Post<Inbound>, waker: Arc<Waker>) -> ToRegistry {
        ToRegistry { queue, waker }
    }

    /// Queues `inbound` and wakes the registry thread if it waits; false if it is gone.
    pub fn send(&self, inbound: Inbound) -> bool {
        let sent = self.queue.post(inbound);
        if sent {
            self.waker.wake();
        }
        sent
    }
}
