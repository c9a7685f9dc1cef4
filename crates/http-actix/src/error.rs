//! The one error type of the HTTP layer and its JSON body (docs/api.md, "Conventions", errors).
//!
//! Every failure a client can meet is an [`ApiError`]: domain errors through
//! one exhaustive `From` impl per error type, actix's own extractor and
//! routing errors through the handlers registered in [`crate::configure`].
//! The body carries the request id: the one the request-context middleware
//! ([`crate::request_context`]) gave the request, or a fresh one without it.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use domain::{
    AccessError, AuthError, CreateError, GetError, ListError, ListEventsError, RepositoryError,
    RestrictionError, RevokeError, RotateError, UpdateError, WebhookError,
};
use serde::Serialize;
#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// Defines [`ErrorCode`] from one table, the catalogue of codes, row by
/// row: the variant, the code as it appears in the body, its HTTP status and
/// its one-line meaning (as docs/api.md's "Error codes" table gives it; a
/// test checks that table against this one). The enum, its serde names,
/// [`ErrorCode::ALL`], [`ErrorCode::as_str`], [`ErrorCode::status`] and
/// [`ErrorCode::meaning`] all come from the table, so a code cannot be
/// listed in one of them and missed in another.
///
/// `$code` is a `tt`, not a `literal`: a `literal` fragment reaches the
/// `ToSchema` derive wrapped in an invisible group, which it does not read as
/// the `serde(rename)`, and the schema would list the variant names.
macro_rules! error_codes {
    ($(
        $variant:ident = $code:tt, $status:ident, $meaning:literal;
    )*) => {
        /// Every error code the service answers with. Codes are stable; messages are
        /// for people.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[cfg_attr(feature = "openapi", derive(ToSchema))]
        pub enum ErrorCode {
            $(
                #[doc = concat!(
                    "`", $code, "`, answered with `StatusCode::", stringify!($status), "`: ",
                    $meaning, "."
                )]
                #[serde(rename = $code)]
                $variant,
            )*
        }

        impl ErrorCode {
            /// Every code, for documentation and tests.
            pub const ALL: [ErrorCode; [$($code),*].len()] = [$(ErrorCode::$variant),*];

            /// The code as it appears in the body.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The HTTP status an error with this code answers with.
            pub const fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)*
                }
            }

            /// When the code is answered, in one line (docs/api.md, "Error
            /// codes").
            pub const fn meaning(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $meaning,)*
                }
            }
        }
    };
}

