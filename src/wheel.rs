//! A hashed timer wheel: the one place where the relay keeps its deadlines.
//!
//! Every parked request and every stored message has a deadline; the registry inserts it here and
//! calls [`TimerWheel::advance`] once per tick. Insert and cancel are O(1); advancing costs the
//! entries of the slots passed over, so expiry work is proportional to what is due, never a scan
//! of everything that waits. Time is passed in (`now`), so the wheel is tested on a fake clock.
//!
//! Beside the wheel, the relay's few facts about time: its [`TICK`], the longest wait it keeps
//! ([`MAX_WAIT`]), and the wall clock's reading ([`unix_ms`]) for what leaves the process.
//!
//! Guarantees: a deadline fires once, never before it (`deadline <= now`), and at most one tick
//! after it when `advance` is called every tick.
//!
//! Layout: entries live in a slab (`entries`, reused through a free list, each slot with a
//! generation so a stale [`TimerId`] matches nothing; grown a fixed chunk at a time, so its spare
//! room is at most one chunk, not as much again as it holds); each bucket lists the slab indices due in
//! it, and every entry knows its position there, so cancel removes it at once (`swap_remove`)
//! instead of leaving garbage to be skipped later. An entry due at tick `k` sits in bucket
//! `k % slots` and waits there through earlier rounds. One extra bucket holds entries inserted
//! after their tick had already been processed; the next `advance` fires them. After a sleep
//! longer than one turn, `advance` visits each bucket once and sorts what fires by its tick.

use std::num::NonZeroU32;
use std::ops::{Index, IndexMut};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The relay's clock tick: the width of the workers' and the registry's wheels, so a deadline
/// (a request's, a wait's, a message's) fires at most this late.
pub const TICK: Duration = Duration::from_millis(100);

/// The longest wait the relay keeps, and so the longest value of every duration flag: a day.
/// Far beyond any hand-off, and small enough that no deadline computed from it can overflow.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// The deadline `wait` after `now`, computed without overflow: every configured wait is at most
/// a day ([`MAX_WAIT`]), and a sum the clock cannot represent (never, in practice) is
/// clamped to that day, or to `now`.
pub fn deadline_after(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait).or_else(|| now.checked_add(MAX_WAIT)).unwrap_or(now)
}

/// The current wall-clock time, Unix milliseconds: what `HttpRelay-Time` and the state file's
/// expiries are written in (every deadline inside runs on the monotonic clock).
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Names one entry of the wheel, to cancel it. Stale ids (already fired or cancelled) are harmless.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    /// Never zero, so that an `Option<TimerId>` takes no more room than a `TimerId`.
    generation: NonZeroU32,
}

/// Deadlines mapped to values of `T`, fired in order of their tick.
pub struct TimerWheel<T> {
    /// The instant of tick 0.
    start: Instant,
    /// The width of one tick; never zero.
    tick: Duration,
    /// `slots` buckets of the wheel, then the overdue bucket; each holds slab indices.
    buckets: Vec<Vec<u32>>,
    /// The slab; `entries[i].timer` is `Some` exactly while `i` is listed in a bucket.
    entries: Slab<Entry<T>>,
    /// Slab indices whose `timer` is `None`, to be reused.
    free: Vec<u32>,
    /// The first tick not processed yet: ticks `0..next_tick` have been.
    next_tick: u64,
}

/// One slot of the slab: 48 bytes for the registry's timers (every parked request has one), as
/// its bucket is not stored but follows from `due` ([`TimerWheel::bucket_of`]).
struct Entry<T> {
    /// Bumped each time the slot is emptied, so ids handed out before no longer match (until it
    /// wraps, after 2^32 reuses of this one slot).
    generation: NonZeroU32,
    /// While `timer` is `Some`: its place in its bucket's list (below `u32::MAX`: there are
    /// fewer entries in all).
    position: u32,
    timer: Option<Timer<T>>,
}

/// A waiting entry.
struct Timer<T> {
    /// The first tick at whose processing the deadline has passed: ceil((deadline - start) / tick).
    due: u64,
    value: T,
}

