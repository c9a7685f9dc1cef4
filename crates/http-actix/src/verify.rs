//! `POST /v1/api-keys/verify`: another service asks whether a key presented
//! to it is good for a tenant (docs/api.md, "POST /v1/api-keys/verify").
//!
//! The key travels in the body and is the credential: there is no
//! `Authorization`. The verdict comes from the same [`Authenticator`] as the
//! [`Authenticated`](crate::Authenticated) extractor's, so a key verifies
//! exactly when it would authenticate (and the authenticator records the use
//! the same way). A well-formed request always gets 200 with the verdict;
//! only the request itself (tenant header, body) and storage failures are
//! errors. Every answer of the route carries `Cache-Control: no-store`
//! ([`no_store`]).

use std::fmt;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderValue, CACHE_CONTROL};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::{
    ApiKey, AuthError, Authenticator, Credentials, KeyFormatError, PlainKey, Scope, TenantId,
};
use serde::{Deserialize, Serialize};
#[cfg(feature = "openapi")]
use utoipa::ToSchema;

use crate::auth::TENANT_HEADER;
use crate::blocking::blocking;
use crate::body::{read_object, JsonObject};
use crate::dto::timestamp;
#[cfg(feature = "openapi")]
use crate::dto::{KeyTypeDto, ModeDto};
use crate::error::ApiError;
#[cfg(feature = "openapi")]
use crate::error::ErrorBody;
use crate::metrics::{self, Via};
use crate::rate_limit::{Client, FailureLimiter};
use crate::redact::REDACTED;

// Only the body's schema for the OpenAPI document: the handler reads the
// body field by field (`crate::body`). Its `Debug` leaves the key out
// (docs/api.md, "Secrets").
/// `POST /v1/api-keys/verify` body.
#[derive(Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "never built: the handler reads the body field by field"
)]
pub struct VerifyKeyRequest {
    /// The key to check, as it was presented to your service. A string that
    /// is not a well-formed key (shape or checksum) is answered
    /// `invalid_api_key`, without any database work.
    pub key: String,
    /// Scopes the key must have (a key with `*` has every scope). Absent,
    /// `null` or `[]`: none required. Known scopes only; duplicates are
    /// ignored.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<crate::schema::Scope>>, example = json!(["users:read"])))]
    pub scopes: Option<Vec<String>>,
}

impl fmt::Debug for VerifyKeyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyKeyRequest")
            .field("key", &REDACTED)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// The verdict's `code`: `valid`, or why the key is not good for the tenant,
/// in the order authentication checks (then the scopes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum VerifyCode {
    /// The key authenticates for the tenant and has every scope asked for.
    Valid,
    /// Not a key (shape or checksum), or no key has this value.
    InvalidApiKey,
    /// Revoked, or rotated and past its grace period.
    ApiKeyRevoked,
    /// Past `expires_at`.
    ApiKeyExpired,
    /// The key belongs to another tenant.
    TenantMismatch,
    /// The key is valid but lacks some of `scopes` (see `missing_scopes`).
    InsufficientScope,
}

/// The verified key: what a service needs to decide what the caller may do.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct VerifiedKey {
    /// `key_` + ULID.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::KeyId))]
    pub id: String,
    /// The tenant the key belongs to (the one `X-Tenant-ID` named).
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::TenantId))]
    pub tenant_id: String,
    /// Label.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::KeyName))]
    pub name: String,
    /// `publishable` or `secret`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(value_type = KeyTypeDto))]
    pub key_type: String,
    /// `live` or `test`.
    #[cfg_attr(feature = "openapi", schema(value_type = ModeDto))]
    pub mode: String,
    /// The key's scopes, `["*"]` for full access.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::schema::Scope>))]
    pub scopes: Vec<String>,
    /// Expiry, or null.
    #[cfg_attr(feature = "openapi", schema(required = true, format = DateTime))]
    pub expires_at: Option<String>,
    /// When a scheduled revocation (a rotation's grace period) takes effect,
    /// or null.
    #[cfg_attr(feature = "openapi", schema(required = true, format = DateTime))]
    pub revokes_at: Option<String>,
}

