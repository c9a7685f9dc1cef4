//! Usage limits per key (docs/api.md, "Limiting a key's use"; docs/limits.md):
//! the value types, which validate on construction, and the arithmetic of
//! windows and refills. Pure: every instant is passed in.

use thiserror::Error;
use time::{Date, Duration, Month, OffsetDateTime, Time};

use crate::duration::{parse_duration, DurationError, RateWindow};

/// The largest `rate_limit.limit`.
pub const MAX_RATE_LIMIT: u32 = 1_000_000;
/// The largest `credits.remaining` and `credits.refill.amount`: 10^12.
pub const MAX_CREDITS: u64 = 1_000_000_000_000;
/// The largest `cost` of one use.
pub const MAX_COST: u32 = 1000;

/// A value outside its bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum LimitError {
    /// `rate_limit.limit` outside 1 to 1,000,000.
    #[error("limit must be between 1 and 1000000")]
    Limit,
    /// `rate_limit.window` malformed or outside 1s to 1d.
    #[error("window: {0}")]
    Window(DurationError),
    /// `credits.remaining` outside 0 to 10^12.
    #[error("remaining must be between 0 and 1000000000000")]
    Remaining,
    /// `credits.refill.amount` outside 1 to 10^12.
    #[error("amount must be between 1 and 1000000000000")]
    Amount,
    /// `credits.refill.interval` neither `daily` nor `monthly`.
    #[error("interval must be `daily` or `monthly`")]
    Interval,
    /// `cost` outside 0 to 1000.
    #[error("cost must be between 0 and 1000")]
    Cost,
}

/// At most `limit` uses in each window of `window`, windows fixed and
/// aligned to the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    limit: u32,
    window: RateWindow,
}

impl RateLimit {
    /// Checks both bounds.
    ///
    /// # Errors
    /// [`LimitError::Limit`] outside 1 to 1,000,000.
    pub fn new(limit: u64, window: RateWindow) -> Result<Self, LimitError> {
        match u32::try_from(limit) {
            Ok(limit) if (1..=MAX_RATE_LIMIT).contains(&limit) => Ok(RateLimit { limit, window }),
            _ => Err(LimitError::Limit),
        }
    }

    /// Parses the window as a duration (`10s`) and checks both.
    ///
    /// # Errors
    /// [`LimitError::Limit`] or [`LimitError::Window`].
    pub fn parse(limit: u64, window: &str) -> Result<Self, LimitError> {
        let window = RateWindow::parse(window).map_err(LimitError::Window)?;
        Self::new(limit, window)
    }

    /// Uses allowed per window.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The window's length.
    pub fn window(&self) -> Duration {
        self.window.get()
    }

    fn window_seconds(&self) -> i64 {
        self.window.get().whole_seconds()
    }

    /// The start of the window that holds `now`: the Unix time rounded down
    /// to a multiple of the window (an instant exactly on a boundary starts
    /// the next window).
    pub fn window_start(&self, now: OffsetDateTime) -> OffsetDateTime {
        let start = self.window_start_unix(now.unix_timestamp());
        OffsetDateTime::UNIX_EPOCH + Duration::seconds(start)
    }

    /// [`RateLimit::window_start`] in Unix seconds, of the Unix second
    /// `unix`: what a use judged from memory compares, without calendar
    /// arithmetic.
    pub(crate) fn window_start_unix(&self, unix: i64) -> i64 {
        let length = self.window_seconds();
        unix.div_euclid(length) * length
    }

    /// Whole seconds from the Unix second `unix` (any fraction of it) to the
    /// end of its window: what `Retry-After` and `RateLimit-Reset` say.
    pub(crate) fn seconds_to_window_end(&self, unix: i64) -> u64 {
        let end = self.window_start_unix(unix) + self.window_seconds();
        u64::try_from(end - unix).unwrap_or(0)
    }

    /// The end of the window that holds `now` (the next one's start).
    pub fn window_end(&self, now: OffsetDateTime) -> OffsetDateTime {
        self.window_start(now) + self.window.get()
    }
}

