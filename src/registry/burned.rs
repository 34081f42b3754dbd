//! Burned ids (`--single-use`, protocol §4.4): an id whose message was delivered is refused for
//! `--burned-for`, so a captured QR code or channel id cannot carry a second message.
//!
//! An id is kept as a 128-bit keyed digest of its kind and bytes ([`DigestKey`], the digest
//! write claims keep of a secret), never the id: every entry is the same size, charged
//! [`BURN_COST`] to the memory budget, and the key is saved with the digests in the state file
//! so that a restart still recognises them. Entries are kept oldest first; the same retention
//! for all makes that the order they expire in, so expiry and the cap (`--max-burned`: at it,
//! the oldest is forgotten early and counted) both take from the front. The `/link` and `/inbox`
//! rules decide when to burn and what to refuse; this file only keeps the set.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use super::Protocol;
use crate::limits::{Charged, Footprint, Reservation, Shortage};

/// What one burned id is charged: its slot in the queue (digest, deadline and charge, 56
/// bytes) and in the map (digest and deadline, 32 bytes, and a control byte), each with room for
/// as many again as the collections grow by doubling (the registry's `charges` tests measure it).
pub(super) const BURN_COST: usize = 192;

/// Two SipHash-2-4 keys: a 128-bit keyed digest of a secret or an id, so what is kept has a
/// fixed size and does not reveal what it was made from. Kept in the state file for burned
/// ids, made fresh per process for write claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DigestKey([u64; 4]);

impl DigestKey {
    /// A key from the process's random source (std's `RandomState` keys, drawn from the OS).
    pub(crate) fn random() -> DigestKey {
        let mut words = [0; 4];
        for (n, word) in words.iter_mut().enumerate() {
            *word = RandomState::new().hash_one(n);
        }
        DigestKey(words)
    }

    /// The digest of `parts`, one after the other (each length-prefixed, so no two lists of
    /// parts give the same input).
    pub(crate) fn digest(&self, parts: &[&[u8]]) -> [u8; 16] {
        let mut digest = [0; 16];
        for (half, keys) in digest.chunks_exact_mut(8).zip(self.0.chunks_exact(2)) {
            // SipHash-2-4 with chosen keys: deprecated only in favour of `DefaultHasher`, whose
            // keys cannot be chosen, and these must be saved and read back.
            #[allow(deprecated)]
            let mut hasher = std::hash::SipHasher::new_with_keys(keys[0], keys[1]);
            for part in parts {
                hasher.write_usize(part.len());
                hasher.write(part);
            }
            half.copy_from_slice(&hasher.finish().to_le_bytes());
        }
        digest
    }

    /// The key as the state file keeps it.
    pub(crate) fn to_bytes(self) -> [u8; 32] {
        let mut bytes = [0; 32];
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(self.0) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        bytes
    }

    /// The key the state file kept.
    pub(crate) fn from_bytes(bytes: [u8; 32]) -> DigestKey {
        let mut words = [0; 4];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            *word = u64::from_be_bytes(chunk.try_into().unwrap_or_default());
        }
        DigestKey(words)
    }
}

/// One burned id: its digest and the end of its refusal.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) digest: [u8; 16],
    pub(super) until: Instant,
}

impl Footprint for Entry {
    fn footprint(&self) -> usize {
        BURN_COST
    }
}

/// The burned ids. See the module docs.
#[derive(Debug)]
pub(super) struct Burned {
    pub(super) key: DigestKey,
    /// How long an id stays burned (`--burned-for`).
    pub(super) retention: Duration,
    /// Most ids kept (`--max-burned`).
    max: usize,
    /// Oldest first; their deadlines never decrease.
    pub(super) order: VecDeque<Charged<Entry>>,
    /// Each burned digest and its end, to look up.
    digests: HashMap<[u8; 16], Instant>,
    /// Ids forgotten before their time because the cap was reached, since the start.
    pub(super) forgotten: u64,
}

impl Burned {
    /// An empty set whose digests are made with `key`.
    pub(super) fn new(key: DigestKey, retention: Duration, max: usize) -> Burned {
        let (order, digests) = (VecDeque::new(), HashMap::new());
        Burned { key, retention, max, order, digests, forgotten: 0 }
    }

    /// The digest an id of the channel kind `kind` is kept as.
    pub(super) fn digest(&self, kind: Protocol, id: &[u8]) -> [u8; 16] {
        let kind: &[u8] = match kind {
            Protocol::Link => b"link",
            Protocol::Inbox => b"inbox",
        };
        self.key.digest(&[kind, id])
    }

    /// Whether `digest` is burned at `now`.
    pub(super) fn contains(&self, digest: &[u8; 16], now: Instant) -> bool {
        // One that expired is here until the next tick, no longer refused.
        self.digests.get(digest).is_some_and(|&until| until > now)
    }

    /// Burns `digest` until `until`, charged from `from`; an id burned already keeps its
    /// earlier end (the caller expires what is due first). At the cap, the oldest is forgotten
    /// first. `false` when it was burned already.
    pub(super) fn insert(
        &mut self,
        digest: [u8; 16],
        until: Instant,
        from: &mut Reservation,
    ) -> Result<bool, Shortage> {
        if self.digests.contains_key(&digest) {
            return Ok(false);
        }
        let entry = Charged::new(Entry { digest, until }, from)?;
        while self.order.len() >= self.max {
            self.pop_front();
            self.forgotten += 1;
        }
        self.digests.insert(digest, until);
        self.order.push_back(entry);
        Ok(true)
    }