impl From<&ApiKey> for VerifiedKey {
    fn from(key: &ApiKey) -> Self {
        VerifiedKey {
            id: key.id.to_string(),
            tenant_id: key.tenant_id.to_string(),
            name: key.name.as_str().to_owned(),
            key_type: key.key_type.as_str().to_owned(),
            mode: key.mode.as_str().to_owned(),
            scopes: key.scopes.names().map(str::to_owned).collect(),
            expires_at: key.expires_at.map(timestamp),
            revokes_at: key.revokes_at.map(timestamp),
        }
    }
}

/// `200` body of `POST /v1/api-keys/verify`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct VerifyKeyResponse {
    /// Whether the key is good for the tenant (and the scopes).
    pub valid: bool,
    /// `valid`, or why not.
    pub code: VerifyCode,
    /// The key, when `code` is `valid` or `insufficient_scope`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub key: Option<VerifiedKey>,
    /// The scopes asked for that the key lacks, in canonical order; only
    /// with `insufficient_scope`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false, value_type = Option<Vec<crate::schema::Scope>>))]
    pub missing_scopes: Option<Vec<String>>,
}

impl VerifyKeyResponse {
    /// A key that is not good for the tenant.
    fn refused(code: VerifyCode) -> Self {
        VerifyKeyResponse {
            valid: false,
            code,
            key: None,
            missing_scopes: None,
        }
    }

    /// The verdict on a key that authenticated, given the scopes required.
    fn of(key: &ApiKey, required: &[Scope]) -> Self {
        let missing: Vec<String> = Scope::ALL
            .into_iter()
            .filter(|s| required.contains(s) && !key.scopes.allows(*s))
            .map(|s| s.as_str().to_owned())
            .collect();
        let valid = missing.is_empty();
        VerifyKeyResponse {
            valid,
            code: if valid {
                VerifyCode::Valid
            } else {
                VerifyCode::InsufficientScope
            },
            key: Some(VerifiedKey::from(key)),
            missing_scopes: (!valid).then_some(missing),
        }
    }
}

/// The verdict for an authentication failure; a storage failure is no
/// verdict but an error (503 or 500, as on every route).
fn refusal(e: AuthError) -> Result<VerifyKeyResponse, ApiError> {
    let code = match e {
        // `MissingKey` cannot come from an authenticator given a parsed
        // key; if one says so, the key is not good.
        AuthError::MissingKey | AuthError::InvalidKey => VerifyCode::InvalidApiKey,
        AuthError::Revoked => VerifyCode::ApiKeyRevoked,
        AuthError::Expired => VerifyCode::ApiKeyExpired,
        AuthError::TenantMismatch => VerifyCode::TenantMismatch,
        AuthError::InvalidTenantId | AuthError::Repository(_) => return Err(e.into()),
    };
    Ok(VerifyKeyResponse::refused(code))
}

/// The fields of the body, checked in order: `key` (type), `scopes` (type,
/// then each name). The key string's own shape is a verdict, not an error.
fn read_fields(
    body: &JsonObject,
) -> Result<(Result<PlainKey, KeyFormatError>, Vec<Scope>), ApiError> {
    let key = body.req_str("key")?;
    let names = body.opt_str_array("scopes")?.unwrap_or_default();
    let mut required = Vec::with_capacity(names.len());
    for name in names {
        let scope =
            Scope::parse(name).map_err(|e| ApiError::invalid_parameter("scopes", e.to_string()))?;
        if !required.contains(&scope) {
            required.push(scope);
        }
    }
    Ok((PlainKey::parse(key), required))
}

