//! What a state file holds, as plain values: the stored messages ([`Snapshot`]) and each change
//! to them ([`Change`]), which `format.rs` encodes and the journal writes. The registry makes
//! and reads them; nothing here knows of either.

use std::net::IpAddr;

use crate::payload::Payload;

/// A stored `/inbox` message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxEntry {
    pub id: Vec<u8>,
    /// Acknowledged (the body is then empty; the entry remains for `/ack`).
    pub acked: bool,
    /// End of its TTL, Unix milliseconds.
    pub expires_ms: u64,
    /// The body with its content type, shared with the registry.
    pub body: Payload,
}

/// An undelivered `/link` message and what its receiver learns of the sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkEntry {
    pub id: Vec<u8>,
    /// Names the message among its id's until it is delivered (its sender's connection id, in
    /// the process that wrote it; every start rewrites the file with the tickets it gave).
    pub ticket: u64,
    /// End of its `--link-timeout`, Unix milliseconds.
    pub expires_ms: u64,
    /// The body with its content type, shared with the registry.
    pub body: Payload,
    pub sender_ip: IpAddr,
    pub sender_port: u16,
    pub sender_arrived_ms: u64,
    /// The sender's `HttpRelay-Query`, already filtered and encoded.
    pub sender_query: String,
}

/// An id burned by `--single-use` (protocol §4.4): its keyed digest, never the id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BurnedEntry {
    /// The digest of the id's kind and bytes under [`Snapshot::burn_key`].
    pub digest: [u8; 16],
    /// When it stops being refused, Unix milliseconds.
    pub expires_ms: u64,
}

/// Every message the relay holds, in delivery order per id, and with `--single-use` the ids
/// burned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub inbox: Vec<InboxEntry>,
    pub link: Vec<LinkEntry>,
    /// The key the burned ids' digests are made with: kept with them, or a restart could not
    /// recognise an id again. `None` without `--single-use`.
    pub burn_key: Option<[u8; 32]>,
    /// Burned ids, oldest first.
    pub burned: Vec<BurnedEntry>,
}

/// One change to the stored messages: a journal record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// An `/inbox` message stored, replacing any earlier one on its id.
    Inbox(InboxEntry),
    /// A `/link` message left by a sender (or the same one again: it replaces itself).
    Link(LinkEntry),
    /// The `/inbox` message of this id was acknowledged: its body is dropped.
    InboxAcked(Vec<u8>),
    /// The `/inbox` message of this id expired.
    InboxGone(Vec<u8>),
    /// A `/link` message was taken by a receiver, or expired.
    LinkGone { id: Vec<u8>, ticket: u64 },
    /// The key of the burned ids' digests: a compacted file holds it ahead of them.
    BurnKey([u8; 32]),
    /// An id was burned (`--single-use`); it is forgotten when it expires, so no record ends it.
    Burned(BurnedEntry),
}
