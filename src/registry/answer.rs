//! What the registry answers a request with, as plain values (protocol §2–§4).
//!
//! The registry decides *what happened* (a message handed over, a wait that ran out, a limit
//! reached); `src/http/render.rs` decides how that is said in HTTP: status, headers, sentence.
//! So the relay's rules are tested here without any HTTP type, and the wording lives in one place.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::payload::Payload;

/// One side of a `/link` hand-off, as its counterpart sees it (httprelay.io's `HttpRelay-*` and
/// `X-Real-*` metadata).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Party {
    /// The client's address (after trusted-proxy resolution).
    pub ip: IpAddr,
    /// The client's port, or 0 when it is not known.
    pub port: u16,
    /// When the request arrived, Unix milliseconds.
    pub arrived_ms: u64,
    /// `GET` (a receiver) or `POST` (a sender).
    pub method: LinkMethod,
    /// The query without `wsecret` and `seqid`, keys sorted, re-encoded.
    pub query: Query,
}

/// A party's query for its counterpart (`HttpRelay-Query`). It is kept as long as its party
/// waits and is usually empty, so it is one pointer wide (a `Box<str>` is two) and allocates
/// only when there is one: that keeps a parked request in musl's 96-byte class
/// (`registry::tests`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
// The outer box is the point: it is thin where the `Box<str>` inside is not.
#[allow(clippy::redundant_allocation)]
pub struct Query(Option<Box<Box<str>>>);

impl Query {
    /// Keeps `query`; an empty one costs nothing.
    pub fn new(query: String) -> Query {
        Query((!query.is_empty()).then(|| Box::new(query.into_boxed_str())))
    }

    /// The query, or `""`.
    pub fn as_str(&self) -> &str {
        self.0.as_deref().map_or("", |query| query)
    }
}

impl std::ops::Deref for Query {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The method of one side of a `/link` hand-off or a `/sync` exchange, or of an `/mcast`
/// producer, for `HttpRelay-Method`: one byte, not a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkMethod {
    /// A `/link` receiver, or a `/sync` side.
    Get,
    /// A `/link` sender or `/mcast` producer, or a `/sync` side.
    Post,
    /// `/sync` sides may use any of the methods its route allows (protocol §10).
    Head,
    Put,
    Patch,
    Delete,
}

impl LinkMethod {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkMethod::Get => "GET",
            LinkMethod::Post => "POST",
            LinkMethod::Head => "HEAD",
            LinkMethod::Put => "PUT",
            LinkMethod::Patch => "PATCH",
            LinkMethod::Delete => "DELETE",
        }
    }

    /// The method named `name` (case-sensitive, as HTTP methods are), if it is one of these.
    pub fn of(name: &str) -> Option<LinkMethod> {
        use LinkMethod::*;
        [Get, Post, Head, Put, Patch, Delete].into_iter().find(|m| m.as_str() == name)
    }
}

impl std::fmt::Display for LinkMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The protocol a wait belongs to, for the sentence of its 408.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `/link`, bounded by `--link-timeout`.
    Link,
    /// `/inbox`, bounded by `--inbox-timeout`.
    Inbox,
}

/// What the registry answers one request with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A `/link` receiver gets a sender's message, or a `/sync` side its counterpart's (then
    /// `sender` is the counterpart). Sent as a *delivery*: the sender hears
    /// [`Answer::LinkDelivered`] (a `/sync` counterpart its own answer) only once the receiver
    /// took every byte.
    /// `body` carries the sender's content type, if any.
    LinkMessage { body: Payload, own: Party, sender: Party },
    /// A `/link` sender: a receiver took the whole message.
    LinkDelivered { own: Party, receiver: Party },
    /// A `/link` sender at shutdown: its message was not delivered but is kept in the state file
    /// and will be offered again after the restart, so the sender must not send it again.
    LinkKept,
    /// An `/mcast` GET: the kept message numbered `seq`, with its producer's metadata (and the
    /// reader's arrival, Unix ms), and the channel's id for the cookie that names the next.
    McastMessage { body: Payload, arrived_ms: u64, producer: Party, seq: u64, id: Arc<[u8]> },
    /// An `/mcast` POST: kept as message `seq`.
    McastKept { seq: u64 },
    /// An `/inbox` GET or HEAD: the stored message (it stays stored).
    InboxMessage { body: Payload },
    /// Done, nothing to say: a POST to `/inbox` stored, a DELETE acknowledged, an `/await`'s
    /// acknowledgement arrived.
    Done,
    /// `/inbox/{id}/ack`: whether the stored message was acknowledged.
    Acknowledged(bool),
    /// The inbox holds no live message.
    NoMessage,
    /// An `/await` whose message was replaced by a newer one before it was acknowledged.
    Replaced,
    /// A wait ran out.
    TimedOut { protocol: Protocol, after: Duration },
    /// A request refused by one of the registry's limits or rules.
    Refused(RegistryRefusal),
}

/// Why the registry refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistryRefusal {
    /// `--max-parked` requests wait already.
    Full { max: usize },
    /// The client has `--max-parked-per-ip` requests waiting already.
    ParkedPerClient { waiting: usize },
    /// `--rate-per-id`: too many writes to one id; `wait` until the next is allowed.
    WriteRate { per_minute: u32, wait: Duration },
    /// [`MAX_WAITERS`](super::inbox::MAX_WAITERS) requests wait on the inbox already.
    InboxWaiters { max: usize },
    /// The `/link` id is claimed by a sender with another `wsecret`.
    Claimed,
    /// The relay is shutting down.
    ShuttingDown,
    /// What the request would leave held does not fit `--max-memory`.
    Memory,
    /// What the request would leave held passes the client's share, `limit` bytes
    /// (`--max-memory-per-ip`).
    MemoryPerClient { limit: usize },
    /// `--single-use`: the id's message was delivered less than `retention` ago
    /// (`--burned-for`), so it takes no other.
    Burned { retention: Duration },
}