/// When credits are refilled: at 00:00 UTC every day, or on the 1st of every
/// month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefillInterval {
    /// Every day at 00:00 UTC.
    Daily,
    /// The 1st of every month at 00:00 UTC.
    Monthly,
}

impl RefillInterval {
    /// `daily` or `monthly`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefillInterval::Daily => "daily",
            RefillInterval::Monthly => "monthly",
        }
    }

    /// The inverse of [`as_str`](Self::as_str).
    ///
    /// # Errors
    /// [`LimitError::Interval`].
    pub fn parse(s: &str) -> Result<Self, LimitError> {
        match s {
            "daily" => Ok(RefillInterval::Daily),
            "monthly" => Ok(RefillInterval::Monthly),
            _ => Err(LimitError::Interval),
        }
    }

    /// The latest refill instant at or before `now`: today's 00:00 UTC, or
    /// this month's 1st at 00:00 UTC.
    pub fn last_refill(self, now: OffsetDateTime) -> OffsetDateTime {
        let now = now.to_offset(time::UtcOffset::UTC);
        let day = match self {
            RefillInterval::Daily => now.date(),
            RefillInterval::Monthly => now.date().replace_day(1).unwrap_or(now.date()),
        };
        day.with_time(Time::MIDNIGHT).assume_utc()
    }

    /// The first refill instant after `now`.
    pub fn next_refill(self, now: OffsetDateTime) -> OffsetDateTime {
        let last = self.last_refill(now);
        match self {
            RefillInterval::Daily => last + Duration::days(1),
            RefillInterval::Monthly => {
                let (year, month) = match last.month() {
                    Month::December => (last.year() + 1, Month::January),
                    m => (last.year(), m.next()),
                };
                Date::from_calendar_date(year, month, 1).map_or(last + Duration::days(31), |d| {
                    d.with_time(Time::MIDNIGHT).assume_utc()
                })
            }
        }
    }
}

/// A refill: `remaining` is set to `amount` at each refill instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Refill {
    amount: u64,
    interval: RefillInterval,
}

impl Refill {
    /// Checks the amount.
    ///
    /// # Errors
    /// [`LimitError::Amount`] outside 1 to 10^12.
    pub fn new(amount: u64, interval: RefillInterval) -> Result<Self, LimitError> {
        if (1..=MAX_CREDITS).contains(&amount) {
            Ok(Refill { amount, interval })
        } else {
            Err(LimitError::Amount)
        }
    }

    /// What `remaining` becomes at each refill.
    pub fn amount(&self) -> u64 {
        self.amount
    }

    /// When refills happen.
    pub fn interval(&self) -> RefillInterval {
        self.interval
    }
}

/// A key's credits: uses it may still make, and how they are refilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Credits {
    remaining: u64,
    refill: Option<Refill>,
}

impl Credits {
    /// Checks `remaining`.
    ///
    /// # Errors
    /// [`LimitError::Remaining`] above 10^12.
    pub fn new(remaining: u64, refill: Option<Refill>) -> Result<Self, LimitError> {
        if remaining <= MAX_CREDITS {
            Ok(Credits { remaining, refill })
        } else {
            Err(LimitError::Remaining)
        }
    }

    /// Credits not yet handed out to a node (docs/limits.md).
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The refill, if any.
    pub fn refill(&self) -> Option<Refill> {
        self.refill
    }

    /// The same credits with `remaining` as given (already in bounds).
    #[must_use]
    pub fn with_remaining(self, remaining: u64) -> Self {
        Credits {
            remaining: remaining.min(MAX_CREDITS),
            ..self
        }
    }
}

/// A key's usage limits: both optional, both enforced when set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct UsageLimits {
    /// Uses per window, if limited.
    pub rate_limit: Option<RateLimit>,
    /// Credits, if metered.
    pub credits: Option<Credits>,
    /// When `credits` were last set by a person (created, updated) or
    /// refilled, as stored: a share of credits belongs to this period, and
    /// is void once it changes (docs/limits.md).
    pub credits_since: Option<OffsetDateTime>,
}