/// Verify a key presented to your service: is it good for this tenant (and
/// these scopes)?
///
/// No `Authorization`: the key in the body is the credential. A well-formed
/// request is answered 200 with the verdict; verifying a key that
/// authenticates counts as a use (`last_used_at`).
#[cfg_attr(
    feature = "openapi",
    utoipa::path(
        post,
        path = "/v1/api-keys/verify",
        tag = "api-key-verification",
        operation_id = "verify_api_key",
        request_body(content = VerifyKeyRequest, content_type = "application/json"),
        responses(
            (status = 200, description = "The verdict: `valid` true with the key, or false with the reason in `code` (with the key and `missing_scopes` when only scopes are lacking).", body = VerifyKeyResponse,
                headers(("Cache-Control" = String, description = "`no-store`"))),
            (status = 400, description = "`invalid_tenant_id` (checked before the body), `invalid_json`, `unknown_field`, `missing_parameter` (`key`), `invalid_parameter` (`key`, `scopes`).", body = ErrorBody,
                headers(("Cache-Control" = String, description = "`no-store`"))),
            (status = 405, description = "`method_not_allowed`.", body = ErrorBody,
                headers(("Allow" = String, description = "`POST`"), ("Cache-Control" = String, description = "`no-store`"))),
            (status = 413, description = "`payload_too_large`.", body = ErrorBody,
                headers(("Cache-Control" = String, description = "`no-store`"))),
            (status = 415, description = "`unsupported_media_type`.", body = ErrorBody,
                headers(("Cache-Control" = String, description = "`no-store`"))),
            (status = 429, description = "`too_many_requests`: too many `valid: false` verdicts or failed authentications from this address.", body = ErrorBody,
                headers(("Retry-After" = String, description = "Seconds until the address is admitted again."), ("Cache-Control" = String, description = "`no-store`"))),
            (status = 500, description = "`internal_error`.", body = ErrorBody,
                headers(("Cache-Control" = String, description = "`no-store`"))),
            (status = 503, description = "`service_unavailable`.", body = ErrorBody,
                headers(("Retry-After" = String, description = "Seconds to wait."), ("Cache-Control" = String, description = "`no-store`"))),
        ),
        params(crate::openapi::TenantHeader),
    )
)]
pub(crate) async fn verify_key(
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // An address over the failure limit is refused first; every `valid:
    // false` verdict counts against it (docs/api.md, "Abuse limits").
    let limiter = req.app_data::<web::Data<FailureLimiter>>().cloned();
    let client = match &limiter {
        Some(limiter) => limiter.admit(&req)?,
        None => Client::default(),
    };
    // The tenant header before the body, as authentication checks it before
    // any other route reads its body.
    let tenant = req
        .headers()
        .get(TENANT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| TenantId::parse(t).ok())
        .ok_or(AuthError::InvalidTenantId)?;
    let (key, required) = {
        let body = read_object(&req, payload, &["key", "scopes"]).await?;
        read_fields(&body)?
    };
    let verdict = |response: VerifyKeyResponse| -> Result<HttpResponse, ApiError> {
        let response = counted(response);
        if !response.valid {
            if let Some(too_many) = limiter.as_ref().and_then(|l| l.failed(client)) {
                return Err(too_many);
            }
        }
        Ok(answer(&response))
    };
    // Not a key string: refused without any I/O, as authentication does.
    let Ok(key) = key else {
        return verdict(VerifyKeyResponse::refused(VerifyCode::InvalidApiKey));
    };
    let authenticator = req
        .app_data::<web::Data<dyn Authenticator>>()
        .map(|data| data.clone().into_inner())
        .ok_or_else(|| {
            ApiError::internal()
                .with_source("no web::Data<dyn Authenticator> registered in the app")
        })?;
    let credentials = Credentials::new(key, tenant);
    // A cache hit is answered here, on the executor thread.
    let outcome = match authenticator.authenticate_cached(&credentials) {
        Some(outcome) => outcome,
        None => blocking(move || authenticator.authenticate(&credentials)).await?,
    };
    verdict(match outcome {
        Ok(key) => VerifyKeyResponse::of(&key, &required),
        Err(e) => refusal(e).inspect_err(|e| {
            metrics::record_auth(Via::Verify, Err(e.code().as_str()));
        })?,
    })
}

/// Counts the verdict by its code (docs/metrics.md) and passes it on.
fn counted(response: VerifyKeyResponse) -> VerifyKeyResponse {
    let outcome = match response.code {
        VerifyCode::Valid => Ok(()),
        VerifyCode::InvalidApiKey => Err("invalid_api_key"),
        VerifyCode::ApiKeyRevoked => Err("api_key_revoked"),
        VerifyCode::ApiKeyExpired => Err("api_key_expired"),
        VerifyCode::TenantMismatch => Err("tenant_mismatch"),
        VerifyCode::InsufficientScope => Err("insufficient_scope"),
    };
    metrics::record_auth(Via::Verify, outcome);
    response
}

fn answer(response: &VerifyKeyResponse) -> HttpResponse {
    HttpResponse::Ok().json(response)
}

/// Resource middleware of the verify route: `Cache-Control: no-store` on
/// every answer, errors (also 405) included.
///
/// # Errors
/// None of its own: the wrapped service's are passed on.
pub(crate) async fn no_store(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let mut res = next.call(req).await?.map_into_boxed_body();
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
