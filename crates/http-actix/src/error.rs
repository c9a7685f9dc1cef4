//! The one error type of the HTTP layer and its JSON body (CONTRACT §7).
//!
//! Every failure a client can meet is an [`ApiError`]: domain errors through
//! one exhaustive `From` impl per error type, actix's own extractor and
//! routing errors through the handlers registered in [`crate::configure`].
//! The body carries the request id, which the request-context middleware
//! ([`crate::request_context`]) fills in when it renders the error.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use domain::{
    AccessError, AuthError, CreateError, GetError, ListError, RepositoryError, RevokeError,
    RotateError, UpdateError,
};
use serde::Serialize;
use utoipa::ToSchema;

/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// Every error code the service answers with. Codes are stable; messages are
/// for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 401: no `Authorization: Bearer` key.
    MissingApiKey,
    /// 401: not a key (shape or checksum), or no key has this value.
    InvalidApiKey,
    /// 401: the key is revoked (or its rotation grace period is over).
    ApiKeyRevoked,
    /// 401: the key is past `expires_at`.
    ApiKeyExpired,
    /// 400: `X-Tenant-ID` missing or not `tnt_` + ULID.
    InvalidTenantId,
    /// 403: the key belongs to another tenant.
    TenantMismatch,
    /// 403: a publishable key where a secret key is required.
    SecretKeyRequired,
    /// 403: the key lacks a required scope.
    InsufficientScope,
    /// 403: a test key asked for a live key.
    LiveModeRequired,
    /// 404: no such key visible to the caller.
    KeyNotFound,
    /// 404: no such route.
    NotFound,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 409: the tenant's last full-access live secret key.
    LastFullAccessKey,
    /// 409: the key is revoked.
    KeyRevoked,
    /// 409: the key was rotated already.
    KeyAlreadyRotated,
    /// 409: the key has expired.
    KeyExpired,
    /// 409: the tenant has the maximum number of active keys.
    KeyLimitReached,
    /// 400: the body is not a JSON object.
    InvalidJson,
    /// 400: a field or query parameter of the wrong type or value.
    InvalidParameter,
    /// 400: a required field is missing.
    MissingParameter,
    /// 400: the body has a field the endpoint does not know.
    UnknownField,
    /// 400: the query string has a parameter the endpoint does not know.
    UnknownParameter,
    /// 400: a malformed or out-of-range duration.
    InvalidDuration,
    /// 413: the body is larger than 16 KiB.
    PayloadTooLarge,
    /// 415: POST or PATCH without `Content-Type: application/json`.
    UnsupportedMediaType,
    /// 400 (or another 4xx): a malformed request that fits no other code.
    BadRequest,
    /// 503: the database cannot be reached; retry after `Retry-After`.
    ServiceUnavailable,
    /// 500: an unexpected failure; the request id identifies it in the logs.
    InternalError,
}

impl ErrorCode {
    /// Every code, for documentation and tests.
    pub const ALL: [ErrorCode; 28] = [
        ErrorCode::MissingApiKey,
        ErrorCode::InvalidApiKey,
        ErrorCode::ApiKeyRevoked,
        ErrorCode::ApiKeyExpired,
        ErrorCode::InvalidTenantId,
        ErrorCode::TenantMismatch,
        ErrorCode::SecretKeyRequired,
        ErrorCode::InsufficientScope,
        ErrorCode::LiveModeRequired,
        ErrorCode::KeyNotFound,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::LastFullAccessKey,
        ErrorCode::KeyRevoked,
        ErrorCode::KeyAlreadyRotated,
        ErrorCode::KeyExpired,
        ErrorCode::KeyLimitReached,
        ErrorCode::InvalidJson,
        ErrorCode::InvalidParameter,
        ErrorCode::MissingParameter,
        ErrorCode::UnknownField,
        ErrorCode::UnknownParameter,
        ErrorCode::InvalidDuration,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::BadRequest,
        ErrorCode::ServiceUnavailable,
        ErrorCode::InternalError,
    ];

