//! `POST /v1/secret-scanning/github`: GitHub's secret scanning partner
//! program reports the keys it finds in public code, and every working
//! secret key among them is revoked (docs/secret-scanning.md; docs/api.md,
//! "POST /v1/secret-scanning/github").
//!
//! No `Authorization`: GitHub signs the body instead. The signature is
//! checked before anything in the body is read: ECDSA P-256 with SHA-256
//! over the raw body (`Github-Public-Key-Signature`, base64 DER), under the
//! public key `Github-Public-Key-Identifier` names among
//! [`GithubPublicKeys`], which the operator loads from GitHub's
//! `public_keys` document at start. Without them the route is not served
//! (404, as an unknown route). A batch is a leak report: it shares the
//! reports' bounds (`report_limits.rs`: per client address, and at most a
//! few at once on a node) and their one lookup per report.

use std::fmt;
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use domain::{FoundToken, LeakSource};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
#[cfg(feature = "openapi")]
use utoipa::ToSchema;

use crate::body::read_json_bytes_up_to;
use crate::error::ApiError;
#[cfg(feature = "openapi")]
use crate::error::ErrorBody;
use crate::github_keys::one_header;
pub use crate::github_keys::{
    GithubKeysError, GithubPublicKeys, SignatureError, KEY_IDENTIFIER_HEADER, SIGNATURE_HEADER,
};
use crate::rate_limit::FailureLimiter;
use crate::redact::{redact_keys, REDACTED};
use crate::request_id::request_id_of;
use crate::route::routes;
use crate::state::AppState;

routes! {
    /// GitHub's secret scanning reports. No `Authorization`: the body is
    /// signed. Served only with [`GithubPublicKeys`].
    GITHUB = "/v1/secret-scanning/github" { POST github_secret_scanning },
}

/// Most tokens in one batch (docs/secret-scanning.md: 1,000).
pub const MAX_FOUND_TOKENS: usize = 1_000;

/// Largest batch body: 1 MiB, room for 1,000 tokens with long URLs.
pub const GITHUB_BODY_LIMIT: usize = 1024 * 1024;

/// One token of a batch, as GitHub sends it. Its `Debug` leaves the token
/// out.
#[derive(Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct GithubFoundToken {
    /// The string GitHub found, as found.
    pub token: String,
    /// The token type the pattern was registered under (echoed as
    /// `token_type`).
    #[serde(rename = "type", default)]
    pub token_type: String,
    /// Where it was found: a file at a commit, an issue, a gist, a package.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "https://github.com/octo-org/hello/blob/12345600b9cbe38a219f39a9941c9319b600c002/config.env"
        )
    )]
    pub url: String,
    /// What GitHub scanned (`content`, `commit`, `npm`, ...).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(example = "content"))]
    pub source: String,
}

impl fmt::Debug for GithubFoundToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubFoundToken")
            .field("token", &REDACTED)
            .field("token_type", &self.token_type)
            .field("url", &self.url)
            .field("source", &self.source)
            .finish()
    }
}

/// The verdict on one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TokenLabel {
    /// One of our secret keys, revoked now or before.
    TruePositive,
    /// Anything else: not a key, a mistyped key, an unknown key, a
    /// publishable key (public by design).
    FalsePositive,
}

/// The answer for one token, in the batch's order.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct GithubTokenVerdict {
    /// The SHA-256 of the token, in lowercase hex.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub token_hash: String,
    /// The token's `type`, as sent.
    pub token_type: String,
    /// `true_positive` or `false_positive`.
    pub label: TokenLabel,
}

/// The lowercase hex SHA-256 of `token`.
fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The batch, once its signature holds: a JSON array of at most
/// [`MAX_FOUND_TOKENS`] tokens.
fn parse_batch(body: &[u8]) -> Result<Vec<GithubFoundToken>, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid_json(format!(
            "the request body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let serde_json::Value::Array(entries) = value else {
        return Err(ApiError::invalid_json(
            "the request body must be a JSON array of found tokens",
        ));
    };
    if entries.len() > MAX_FOUND_TOKENS {
        return Err(ApiError::new(
            crate::error::ErrorCode::InvalidParameter,
            format!("a batch holds at most {MAX_FOUND_TOKENS} tokens"),
        ));
    }
    entries
        .into_iter()
        .map(serde_json::from_value::<GithubFoundToken>)
        .collect::<Result<_, _>>()
        .map_err(|_| {
            ApiError::invalid_parameter(
                "token",
                "each entry must be an object with a string `token` (and string `type`, `url`, `source`)",
            )
        })
}

