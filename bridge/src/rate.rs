//! Per-tenant inbound rate: a token bucket per group (the tenant, as in
//! [`crate::lanes`]), refilled at the rate the group's latest message carried
//! (`Greentic-Rate`, messages per minute).
//!
//! A bucket holds at most one second of its rate, and never less than one
//! message: a quiet tenant's next message starts at once, a burst is spread
//! out at the rate. Pure arithmetic with the clock passed in, so it is tested
//! here directly.
//!
//! Integer arithmetic, exact: a bucket's level is kept in *units* of 1/60 of
//! a token per nanosecond of refill at 1 message/min, so a rate of `n`
//! messages per minute refills exactly `n` units per nanosecond and a token
//! is [`TOKEN`] units. No float drift however long a tenant stays throttled.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Lowest and highest `Greentic-Rate` accepted (messages per minute).
pub const MIN_RATE: u32 = 1;
pub const MAX_RATE: u32 = 1_000_000;

/// One message's worth of units: 60 s in nanoseconds (see the module docs).
const TOKEN: u64 = 60 * 1_000_000_000;

/// A `Greentic-Rate` value: a decimal integer within
/// [`MIN_RATE`]..=[`MAX_RATE`], digits only (no sign, no spaces).
pub fn parse_rate(value: &str) -> Option<u32> {
    if value.is_empty() || value.len() > 7 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (MIN_RATE..=MAX_RATE).contains(n))
}

/// One group's bucket.
#[derive(Debug, Clone)]
struct Bucket {
    /// Messages per minute.
    rate: u32,
    /// Units at `at`, at most [`Bucket::capacity`].
    level: u64,
    at: Instant,
}

impl Bucket {
    fn full(rate: u32, now: Instant) -> Self {
        Bucket {
            rate,
            level: capacity(rate),
            at: now,
        }
    }

    /// Brings the level up to `now` (a clock that went back adds nothing).
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_nanos();
        let added = u64::try_from(elapsed)
            .unwrap_or(u64::MAX)
            .saturating_mul(u64::from(self.rate));
        self.level = self.level.saturating_add(added).min(capacity(self.rate));
        self.at = self.at.max(now);
    }
}

/// One second of `rate`, at least one message.
fn capacity(rate: u32) -> u64 {
    (u64::from(rate) * 1_000_000_000).max(TOKEN)
}

/// The buckets of the groups that have sent rated messages.
#[derive(Debug)]
pub struct Rates {
    buckets: HashMap<String, Bucket>,
    /// Full buckets are forgotten once there are more than this many (a full
    /// bucket and a new one are the same), so tenants that stopped writing do
    /// not stay in memory; doubled after each pruning so that it stays cheap.
    prune_above: usize,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            buckets: HashMap::new(),
            prune_above: 64,
        }
    }
}

impl Rates {
    /// A message of `group` carrying `rate` was pulled at `now`: the group's
    /// rate is now that one (the tenant's configuration changed, or not).
    /// What the bucket holds is kept, up to the new capacity. True when the
    /// rate changed (a wait computed at the old rate no longer holds).
    pub fn observe(&mut self, group: &str, rate: u32, now: Instant) -> bool {
        match self.buckets.get_mut(group) {
            Some(bucket) => {
                bucket.refill(now);
                let changed = bucket.rate != rate;
                bucket.rate = rate;
                bucket.level = bucket.level.min(capacity(rate));
                changed
            }
            None => {
                self.prune(now);
                self.buckets
                    .insert(group.to_string(), Bucket::full(rate, now));
                false
            }
        }
    }

    /// Takes one token of `group` at `now`, or says when the next one will be
    /// there. `rate` (the message's own) applies only to a group whose bucket
    /// was forgotten, full.
    pub fn take(&mut self, group: &str, rate: u32, now: Instant) -> Result<(), Instant> {
        let bucket = self
            .buckets
            .entry(group.to_string())
            .or_insert_with(|| Bucket::full(rate, now));
        bucket.refill(now);
        if bucket.level >= TOKEN {
            bucket.level -= TOKEN;
            return Ok(());
        }
        let missing = TOKEN - bucket.level;
        let wait = missing.div_ceil(u64::from(bucket.rate));
        Err(bucket.at + Duration::from_nanos(wait))
    }