    /// The code as it appears in the body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MissingApiKey => "missing_api_key",
            ErrorCode::InvalidApiKey => "invalid_api_key",
            ErrorCode::ApiKeyRevoked => "api_key_revoked",
            ErrorCode::ApiKeyExpired => "api_key_expired",
            ErrorCode::InvalidTenantId => "invalid_tenant_id",
            ErrorCode::TenantMismatch => "tenant_mismatch",
            ErrorCode::SecretKeyRequired => "secret_key_required",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::LiveModeRequired => "live_mode_required",
            ErrorCode::KeyNotFound => "key_not_found",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::LastFullAccessKey => "last_full_access_key",
            ErrorCode::KeyRevoked => "key_revoked",
            ErrorCode::KeyAlreadyRotated => "key_already_rotated",
            ErrorCode::KeyExpired => "key_expired",
            ErrorCode::KeyLimitReached => "key_limit_reached",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidParameter => "invalid_parameter",
            ErrorCode::MissingParameter => "missing_parameter",
            ErrorCode::UnknownField => "unknown_field",
            ErrorCode::UnknownParameter => "unknown_parameter",
            ErrorCode::InvalidDuration => "invalid_duration",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::ServiceUnavailable => "service_unavailable",
            ErrorCode::InternalError => "internal_error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON error body: `{"error": {...}}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, documented code.
    pub code: ErrorCode,
    /// For people; may change.
    pub message: String,
    /// The one field or parameter at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// The request's `X-Request-ID`.
    pub request_id: String,
}

type Source = Box<dyn StdError + Send + Sync + 'static>;

/// An error answered as the JSON body of CONTRACT §7.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: Cow<'static, str>,
    param: Option<String>,
    allow: Option<&'static str>,
    source: Option<Source>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            param: None,
            allow: None,
            source: None,
        }
    }

    /// Names the field or parameter at fault.
    #[must_use]
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        // The name of an unknown field or parameter is the client's input:
        // never echo a key that was sent as one.
        let param = param.into();
        self.param = Some(match crate::redact::redact_keys(&param) {
            Cow::Borrowed(_) => param,
            Cow::Owned(redacted) => redacted,
        });
        self
    }

    /// Keeps the cause, to be logged (never shown to the client).
    #[must_use]
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// 400 `invalid_parameter` for `param`.
    pub fn invalid_parameter(param: &str, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidParameter,
            message,
        )
        .with_param(param)
    }

    /// 400 `missing_parameter` for `param`.
    pub fn missing_parameter(param: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::MissingParameter,
            format!("`{param}` is required"),
        )
        .with_param(param)
    }

    /// 400 `invalid_json`.
    pub fn invalid_json(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidJson, message)
    }

    /// 404 `not_found`: no such route.
    pub fn route_not_found() -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such route; see /openapi.json",
        )
    }

    /// 404 `key_not_found`.
    pub fn key_not_found() -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::KeyNotFound,
            "no such API key",
        )
    }

    /// 405 `method_not_allowed` with the route's `Allow` header.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut e = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            format!("this route allows only {allow}"),
        );
        e.allow = Some(allow);
        e
    }

    /// 413 `payload_too_large`.
    pub fn payload_too_large() -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!(
                "the request body must be at most {} bytes",
                crate::BODY_LIMIT
            ),
        )
    }

    /// 415 `unsupported_media_type`.
    pub fn unsupported_media_type() -> Self {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "the request body must be sent with `Content-Type: application/json`",
        )
    }

    /// 503 `service_unavailable` (with `Retry-After`).
    pub fn unavailable() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ServiceUnavailable,
            "the service is temporarily unavailable; retry shortly",
        )
    }

    /// 500 `internal_error`, with a message that reveals nothing.
    pub fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InternalError,
            "an internal error occurred; quote the request id when reporting it",
        )
    }

    /// A JSON error for a response some other part of actix produced with only
    /// a status (the safety net that keeps plain-text errors from clients).
    pub fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => ApiError::route_not_found(),
            StatusCode::METHOD_NOT_ALLOWED => {
                ApiError::new(status, ErrorCode::MethodNotAllowed, "method not allowed")
            }
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::unsupported_media_type(),
            StatusCode::SERVICE_UNAVAILABLE => ApiError::unavailable(),
            s if s.is_client_error() => ApiError::new(
                s,
                ErrorCode::BadRequest,
                s.canonical_reason().unwrap_or("bad request"),
            ),
            _ => ApiError::internal(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message shown to the client.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The field or parameter at fault.
    pub fn param(&self) -> Option<&str> {
        self.param.as_deref()
    }

    /// The cause chain, for logs: `a: b: c`.
    pub fn cause_chain(&self) -> Option<String> {
        let source = self.source.as_deref()?;
        let mut out = source.to_string();
        let mut next = source.source();
        while let Some(e) = next {
            out.push_str(": ");
            out.push_str(&e.to_string());
            next = e.source();
        }
        Some(out)
    }

    /// The body for this error in the request `request_id`.
    pub fn body(&self, request_id: &str) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone().into_owned(),
                param: self.param.clone(),
                request_id: request_id.to_owned(),
            },
        }
    }

    /// The full response for this error in the request `request_id`, with
    /// `WWW-Authenticate` on 401, `Retry-After` on 503 and `Allow` on 405.
    pub fn to_response(&self, request_id: &str) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            builder.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            builder.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECONDS));
        }
        if let Some(allow) = self.allow {
            builder.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
        }
        builder.json(self.body(request_id))
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code,
            self.status.as_u16(),
            self.message
        )
    }
}

