//! What the measuring examples share.

use std::time::Duration;

/// The value at rank `p` (0 < p ≤ 1) of sorted `values`: nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let n = sorted.len();
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "n is 100; the rank is within 1..=n"
    )]
    let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
    sorted.get(rank - 1).copied().unwrap_or_default()
}

/// `d` in milliseconds.
pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
