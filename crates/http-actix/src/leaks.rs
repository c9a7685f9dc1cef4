//! `POST /v1/leaked-keys`: anyone who finds keys may report them, and every
//! real secret key among them is revoked (docs/api.md, "POST
//! /v1/leaked-keys").
//!
//! No `Authorization` and no `X-Tenant-ID`: whoever found a key is not its
//! owner. The answer's content never tells which strings were keys (always
//! 202 `{"received": N}`). It is sent once the report's revocations are
//! committed, so an accepted report is never lost, also across a stop.
//!
//! Open to anyone, so bounded (`report_limits.rs`): reports are counted per
//! client address (429 past the limit), and at most a few are processed at
//! once on a node; past that, 503 with `Retry-After` at once, never a queue.

use std::fmt;
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
#[cfg(feature = "openapi")]
use utoipa::ToSchema;

use crate::body::{read_object, JsonObject};
use crate::error::ApiError;
#[cfg(feature = "openapi")]
use crate::error::ErrorBody;
use crate::rate_limit::FailureLimiter;
use crate::redact::REDACTED;
use crate::request_id::request_id_of;
use crate::route::routes;
use crate::state::AppState;

routes! {
    /// Leak reports. No `Authorization`, no `X-Tenant-ID`: anyone may
    /// report a key.
    LEAKED_KEYS = "/v1/leaked-keys" { POST report_leaked_keys },
}

/// Most strings in one report.
pub(crate) const MAX_REPORTED_KEYS: usize = 100;

// Only the body's schema for the OpenAPI document: the handler reads the
// body field by field (`crate::body`). Its `Debug` leaves the keys out
// (docs/api.md, "Secrets").
/// `POST /v1/leaked-keys` body.
#[derive(Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "never built: the handler reads the body field by field"
)]
pub struct LeakedKeysRequest {
    /// 1 to 100 strings found where they should not be: each that is an
    /// active secret key (also one in its rotation grace period) is revoked.
    /// Publishable keys and anything else are ignored. Strings are matched
    /// exactly, as found.
    #[cfg_attr(feature = "openapi", schema(example = json!(["sk_live_..."]), min_items = 1, max_items = 100))]
    pub keys: Vec<String>,
}

impl fmt::Debug for LeakedKeysRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeakedKeysRequest")
            .field("keys", &format_args!("[{} x {REDACTED}]", self.keys.len()))
            .finish()
    }
}

/// `202` body of `POST /v1/leaked-keys`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct LeakReportAccepted {
    /// How many strings the report held (repetitions included). It never
    /// says how many were keys.
    #[cfg_attr(feature = "openapi", schema(example = 3, minimum = 1, maximum = 100))]
    pub received: usize,
}

/// The `keys` field: an array of 1 to [`MAX_REPORTED_KEYS`] strings.
fn read_keys(body: &JsonObject) -> Result<Vec<String>, ApiError> {
    let keys = body
        .opt_str_array("keys")?
        .ok_or_else(|| ApiError::missing_parameter("keys"))?;
    if keys.is_empty() || keys.len() > MAX_REPORTED_KEYS {
        return Err(ApiError::invalid_parameter(
            "keys",
            format!("`keys` must hold 1 to {MAX_REPORTED_KEYS} strings"),
        ));
    }
    Ok(keys.into_iter().map(str::to_owned).collect())
}

/// Report leaked keys: every active secret key among them is revoked.
///
/// No `Authorization`, no `X-Tenant-ID`. 202 with the number of strings
/// received, whatever they are, once the revocations are committed (each
/// writing `api_key.revoked` with actor `leak_report`). 429 past the reports
/// allowed per address; 503 while this node already processes as many
/// reports as it may at once.
#[cfg_attr(
    feature = "openapi",
    utoipa::path(
        post,
        path = LEAKED_KEYS.path,
        tag = "leaked-keys",
        operation_id = "report_leaked_keys",
        request_body(content = LeakedKeysRequest, content_type = "application/json"),
        responses(
            (status = 202, description = "Accepted: every active secret key among the strings is revoked, committed before this answer. The same answer whatever the strings are.", body = LeakReportAccepted),
            (status = 400, description = "`invalid_json`, `unknown_field`, `missing_parameter` (`keys`), `invalid_parameter` (`keys`: not an array of 1 to 100 strings).", body = ErrorBody),
            (status = 413, description = "`payload_too_large`.", body = ErrorBody),
            (status = 415, description = "`unsupported_media_type`: not `application/json`, or a `Content-Encoding` other than `identity`.", body = ErrorBody),
            (status = 429, description = "`too_many_requests`: too many reports, or failed authentications, from this address.", body = ErrorBody,
                headers(("Retry-After" = String, description = "Seconds until the address is admitted again."))),
            crate::openapi::responses::Unavailable,
        ),
    )
)]
pub(crate) async fn report_leaked_keys(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // Reports are open to anyone: an address over the failure limit is
    // refused here too (docs/api.md, "Abuse limits"), and every report
    // counts against its address's limit on reports.
    if let Some(limiter) = req.app_data::<web::Data<FailureLimiter>>() {
        limiter.admit(&req)?;
    }
    let gate = Arc::clone(&state.leak_reports);
    gate.admit(&req)?;
    let keys = {
        let body = read_object(&req, payload, &["keys"]).await?;
        read_keys(&body)?
    };
    let received = keys.len();
    let place = gate.enter()?;
    let service = state.service().clone();
    let request_id = request_id_of(&req);
    // Answered once the revocations are committed. Only the outcome's
    // counts are logged, never a string of the report.
    let report = state
        .storage(move || {
            let _place = place;
            service.revoke_leaked(request_id, &keys)
        })
        .await??;
    tracing::info!(
        revoked = report.revoked,
        ignored = report.ignored,
        "leaked-key report processed"
    );
    Ok(HttpResponse::Accepted().json(LeakReportAccepted { received }))
}