    /// Groups with a bucket (for tests and pruning).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn prune(&mut self, now: Instant) {
        if self.buckets.len() < self.prune_above {
            return;
        }
        self.buckets.retain(|_, bucket| {
            bucket.refill(now);
            bucket.level < capacity(bucket.rate)
        });
        self.prune_above = (2 * self.buckets.len()).max(64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn rates_are_decimal_integers_within_bounds() {
        for ok in ["1", "60", "007", "1000000"] {
            assert!(parse_rate(ok).is_some(), "{ok}");
        }
        for bad in [
            "", "0", "-5", "+5", "abc", " 60", "60 ", "1.5", "1000001", "99999999",
        ] {
            assert_eq!(parse_rate(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn one_per_second_bursts_one_then_waits_a_second() {
        let t0 = Instant::now();
        let mut rates = Rates::default();
        rates.observe("acme", 60, t0);
        assert_eq!(rates.take("acme", 60, t0), Ok(()));
        assert_eq!(rates.take("acme", 60, t0), Err(t0 + S));
        assert_eq!(rates.take("acme", 60, t0 + S / 2), Err(t0 + S));
        assert_eq!(rates.take("acme", 60, t0 + S), Ok(()));
        assert_eq!(rates.take("acme", 60, t0 + S), Err(t0 + 2 * S));
    }

    #[test]
    fn capacity_is_one_second_of_the_rate_at_least_one_message() {
        let t0 = Instant::now();
        let mut rates = Rates::default();
        // 600/min: 10 per second, a burst of 10, then one every 100 ms.
        rates.observe("fast", 600, t0);
        for _ in 0..10 {
            assert_eq!(rates.take("fast", 600, t0), Ok(()));
        }
        let next = t0 + Duration::from_millis(100);
        assert_eq!(rates.take("fast", 600, t0), Err(next));
        // An hour idle fills it to 10, not more.
        let later = t0 + 3600 * S;
        for _ in 0..10 {
            assert_eq!(rates.take("fast", 600, later), Ok(()));
        }
        assert!(rates.take("fast", 600, later).is_err());

        // 1/min: a burst of one, the next a minute later.
        rates.observe("slow", 1, t0);
        assert_eq!(rates.take("slow", 1, t0), Ok(()));
        assert_eq!(rates.take("slow", 1, t0), Err(t0 + 60 * S));
    }

    #[test]
    fn groups_have_separate_buckets() {
        let t0 = Instant::now();
        let mut rates = Rates::default();
        rates.observe("a", 60, t0);
        rates.observe("b", 60, t0);
        assert_eq!(rates.take("a", 60, t0), Ok(()));
        assert!(rates.take("a", 60, t0).is_err());
        assert_eq!(rates.take("b", 60, t0), Ok(()));
    }

    #[test]
    fn the_latest_messages_rate_applies_keeping_what_the_bucket_holds() {
        let t0 = Instant::now();
        let mut rates = Rates::default();
        assert!(!rates.observe("acme", 60, t0));
        assert_eq!(rates.take("acme", 60, t0), Ok(()));
        assert!(!rates.observe("acme", 60, t0), "unchanged");
        // Raised to 120/min, empty: the next token comes in half a second.
        assert!(rates.observe("acme", 120, t0));
        assert_eq!(rates.take("acme", 120, t0), Err(t0 + S / 2));
        // Lowered from a full 6000/min (100 tokens) to 60/min: one token left.
        rates.observe("big", 6000, t0);
        rates.observe("big", 60, t0);
        assert_eq!(rates.take("big", 60, t0), Ok(()));
        assert_eq!(rates.take("big", 60, t0), Err(t0 + S));
    }

    #[test]
    fn a_forgotten_bucket_starts_full_at_the_messages_rate() {
        let t0 = Instant::now();
        let mut rates = Rates::default();
        assert_eq!(rates.take("new", 60, t0), Ok(()));
        assert_eq!(rates.take("new", 60, t0), Err(t0 + S));
    }

    #[test]
    fn full_buckets_are_pruned_busy_ones_kept() {
        let t0 = Instant::now();
        let mut rates = Rates::default();
        rates.observe("busy", 1, t0);
        rates.take("busy", 1, t0).unwrap();
        for n in 0..100 {
            rates.observe(&format!("idle{n}"), 60, t0);
        }
        // Pruned when the 64th was added: only the busy one and those since.
        assert!(rates.len() < 64, "{}", rates.len());
        assert!(rates.take("busy", 1, t0 + S).is_err(), "busy bucket kept");
    }
}