impl StdError for ApiError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    /// Renders without a request id; the request-context middleware renders
    /// the error again with the id of the request.
    fn error_response(&self) -> HttpResponse {
        self.to_response("")
    }
}

fn unauthorized(code: ErrorCode, e: &AuthError) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, e.to_string())
}

impl From<RepositoryError> for ApiError {
    fn from(e: RepositoryError) -> Self {
        match e {
            RepositoryError::Unavailable { .. } => ApiError::unavailable().with_source(e),
            RepositoryError::Failure { .. } => ApiError::internal().with_source(e),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::MissingKey => unauthorized(ErrorCode::MissingApiKey, &e),
            AuthError::InvalidKey => unauthorized(ErrorCode::InvalidApiKey, &e),
            AuthError::Revoked => unauthorized(ErrorCode::ApiKeyRevoked, &e),
            AuthError::Expired => unauthorized(ErrorCode::ApiKeyExpired, &e),
            AuthError::InvalidTenantId => ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidTenantId,
                e.to_string(),
            ),
            AuthError::TenantMismatch => ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::TenantMismatch,
                e.to_string(),
            ),
            AuthError::Repository(e) => e.into(),
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::SecretKeyRequired => ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::SecretKeyRequired,
                e.to_string(),
            ),
            AccessError::InsufficientScope { .. } => ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::InsufficientScope,
                e.to_string(),
            ),
        }
    }
}

fn conflict(code: ErrorCode, message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, message)
}

/// 409 `last_full_access_key`, for an update and a revocation alike.
fn last_full_access_key() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        ErrorCode::LastFullAccessKey,
        "the tenant must keep at least one active, full-access live secret key",
    )
}

impl From<CreateError> for ApiError {
    fn from(e: CreateError) -> Self {
        match e {
            CreateError::Access(e) => e.into(),
            CreateError::LiveModeRequired => ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::LiveModeRequired,
                e.to_string(),
            )
            .with_param("mode"),
            CreateError::LimitReached => conflict(ErrorCode::KeyLimitReached, e.to_string()),
            CreateError::Repository(e) => e.into(),
        }
    }
}

impl From<ListError> for ApiError {
    fn from(e: ListError) -> Self {
        match e {
            ListError::Access(e) => e.into(),
            ListError::Repository(e) => e.into(),
        }
    }
}

impl From<GetError> for ApiError {
    fn from(e: GetError) -> Self {
        match e {
            GetError::Access(e) => e.into(),
            GetError::NotFound => ApiError::key_not_found(),
            GetError::Repository(e) => e.into(),
        }
    }
}

impl From<UpdateError> for ApiError {
    fn from(e: UpdateError) -> Self {
        match e {
            UpdateError::Access(e) => e.into(),
            UpdateError::NotFound => ApiError::key_not_found(),
            UpdateError::Revoked => conflict(ErrorCode::KeyRevoked, e.to_string()),
            UpdateError::LastFullAccessKey => last_full_access_key(),
            UpdateError::Repository(e) => e.into(),
        }
    }
}

impl From<RevokeError> for ApiError {
    fn from(e: RevokeError) -> Self {
        match e {
            RevokeError::Access(e) => e.into(),
            RevokeError::NotFound => ApiError::key_not_found(),
            RevokeError::LastFullAccessKey => last_full_access_key(),
            RevokeError::Repository(e) => e.into(),
        }
    }
}

