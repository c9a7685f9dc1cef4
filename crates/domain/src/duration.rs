//! Durations such as `90d` or `24h` (docs/api.md, "Conventions", durations) and the bounds of each use.
//!
//! Grammar: `^(0|[1-9][0-9]*)(s|m|h|d|w|y)$`, a year being 365 days. Nothing
//! else is accepted: no spaces, upper case, signs, fractions or leading zeros.

use thiserror::Error;
use time::Duration;

const MINUTE: i64 = 60;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const WEEK: i64 = 7 * DAY;
const YEAR: i64 = 365 * DAY;

/// Why a duration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DurationError {
    /// Does not match the grammar, or is too large to represent.
    #[error("expected a whole number followed by one of s, m, h, d, w, y (such as 90d)")]
    Malformed,
    /// Well formed, but outside the bounds of its use.
    #[error("must be between {min} and {max}")]
    OutOfRange {
        /// The smallest accepted value, as written in the contract.
        min: &'static str,
        /// The largest accepted value, as written in the contract.
        max: &'static str,
    },
}

/// Parses a duration by the grammar alone, without bounds.
///
/// # Errors
/// [`DurationError::Malformed`] for anything outside the grammar, or a number so
/// large that it overflows.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    // Split off the last byte; a string whose last character is not ASCII
    // (such as `1é`) has no char boundary there and is malformed, not a panic.
    let (digits, unit) = s
        .len()
        .checked_sub(1)
        .and_then(|at| s.split_at_checked(at))
        .ok_or(DurationError::Malformed)?;
    let unit_seconds = match unit {
        "s" => 1,
        "m" => MINUTE,
        "h" => HOUR,
        "d" => DAY,
        "w" => WEEK,
        "y" => YEAR,
        _ => return Err(DurationError::Malformed),
    };
    let well_formed = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !well_formed {
        return Err(DurationError::Malformed);
    }
    let seconds = digits
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_seconds))
        .ok_or(DurationError::Malformed)?;
    Ok(Duration::seconds(seconds))
}

macro_rules! bounded_duration {
    ($(#[$meta:meta])* $name:ident, $min:expr, $min_text:literal, $max:expr, $max_text:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Duration);

        impl $name {
            /// The smallest accepted value.
            pub const MIN: Duration = Duration::seconds($min);
            /// The largest accepted value.
            pub const MAX: Duration = Duration::seconds($max);

            /// Parses by the grammar, then checks the bounds.
            ///
            /// # Errors
            /// [`DurationError::Malformed`] or [`DurationError::OutOfRange`].
            pub fn parse(s: &str) -> Result<Self, DurationError> {
                Self::new(parse_duration(s)?)
            }

            /// Checks the bounds of an already known duration.
            ///
            /// # Errors
            /// [`DurationError::OutOfRange`].
            pub fn new(duration: Duration) -> Result<Self, DurationError> {
                if duration < Self::MIN || duration > Self::MAX {
                    return Err(DurationError::OutOfRange {
                        min: $min_text,
                        max: $max_text,
                    });
                }
                Ok(Self(duration))
            }

            /// The duration.
            pub fn get(self) -> Duration {
                self.0
            }
        }
    };
}

bounded_duration!(
    /// A key's lifetime from creation (`expires_in`): 1 minute to 10 years.
    ExpiresIn,
    MINUTE,
    "1m",
    10 * YEAR,
    "10y"
);

bounded_duration!(
    /// How long a rotated key keeps working (`grace_period`): 0 seconds to 7 days.
    GracePeriod,
    0,
    "0s",
    WEEK,
    "7d"
);

bounded_duration!(
    /// The window of a key's rate limit (`rate_limit.window`): 1 second to 1 day.
    RateWindow,
    1,
    "1s",
    DAY,
    "1d"
);

impl Default for GracePeriod {
    /// One hour, as the product document says.
    fn default() -> Self {
        GracePeriod(Duration::seconds(HOUR))
    }
}
