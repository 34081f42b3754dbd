//! The memory budget (`--max-memory`, `--max-memory-per-ip`, protocol §4): bytes are reserved
//! before anything is allocated for them and given back when the [`Reservation`] is dropped.
//!
//! Whatever a client makes the relay hold past its request (a parked request, a stored or
//! acknowledged message, a write claim, a head or body being read) is a [`Charged`] value, or
//! owns a [`Reservation`] sized by the code that made it: the charge is made when the value is
//! and given back when it is dropped, so no path can forget it (protocol §4.3).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::identity::ClientKey;

/// What one held request costs beyond the bytes it keeps: its registry entry, its slots in the
/// maps and queues, its timer and its parked connection. BENCHMARKS.md ("What one parked `/link`
/// receiver holds") measures ~500 bytes of RSS per parked receiver with a short id in the static
/// build; the variable parts (id, query, content type, body) are charged byte for byte on top.
pub const ENTRY_COST: usize = 512;

/// The part of a connection's request buffer that is not charged: it is counted in the fixed
/// cost of a connection, which `--max-connections` bounds (protocol §4.3). So a small request
/// (`/health`, `/metrics`, any ordinary relay request) is read even while long heads hold the
/// whole budget; a head beyond it is charged as its buffer grows.
pub const HEAD_ALLOWANCE: usize = 1024;

/// State a client made the relay hold, with the bytes it occupies while it lives: the fixed
/// cost of its entry plus the lengths it keeps. Sizes only change by making a new value.
pub trait Footprint {
    /// Bytes this value holds, counted when it is made.
    fn footprint(&self) -> usize;
}

/// A value and its charge on the memory budget: made only by [`Charged::new`], which reserves
/// the value's [`Footprint`], and given back when it is dropped. See the module docs.
#[derive(Debug)]
pub struct Charged<T> {
    value: T,
    /// Held for its `Drop`, which gives the bytes back.
    _charge: Reservation,
}

impl<T: Footprint> Charged<T> {
    /// Charges `value`'s footprint, taken from `from` (what the gate reserved for the request)
    /// and, past what `from` holds, from the budget `from` was made from.
    pub fn new(value: T, from: &mut Reservation) -> Result<Charged<T>, Shortage> {
        let charge = from.split_off(value.footprint())?;
        Ok(Charged { value, _charge: charge })
    }
}

impl<T> Charged<T> {
    /// The value, its charge given back.
    pub fn into_inner(self) -> T {
        self.value
    }

    /// The value and its charge, to charge something that outlives the value from it.
    pub fn into_parts(self) -> (T, Reservation) {
        (self.value, self._charge)
    }
}

impl<T> std::ops::Deref for Charged<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Mutable access for the fields outside the footprint (timers, deadlines, waiter lists whose
/// entries are charged themselves); what the footprint counts is set when the value is made.
impl<T> std::ops::DerefMut for Charged<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

/// The bytes the relay may hold in bodies and waiters (`--max-memory`), and of them the share
/// one client key may hold (`--max-memory-per-ip`): a request reserves its bytes before anything
/// is allocated for it, and a [`Reservation`] gives them back, to both, when it is dropped.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: Option<usize>,
    used: AtomicUsize,
    /// Most bytes one client key may hold; `None`: no per-client share.
    per_client: Option<usize>,
    /// Bytes held per client key, for those holding any. Only touched for reservations made
    /// with a key while `per_client` is set.
    held: Mutex<HashMap<ClientKey, usize>>,
}

/// Bytes reserved from a [`MemoryBudget`], charged to a client key when one was given;
/// dropping it gives them back.
///
/// Every parked request and held message keeps one, so it is 24 bytes: the count is a `u32`,
/// as no reservation passes 4 GiB (a body is at most 1 GiB, `--max-body`); a larger one is
/// refused as short of the whole budget.
#[derive(Debug, Default)]
pub struct Reservation {
    budget: Option<Arc<MemoryBudget>>,
    bytes: u32,
    client: Option<ClientKey>,
}

/// Why [`MemoryBudget::reserve_for`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shortage {
    /// The whole budget would pass `--max-memory`.
    Total,
    /// The client would hold more than its share, `limit` bytes (`--max-memory-per-ip`).
    Client { limit: usize },
}

