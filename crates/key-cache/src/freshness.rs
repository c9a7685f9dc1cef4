//! Whether the cache may answer: the event feed must have confirmed, within
//! the freshness window, that every change committed before some instant has
//! been reported (docs/cache.md, "Fail closed").

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The last instant up to which the event feed has reported every change,
/// as nanoseconds after `base` (0: never).
#[derive(Debug)]
pub struct Freshness {
    base: Instant,
    confirmed: AtomicU64,
    window: Duration,
}

impl Freshness {
    /// Never confirmed yet; a confirmation is good for `window`.
    pub fn new(window: Duration) -> Self {
        Freshness {
            base: Instant::now(),
            confirmed: AtomicU64::new(0),
            window,
        }
    }

    /// How long a confirmation is good for.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Every change committed before `as_of` has been reported. Older
    /// confirmations than the one held are ignored.
    pub fn confirm(&self, as_of: Instant) {
        // A confirmation from before this value existed says nothing about
        // the time since; counting it as one at `base` would overstate it.
        if as_of < self.base {
            return;
        }
        let nanos = self.nanos(as_of).max(1);
        self.confirmed.fetch_max(nanos, Ordering::AcqRel);
    }

    /// Forgets every confirmation (tests, and a feed that knows it lost
    /// track).
    pub fn reset(&self) {
        self.confirmed.store(0, Ordering::Release);
    }

    /// Whether a confirmation no older than the window covers `now`.
    pub fn is_fresh(&self, now: Instant) -> bool {
        self.confirmed_within(now, self.window)
    }

    /// Whether the last confirmation is no older than `bound` at `now`.
    pub fn confirmed_within(&self, now: Instant, bound: Duration) -> bool {
        let confirmed = self.confirmed.load(Ordering::Acquire);
        if confirmed == 0 {
            return false;
        }
        let age = self.nanos(now).saturating_sub(confirmed);
        u128::from(age) < bound.as_nanos()
    }

    /// How old the last confirmation is at `now`: how far behind the event
    /// feed may be (the feed's lag, docs/metrics.md); `None` before the
    /// first.
    pub fn lag(&self, now: Instant) -> Option<Duration> {
        let confirmed = self.confirmed.load(Ordering::Acquire);
        (confirmed != 0).then(|| Duration::from_nanos(self.nanos(now).saturating_sub(confirmed)))
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confirmation_is_good_for_its_window_only() {
        let f = Freshness::new(Duration::from_millis(1000));
        let t0 = Instant::now();
        assert!(!f.is_fresh(t0), "never confirmed");
        f.confirm(t0);
        assert!(f.is_fresh(t0 + Duration::from_millis(999)));
        assert!(!f.is_fresh(t0 + Duration::from_millis(1000)));
        // An older confirmation does not move it back.
        f.confirm(t0 - Duration::from_millis(500));
        assert!(f.is_fresh(t0 + Duration::from_millis(999)));
        f.reset();
        assert!(!f.is_fresh(t0));
    }

    #[test]
    fn the_lag_is_the_age_of_the_last_confirmation() {
        let f = Freshness::new(Duration::from_millis(1000));
        let t0 = Instant::now();
        assert_eq!(f.lag(t0), None, "never confirmed");
        f.confirm(t0);
        assert_eq!(
            f.lag(t0 + Duration::from_millis(250)),
            Some(Duration::from_millis(250))
        );
        assert_eq!(f.lag(t0), Some(Duration::ZERO));
    }
}