impl UsageLimits {
    /// Whether neither limit is set: such a key spends nothing.
    pub fn is_unlimited(&self) -> bool {
        self.rate_limit.is_none() && self.credits.is_none()
    }

    /// The period credits are counted in at `now`: the later of when they
    /// were set and the last refill (`None` without credits).
    pub fn credits_period(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let credits = self.credits?;
        let since = self.credits_since.unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Some(match credits.refill {
            Some(refill) => since.max(refill.interval.last_refill(now)),
            None => since,
        })
    }
}

/// What an update sets of the limits: `None` leaves a limit as it is,
/// `Some(None)` removes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitsUpdate {
    /// The new rate limit.
    pub rate_limit: Option<Option<RateLimit>>,
    /// The new credits (`remaining` as given, counted from the update).
    pub credits: Option<Option<Credits>>,
}

/// The cost of one use: 0 to 1000 (default 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost(u32);

impl Cost {
    /// One use: what every route spends.
    pub const ONE: Cost = Cost(1);

    /// Checks the bounds.
    ///
    /// # Errors
    /// [`LimitError::Cost`] above 1000.
    pub fn new(cost: u64) -> Result<Self, LimitError> {
        match u32::try_from(cost) {
            Ok(cost) if cost <= MAX_COST => Ok(Cost(cost)),
            _ => Err(LimitError::Cost),
        }
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for Cost {
    fn default() -> Self {
        Cost::ONE
    }
}

/// Parses a rate window such as `10s` (used by adapters reading input).
///
/// # Errors
/// [`LimitError::Window`].
pub fn parse_window(s: &str) -> Result<RateWindow, LimitError> {
    RateWindow::new(parse_duration(s).map_err(LimitError::Window)?).map_err(LimitError::Window)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn ten_seconds(limit: u64) -> RateLimit {
        RateLimit::parse(limit, "10s").unwrap()
    }

    #[test]
    fn the_unix_second_arithmetic_agrees_with_the_calendar() {
        for window in ["1s", "7s", "1m", "1h", "1d"] {
            let rate = RateLimit::parse(5, window).unwrap();
            for nanos in [0, 1, 999, 1_000, 500_000_000, 999_999_999] {
                for offset in [0, 1, 6, 59, 3_599, 86_399, 86_400] {
                    let now = datetime!(2026-12-03 00:00:00 UTC)
                        + Duration::seconds(offset)
                        + Duration::nanoseconds(nanos);
                    let unix = now.unix_timestamp();
                    assert_eq!(
                        rate.window_start_unix(unix),
                        rate.window_start(now).unix_timestamp()
                    );
                    // Whole seconds, rounded up, to the end.
                    let nanos = (rate.window_end(now) - now).whole_nanoseconds();
                    let ceil = u64::try_from(nanos.unsigned_abs().div_ceil(1_000_000_000)).unwrap();
                    assert_eq!(rate.seconds_to_window_end(unix), ceil, "{window} {now}");
                }
            }
        }
    }

    #[test]
    fn windows_are_aligned_to_the_epoch_and_a_boundary_starts_the_next() {
        let rate = ten_seconds(5);
        assert_eq!(
            rate.window_start(datetime!(2026-12-03 10:00:09 UTC)),
            datetime!(2026-12-03 10:00:00 UTC)
        );
        assert_eq!(
            rate.window_start(datetime!(2026-12-03 10:00:10 UTC)),
            datetime!(2026-12-03 10:00:10 UTC)
        );
        assert_eq!(
            rate.window_end(datetime!(2026-12-03 10:00:09.999 UTC)),
            datetime!(2026-12-03 10:00:10 UTC)
        );
    }

    #[test]
    fn a_day_window_starts_at_midnight_utc_also_on_a_leap_day() {
        let rate = RateLimit::parse(5, "1d").unwrap();
        assert_eq!(
            rate.window_start(datetime!(2028-02-29 23:59:59 UTC)),
            datetime!(2028-02-29 00:00:00 UTC)
        );
        assert_eq!(
            rate.window_end(datetime!(2028-02-29 12:00 UTC)),
            datetime!(2028-03-01 00:00:00 UTC)
        );
    }

    #[test]
    fn bounds_are_checked_on_construction() {
        assert_eq!(RateLimit::parse(0, "1s"), Err(LimitError::Limit));
        assert_eq!(RateLimit::parse(1_000_001, "1s"), Err(LimitError::Limit));
        assert!(RateLimit::parse(1_000_000, "1s").is_ok());
        assert!(RateLimit::parse(1, "1d").is_ok());
        assert!(matches!(
            RateLimit::parse(1, "0s"),
            Err(LimitError::Window(_))
        ));
        assert!(matches!(
            RateLimit::parse(1, "2d"),
            Err(LimitError::Window(_))
        ));
        assert!(matches!(
            RateLimit::parse(1, "1.5s"),
            Err(LimitError::Window(_))
        ));
        assert_eq!(
            Credits::new(MAX_CREDITS + 1, None),
            Err(LimitError::Remaining)
        );
        assert!(Credits::new(0, None).is_ok());
        assert_eq!(
            Refill::new(0, RefillInterval::Daily),
            Err(LimitError::Amount)
        );
        assert_eq!(
            Refill::new(MAX_CREDITS + 1, RefillInterval::Daily),
            Err(LimitError::Amount)
        );
        assert_eq!(Cost::new(1001), Err(LimitError::Cost));
        assert_eq!(Cost::new(0).map(Cost::get), Ok(0));
        assert_eq!(RefillInterval::parse("weekly"), Err(LimitError::Interval));
    }

    #[test]
    fn daily_refills_are_at_midnight_utc() {
        let daily = RefillInterval::Daily;
        assert_eq!(
            daily.last_refill(datetime!(2026-12-03 00:00:00 UTC)),
            datetime!(2026-12-03 00:00:00 UTC)
        );
        assert_eq!(
            daily.next_refill(datetime!(2026-12-03 00:00:00 UTC)),
            datetime!(2026-12-04 00:00:00 UTC)
        );
        assert_eq!(
            daily.next_refill(datetime!(2028-02-28 13:00 UTC)),
            datetime!(2028-02-29 00:00:00 UTC)
        );
        // An instant given in another offset is judged in UTC.
        assert_eq!(
            daily.last_refill(datetime!(2026-12-03 01:30 +02:00)),
            datetime!(2026-12-02 00:00:00 UTC)
        );
    }

    #[test]
    fn monthly_refills_are_on_the_first_at_midnight_utc() {
        let monthly = RefillInterval::Monthly;
        assert_eq!(
            monthly.last_refill(datetime!(2028-02-29 23:59 UTC)),
            datetime!(2028-02-01 00:00:00 UTC)
        );
        assert_eq!(
            monthly.next_refill(datetime!(2028-02-29 23:59 UTC)),
            datetime!(2028-03-01 00:00:00 UTC)
        );
        assert_eq!(
            monthly.next_refill(datetime!(2026-12-31 23:59:59 UTC)),
            datetime!(2027-01-01 00:00:00 UTC)
        );
        assert_eq!(
            monthly.next_refill(datetime!(2027-01-01 00:00:00 UTC)),
            datetime!(2027-02-01 00:00:00 UTC)
        );
    }

    #[test]
    fn the_credits_period_is_the_later_of_the_setting_and_the_last_refill() {
        let refill = Refill::new(100, RefillInterval::Daily).unwrap();
        let limits = UsageLimits {
            rate_limit: None,
            credits: Some(Credits::new(5, Some(refill)).unwrap()),
            credits_since: Some(datetime!(2026-12-03 09:00 UTC)),
        };
        assert_eq!(
            limits.credits_period(datetime!(2026-12-03 23:00 UTC)),
            Some(datetime!(2026-12-03 09:00 UTC))
        );
        assert_eq!(
            limits.credits_period(datetime!(2026-12-04 00:00 UTC)),
            Some(datetime!(2026-12-04 00:00 UTC))
        );
        assert_eq!(
            UsageLimits::default().credits_period(datetime!(2026-12-04 00:00 UTC)),
            None
        );
    }
}