impl MemoryBudget {
    /// A budget of `limit` bytes (`None`: unlimited, but still counted), without a per-client
    /// share.
    #[cfg(test)]
    pub fn new(limit: Option<usize>) -> Arc<MemoryBudget> {
        MemoryBudget::with_share(limit, None)
    }

    /// A budget of `limit` bytes of which one client key may hold `per_client`.
    pub fn with_share(limit: Option<usize>, per_client: Option<usize>) -> Arc<MemoryBudget> {
        let held = Mutex::new(HashMap::new());
        Arc::new(MemoryBudget { limit, used: AtomicUsize::new(0), per_client, held })
    }

    /// Reserves `bytes` without charging a client (messages restored from the state file), or
    /// `None` when that would pass the limit.
    pub fn reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        self.reserve_for(None, bytes).ok()
    }

    /// Reserves `bytes` for `client` (`None`: a trusted proxy itself, charged to no share):
    /// refused when the client would pass its share, or the whole budget its limit.
    pub fn reserve_for(
        self: &Arc<Self>,
        client: Option<ClientKey>,
        bytes: usize,
    ) -> Result<Reservation, Shortage> {
        let counted = u32::try_from(bytes).map_err(|_| Shortage::Total);
        let (Some(key), Some(share)) = (client, self.per_client) else {
            let counted = counted?;
            self.take(bytes)?;
            return Ok(Reservation {
                budget: Some(Arc::clone(self)),
                bytes: counted,
                client: None,
            });
        };
        // Held while the total is taken, so that the two never disagree.
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mine = held.get(&key).copied().unwrap_or(0);
        if mine.checked_add(bytes).is_none_or(|total| total > share) {
            return Err(Shortage::Client { limit: share });
        }
        let counted = counted?;
        self.take(bytes)?;
        held.insert(key, mine + bytes);
        Ok(Reservation { budget: Some(Arc::clone(self)), bytes: counted, client: Some(key) })
    }

    /// An empty reservation for `client`, to grow with [`Reservation::resize`] as what it
    /// covers grows (a request head being read).
    pub fn empty_for(self: &Arc<Self>, client: Option<ClientKey>) -> Reservation {
        // Keyed as `reserve_for` keys what it adds: by client only when there are shares.
        let client = client.filter(|_| self.per_client.is_some());
        Reservation { budget: Some(Arc::clone(self)), bytes: 0, client }
    }

    /// Adds `bytes` to the total, or refuses when that would pass the limit.
    fn take(&self, bytes: usize) -> Result<(), Shortage> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let total = used.checked_add(bytes).ok_or(Shortage::Total)?;
            if self.limit.is_some_and(|limit| total > limit) {
                return Err(Shortage::Total);
            }
            match self.used.compare_exchange_weak(used, total, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }

    /// Gives back `bytes` from the total and from `client`'s share.
    fn give_back(&self, client: Option<ClientKey>, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
        if let Some(key) = client {
            let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(mine) = held.get_mut(&key) {
                *mine = mine.saturating_sub(bytes);
                if *mine == 0 {
                    held.remove(&key);
                }
            }
        }
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Bytes `client` holds now.
    #[cfg(test)]
    pub fn held_by(&self, client: ClientKey) -> usize {
        let held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        held.get(&client).copied().unwrap_or(0)
    }

    /// The limit, if any.
    pub fn limit(&self) -> Option<usize> {
        self.limit
    }
}

impl Reservation {
    /// Bytes reserved.
    pub fn bytes(&self) -> usize {
        self.bytes as usize
    }

    /// Moves `bytes` of this reservation into a new one for the same client, reserving from the
    /// budget what this one does not hold; refused, and nothing moved, when that would pass
    /// the budget or the client's share. Without a budget (tests), nothing is counted.
    pub fn split_off(&mut self, bytes: usize) -> Result<Reservation, Shortage> {
        let Some(budget) = &self.budget else { return Ok(Reservation::default()) };
        let counted = u32::try_from(bytes).map_err(|_| Shortage::Total)?;
        if counted > self.bytes {
            let extra = budget.reserve_for(self.client, (counted - self.bytes) as usize)?;
            self.absorb(extra);
        }
        self.bytes -= counted;
        Ok(Reservation { budget: self.budget.clone(), bytes: counted, client: self.client })
    }