    /// Forgets every id whose time is over; returns the deadline of the oldest one left.
    pub(super) fn expire(&mut self, now: Instant) -> Option<Instant> {
        while self.order.front().is_some_and(|e| e.until <= now) {
            self.pop_front();
        }
        crate::limits::shrink_sparse(&mut self.digests);
        if self.order.capacity() > 64 && self.order.len() * 4 < self.order.capacity() {
            self.order.shrink_to(self.order.len() * 2);
        }
        self.order.front().map(|e| e.until)
    }

    fn pop_front(&mut self) {
        if let Some(entry) = self.order.pop_front() {
            self.digests.remove(&entry.digest);
        }
    }

    /// Burned ids kept now.
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MemoryBudget;
    use std::sync::Arc;

    const HOUR: Duration = Duration::from_secs(3600);

    /// An empty set of at most `max` ids, charged to a budget of `limit` bytes through `from`.
    fn empty(limit: Option<usize>, max: usize) -> (Arc<MemoryBudget>, Reservation, Burned) {
        let budget = MemoryBudget::new(limit);
        let from = budget.reserve(0).expect("nothing reserved yet");
        (budget, from, Burned::new(DigestKey::random(), HOUR, max))
    }

    #[test]
    fn a_digest_depends_on_key_kind_and_id_and_reads_back_from_its_bytes() {
        let key = DigestKey::random();
        assert_ne!(key, DigestKey::random(), "fresh keys differ");
        assert_eq!(DigestKey::from_bytes(key.to_bytes()), key);
        let set = Burned::new(key, HOUR, 10);
        assert_eq!(set.digest(Protocol::Link, b"id"), set.digest(Protocol::Link, b"id"));
        assert_ne!(
            set.digest(Protocol::Link, b"id"),
            set.digest(Protocol::Inbox, b"id"),
            "kinds are apart"
        );
        assert_ne!(set.digest(Protocol::Link, b"id"), set.digest(Protocol::Link, b"id2"));
        assert_ne!(key.digest(&[b"ab", b"c"]), key.digest(&[b"a", b"bc"]), "parts are apart");
        let other = Burned::new(DigestKey::random(), HOUR, 10);
        assert_ne!(set.digest(Protocol::Link, b"id"), other.digest(Protocol::Link, b"id"));
    }

    #[test]
    fn burned_ids_are_refused_until_they_expire_and_charged_until_forgotten() {
        let (budget, mut from, mut set) = empty(None, 10);
        let start = Instant::now();
        let (a, b) = (set.digest(Protocol::Link, b"a"), set.digest(Protocol::Link, b"b"));
        assert_eq!(set.insert(a, start + HOUR, &mut from), Ok(true));
        assert_eq!(set.insert(a, start + 2 * HOUR, &mut from), Ok(false), "burned already");
        assert_eq!(set.insert(b, start + 2 * HOUR, &mut from), Ok(true));
        assert_eq!(budget.used(), 2 * BURN_COST);
        assert!(set.contains(&a, start) && set.contains(&b, start));
        // At its end, an id is no longer refused, even before the tick forgets it.
        assert!(!set.contains(&a, start + HOUR));
        assert!(set.contains(&b, start + HOUR));
        assert_eq!(set.expire(start + HOUR), Some(start + 2 * HOUR));
        assert_eq!((set.len(), budget.used()), (1, BURN_COST));
        assert_eq!(set.expire(start + 2 * HOUR), None);
        assert_eq!((set.len(), budget.used(), set.forgotten), (0, 0, 0));
    }

    #[test]
    fn at_the_cap_the_oldest_is_forgotten_early_and_counted() {
        let (budget, mut from, mut set) = empty(None, 2);
        let start = Instant::now();
        let ids: Vec<[u8; 16]> = (0..3u8).map(|n| set.digest(Protocol::Inbox, &[n])).collect();
        for (n, &digest) in ids.iter().enumerate() {
            let until = start + HOUR + Duration::from_secs(n as u64);
            assert_eq!(set.insert(digest, until, &mut from), Ok(true));
        }
        assert_eq!((set.len(), set.forgotten, budget.used()), (2, 1, 2 * BURN_COST));
        assert!(!set.contains(&ids[0], start), "the oldest was forgotten");
        assert!(set.contains(&ids[1], start) && set.contains(&ids[2], start));
    }

    #[test]
    fn an_id_that_does_not_fit_the_budget_is_refused_and_nothing_changes() {
        let (_budget, mut from, mut set) = empty(Some(BURN_COST), 10);
        let now = Instant::now();
        let (a, b) = (set.digest(Protocol::Link, b"a"), set.digest(Protocol::Link, b"b"));
        assert_eq!(set.insert(a, now + HOUR, &mut from), Ok(true));
        assert_eq!(set.insert(b, now + HOUR, &mut from), Err(Shortage::Total));
        assert_eq!(set.len(), 1);
        assert!(!set.contains(&b, now));
    }
}