impl<T> TimerWheel<T> {
    /// A wheel whose tick 0 is `start`, with `slots` buckets of width `tick`.
    ///
    /// # Panics
    ///
    /// If `tick` is zero or `slots` is 0: both are programming errors, not input.
    pub fn new(start: Instant, tick: Duration, slots: usize) -> Self {
        assert!(!tick.is_zero(), "a timer wheel's tick must not be zero");
        assert!(slots > 0, "a timer wheel needs at least one slot");
        assert!(slots < u32::MAX as usize, "a timer wheel has fewer than u32::MAX slots");
        TimerWheel {
            start,
            tick,
            buckets: (0..=slots).map(|_| Vec::new()).collect(),
            entries: Slab::default(),
            free: Vec::new(),
            next_tick: 0,
        }
    }

    /// Schedules `value` to fire at `deadline` (a deadline in the past fires on the next advance).
    ///
    /// # Panics
    ///
    /// If more than `u32::MAX` entries wait at once.
    pub fn insert(&mut self, deadline: Instant, value: T) -> TimerId {
        let due = self.due_tick(deadline);
        let bucket = self.bucket_of(due);
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(self.entries.len())
                    .expect("fewer than u32::MAX timers wait at once");
                self.entries.push(Entry { generation: NonZeroU32::MIN, position: 0, timer: None });
                index
            }
        };
        // Lossless: a bucket lists fewer entries than the slab holds, which is below u32::MAX.
        let position = self.buckets[bucket].len() as u32;
        self.buckets[bucket].push(index);
        let entry = &mut self.entries[index];
        entry.position = position;
        entry.timer = Some(Timer { due, value });
        TimerId { index, generation: entry.generation }
    }

    /// Removes an entry before it fires and gives its value back; `None` if it is gone already.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let entry = self.entries.get(id.index)?;
        if entry.generation != id.generation {
            return None;
        }
        self.detach(id.index).map(|timer| timer.value)
    }

    /// Moves the wheel to `now`, appending to `expired` every value whose tick `now` has reached.
    ///
    /// A value fires once the first tick boundary at or after its deadline is `<= now`, so its
    /// deadline is `<= now` too, and it fires at most one tick late if this is called every tick.
    /// Values come out in order of that tick (ties in any order). After a gap longer than one turn
    /// of the wheel, every bucket is visited once and what fires is sorted, instead of walking the
    /// gap tick by tick.
    pub fn advance(&mut self, now: Instant, expired: &mut Vec<T>) {
        let Some(last) = self.last_tick_reached(now) else {
            return; // `now` is before tick 0.
        };
        // Overdue entries first: their tick was processed before they came.
        self.take_due(self.overdue_bucket(), last, |_, value| expired.push(value));
        if last < self.next_tick {
            return;
        }
        let ticks = last - self.next_tick + 1;
        if ticks <= self.slot_count() {
            for tick in self.next_tick..=last {
                let bucket = (tick % self.slot_count()) as usize;
                self.take_due(bucket, tick, |_, value| expired.push(value));
            }
        } else {
            // More than a turn: each bucket is passed at least once, so visit each once.
            let mut fired = Vec::new();
            for bucket in 0..self.overdue_bucket() {
                self.take_due(bucket, last, |due, value| fired.push((due, value)));
            }
            fired.sort_unstable_by_key(|&(due, _)| due);
            expired.extend(fired.into_iter().map(|(_, value)| value));
        }
        self.next_tick = last.saturating_add(1);
    }

    /// Number of entries waiting to fire.
    pub fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    /// Whether nothing waits to fire.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of buckets on the wheel (the overdue bucket aside).
    fn slot_count(&self) -> u64 {
        self.overdue_bucket() as u64
    }

    /// The bucket after the wheel's own: entries whose tick was processed before they came.
    fn overdue_bucket(&self) -> usize {
        self.buckets.len() - 1
    }

    /// The bucket that lists an entry due at tick `due`: the overdue bucket when that tick was
    /// processed already (its deadline is behind an earlier `now`). Every `advance` fires what is
    /// due up to the tick it reaches and only then moves `next_tick` past it, so between calls an
    /// entry is overdue exactly when `due < next_tick`, and the bucket need not be stored.
    fn bucket_of(&self, due: u64) -> usize {
        if due < self.next_tick {
            self.overdue_bucket()
        } else {
            // The remainder is below `slots`, a usize, so the cast is lossless.
            (due % self.slot_count()) as usize
        }
    }

    /// The first tick `k` with `deadline <= start + k * tick`.
    fn due_tick(&self, deadline: Instant) -> u64 {
        let nanos = deadline.saturating_duration_since(self.start).as_nanos();
        u64::try_from(nanos.div_ceil(self.tick.as_nanos())).unwrap_or(u64::MAX)
    }

    /// The last tick `k` with `start + k * tick <= now`; `None` before tick 0.
    fn last_tick_reached(&self, now: Instant) -> Option<u64> {
        let nanos = now.checked_duration_since(self.start)?.as_nanos();
        Some(u64::try_from(nanos / self.tick.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Takes every entry of `bucket` due at or before tick `up_to` and hands it to `emit`.
    fn take_due(&mut self, bucket: usize, up_to: u64, mut emit: impl FnMut(u64, T)) {
        let mut position = 0;
        while let Some(&index) = self.buckets[bucket].get(position) {
            let is_due = matches!(&self.entries[index].timer, Some(t) if t.due <= up_to);
            if !is_due {
                position += 1;
                continue;
            }
            // `detach` swaps the bucket's last entry into `position`, so look there again.
            if let Some(timer) = self.detach(index) {
                emit(timer.due, timer.value);
            }
        }
    }

    /// Empties slab slot `index`, unlisting it from its bucket; `None` if it was empty.
    fn detach(&mut self, index: u32) -> Option<Timer<T>> {
        let entry = &mut self.entries[index];
        let timer = entry.timer.take()?;
        let position = entry.position;
        entry.generation = entry.generation.checked_add(1).unwrap_or(NonZeroU32::MIN);
        self.free.push(index);
        let bucket = self.bucket_of(timer.due);
        let bucket = &mut self.buckets[bucket];
        // In range: `position` is set on insert and kept current by every `swap_remove` below.
        bucket.swap_remove(position as usize);
        if let Some(&moved) = bucket.get(position as usize) {
            self.entries[moved].position = position;
        }
        Some(timer)
    }
}

/// The slab's bytes per entry of `T`, for tests that pin what a parked request costs.
#[cfg(test)]
pub(crate) fn entry_size<T>() -> usize {
    std::mem::size_of::<Entry<T>>()
}

/// Entries of the slab per chunk: 1,024 of a few dozen bytes each.
const CHUNK: usize = 1024;

/// A vector that grows by one fixed-size chunk at a time: indexed like a `Vec`, but its spare
/// room is under one chunk, and growing it never moves what it holds.
struct Slab<E> {
    /// Full chunks, then the last one; each allocated for exactly [`CHUNK`] entries.
    chunks: Vec<Vec<E>>,
}

impl<E> Default for Slab<E> {
    fn default() -> Self {
        Slab { chunks: Vec::new() }
    }
}

impl<E> Slab<E> {
    fn len(&self) -> usize {
        self.chunks.last().map_or(0, |last| (self.chunks.len() - 1) * CHUNK + last.len())
    }

    fn push(&mut self, entry: E) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => last.push(entry),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(entry);
                self.chunks.push(chunk);
            }
        }
    }

    fn get(&self, index: u32) -> Option<&E> {
        let index = index as usize;
        self.chunks.get(index / CHUNK)?.get(index % CHUNK)
    }
}

