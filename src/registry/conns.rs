//! Connection ids: what a map keyed by them hashes ([`ConnMap`]), and a list of parked ones in
//! arrival order, kept inline until it has held two (then boxed until it is empty again).
//!
//! Most `/link` ids and `/inbox` ids have a single waiter, so a queue that allocated for its
//! first entry would cost a heap block per parked request; this one allocates only for a second.
//! A waiter that leaves is removed in O(1): its id stays in the queue, counted as left, and is
//! skipped when the queue is read; once more than half the queue has left, the queue is
//! compacted, which over all removals costs O(1) each.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Identifies one client connection for its whole life; never reused.
pub type ConnId = u64;

/// A map keyed by connection id. The ids are the relay's own (a counter), never a client's, so
/// they need no keyed hash against collisions made on purpose: one multiplication spreads them
/// (SipHash was over 1 % of the relay's CPU under load, most of it for these maps).
pub type ConnMap<V> = HashMap<ConnId, V, BuildHasherDefault<ConnIdHash>>;

/// The hash of a [`ConnMap`]: the id times 2⁶⁴/φ (Fibonacci hashing), whose high bits and low
/// bits both differ from one id to the next.
#[derive(Default)]
pub struct ConnIdHash(u64);

impl Hasher for ConnIdHash {
    fn write_u64(&mut self, id: u64) {
        self.0 = (self.0 ^ id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    /// Not used by a `ConnId` key (a `u64` hashes through `write_u64`); any bytes hash right.
    fn write(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|&b| self.write_u64(u64::from(b)));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Connection ids, first come first served.
#[derive(Debug, Default)]
pub(super) enum Conns {
    #[default]
    Empty,
    One(ConnId),
    /// Boxed, so that the common case stays two words.
    Many(Box<Queue>),
}

/// Two or more ids, some of which may have left.
#[derive(Debug)]
pub(super) struct Queue {
    ids: VecDeque<ConnId>,
    /// How many of `ids` have left (removed, not yet skipped or compacted away).
    left: usize,
}

impl Conns {
    /// Adds `conn` at the back.
    pub(super) fn push_back(&mut self, conn: ConnId) {
        match self {
            Conns::Empty => *self = Conns::One(conn),
            Conns::One(first) => {
                let ids = VecDeque::from([*first, conn]);
                *self = Conns::Many(Box::new(Queue { ids, left: 0 }));
            }
            Conns::Many(queue) => queue.ids.push_back(conn),
        }
    }

    /// Takes the first id that is still waiting (`waiting`: whether an id is).
    pub(super) fn pop_front(&mut self, waiting: impl Fn(ConnId) -> bool) -> Option<ConnId> {
        match std::mem::take(self) {
            Conns::Empty => None,
            Conns::One(conn) => Some(conn),
            Conns::Many(mut queue) => {
                let mut first = None;
                while let Some(conn) = queue.ids.pop_front() {
                    if waiting(conn) {
                        first = Some(conn);
                        break;
                    }
                    queue.left = queue.left.saturating_sub(1);
                }
                if queue.ids.len() > queue.left {
                    *self = Conns::Many(queue);
                }
                first
            }
        }
    }

    /// Removes `conn`, which has left (`waiting` is false for it, and for every id that left).
    pub(super) fn remove(&mut self, conn: ConnId, waiting: impl Fn(ConnId) -> bool) {
        match self {
            Conns::One(c) if *c == conn => *self = Conns::Empty,
            Conns::Many(queue) => {
                queue.left += 1;
                if queue.left * 2 > queue.ids.len() {
                    queue.ids.retain(|&c| waiting(c));
                    queue.left = 0;
                }
                if queue.ids.is_empty() {
                    *self = Conns::Empty;
                }
            }
            _ => {}
        }
    }

    /// How many ids it holds that are still waiting.
    pub(super) fn len(&self) -> usize {
        match self {
            Conns::Empty => 0,
            Conns::One(_) => 1,
            Conns::Many(queue) => queue.ids.len().saturating_sub(queue.left),
        }
    }

    /// Whether it holds none still waiting.
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every id, first come first served, those that left among them: the caller skips them.
    pub(super) fn into_ids(self) -> impl Iterator<Item = ConnId> {
        let (one, many) = match self {
            Conns::Empty => (None, VecDeque::new()),
            Conns::One(conn) => (Some(conn), VecDeque::new()),
            Conns::Many(queue) => (None, queue.ids),
        };
        one.into_iter().chain(many)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_connection_ids_spread_over_a_map_s_buckets_and_tags() {
        use std::hash::BuildHasher;
        let hash = |id: ConnId| BuildHasherDefault::<ConnIdHash>::default().hash_one(id);
        // 1,024 consecutive ids: all in different buckets of a 1,024-bucket table (the low bits),
        // and spread over the 128 tags a table compares first (the top 7 bits).
        let buckets: HashSet<u64> = (5000..6024).map(|id| hash(id) % 1024).collect();
        let tags: HashSet<u64> = (5000..6024).map(|id| hash(id) >> 57).collect();
        assert_eq!(buckets.len(), 1024);
        assert!(tags.len() > 120, "{} tags of 128", tags.len());
        let mut map = ConnMap::default();
        (0..10_000).for_each(|id| assert!(map.insert(id, id * 2).is_none()));
        assert!((0..10_000).all(|id| map.get(&id) == Some(&(id * 2))));
    }
    use std::cell::RefCell;
    use std::collections::HashSet;

    /// Ids that left, as the registry's parked map would say.
    struct Left(RefCell<HashSet<ConnId>>);

    impl Left {
        fn new() -> Left {
            Left(RefCell::new(HashSet::new()))
        }

        fn remove(&self, conns: &mut Conns, conn: ConnId) {
            self.0.borrow_mut().insert(conn);
            conns.remove(conn, |c| !self.0.borrow().contains(&c));
        }

        fn pop(&self, conns: &mut Conns) -> Option<ConnId> {
            conns.pop_front(|c| !self.0.borrow().contains(&c))
        }
    }

    #[test]
    fn keeps_arrival_order_and_allocates_only_for_a_second_id() {
        let left = Left::new();
        let mut conns = Conns::default();
        conns.push_back(1);
        assert!(matches!(conns, Conns::One(1)));
        conns.push_back(2);
        conns.push_back(3);
        assert_eq!(conns.len(), 3);
        left.remove(&mut conns, 2);
        assert_eq!(conns.len(), 2);
        assert_eq!(left.pop(&mut conns), Some(1));
        assert_eq!(left.pop(&mut conns), Some(3));
        assert_eq!(left.pop(&mut conns), None);
        assert!(matches!(conns, Conns::Empty));
    }

    #[test]
    fn removing_the_last_id_gives_the_queue_back() {
        let left = Left::new();
        let mut conns = Conns::default();
        conns.push_back(1);
        conns.remove(9, |_| true);
        assert_eq!(conns.len(), 1);
        left.remove(&mut conns, 1);
        assert!(conns.is_empty());
        conns.push_back(3);
        conns.push_back(4);
        left.remove(&mut conns, 3);
        left.remove(&mut conns, 4);
        assert!(matches!(conns, Conns::Empty));
    }

    /// Removal is O(1): ids that left stay until more than half the queue has, then one
    /// compaction takes them all; the queue never holds more than twice the waiting ids.
    #[test]
    fn removal_is_amortised_constant_and_the_queue_stays_bounded() {
        let left = Left::new();
        let mut conns = Conns::default();
        for conn in 0..1000 {
            conns.push_back(conn);
        }
        for conn in 1..1000 {
            left.remove(&mut conns, conn);
            let Conns::Many(queue) = &conns else { panic!("{conns:?}") };
            assert!(queue.ids.len() <= 2 * conns.len() + 1, "{} ids", queue.ids.len());
        }
        assert_eq!(conns.len(), 1);
        // Churn behind a waiter that stays: the queue does not grow with it.
        for conn in 1000..100_000 {
            conns.push_back(conn);
            left.remove(&mut conns, conn);
            let Conns::Many(queue) = &conns else { panic!("{conns:?}") };
            assert!(queue.ids.len() <= 3, "{} ids", queue.ids.len());
        }
        assert_eq!(left.pop(&mut conns), Some(0));
        assert!(conns.is_empty());
    }

    #[test]
    fn into_ids_yields_every_id_in_order() {
        assert_eq!(Conns::default().into_ids().count(), 0);
        assert_eq!(Conns::One(7).into_ids().collect::<Vec<_>>(), [7]);
        let mut conns = Conns::default();
        for conn in 1..=3 {
            conns.push_back(conn);
        }
        assert_eq!(conns.into_ids().collect::<Vec<_>>(), [1, 2, 3]);
    }
}
