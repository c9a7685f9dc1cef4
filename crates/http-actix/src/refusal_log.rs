//! Sampling of the log lines of refused requests (401 and 429): at most one
//! line a second, carrying how many refusals went unlogged before it. One
//! client sending thousands of wrong keys a second otherwise writes
//! megabytes of log a minute.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;

/// Least time between two logged refusals.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Whether a response refuses a caller: its log line is sampled.
pub(crate) fn is_refusal(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS
    )
}

/// The process's sampler.
fn sampler() -> &'static Sampler {
    static SAMPLER: OnceLock<Sampler> = OnceLock::new();
    SAMPLER.get_or_init(|| Sampler::new(Instant::now()))
}

/// `Some(refusals left unlogged since the last logged one)` when this
/// refusal is to be logged; `None` when it is only counted.
pub(crate) fn sample() -> Option<u64> {
    let sampler = sampler();
    sampler.sample(sampler.start.elapsed())
}

/// The sampler's state, on a clock of its own start (a test passes times).
pub(crate) struct Sampler {
    start: Instant,
    /// When the last line was logged, in ms since `start`, plus one (0: never).
    last_logged_ms: AtomicU64,
    unlogged: AtomicU64,
}

impl Sampler {
    pub(crate) fn new(start: Instant) -> Self {
        Sampler {
            start,
            last_logged_ms: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
        }
    }

    pub(crate) fn sample(&self, now: Duration) -> Option<u64> {
        let now_ms = u64::try_from(now.as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1);
        let last = self.last_logged_ms.load(Ordering::Relaxed);
        let due = last == 0
            || now_ms.saturating_sub(last) >= u64::try_from(SAMPLE_EVERY.as_millis()).unwrap_or(0);
        if due
            && self
                .last_logged_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.unlogged.swap(0, Ordering::Relaxed));
        }
        self.unlogged.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_refusal_a_second_is_logged_with_the_count_of_the_others() {
        let sampler = Sampler::new(Instant::now());
        let ms = Duration::from_millis;
        assert_eq!(sampler.sample(ms(0)), Some(0));
        for t in 1..1000 {
            assert_eq!(sampler.sample(ms(t)), None, "{t}");
        }
        assert_eq!(sampler.sample(ms(1000)), Some(999));
        assert_eq!(sampler.sample(ms(1500)), None);
        assert_eq!(sampler.sample(ms(5000)), Some(1));
    }

    #[test]
    fn only_401_and_429_are_sampled() {
        assert!(is_refusal(StatusCode::UNAUTHORIZED));
        assert!(is_refusal(StatusCode::TOO_MANY_REQUESTS));
        assert!(!is_refusal(StatusCode::FORBIDDEN));
        assert!(!is_refusal(StatusCode::OK));
    }
}