impl<E> Index<u32> for Slab<E> {
    type Output = E;

    fn index(&self, index: u32) -> &E {
        let index = index as usize;
        &self.chunks[index / CHUNK][index % CHUNK]
    }
}

impl<E> IndexMut<u32> for Slab<E> {
    fn index_mut(&mut self, index: u32) -> &mut E {
        let index = index as usize;
        &mut self.chunks[index / CHUNK][index % CHUNK]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const WIDTH: Duration = Duration::from_millis(10);
    const SLOTS: usize = 8;

    /// A fake clock: `start` is tick 0, and `epoch` lies one second before it, so tests can name
    /// instants before the wheel's start without subtracting from an `Instant`.
    struct Clock {
        epoch: Instant,
        start: Instant,
    }

    impl Clock {
        fn new() -> Self {
            let epoch = Instant::now();
            Clock { epoch, start: epoch + Duration::from_secs(1) }
        }

        /// `start` plus `n` whole ticks.
        fn ticks(&self, n: u32) -> Instant {
            self.start + WIDTH * n
        }

        fn wheel<T>(&self) -> TimerWheel<T> {
            TimerWheel::new(self.start, WIDTH, SLOTS)
        }
    }

    fn advance<T>(wheel: &mut TimerWheel<T>, now: Instant) -> Vec<T> {
        let mut expired = Vec::new();
        wheel.advance(now, &mut expired);
        expired
    }

    #[test]
    fn fires_at_tick_boundary_never_before() {
        let clock = Clock::new();
        let mut wheel = clock.wheel();
        let deadline = clock.ticks(3);
        wheel.insert(deadline, "a");
        assert!(advance(&mut wheel, deadline - Duration::from_nanos(1)).is_empty());
        assert_eq!(advance(&mut wheel, deadline), ["a"]);
    }

    #[test]
    fn deadline_between_ticks_waits_for_the_next_boundary() {
        let clock = Clock::new();
        let mut wheel = clock.wheel();
        let deadline = clock.ticks(2) + WIDTH / 2;
        wheel.insert(deadline, "a");
        assert!(advance(&mut wheel, deadline - Duration::from_nanos(1)).is_empty());
        // The deadline has passed, but tick 3 has not been reached: a fraction of a tick late.
        assert!(advance(&mut wheel, deadline).is_empty());
        assert!(advance(&mut wheel, clock.ticks(3) - Duration::from_nanos(1)).is_empty());
        assert_eq!(advance(&mut wheel, clock.ticks(3)), ["a"]);
    }

    #[test]
    fn fires_at_most_one_tick_late() {
        let clock = Clock::new();
        let mut wheel = clock.wheel();
        // Deadlines every 3 ms across several turns, fired by advancing on every tick boundary.
        let deadlines: Vec<Instant> =
            (0..100u32).map(|i| clock.start + Duration::from_millis(3) * i).collect();
        for (i, &deadline) in deadlines.iter().enumerate() {
            wheel.insert(deadline, i);
        }
        let mut fired = 0;
        for n in 0..=40 {
            let now = clock.ticks(n);
            for i in advance(&mut wheel, now) {
                assert!(deadlines[i] <= now, "{i} fired early");
                assert!(now - deadlines[i] < WIDTH, "{i} fired more than a tick late");
                fired += 1;
            }
        }
        assert_eq!(fired, deadlines.len());
        assert!(wheel.is_empty());
    }

    #[test]
    fn fires_exactly_once() {
        let clock = Clock::new();
        let mut wheel = clock.wheel();
        wheel.insert(clock.ticks(1), "a");
        assert_eq!(advance(&mut wheel, clock.ticks(1)), ["a"]);
        assert!(advance(&mut wheel, clock.ticks(1)).is_empty());
        for n in 2..(4 * SLOTS as u32) {
            assert!(advance(&mut wheel, clock.ticks(n)).is_empty());
        }
        // A jump over many turns does not bring it back either.
        assert!(advance(&mut wheel, clock.ticks(1000 * SLOTS as u32)).is_empty());
    }

    #[test]
    fn cancel_before_firing_returns_value_and_it_never_fires() {
        let clock = Clock::new();
        let mut wheel = clock.wheel();
        let a = wheel.insert(clock.ticks(2), "a");
        let b = wheel.insert(clock.ticks(2), "b");
        let c = wheel.insert(clock.ticks(2), "c");
        assert_eq!(wheel.cancel(b), Some("b"));
        assert_eq!(wheel.cancel(b), None);
        // Cancelling the first of a bucket moves its last; that one must stay cancellable.
        assert_eq!(wheel.cancel(a), Some("a"));
        assert_eq!(wheel.cancel(c), Some("c"));
        for n in 0..(3 * SLOTS as u32) {
            assert!(advance(&mut wheel, clock.ticks(n)).is_empty());
        }
    }

    #[test]
    fn cancel_of_fired_id_returns_none() {
        let clock = Clock::new();
        let mut wheel = clock.wheel();
        let a = wheel.insert(clock.ticks(1), "a");
        assert_eq!(advance(&mut wheel, clock.ticks(1)), ["a"]);
        assert_eq!(wheel.cancel(a), None);
    }

    #[test]
    fn stale_id_does_not_cancel_reused_slot() {
        let clock = Clock::new();
        let mut wheel = clock.wheel();
        let a = wheel.insert(clock.ticks(1), "a");
        assert_eq!(wheel.cancel(a), Some("a"));
        let b = wheel.insert(clock.ticks(1), "b");
        assert_eq!(a.index, b.index, "the slab slot is reused");
        assert_eq!(wheel.cancel(a), None);
        assert_eq!(advance(&mut wheel, clock.ticks(1)), ["b"]);
        // Fired, the slot is reused again; neither old id reaches the new entry.
        let c = wheel.insert(clock.ticks(2), "c");
        assert_eq!(c.index, b.index);
        assert_eq!(wheel.cancel(a), None);
        assert_eq!(wheel.cancel(b), None);
        assert_eq!(wheel.len(), 1);
        assert_eq!(advance(&mut wheel, clock.ticks(2)), ["c"]);
    }

    #[test]
    fn deadlines_many_rounds_ahead_wait_their_round() {
        let clock = Clock::new();
        let mut wheel = clock.wheel();
        let far = 10 * SLOTS as u32;
        wheel.insert(clock.ticks(far), "far");
        wheel.insert(clock.ticks(far + 3), "farther");
        for n in 0..far {
            assert!(advance(&mut wheel, clock.ticks(n)).is_empty(), "fired at {n}");
        }
        assert_eq!(advance(&mut wheel, clock.ticks(far)), ["far"]);
        assert!(advance(&mut wheel, clock.ticks(far + 2)).is_empty());
        assert_eq!(advance(&mut wheel, clock.ticks(far + 3)), ["farther"]);
    }

    #[test]
    fn deadline_in_past_fires_at_next_advance() {
        let clock = Clock::new();
        let mut wheel = clock.wheel();
        // Before the wheel's start: due at tick 0, which nothing before `start` reaches.
        wheel.insert(clock.epoch, "before start");
        assert!(advance(&mut wheel, clock.epoch).is_empty());
        assert_eq!(advance(&mut wheel, clock.start), ["before start"]);

        // Behind ticks already processed: fires on the next advance, even within the same tick.
        let now = clock.ticks(5) + WIDTH / 2;
        assert!(advance(&mut wheel, now).is_empty());
        wheel.insert(clock.ticks(2), "behind");
        wheel.insert(clock.ticks(5), "at the last tick");
        wheel.insert(clock.ticks(6), "ahead");
        let mut fired = advance(&mut wheel, now + Duration::from_nanos(1));
        fired.sort();
        assert_eq!(fired, ["at the last tick", "behind"]);
        assert_eq!(advance(&mut wheel, clock.ticks(6)), ["ahead"]);
    }

    #[test]
    fn large_jump_fires_everything_due_and_nothing_else() {
        let clock = Clock::new();
        let mut wheel = clock.wheel();
        let turns = 1000 * SLOTS as u32;
        let due_ticks = [turns, turns - 1, 1, 3 * SLOTS as u32 + 5, 500 * SLOTS as u32 + 2];
        let later_ticks = [turns + 1, turns + SLOTS as u32, 2 * turns];
        for n in due_ticks.into_iter().chain(later_ticks) {
            wheel.insert(clock.ticks(n), n);
        }
        let mut expected = due_ticks.to_vec();
        expected.sort();
        assert_eq!(advance(&mut wheel, clock.ticks(turns)), expected);
        assert_eq!(wheel.len(), later_ticks.len());
        for n in later_ticks {
            assert!(advance(&mut wheel, clock.ticks(n - 1)).is_empty());
            assert_eq!(advance(&mut wheel, clock.ticks(n)), [n]);
        }
        assert!(wheel.is_empty());
    }

    #[test]
    fn long_sleep_is_crossed_without_walking_every_tick() {
        // An hour of 1 ns ticks is 3.6e12 ticks: walked one by one, this test would not finish.
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start, Duration::from_nanos(1), SLOTS);
        let hour = Duration::from_secs(3600);
        wheel.insert(start + hour, "on time");
        wheel.insert(start + hour + Duration::from_nanos(1), "later");
        assert_eq!(advance(&mut wheel, start + hour), ["on time"]);
        assert_eq!(advance(&mut wheel, start + 2 * hour), ["later"]);
    }