error_codes! {
    MissingApiKey = "missing_api_key", UNAUTHORIZED, "no bearer key";
    InvalidApiKey = "invalid_api_key", UNAUTHORIZED, "malformed or unknown key";
    ApiKeyRevoked = "api_key_revoked", UNAUTHORIZED, "revoked, or rotated and past its grace period; also a key revoked while its own write was in flight";
    ApiKeyExpired = "api_key_expired", UNAUTHORIZED, "past `expires_at`";
    InvalidSignature = "invalid_signature", UNAUTHORIZED, "a GitHub secret scanning batch whose signature is missing, names an unknown key or does not match the body";
    InvalidTenantId = "invalid_tenant_id", BAD_REQUEST, "`X-Tenant-ID` missing or not `tnt_` + ULID";
    DuplicateHeader = "duplicate_header", BAD_REQUEST, "`Authorization`, `X-Tenant-ID` or `X-API-Key` sent more than once, or `X-API-Key` with `Authorization` (`param`), checked before anything else";
    TenantMismatch = "tenant_mismatch", FORBIDDEN, "the key belongs to another tenant";
    IpNotAllowed = "ip_not_allowed", FORBIDDEN, "the client address is outside the key's `allowed_ips` (see \"Restricting a key\")";
    OriginNotAllowed = "origin_not_allowed", FORBIDDEN, "a publishable key with `allowed_origins` used without a matching `Origin` (or `Referer`)";
    SecretKeyRequired = "secret_key_required", FORBIDDEN, "a publishable key on a key-management route";
    KeyTypeMismatch = "key_type_mismatch", FORBIDDEN, "the key is not of the `type` asked for (verify's verdict, forward-auth)";
    InsufficientScope = "insufficient_scope", FORBIDDEN, "a key without the required scope (`*` for keys, `*` or `audit-logs:read` for the audit log)";
    LiveModeRequired = "live_mode_required", FORBIDDEN, "a test key creating a live key";
    KeyNotFound = "key_not_found", NOT_FOUND, "unknown, malformed, foreign or hidden key id";
    WebhookEndpointNotFound = "webhook_endpoint_not_found", NOT_FOUND, "unknown, malformed, foreign or other-mode webhook endpoint id";
    WebhookDeliveryNotFound = "webhook_delivery_not_found", NOT_FOUND, "unknown or malformed delivery id of the endpoint";
    NotFound = "not_found", NOT_FOUND, "unknown route";
    MethodNotAllowed = "method_not_allowed", METHOD_NOT_ALLOWED, "known route, wrong method (`Allow` header)";
    LastFullAccessKey = "last_full_access_key", CONFLICT, "would leave no active full-access live secret key";
    KeyRevoked = "key_revoked", CONFLICT, "updating or rotating a revoked key";
    KeyAlreadyRotated = "key_already_rotated", CONFLICT, "rotating a key whose revocation is scheduled";
    KeyExpired = "key_expired", CONFLICT, "rotating an expired key";
    KeyLimitReached = "key_limit_reached", CONFLICT, "the tenant has 10,000 active keys";
    WebhookEndpointLimitReached = "webhook_endpoint_limit_reached", CONFLICT, "the tenant has 20 webhook endpoints in this mode";
    IdempotencyKeyInUse = "idempotency_key_in_use", CONFLICT, "a request with this `Idempotency-Key` is still running";
    IdempotencyKeyReused = "idempotency_key_reused", UNPROCESSABLE_ENTITY, "this `Idempotency-Key` was used with another request in the last 24 hours";
    InvalidJson = "invalid_json", BAD_REQUEST, "body not JSON, or not a JSON object";
    InvalidParameter = "invalid_parameter", BAD_REQUEST, "a field or query parameter of the wrong type or value (`param`)";
    MissingParameter = "missing_parameter", BAD_REQUEST, "a required field is missing (`param`); PATCH with no field";
    UnknownField = "unknown_field", BAD_REQUEST, "a body field the endpoint does not know (`param`)";
    UnknownParameter = "unknown_parameter", BAD_REQUEST, "a query parameter the endpoint does not know (`param`)";
    InvalidDuration = "invalid_duration", BAD_REQUEST, "malformed or out-of-range duration (`param`)";
    PayloadTooLarge = "payload_too_large", PAYLOAD_TOO_LARGE, "body over 16 KiB (1 MiB for `POST /v1/secret-scanning/github`)";
    UnsupportedMediaType = "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE, "POST/PATCH body without `application/json`, or with a `Content-Encoding` other than `identity`";
    // The one exception to the table: when actix or another team's
    // handler answered another 4xx without an error of ours, that status is
    // kept (`ApiError::from_status`); docs/api.md shows it as `4xx`.
    BadRequest = "bad_request", BAD_REQUEST, "*(implementation)* any other client error actix raises outside these routes";
    TooManyRequests = "too_many_requests", TOO_MANY_REQUESTS, "too many failed authentications from the client's address (see \"Abuse limits\"); `Retry-After`";
    RateLimited = "rate_limited", TOO_MANY_REQUESTS, "the key's rate limit is used up in this window (see \"Limiting a key's use\"); `Retry-After`";
    UsageExceeded = "usage_exceeded", TOO_MANY_REQUESTS, "the key's credits are used up (see \"Limiting a key's use\"); `Retry-After` to the next refill, if any";
    RequestTimeout = "request_timeout", REQUEST_TIMEOUT, "the body did not arrive within `APIKEYS_BODY_TIMEOUT`; the connection is closed";
    UriTooLong = "uri_too_long", URI_TOO_LONG, "path and query over 8 KiB";
    HeadersTooLarge = "request_header_fields_too_large", REQUEST_HEADER_FIELDS_TOO_LARGE, "more than 64 headers, or more than 16 KiB of them";
    ServiceUnavailable = "service_unavailable", SERVICE_UNAVAILABLE, "database unreachable (`Retry-After: 1`)";
    InternalError = "internal_error", INTERNAL_SERVER_ERROR, "unexpected failure; quote the request id";
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON error body: `{"error": {...}}`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ErrorDetail {
    /// Stable, documented code.
    pub code: ErrorCode,
    /// For people; may change.
    pub message: String,
    /// The one field or parameter at fault, when there is one (absent
    /// otherwise, never `null`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub param: Option<String>,
    /// The request's `X-Request-ID`: the caller's, or `req_` + ULID.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9._-]{1,128}$"))]
    pub request_id: String,
}

type Source = Box<dyn StdError + Send + Sync + 'static>;

/// An error answered as the JSON error body (docs/api.md, "Conventions",
/// errors). Its status is its code's ([`ErrorCode::status`]).
#[derive(Debug)]
pub struct ApiError {
    /// `code.status()`, except for the `bad_request` fallback of
    /// [`ApiError::from_status`].
    status: StatusCode,
    code: ErrorCode,
    message: Cow<'static, str>,
    param: Option<String>,
    allow: Option<&'static str>,
    /// Seconds for `Retry-After` on a 429.
    retry_after: Option<u64>,
    source: Option<Source>,
}

impl ApiError {
    /// An error with this code and message, answered with the code's status.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            status: code.status(),
            code,
            message: message.into(),
            param: None,
            allow: None,
            retry_after: None,
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

    /// `invalid_parameter` for `param`.
    pub fn invalid_parameter(param: &str, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(ErrorCode::InvalidParameter, message).with_param(param)
    }

    /// `missing_parameter` for `param`.
    pub fn missing_parameter(param: &str) -> Self {
        ApiError::new(
            ErrorCode::MissingParameter,
            format!("`{param}` is required"),
        )
        .with_param(param)
    }

    /// `invalid_json`.
    pub fn invalid_json(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(ErrorCode::InvalidJson, message)
    }

    /// `not_found`: no such route.
    pub fn route_not_found() -> Self {
        // Without the feature this service has no document to point to.
        let message = if cfg!(feature = "openapi") {
            "no such route; see /openapi.json"
        } else {
            "no such route"
        };
        ApiError::new(ErrorCode::NotFound, message)
    }

    /// `key_not_found`.
    pub fn key_not_found() -> Self {
        ApiError::new(ErrorCode::KeyNotFound, "no such API key")
    }

    /// `webhook_endpoint_not_found`.
    pub fn webhook_endpoint_not_found() -> Self {
        ApiError::new(
            ErrorCode::WebhookEndpointNotFound,
            "no such webhook endpoint",
        )
    }

    /// `webhook_delivery_not_found`.
    pub fn webhook_delivery_not_found() -> Self {
        ApiError::new(
            ErrorCode::WebhookDeliveryNotFound,
            "no such delivery for this webhook endpoint",
        )
    }

    /// `method_not_allowed` with the route's `Allow` header.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut e = ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("this route allows only {allow}"),
        );
        e.allow = Some(allow);
        e
    }

    /// 400 `duplicate_header`: `name` was sent more than once, and which
    /// one counts is not for the service to guess.
    pub fn duplicate_header(name: &str) -> Self {
        ApiError::new(
            ErrorCode::DuplicateHeader,
            format!("the `{name}` header must be sent once"),
        )
        .with_param(name)
    }

    /// `payload_too_large`.
    pub fn payload_too_large() -> Self {
        ApiError::payload_over(crate::BODY_LIMIT)
    }

    /// `payload_too_large` for a route whose bodies may hold `limit` bytes.
    pub(crate) fn payload_over(limit: usize) -> Self {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body must be at most {limit} bytes"),
        )
    }

    /// 401 `invalid_signature`: a secret scanner's batch whose signature is
    /// missing, names an unknown key, or does not match the body.
    pub(crate) fn invalid_signature() -> Self {
        ApiError::new(
            ErrorCode::InvalidSignature,
            "the body must be signed: `Github-Public-Key-Signature` (base64 DER ECDSA P-256 \
             SHA-256 over the body) under the key `Github-Public-Key-Identifier` names",
        )
    }

    /// `unsupported_media_type`.
    pub fn unsupported_media_type() -> Self {
        ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "the request body must be sent with `Content-Type: application/json`",
        )
    }

    /// `unsupported_media_type` for a body sent with a `Content-Encoding`
    /// other than `identity`: bodies are never decoded.
    pub fn unsupported_content_encoding() -> Self {
        ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "the request body must not be encoded (`Content-Encoding` other than `identity`)",
        )
    }

    /// `service_unavailable` (with `Retry-After`).
    pub fn unavailable() -> Self {
        ApiError::new(
            ErrorCode::ServiceUnavailable,
            "the service is temporarily unavailable; retry shortly",
        )
    }

    /// A use of a limited key refused (docs/api.md, "Limiting a key's
    /// use"): 429 `rate_limited` or `usage_exceeded`, with `Retry-After`
    /// when the budget comes back at a known time.
    pub fn usage_refused(code: domain::RefusalCode, retry_after_secs: Option<u64>) -> Self {
        let mut e = match code {
            domain::RefusalCode::RateLimited => ApiError::new(
                ErrorCode::RateLimited,
                "the API key's rate limit is used up; retry after `Retry-After` seconds",
            ),
            domain::RefusalCode::UsageExceeded => {
                ApiError::new(ErrorCode::UsageExceeded, "the API key has no credits left")
            }
        };
        e.retry_after = retry_after_secs.map(|s| s.max(1));
        e
    }

    /// `too_many_requests`, with `Retry-After: retry_after_secs`.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        let mut e = ApiError::new(
            ErrorCode::TooManyRequests,
            "too many failed authentications from this address; retry after `Retry-After` seconds",
        );
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }

    /// `request_timeout`: the body did not arrive within `limit`.
    pub fn request_timeout(limit: std::time::Duration) -> Self {
        ApiError::new(
            ErrorCode::RequestTimeout,
            format!(
                "the request body did not arrive within {} seconds",
                limit.as_secs()
            ),
        )
    }

    /// `internal_error`, with a message that reveals nothing.
    pub fn internal() -> Self {
        ApiError::new(
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
                ApiError::new(ErrorCode::MethodNotAllowed, "method not allowed")
            }
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::unsupported_media_type(),
            StatusCode::SERVICE_UNAVAILABLE => ApiError::unavailable(),
            StatusCode::REQUEST_TIMEOUT => ApiError::new(
                ErrorCode::RequestTimeout,
                "the request did not arrive in time",
            ),
            StatusCode::URI_TOO_LONG => {
                ApiError::new(ErrorCode::UriTooLong, "the request target is too long")
            }
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ApiError::new(
                ErrorCode::HeadersTooLarge,
                "too many request headers, or too large",
            ),
            s if s.is_client_error() => {
                let mut e = ApiError::new(
                    ErrorCode::BadRequest,
                    s.canonical_reason().unwrap_or("bad request"),
                );
                // The one status not taken from the code: another 4xx keeps
                // its status, with the catch-all code.
                e.status = s;
                e
            }
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
        // A bad signature is not a bad bearer key: no challenge for one.
        if self.status == StatusCode::UNAUTHORIZED && self.code != ErrorCode::InvalidSignature {
            builder.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            builder.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECONDS));
        }
        if let Some(allow) = self.allow {
            builder.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
        }
        if let Some(seconds) = self.retry_after {
            builder.insert_header((header::RETRY_AFTER, seconds));
        }
        if self.code == ErrorCode::RequestTimeout {
            // The rest of a late body may still come: the connection cannot
            // carry another request.
            builder.force_close();
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

    /// Renders with the id [`crate::request_context`] gave the request, or,
    /// without that middleware, a fresh id (also set as `X-Request-ID`), so
    /// the body never carries an empty one. A server error is logged here,
    /// once, with its cause chain and that id.
    fn error_response(&self) -> HttpResponse {
        let request_id = crate::request_id::current_or_new();
        if self.status.is_server_error() {
            tracing::error!(
                code = %self.code,
                request_id = %request_id.as_str(),
                cause = self.cause_chain().as_deref().unwrap_or("none"),
                "request failed"
            );
        }
        let mut response = self.to_response(request_id.as_str());
        if let Ok(value) = HeaderValue::from_str(request_id.as_str()) {
            response
                .headers_mut()
                .insert(crate::REQUEST_ID_HEADER, value);
        }
        response
    }
}

