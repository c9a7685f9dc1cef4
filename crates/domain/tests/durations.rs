//! Durations (docs/api.md, "Conventions", durations): the grammar `^(0|[1-9][0-9]*)(s|m|h|d|w|y)$`, and
//! the bounds of `expires_in` (1m–10y) and `grace_period` (0s–7d).

use domain::{format_duration, parse_duration, DurationError, ExpiresIn, GracePeriod};
use time::Duration;

const EXPIRES_RANGE: DurationError = DurationError::OutOfRange {
    min: "1m",
    max: "10y",
};
const GRACE_RANGE: DurationError = DurationError::OutOfRange {
    min: "0s",
    max: "7d",
};

#[test]
fn every_unit_is_understood() {
    let cases = [
        ("0s", Duration::ZERO),
        ("30s", Duration::seconds(30)),
        ("1m", Duration::minutes(1)),
        ("24h", Duration::hours(24)),
        ("90d", Duration::days(90)),
        ("2w", Duration::weeks(2)),
        ("1y", Duration::days(365)),
        ("10y", Duration::days(3650)),
        ("0d", Duration::ZERO),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_duration(text), Ok(expected), "{text}");
    }
}

#[test]
fn anything_outside_the_grammar_is_malformed() {
    let thirty_digits = format!("{}d", "9".repeat(30));
    for bad in [
        "1Y",
        "1D",
        "1.5d",
        " 1d",
        "1d ",
        "1 d",
        "01d",
        "00s",
        "-1h",
        "+1h",
        "1",
        "d",
        "",
        "1dd",
        "1d1h",
        "1ms",
        "1x",
        "１d",
        "1é",
        "é",
        "1d\n",
        thirty_digits.as_str(),
    ] {
        assert_eq!(
            parse_duration(bad),
            Err(DurationError::Malformed),
            "{bad:?}"
        );
        assert_eq!(
            ExpiresIn::parse(bad),
            Err(DurationError::Malformed),
            "{bad:?}"
        );
        assert_eq!(
            GracePeriod::parse(bad),
            Err(DurationError::Malformed),
            "{bad:?}"
        );
    }
}

#[test]
fn a_number_that_overflows_is_malformed_not_a_panic() {
    // Fits in i64 but not once multiplied into seconds.
    assert_eq!(
        parse_duration("9223372036854775807y"),
        Err(DurationError::Malformed)
    );
    assert_eq!(
        parse_duration("9223372036854775808s"),
        Err(DurationError::Malformed)
    );
    assert_eq!(
        parse_duration("9223372036854775807s"),
        Ok(Duration::seconds(i64::MAX))
    );
    assert_eq!(ExpiresIn::parse("9223372036854775807s"), Err(EXPIRES_RANGE));
}

#[test]
fn expires_in_accepts_one_minute_to_ten_years() {
    for (text, expected) in [
        ("1m", Duration::minutes(1)),
        ("60s", Duration::minutes(1)),
        ("90d", Duration::days(90)),
        ("1y", Duration::days(365)),
        ("10y", Duration::days(3650)),
        ("3650d", Duration::days(3650)),
    ] {
        assert_eq!(
            ExpiresIn::parse(text).map(ExpiresIn::get),
            Ok(expected),
            "{text}"
        );
    }
}

#[test]
fn expires_in_outside_its_bounds_is_out_of_range() {
    for text in ["0d", "0s", "30s", "59s", "11y", "3651d", "522w"] {
        assert_eq!(ExpiresIn::parse(text), Err(EXPIRES_RANGE), "{text}");
    }
    assert_eq!(ExpiresIn::MIN, Duration::minutes(1));
    assert_eq!(ExpiresIn::MAX, Duration::days(3650));
    assert_eq!(ExpiresIn::new(Duration::seconds(-1)), Err(EXPIRES_RANGE));
}

#[test]
fn grace_period_accepts_zero_to_seven_days() {
    for (text, expected) in [
        ("0s", Duration::ZERO),
        ("0d", Duration::ZERO),
        ("30s", Duration::seconds(30)),
        ("24h", Duration::hours(24)),
        ("7d", Duration::days(7)),
        ("1w", Duration::days(7)),
        ("168h", Duration::days(7)),
    ] {
        assert_eq!(
            GracePeriod::parse(text).map(GracePeriod::get),
            Ok(expected),
            "{text}"
        );
    }
}

#[test]
fn grace_period_outside_its_bounds_is_out_of_range() {
    for text in ["8d", "169h", "604801s", "2w", "1y", "11y"] {
        assert_eq!(GracePeriod::parse(text), Err(GRACE_RANGE), "{text}");
    }
    assert_eq!(GracePeriod::new(Duration::seconds(-1)), Err(GRACE_RANGE));
}

#[test]
fn grace_period_defaults_to_one_hour() {
    assert_eq!(GracePeriod::default().get(), Duration::hours(1));
}

#[test]
fn a_grace_period_is_written_in_its_largest_exact_unit() {
    let cases = [
        (Duration::ZERO, "0s"),
        (Duration::seconds(1), "1s"),
        (Duration::seconds(90), "90s"),
        (Duration::seconds(120), "2m"),
        (Duration::seconds(3600), "1h"),
        (Duration::seconds(5400), "90m"),
        (Duration::seconds(86_400), "1d"),
        (Duration::seconds(90_000), "25h"),
        (Duration::weeks(1), "1w"),
        (Duration::days(8), "8d"),
        (Duration::days(365), "1y"),
    ];
    for (duration, expected) in cases {
        assert_eq!(format_duration(duration), expected, "{duration}");
    }
}

#[test]
fn every_grace_period_reads_back_as_itself() {
    for text in [
        "0s", "59s", "1m", "61m", "1h", "24h", "36h", "1d", "6d", "7d", "1w",
    ] {
        let grace = GracePeriod::parse(text).expect("grace period");
        let written = grace.to_duration_string();
        assert_eq!(
            GracePeriod::parse(&written).map(GracePeriod::get),
            Ok(grace.get()),
            "{text} written as {written}"
        );
    }
    assert_eq!(
        GracePeriod::parse("24h").map(GracePeriod::to_duration_string),
        Ok("1d".to_owned())
    );
}