    #[test]
    fn values_come_out_in_due_order() {
        let clock = Clock::new();
        let mut wheel = clock.wheel();
        // Within one turn, walked tick by tick.
        for n in [5, 1, 7, 3, 2, 6, 4] {
            wheel.insert(clock.ticks(n), n);
        }
        assert_eq!(advance(&mut wheel, clock.ticks(7)), [1, 2, 3, 4, 5, 6, 7]);
        // Across rounds, in one jump: several share a bucket, later rounds come later.
        let s = SLOTS as u32;
        let ticks = [8 + 3 * s, 9, 8 + s, 10 + 2 * s, 8, 9 + s];
        for n in ticks {
            wheel.insert(clock.ticks(n), n);
        }
        let mut expected = ticks.to_vec();
        expected.sort();
        assert_eq!(advance(&mut wheel, clock.ticks(8 + 3 * s)), expected);
    }

    #[test]
    fn len_tracks_insert_cancel_and_fire() {
        let clock = Clock::new();
        let mut wheel = clock.wheel();
        assert!(wheel.is_empty());
        let a = wheel.insert(clock.ticks(1), 'a');
        let b = wheel.insert(clock.ticks(2), 'b');
        wheel.insert(clock.ticks(3), 'c');
        assert_eq!(wheel.len(), 3);
        wheel.cancel(b);
        assert_eq!(wheel.len(), 2);
        wheel.cancel(b);
        assert_eq!(wheel.len(), 2);
        advance(&mut wheel, clock.ticks(1));
        assert_eq!(wheel.len(), 1);
        wheel.cancel(a);
        assert_eq!(wheel.len(), 1);
        advance(&mut wheel, clock.ticks(3));
        assert_eq!(wheel.len(), 0);
        assert!(wheel.is_empty());
    }

