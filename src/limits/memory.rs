//! The memory budget (`--max-memory`, `--max-memory-per-ip`, protocol §4): bytes are reserved
//! before anything is allocated for them and given back when the [`Reservation`] is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::identity::ClientKey;

/// What a request is charged against `--max-memory` besides its body: an allowance for its
/// connection, registry entry and timer. (Measured on 2026-11-23: 5,000 parked receivers added
/// ~9.4 MB of RSS, ~1.9 KiB each, allocator slack included; the charge is the data itself.)
pub const WAITER_COST: usize = 1024;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> std::net::IpAddr {
        text.parse().unwrap()
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
}
