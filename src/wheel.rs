//! A hashed timer wheel: the one place where the relay keeps its deadlines.
//!
//! Every parked request and every stored message has a deadline; the registry inserts it here and
//! calls [`TimerWheel::advance`] once per tick. Insert and cancel are O(1); advancing costs the
//! entries of the slots passed over, so expiry work is proportional to what is due, never a scan
//! of everything that waits. Time is passed in (`now`), so the wheel is tested on a fake clock.
//!
//! Guarantees: a deadline fires once, never before it (`deadline <= now`), and at most one tick
//! after it when `advance` is called every tick.

use std::time::{Duration, Instant};

/// Names one entry of the wheel, to cancel it. Stale ids (already fired or cancelled) are harmless.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

/// Deadlines mapped to values of `T`, fired in order of their tick.
pub struct TimerWheel<T> {
    _todo: std::marker::PhantomData<T>,
}

impl<T> TimerWheel<T> {
    /// A wheel whose tick 0 is `start`, with `slots` buckets of width `tick`.
    pub fn new(start: Instant, tick: Duration, slots: usize) -> Self {
        todo!()
    }

    /// Schedules `value` to fire at `deadline` (a deadline in the past fires on the next advance).
    pub fn insert(&mut self, deadline: Instant, value: T) -> TimerId {
        todo!()
    }

    /// Removes an entry before it fires and gives its value back; `None` if it is gone already.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        todo!()
    }

    /// Moves the wheel to `now`, appending to `expired` every value whose deadline is `<= now`.
    pub fn advance(&mut self, now: Instant, expired: &mut Vec<T>) {
        todo!()
    }

    /// Number of entries waiting to fire.
    pub fn len(&self) -> usize {
        todo!()
    }

    /// Whether nothing waits to fire.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The width of one tick.
    pub fn tick(&self) -> Duration {
        todo!()
    }
}