    #[test]
    #[should_panic(expected = "tick must not be zero")]
    fn zero_tick_is_refused() {
        TimerWheel::<()>::new(Instant::now(), Duration::ZERO, SLOTS);
    }

    /// A xorshift64 generator: enough randomness for a fixed-seed test, and no crate.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// A number in `0..n`.
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// What the model knows of one live timer; times are nanoseconds since the clock's epoch.
    struct Live {
        id: TimerId,
        deadline: u64,
        /// The tick it is due at: the first boundary at or after the deadline, or the first tick
        /// not processed when it was inserted, whichever is later.
        due: u64,
    }

    /// Inserts, cancels and advances at random, checking each fired value against a model: fired
    /// once, never early, never past the last tick boundary reached, in order of due tick.
    fn check_against_model(seed: u64, tick_nanos: u64, slots: usize) {
        let mut rng = XorShift(seed);
        let epoch = Instant::now();
        let start_nanos = 1_000_000_000;
        let at = |nanos: u64| epoch + Duration::from_nanos(nanos);
        let turn = tick_nanos * slots as u64;
        let mut wheel = TimerWheel::new(at(start_nanos), Duration::from_nanos(tick_nanos), slots);
        let mut live: BTreeMap<u64, Live> = BTreeMap::new();
        let mut gone: Vec<TimerId> = Vec::new();
        let mut now = start_nanos - 3 * tick_nanos;
        let mut next_tick = 0; // the first tick not processed, as the model sees it
        let mut inserted = 0;
        let mut expired = Vec::new();
        for step in 0..20_000 {
            match rng.below(100) {
                // Insert: mostly soon, sometimes in the past or many rounds ahead.
                0..=44 => {
                    let deadline = match rng.below(10) {
                        0 => now.saturating_sub(rng.below(5 * tick_nanos)),
                        1 => now + rng.below(20 * turn),
                        _ => now + rng.below(3 * turn),
                    };
                    let ceil = deadline.saturating_sub(start_nanos).div_ceil(tick_nanos);
                    let due = ceil.max(next_tick);
                    let id = wheel.insert(at(deadline), inserted);
                    live.insert(inserted, Live { id, deadline, due });
                    inserted += 1;
                }
                // Cancel a live timer, or a stale id that must change nothing.
                45..=69 => {
                    if rng.below(4) == 0 && !gone.is_empty() {
                        let id = gone[rng.below(gone.len() as u64) as usize];
                        assert_eq!(wheel.cancel(id), None, "step {step}: stale id cancelled");
                    } else if let Some(&value) =
                        live.range(rng.below(inserted + 1)..).next().map(|(k, _)| k)
                    {
                        let entry = live.remove(&value).unwrap(); // unwrap: the key was just read
                        assert_eq!(wheel.cancel(entry.id), Some(value), "step {step}");
                        gone.push(entry.id);
                    }
                }
                // Advance: mostly a step within a few ticks, sometimes a jump over many turns.
                _ => {
                    now += match rng.below(20) {
                        0 => rng.below(50 * turn),
                        1 => 0,
                        _ => rng.below(3 * tick_nanos),
                    };
                    expired.clear();
                    wheel.advance(at(now), &mut expired);
                    let mut last_due = 0;
                    for value in &expired {
                        let Some(entry) = live.remove(value) else {
                            panic!("step {step}: {value} fired twice or after its cancel");
                        };
                        assert!(entry.deadline <= now, "step {step}: {value} fired early");
                        assert!(entry.due >= last_due, "step {step}: {value} out of order");
                        last_due = entry.due;
                        gone.push(entry.id);
                    }
                    if now >= start_nanos {
                        let reached = (now - start_nanos) / tick_nanos;
                        let boundary = start_nanos + reached * tick_nanos;
                        for (value, entry) in &live {
                            assert!(
                                entry.deadline > boundary,
                                "step {step}: {value} (deadline {}) not fired by {now}",
                                entry.deadline
                            );
                        }
                        next_tick = next_tick.max(reached + 1);
                    }
                }
            }
            assert_eq!(wheel.len(), live.len(), "step {step}");
        }
        assert!(inserted > 5_000, "only {inserted} timers inserted");
    }