impl From<RepositoryError> for ApiError {
    fn from(e: RepositoryError) -> Self {
        match e {
            RepositoryError::Unavailable { .. } => ApiError::unavailable().with_source(e),
            RepositoryError::Failure { .. } => ApiError::internal().with_source(e),
        }
    }
}

impl ErrorCode {
    /// The code an authentication failure is answered with; `None` for a
    /// storage failure (503 or 500 by its kind). The one mapping of
    /// [`AuthError`]: the extractor's errors and verify's verdicts both come
    /// from it.
    pub(crate) const fn of_auth(e: &AuthError) -> Option<ErrorCode> {
        match e {
            AuthError::MissingKey => Some(ErrorCode::MissingApiKey),
            AuthError::InvalidKey => Some(ErrorCode::InvalidApiKey),
            AuthError::Revoked => Some(ErrorCode::ApiKeyRevoked),
            AuthError::Expired => Some(ErrorCode::ApiKeyExpired),
            AuthError::InvalidTenantId => Some(ErrorCode::InvalidTenantId),
            AuthError::TenantMismatch => Some(ErrorCode::TenantMismatch),
            AuthError::IpNotAllowed => Some(ErrorCode::IpNotAllowed),
            AuthError::OriginNotAllowed => Some(ErrorCode::OriginNotAllowed),
            AuthError::Repository(_) => None,
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match (ErrorCode::of_auth(&e), e) {
            (_, AuthError::Repository(e)) => e.into(),
            (Some(code), e) => ApiError::new(code, e.to_string()),
            // Only a storage failure has no code.
            (None, e) => ApiError::internal().with_source(e),
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::SecretKeyRequired => {
                ApiError::new(ErrorCode::SecretKeyRequired, e.to_string())
            }
            AccessError::InsufficientScope { .. } => {
                ApiError::new(ErrorCode::InsufficientScope, e.to_string())
            }
        }
    }
}

/// 400 `invalid_parameter` naming the restriction's field.
pub(crate) fn restriction(e: RestrictionError) -> ApiError {
    let param = match e {
        RestrictionError::IpCount | RestrictionError::InvalidBlock(_) => "allowed_ips",
        RestrictionError::OriginCount
        | RestrictionError::InvalidOrigin(_)
        | RestrictionError::OriginsOnSecretKey => "allowed_origins",
    };
    ApiError::invalid_parameter(param, e.to_string())
}

/// `last_full_access_key`, for an update and a revocation alike.
fn last_full_access_key() -> ApiError {
    ApiError::new(
        ErrorCode::LastFullAccessKey,
        "the tenant must keep at least one active, full-access live secret key",
    )
}

/// The calling key was revoked while its write was waiting to commit: the
/// same answer as authenticating with a revoked key (401 `api_key_revoked`).
fn caller_revoked() -> ApiError {
    AuthError::Revoked.into()
}

/// 422 `idempotency_key_reused`: the key answers another request.
fn idempotency_key_reused() -> ApiError {
    ApiError::new(
        ErrorCode::IdempotencyKeyReused,
        "this Idempotency-Key was used with a different request in the last 24 hours; use a new key for a new request",
    )
}

/// 409 `idempotency_key_in_use`: the twin request is still running.
fn idempotency_key_in_use() -> ApiError {
    ApiError::new(
        ErrorCode::IdempotencyKeyInUse,
        "a request with this Idempotency-Key is still being processed; retry once it has completed",
    )
}

impl From<CreateError> for ApiError {
    fn from(e: CreateError) -> Self {
        match e {
            CreateError::Access(e) => e.into(),
            CreateError::LiveModeRequired => {
                ApiError::new(ErrorCode::LiveModeRequired, e.to_string()).with_param("mode")
            }
            CreateError::SensitiveScope(_) => ApiError::invalid_parameter("scopes", e.to_string()),
            CreateError::Restriction(r) => restriction(r),
            CreateError::LimitReached => ApiError::new(ErrorCode::KeyLimitReached, e.to_string()),
            CreateError::CallerRevoked => caller_revoked(),
            CreateError::CallerExpired => AuthError::Expired.into(),
            CreateError::IdempotencyKeyReused => idempotency_key_reused(),
            CreateError::IdempotencyKeyInUse => idempotency_key_in_use(),
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

impl From<ListEventsError> for ApiError {
    fn from(e: ListEventsError) -> Self {
        match e {
            ListEventsError::Access(e) => e.into(),
            ListEventsError::Repository(e) => e.into(),
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
            UpdateError::Revoked => ApiError::new(ErrorCode::KeyRevoked, e.to_string()),
            UpdateError::SensitiveScope(_) => ApiError::invalid_parameter("scopes", e.to_string()),
            UpdateError::Restriction(r) => restriction(r),
            UpdateError::Metadata(m) => ApiError::invalid_parameter("metadata", m.to_string()),
            UpdateError::LastFullAccessKey => last_full_access_key(),
            UpdateError::CallerRevoked => caller_revoked(),
            UpdateError::CallerExpired => AuthError::Expired.into(),
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
            RevokeError::CallerRevoked => caller_revoked(),
            RevokeError::CallerExpired => AuthError::Expired.into(),
            RevokeError::Repository(e) => e.into(),
        }
    }
}

impl From<RotateError> for ApiError {
    fn from(e: RotateError) -> Self {
        match e {
            RotateError::Access(e) => e.into(),
            RotateError::NotFound => ApiError::key_not_found(),
            RotateError::Revoked => ApiError::new(ErrorCode::KeyRevoked, e.to_string()),
            RotateError::AlreadyRotated => {
                ApiError::new(ErrorCode::KeyAlreadyRotated, e.to_string())
            }
            RotateError::Expired => ApiError::new(ErrorCode::KeyExpired, e.to_string()),
            RotateError::LimitReached => ApiError::new(ErrorCode::KeyLimitReached, e.to_string()),
            RotateError::CallerRevoked => caller_revoked(),
            RotateError::CallerExpired => AuthError::Expired.into(),
            RotateError::IdempotencyKeyReused => idempotency_key_reused(),
            RotateError::IdempotencyKeyInUse => idempotency_key_in_use(),
            RotateError::Repository(e) => e.into(),
        }
    }
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Access(e) => e.into(),
            WebhookError::NotFound => ApiError::webhook_endpoint_not_found(),
            WebhookError::DeliveryNotFound => ApiError::webhook_delivery_not_found(),
            WebhookError::LimitReached => {
                ApiError::new(ErrorCode::WebhookEndpointLimitReached, e.to_string())
            }
            WebhookError::Invalid(field) => ApiError::invalid_parameter(field.param, field.message),
            WebhookError::Repository(e) => e.into(),
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
        check(
            CreateError::IdempotencyKeyReused,
            422,
            "idempotency_key_reused",
        );
        check(
            CreateError::IdempotencyKeyInUse,
            409,
            "idempotency_key_in_use",
        );
        check(
            RotateError::IdempotencyKeyReused,
            422,
            "idempotency_key_reused",
        );
        check(
            RotateError::IdempotencyKeyInUse,
            409,
            "idempotency_key_in_use",
        );
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

    /// docs/api.md's "Error codes" table is the catalogue: the same codes,
    /// statuses and meanings, sorted by status (`bad_request` shown as
    /// `4xx`, the statuses it may keep).
    #[test]
    fn the_documented_error_table_is_the_catalogue() {
        let api_md = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md"));
        let section = api_md
            .split("\n## Error codes\n")
            .nth(1)
            .unwrap_or_default();
        let documented: Vec<&str> = section
            .lines()
            .skip_while(|line| !line.starts_with("|---"))
            .skip(1)
            .take_while(|line| line.starts_with('|'))
            .collect();
        let mut codes = ErrorCode::ALL;
        codes.sort_by_key(|code| code.status().as_u16());
        let expected: Vec<String> = codes
            .iter()
            .map(|code| {
                let status = if *code == ErrorCode::BadRequest {
                    "4xx".to_owned()
                } else {
                    code.status().as_u16().to_string()
                };
                format!("| {status} | `{}` | {} |", code.as_str(), code.meaning())
            })
            .collect();
        assert_eq!(
            documented,
            expected,
            "docs/api.md's error table must read:\n{}",
            expected.join("\n")
        );
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
    fn every_error_answers_with_its_codes_status() {
        for code in ErrorCode::ALL {
            let e = ApiError::new(code, "message");
            assert_eq!(e.status(), code.status(), "{code}");
            assert_eq!(e.to_response("r").status(), code.status(), "{code}");
        }
    }

    #[test]
    fn a_bare_status_becomes_its_code_and_another_4xx_keeps_its_status() {
        for (status, code) in [
            (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            (StatusCode::METHOD_NOT_ALLOWED, ErrorCode::MethodNotAllowed),
            (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge),
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
            ),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::ServiceUnavailable,
            ),
            (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            (StatusCode::IM_A_TEAPOT, ErrorCode::BadRequest),
            (StatusCode::REQUEST_TIMEOUT, ErrorCode::RequestTimeout),
            (StatusCode::URI_TOO_LONG, ErrorCode::UriTooLong),
            (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                ErrorCode::HeadersTooLarge,
            ),
            (StatusCode::BAD_GATEWAY, ErrorCode::InternalError),
        ] {
            let e = ApiError::from_status(status);
            assert_eq!(e.code(), code, "{status}");
            let expected = if code == ErrorCode::BadRequest {
                status
            } else {
                code.status()
            };
            assert_eq!(e.status(), expected, "{status}");
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
        let r = ApiError::too_many_requests(42).to_response("r");
        assert_eq!(r.headers().get("retry-after").unwrap(), "42");
        let r = ApiError::too_many_requests(0).to_response("r");
        assert_eq!(r.headers().get("retry-after").unwrap(), "1");
    }
}