impl From<RotateError> for ApiError {
    fn from(e: RotateError) -> Self {
        match e {
            RotateError::Access(e) => e.into(),
            RotateError::NotFound => ApiError::key_not_found(),
            RotateError::Revoked => conflict(ErrorCode::KeyRevoked, e.to_string()),
            RotateError::AlreadyRotated => conflict(ErrorCode::KeyAlreadyRotated, e.to_string()),
            RotateError::Expired => conflict(ErrorCode::KeyExpired, e.to_string()),
            RotateError::Repository(e) => e.into(),
        }
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        ApiError::unavailable().with_source(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Scope;

    fn check(e: impl Into<ApiError>, status: u16, code: &str) {
        let e = e.into();
        assert_eq!(e.status().as_u16(), status, "{e}");
        assert_eq!(e.code().as_str(), code, "{e}");
    }

    fn down() -> RepositoryError {
        RepositoryError::unavailable("pool", "timed out")
    }

    fn broken() -> RepositoryError {
        RepositoryError::failure("query", "syntax error")
    }

    #[test]
    fn every_domain_error_maps_to_its_status_and_code() {
        check(AuthError::MissingKey, 401, "missing_api_key");
        check(AuthError::InvalidKey, 401, "invalid_api_key");
        check(AuthError::InvalidTenantId, 400, "invalid_tenant_id");
        check(AuthError::Revoked, 401, "api_key_revoked");
        check(AuthError::Expired, 401, "api_key_expired");
        check(AuthError::TenantMismatch, 403, "tenant_mismatch");
        check(AuthError::Repository(down()), 503, "service_unavailable");
        check(AuthError::Repository(broken()), 500, "internal_error");
        check(AccessError::SecretKeyRequired, 403, "secret_key_required");
        check(
            AccessError::InsufficientScope {
                required: Scope::All,
            },
            403,
            "insufficient_scope",
        );
        check(CreateError::LiveModeRequired, 403, "live_mode_required");
        check(CreateError::LimitReached, 409, "key_limit_reached");
        check(CreateError::Repository(down()), 503, "service_unavailable");
        check(
            CreateError::Access(AccessError::SecretKeyRequired),
            403,
            "secret_key_required",
        );
        check(ListError::Repository(broken()), 500, "internal_error");
        check(
            ListError::Access(AccessError::SecretKeyRequired),
            403,
            "secret_key_required",
        );
        check(GetError::NotFound, 404, "key_not_found");
        check(GetError::Repository(down()), 503, "service_unavailable");
        check(UpdateError::NotFound, 404, "key_not_found");
        check(UpdateError::Revoked, 409, "key_revoked");
        check(UpdateError::LastFullAccessKey, 409, "last_full_access_key");
        check(RevokeError::NotFound, 404, "key_not_found");
        check(RevokeError::LastFullAccessKey, 409, "last_full_access_key");
        check(RotateError::NotFound, 404, "key_not_found");
        check(RotateError::Revoked, 409, "key_revoked");
        check(RotateError::AlreadyRotated, 409, "key_already_rotated");
        check(RotateError::Expired, 409, "key_expired");
        check(RotateError::Repository(broken()), 500, "internal_error");
    }

    #[test]
    fn internal_errors_keep_their_cause_for_logs_but_not_for_clients() {
        let e: ApiError = broken().into();
        assert_eq!(
            e.cause_chain().as_deref(),
            Some("storage failure: query: syntax error")
        );
        let body = serde_json::to_string(&e.body("req_1")).unwrap();
        assert!(!body.contains("syntax"), "{body}");
    }

    #[test]
    fn codes_are_unique_and_serialise_as_their_strings() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{code} twice");
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::String(code.as_str().to_owned())
            );
        }
    }

    #[test]
    fn error_headers_follow_the_status() {
        let r = ApiError::from(AuthError::MissingKey).to_response("r");
        assert_eq!(r.headers().get("www-authenticate").unwrap(), "Bearer");
        let r = ApiError::unavailable().to_response("r");
        assert_eq!(r.headers().get("retry-after").unwrap(), "1");
        let r = ApiError::method_not_allowed("GET, POST").to_response("r");
        assert_eq!(r.headers().get("allow").unwrap(), "GET, POST");
    }
}
