//! A list of parked connection ids in arrival order, kept inline until it has held two (then
//! boxed until it is empty again).
//!
//! Most `/link` ids and `/inbox` ids have a single waiter, so a queue that allocated for its
//! first entry would cost a heap block per parked request; this one allocates only for a second.

use std::collections::VecDeque;

use super::ConnId;

/// Connection ids, first come first served.
#[derive(Debug, Default)]
// The box is the point: it keeps `Conns` two words wide; only a second waiter pays for it.
#[allow(clippy::box_collection)]
pub(super) enum Conns {
    #[default]
    Empty,
    One(ConnId),
    /// Boxed, so that the common case stays two words.
    Many(Box<VecDeque<ConnId>>),
}

impl Conns {
    /// Adds `conn` at the back.
    pub(super) fn push_back(&mut self, conn: ConnId) {
        match self {
            Conns::Empty => *self = Conns::One(conn),
            Conns::One(first) => *self = Conns::Many(Box::new(VecDeque::from([*first, conn]))),
            Conns::Many(queue) => queue.push_back(conn),
        }
    }

    /// Takes the first id.
    pub(super) fn pop_front(&mut self) -> Option<ConnId> {
        match std::mem::take(self) {
            Conns::Empty => None,
            Conns::One(conn) => Some(conn),
            Conns::Many(mut queue) => {
                let first = queue.pop_front();
                if !queue.is_empty() {
                    *self = Conns::Many(queue);
                }
                first
            }
        }
    }

    /// Removes `conn` wherever it is.
    pub(super) fn remove(&mut self, conn: ConnId) {
        match self {
            Conns::One(c) if *c == conn => *self = Conns::Empty,
            Conns::Many(queue) => {
                queue.retain(|&c| c != conn);
                if queue.is_empty() {
                    *self = Conns::Empty;
                }
            }
            _ => {}
        }
    }

    /// How many ids it holds.
    pub(super) fn len(&self) -> usize {
        match self {
            Conns::Empty => 0,
            Conns::One(_) => 1,
            Conns::Many(queue) => queue.len(),
        }
    }

    /// Whether it holds none.
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every id, first come first served.
    pub(super) fn into_ids(self) -> impl Iterator<Item = ConnId> {
        let (one, many) = match self {
            Conns::Empty => (None, VecDeque::new()),
            Conns::One(conn) => (Some(conn), VecDeque::new()),
            Conns::Many(queue) => (None, *queue),
        };
        one.into_iter().chain(many)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_arrival_order_and_allocates_only_for_a_second_id() {
        let mut conns = Conns::default();
        conns.push_back(1);
        assert!(matches!(conns, Conns::One(1)));
        conns.push_back(2);
        conns.push_back(3);
        assert_eq!(conns.len(), 3);
        conns.remove(2);
        assert_eq!(conns.pop_front(), Some(1));
        assert_eq!(conns.pop_front(), Some(3));
        assert_eq!(conns.pop_front(), None);
        assert!(matches!(conns, Conns::Empty));
    }

    #[test]
    fn removing_the_last_id_gives_the_queue_back() {
        let mut conns = Conns::default();
        conns.push_back(1);
        conns.remove(9);
        assert_eq!(conns.len(), 1);
        conns.remove(1);
        assert!(conns.is_empty());
        conns.push_back(1);
        conns.push_back(2);
        conns.remove(1);
        conns.remove(2);
        assert!(matches!(conns, Conns::Empty));
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