    #[test]
    fn randomized_against_model() {
        check_against_model(0x9E37_79B9_7F4A_7C15, 1_000_000, 16);
        check_against_model(0x2545_F491_4F6C_DD1D, 1_000_000, 1);
        check_against_model(0xDEAD_BEEF_CAFE_F00D, 7, 64);
    }
    #[test]
    fn slab_grows_a_chunk_at_a_time_and_keeps_its_indices() {
        let mut slab = Slab::default();
        for i in 0..(2 * CHUNK + 3) as u32 {
            slab.push(i);
        }
        assert_eq!(slab.len(), 2 * CHUNK + 3);
        assert_eq!(slab.chunks.len(), 3);
        assert!(slab.chunks.iter().all(|chunk| chunk.capacity() == CHUNK));
        assert_eq!(slab[CHUNK as u32], CHUNK as u32);
        assert_eq!(slab.get(2 * CHUNK as u32 + 2), Some(&(2 * CHUNK as u32 + 2)));
        assert_eq!(slab.get(2 * CHUNK as u32 + 3), None);
        slab[5] = 99;
        assert_eq!(slab[5], 99);
    }

    #[test]
    fn an_optional_timer_id_is_no_larger_than_one() {
        assert_eq!(std::mem::size_of::<Option<TimerId>>(), std::mem::size_of::<TimerId>());
    }
}