    /// Grows or shrinks the reservation to `bytes`; refused, and unchanged, when growing would
    /// pass the budget or the client's share.
    pub fn resize(&mut self, bytes: usize) -> Result<(), Shortage> {
        if bytes <= self.bytes() {
            self.shrink_to(bytes);
            return Ok(());
        }
        let Some(budget) = &self.budget else { return Ok(()) };
        let extra = budget.reserve_for(self.client, bytes - self.bytes())?;
        self.absorb(extra);
        Ok(())
    }

    /// Takes `other`'s bytes (reserved from the same budget for the same client) into this one.
    /// Both callers absorb exactly what brings this one to a size that fits a `u32`.
    fn absorb(&mut self, mut other: Reservation) {
        debug_assert_eq!(other.client, self.client, "absorbed another client's reservation");
        self.bytes = self.bytes.saturating_add(std::mem::take(&mut other.bytes));
    }

    /// Gives back what is reserved beyond `bytes` (a body turned out smaller than allowed for).
    pub fn shrink_to(&mut self, bytes: usize) {
        if let Some(budget) = &self.budget {
            if let Some(smaller) = u32::try_from(bytes).ok().filter(|&b| b < self.bytes) {
                budget.give_back(self.client, (self.bytes - smaller) as usize);
                self.bytes = smaller;
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.give_back(self.client, self.bytes as usize);
        }
    }
}

/// Room a map keeps however empty it gets, in bytes of entries: a busy relay's maps rise and
/// fall by dozens of entries every tick, and shrinking below the usual load would only be undone
/// by the next arrivals (each regrowth a reallocation of the table, with musl's allocator an
/// `mmap` and an `munmap`).
const MAP_KEEP_BYTES: usize = 32 * 1024;

/// Gives a map's memory back once it holds less than a quarter of what it has room for, so a
/// burst of waiters does not keep the relay at its peak size; a map keeps room for at least
/// [`MAP_KEEP_BYTES`] of entries (or 64), so the usual load does not reallocate it.
pub fn shrink_sparse<K: std::hash::Hash + Eq, V, S: std::hash::BuildHasher>(
    map: &mut std::collections::HashMap<K, V, S>,
) {
    let keep = (MAP_KEEP_BYTES / std::mem::size_of::<(K, V)>().max(1)).max(64);
    if map.capacity() > keep && map.len() * 4 < map.capacity() {
        map.shrink_to((map.len() * 2).max(keep));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> std::net::IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_sparse_map_gives_its_room_back_down_to_what_it_keeps() {
        let mut map: std::collections::HashMap<u64, [u8; 1016]> =
            (0..10_000).map(|n| (n, [0; 1016])).collect();
        let keep = MAP_KEEP_BYTES / 1024;
        map.retain(|&n, _| n < 5_000);
        shrink_sparse(&mut map);
        assert!(map.capacity() >= 10_000, "still holding over a quarter of its room");
        map.retain(|&n, _| n < 100);
        shrink_sparse(&mut map);
        let shrunk = map.capacity();
        assert!((keep..1_000).contains(&shrunk), "shrunk to {shrunk}, keeping {keep}");
        map.clear();
        shrink_sparse(&mut map);
        let kept = map.capacity();
        assert!((keep..shrunk).contains(&kept), "emptied: {kept}, keeping {keep}");
        (0..keep as u64).for_each(|n| {
            map.insert(n, [0; 1016]);
        });
        assert_eq!(map.capacity(), kept, "what it keeps takes the usual load without regrowth");
    }

    #[test]
    fn memory_budget_refuses_before_passing_the_limit() {
        let budget = MemoryBudget::new(Some(100));
        let mut a = budget.reserve(60).unwrap();
        assert!(budget.reserve(41).is_none());
        let b = budget.reserve(40).unwrap();
        assert_eq!(budget.used(), 100);
        a.shrink_to(10);
        assert_eq!(budget.used(), 50);
        drop(b);
        drop(a);
        assert_eq!(budget.used(), 0);
        assert!(budget.reserve(usize::MAX).is_none());
        assert_eq!(Reservation::default().bytes, 0);
        // Past what a `u32` counts: refused, even without a limit.
        let unlimited = MemoryBudget::new(None);
        assert!(unlimited.reserve(1 << 32).is_none());
        assert!(unlimited.reserve((1 << 32) - 1).is_some());
        assert_eq!(unlimited.used(), 0);
    }

    #[test]
    fn memory_share_per_client() {
        let budget = MemoryBudget::with_share(Some(100), Some(40));
        let (a, b) = (ClientKey::of(ip("192.0.2.1")), ClientKey::of(ip("192.0.2.2")));
        let a1 = budget.reserve_for(Some(a), 30).unwrap();
        assert_eq!(budget.reserve_for(Some(a), 11).unwrap_err(), Shortage::Client { limit: 40 });
        let mut a2 = budget.reserve_for(Some(a), 10).unwrap();
        assert_eq!(budget.held_by(a), 40);
        // Another client has its own share; a client-less reservation has none.
        let b1 = budget.reserve_for(Some(b), 40).unwrap();
        assert_eq!(budget.reserve_for(None, 21).unwrap_err(), Shortage::Total);
        let none = budget.reserve_for(None, 20).unwrap();
        assert_eq!(budget.used(), 100);
        // Shrinking and dropping give back to both the total and the share.
        a2.shrink_to(4);
        assert_eq!((budget.used(), budget.held_by(a)), (94, 34));
        drop(a1);
        assert_eq!((budget.used(), budget.held_by(a)), (64, 4));
        // The total refuses before the share when it is the one short.
        drop(a2);
        let _a3 = budget.reserve_for(Some(a), 40).unwrap();
        assert_eq!(
            budget.reserve_for(Some(ClientKey::of(ip("192.0.2.3"))), 1).unwrap_err(),
            Shortage::Total
        );
        drop((b1, none));
        assert_eq!(budget.held_by(b), 0);
        assert_eq!(
            budget.reserve_for(Some(a), usize::MAX).unwrap_err(),
            Shortage::Client { limit: 40 }
        );
        // No share: the total alone.
        let unshared = MemoryBudget::new(Some(10));
        let _all = unshared.reserve_for(Some(a), 10).unwrap();
        assert_eq!(unshared.held_by(a), 0);
    }

    #[test]
    fn split_off_and_resize_move_bytes_and_refuse_without_change() {
        let budget = MemoryBudget::with_share(Some(100), Some(60));
        let key = ClientKey::of(ip("192.0.2.1"));
        let client = Some(key);
        let mut request = budget.reserve_for(client, 30).unwrap();
        // Within what it holds: moved, nothing new reserved.
        let entry = request.split_off(20).unwrap();
        assert_eq!((entry.bytes(), request.bytes(), budget.used()), (20, 10, 30));
        // Past it: the rest is reserved for the same client.
        let more = request.split_off(25).unwrap();
        assert_eq!((more.bytes(), request.bytes(), budget.used()), (25, 0, 45));
        assert_eq!(budget.held_by(key), 45);
        // Past the client's share: refused, nothing moved.
        assert_eq!(request.split_off(16).unwrap_err(), Shortage::Client { limit: 60 });
        assert_eq!((request.bytes(), budget.used()), (0, 45));
        // Resize: grows (refused past the share, unchanged), shrinks.
        let mut head = budget.empty_for(client);
        head.resize(15).unwrap();
        assert_eq!(head.resize(16).unwrap_err(), Shortage::Client { limit: 60 });
        assert_eq!((head.bytes(), budget.used()), (15, 60));
        head.resize(5).unwrap();
        assert_eq!(budget.used(), 50);
        drop((entry, more, head, request));
        assert_eq!((budget.used(), budget.held_by(key)), (0, 0));
        // Without a share, an empty reservation is keyed to no client, as `reserve_for` keys.
        let unshared = MemoryBudget::new(Some(10));
        let mut head = unshared.empty_for(client);
        head.resize(10).unwrap();
        assert_eq!(head.split_off(11).unwrap_err(), Shortage::Total);
    }
}
