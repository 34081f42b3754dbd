//! Token buckets and a bounded table of them: `--rate-per-ip`, `--auth-failures-per-ip` (the
//! gate's) and `--rate-per-id` (the registry's) (protocol §4). Time is passed in.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A limit of so many events per minute, allowed in a burst of the same size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Events per minute, and the burst.
    pub per_minute: u32,
}

/// A token bucket for one [`Rate`]: full at first, one token per event, refilled continuously.
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(rate: Rate, now: Instant) -> TokenBucket {
        TokenBucket { tokens: f64::from(rate.per_minute), updated: now }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let per_second = f64::from(rate.per_minute) / 60.0;
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_second).min(f64::from(rate.per_minute));
        self.updated = now;
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let per_second = f64::from(rate.per_minute) / 60.0;
        Err(Duration::from_secs_f64((1.0 - self.tokens) / per_second))
    }

    /// How long until a token is there, without taking one; `None` when one is there now.
    pub fn wait(&mut self, rate: Rate, now: Instant) -> Option<Duration> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            return None;
        }
        let per_second = f64::from(rate.per_minute) / 60.0;
        Some(Duration::from_secs_f64((1.0 - self.tokens) / per_second))
    }

    /// Whether the bucket is full again, so forgetting it changes nothing.
    pub fn is_full(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        self.tokens >= f64::from(rate.per_minute)
    }
}

/// Token buckets by key, for one rate; full buckets are forgotten, so the table holds only the
/// keys active in the last minute or so, and never more than `max_keys`.
#[derive(Debug)]
pub struct RateTable<K> {
    rate: Rate,
    buckets: HashMap<K, TokenBucket>,
    max_keys: usize,
    /// Table size that triggers the next sweep of full buckets (amortised O(1) per take).
    sweep_at: usize,
    /// When a full table was last swept (at most once a second).
    swept: Option<Instant>,
}

impl<K: Hash + Eq + Copy> RateTable<K> {
    /// A table for `rate`, tracking at most `max_keys` keys at once.
    pub fn new(rate: Rate, max_keys: usize) -> RateTable<K> {
        RateTable { rate, buckets: HashMap::new(), max_keys, sweep_at: 64, swept: None }
    }

    /// Takes a token for `key`, or says how long until one is there. A key that cannot be
    /// tracked because the table is full is let through: the connection caps still bound it.
    pub fn take(&mut self, key: K, now: Instant) -> Result<(), Duration> {
        let full = self.buckets.len() >= self.max_keys;
        let swept_lately =
            self.swept.is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(1));
        if self.buckets.len() >= self.sweep_at || (full && !swept_lately) {
            let rate = self.rate;
            self.buckets.retain(|_, bucket| !bucket.is_full(rate, now));
            self.sweep_at = (self.buckets.len() * 2).max(64);
            self.swept = Some(now);
        }
        if self.buckets.len() >= self.max_keys && !self.buckets.contains_key(&key) {
            return Ok(());
        }
        let rate = self.rate;
        self.buckets.entry(key).or_insert_with(|| TokenBucket::full(rate, now)).take(rate, now)
    }

    /// How long until `key` has a token again, without taking one; `None` when it has one now
    /// (or is not tracked, which is the same: a new key starts full).
    pub fn wait(&mut self, key: K, now: Instant) -> Option<Duration> {
        let rate = self.rate;
        self.buckets.get_mut(&key)?.wait(rate, now)
    }

    /// Keys currently tracked.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.buckets.len()
    }
}

/// A `Retry-After` value for a wait: whole seconds, at least one.
pub fn retry_after(wait: Duration) -> String {
    wait.as_secs_f64().ceil().max(1.0).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_allows_a_burst_then_the_rate() {
        let rate = Rate { per_minute: 60 };
        let start = Instant::now();
        let mut bucket = TokenBucket::full(rate, start);
        for _ in 0..60 {
            assert_eq!(bucket.take(rate, start), Ok(()));
        }
        let wait = bucket.take(rate, start).unwrap_err();
        assert!(wait > Duration::from_millis(990) && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(bucket.take(rate, start + Duration::from_millis(900)).is_err());
        assert_eq!(bucket.take(rate, start + Duration::from_millis(1001)), Ok(()));
        assert!(!bucket.is_full(rate, start + Duration::from_secs(30)));
        assert!(bucket.is_full(rate, start + Duration::from_secs(61)));
    }

    #[test]
    fn pubky_flow_fits_the_default_rate() {
        // A 25 s poll after each 408 for ten minutes, then POST and DELETE, plus preflights.
        let rate = Rate { per_minute: 100 };
        let start = Instant::now();
        let mut bucket = TokenBucket::full(rate, start);
        for poll in 0..24 {
            let now = start + Duration::from_secs(25 * poll);
            assert_eq!(bucket.take(rate, now), Ok(()));
            assert_eq!(bucket.take(rate, now), Ok(()), "preflight");
        }
        let end = start + Duration::from_secs(600);
        for _ in 0..4 {
            assert_eq!(bucket.take(rate, end), Ok(()));
        }
    }

    #[test]
    fn rate_table_forgets_full_buckets_and_stays_bounded() {
        let rate = Rate { per_minute: 1 };
        let start = Instant::now();
        let mut table = RateTable::new(rate, 100);
        for key in 0..100u32 {
            assert_eq!(table.take(key, start), Ok(()));
        }
        assert!(table.take(7, start).is_err());
        // Full: new keys pass untracked.
        assert_eq!(table.take(1000, start), Ok(()));
        assert_eq!(table.take(1000, start), Ok(()));
        assert!(table.len() <= 100);
        // A minute later every bucket is full again and the next sweep forgets them.
        let later = start + Duration::from_secs(61);
        assert_eq!(table.take(5000, later), Ok(()));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn rate_table_wait_does_not_take() {
        // The failed-authentication throttle: failures take, every attempt asks `wait` first.
        let rate = Rate { per_minute: 5 };
        let start = Instant::now();
        let mut table = RateTable::new(rate, 100);
        assert_eq!(table.wait(1u32, start), None, "an unknown key is not waiting");
        for _ in 0..5 {
            assert_eq!(table.wait(1, start), None);
            let _ = table.take(1, start);
        }
        let wait = table.wait(1, start).unwrap();
        assert_eq!(retry_after(wait), "12");
        assert_eq!(
            table.wait(1, start + Duration::from_secs(6)),
            table.wait(1, start + Duration::from_secs(6))
        );
        assert!(table.wait(1, start + Duration::from_secs(11)).is_some());
        assert_eq!(table.wait(1, start + Duration::from_secs(12)), None, "cool-down over");
        assert_eq!(table.wait(2, start), None, "other clients are not affected");
    }
}
