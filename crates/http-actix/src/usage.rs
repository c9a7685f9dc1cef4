//! Spending a limited key's budget on every way a key is used (docs/api.md,
//! "Limiting a key's use"; docs/limits.md): the authenticated routes (after
//! the handler's scope check, [`Authenticated`](crate::Authenticated)'s
//! `require_*`), verify (after its checks) and forward authentication
//! ([`spend_use`]).
//!
//! The [`UsageMeter`] is found as `web::Data<UsageMeter>` (registered by
//! [`crate::configure`] from [`AppState::with_usage_meter`](crate::AppState::with_usage_meter));
//! without one, nothing is metered. A use is judged from memory on the
//! executor thread when this node holds enough of the key's budget, and on
//! the blocking pool when a share must be taken from storage (503 when
//! storage cannot be reached: a use is never admitted on a share not
//! granted).

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::{web, HttpMessage, HttpRequest};
use domain::{Cost, KeyId, RefusalCode, UsageLimits, UsageMeter, UsageReport, Verdict};

use crate::blocking::{blocking_within, storage_wait};
use crate::error::ApiError;

/// Counter: shares of a budget taken from storage, by `budget` (`window`,
/// `credits`): one database write each.
pub const USAGE_SHARES: &str = "apikeys_usage_shares_taken_total";
/// Counter: uses of limited keys refused, by `code` (`rate_limited`,
/// `usage_exceeded`).
pub const USAGE_REFUSED: &str = "apikeys_usage_refused_total";

/// The budget a limited key's response reports, kept in the request for
/// [`crate::request_context`] to send as `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LimitReport(pub(crate) UsageReport);

const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// Adds `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` for
/// the request's limited key, if it had one.
pub(crate) fn add_headers(req: &HttpRequest, headers: &mut HeaderMap) {
    let Some(LimitReport(report)) = req.extensions().get::<LimitReport>().copied() else {
        return;
    };
    for (name, value) in [
        (LIMIT, report.limit),
        (REMAINING, report.remaining),
        (RESET, report.reset),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
}

/// Keeps key `key`'s budget, as this node knows it, in the request for the
/// `RateLimit-*` headers, spending nothing: for a use of a limited key
/// refused before its budget is judged (its type or scopes).
pub(crate) fn report_unspent(req: &HttpRequest, key: &KeyId, limits: &UsageLimits) {
    if limits.is_unlimited() {
        return;
    }
    let Some(meter) = req.app_data::<web::Data<UsageMeter>>() else {
        return;
    };
    if let Some(report) = meter.report(key, limits) {
        req.extensions_mut().insert(LimitReport(report));
    }
}

/// The refusal's code as the API spells it.
pub(crate) fn refusal_code(code: RefusalCode) -> &'static str {
    match code {
        RefusalCode::RateLimited => "rate_limited",
        RefusalCode::UsageExceeded => "usage_exceeded",
    }
}

/// Judges a use of `cost` of key `key` with `limits`, spending it when
/// admitted: `None` for a key without limits (or no meter registered).
/// The report is kept in the request for the `RateLimit-*` headers.
///
/// # Errors
/// 503 when a share must be taken and storage cannot be reached in time.
pub async fn judge_use(
    req: &HttpRequest,
    key: KeyId,
    limits: UsageLimits,
    cost: Cost,
) -> Result<Option<Verdict>, ApiError> {
    if limits.is_unlimited() {
        return Ok(None);
    }
    let Some(meter) = req.app_data::<web::Data<UsageMeter>>() else {
        return Ok(None);
    };
    let verdict = match meter.spend_cached(&key, &limits, cost) {
        Some(verdict) => verdict,
        None => {
            let meter = meter.clone().into_inner();
            let spent =
                blocking_within(storage_wait(req), move || meter.spend(&key, &limits, cost))
                    .await??;
            if let Some(spent) = spent {
                if spent.window_shares > 0 {
                    metrics::counter!(USAGE_SHARES, "budget" => "window")
                        .increment(u64::from(spent.window_shares));
                }
                if spent.credit_shares > 0 {
                    metrics::counter!(USAGE_SHARES, "budget" => "credits")
                        .increment(u64::from(spent.credit_shares));
                }
            }
            spent.map(|s| s.verdict)
        }
    };
    if let Some(verdict) = verdict {
        let report = match verdict {
            Ok(report) => report,
            Err(refusal) => {
                metrics::counter!(USAGE_REFUSED, "code" => refusal_code(refusal.code)).increment(1);
                refusal.report
            }
        };
        req.extensions_mut().insert(LimitReport(report));
    }
    Ok(verdict)
}

/// Spends one use of `cost` for key `key` as [`judge_use`], a refusal
/// answered as 429 `rate_limited` or `usage_exceeded` with `Retry-After`.
/// What forward authentication calls once its checks passed.
///
/// # Errors
/// 429 when refused, 503 when storage cannot be reached.
pub async fn spend_use(
    req: &HttpRequest,
    key: KeyId,
    limits: UsageLimits,
    cost: Cost,
) -> Result<Option<UsageReport>, ApiError> {
    match judge_use(req, key, limits, cost).await? {
        None => Ok(None),
        Some(Ok(report)) => Ok(Some(report)),
        Some(Err(refusal)) => Err(ApiError::usage_refused(refusal.code, refusal.retry_after)),
    }
}