/// Report keys GitHub found in public code: every active secret key among
/// them is revoked.
///
/// No `Authorization`: the body must carry GitHub's signature. 200 with one
/// verdict per token, in order, once the revocations are committed (each
/// writing `api_key.revoked` with actor `leak_report`, `data.source`
/// `github` and `data.url`). 404 while the service has no GitHub public
/// keys.
#[cfg_attr(
    feature = "openapi",
    utoipa::path(
        post,
        path = GITHUB.path,
        tag = "secret-scanning",
        operation_id = "github_secret_scanning",
        params(
            ("Github-Public-Key-Identifier" = String, Header, description = "The identifier of the GitHub key that signed the body (`key_identifier` in GitHub's `public_keys`)."),
            ("Github-Public-Key-Signature" = String, Header, description = "Base64 of the ECDSA P-256 SHA-256 signature of the raw body, in DER."),
        ),
        request_body(content = Vec<GithubFoundToken>, content_type = "application/json",
            description = "At most 1,000 tokens GitHub found, in a body of at most 1 MiB (an empty array is answered with an empty one)."),
        responses(
            (status = 200, description = "One verdict per token, in order; the revocations are committed.", body = Vec<GithubTokenVerdict>),
            (status = 400, description = "`invalid_json` (not a JSON array), `invalid_parameter` (more than 1,000 tokens, or an entry without a string `token`).", body = ErrorBody),
            (status = 401, description = "`invalid_signature`: a signature header missing or sent twice, an unknown key identifier, or a signature that does not match the body. Nothing changes.", body = ErrorBody),
            (status = 404, description = "`not_found`: the service has no GitHub public keys (`APIKEYS_GITHUB_PUBLIC_KEYS_FILE` unset).", body = ErrorBody),
            (status = 408, description = "`request_timeout`.", body = ErrorBody),
            (status = 413, description = "`payload_too_large`: a body over 1 MiB.", body = ErrorBody),
            (status = 415, description = "`unsupported_media_type`: not `application/json`, or a `Content-Encoding` other than `identity`.", body = ErrorBody),
            (status = 429, description = "`too_many_requests`: too many reports, or failed authentications, from this address.", body = ErrorBody,
                headers(("Retry-After" = String, description = "Seconds until the address is admitted again."))),
            crate::openapi::responses::Unavailable,
        ),
    )
)]
pub(crate) async fn github_secret_scanning(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let Some(keys) = state.github_keys.clone() else {
        return Err(ApiError::route_not_found());
    };
    // Bounded as leak reports are: the address's failures and reports, then
    // the body (at most 1 MiB, within the body timeout), then the signature.
    if let Some(limiter) = req.app_data::<web::Data<FailureLimiter>>() {
        limiter.admit(&req)?;
    }
    let gate = Arc::clone(&state.leak_reports);
    gate.admit(&req)?;
    // A bad signature is not counted as a failed authentication: no key is
    // guessed with it, and every batch, signed or not, already counts
    // against the address's reports (docs/api.md, "POST
    // /v1/secret-scanning/github"). Without both headers there is nothing
    // to verify the body with: it is not read.
    let refuse = |e: SignatureError| ApiError::invalid_signature().with_source(e);
    one_header(&req, KEY_IDENTIFIER_HEADER)
        .and_then(|_| one_header(&req, SIGNATURE_HEADER))
        .map_err(refuse)?;
    let body = read_json_bytes_up_to(&req, payload, GITHUB_BODY_LIMIT).await?;
    keys.verify_request(&req, &body).map_err(refuse)?;
    let batch = parse_batch(&body)?;
    drop(body);
    let verdict_parts: Vec<(String, String)> = batch
        .iter()
        .map(|found| (token_hash(&found.token), found.token_type.clone()))
        .collect();
    let found: Vec<FoundToken> = batch
        .into_iter()
        .map(|found| FoundToken {
            // A URL holding a key would put it in the event: it is redacted.
            url: redact_keys(&found.url).into_owned(),
            token: found.token,
        })
        .collect();
    let place = gate.enter()?;
    let service = state.service().clone();
    let request_id = request_id_of(&req);
    let report = state
        .storage(move || {
            let _place = place;
            service.revoke_found(request_id, LeakSource::GitHub, &found)
        })
        .await??;
    tracing::info!(
        tokens = report.ours.len(),
        ours = report.ours.iter().filter(|ours| **ours).count(),
        revoked = report.revoked,
        "GitHub secret scanning batch processed"
    );
    let verdicts: Vec<GithubTokenVerdict> = verdict_parts
        .into_iter()
        .zip(report.ours)
        .map(|((token_hash, token_type), ours)| GithubTokenVerdict {
            token_hash,
            token_type,
            label: if ours {
                TokenLabel::TruePositive
            } else {
                TokenLabel::FalsePositive
            },
        })
        .collect();
    Ok(HttpResponse::Ok().json(verdicts))
}
