//! `POST /v1/api-keys/verify`: another service asks whether a key presented
//! to it is good for a tenant (docs/api.md, "POST /v1/api-keys/verify").
//!
//! The key travels in the body and is the credential: there is no
//! `Authorization`. The verdict comes from the same
//! [`Authenticator`](domain::Authenticator) as the
//! [`Authenticated`](crate::Authenticated) extractor's, so a key verifies
//! exactly when it would authenticate (and the authenticator records the use
//! the same way). A well-formed request always gets 200 with the verdict;
//! only the request itself (tenant header, body) and storage failures are
//! errors. Every answer of the route carries `Cache-Control: no-store`
//! ([`no_store`]).

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use actix_web::http::header::{ContentType, HeaderValue, CACHE_CONTROL};
use actix_web::middleware::DefaultHeaders;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::{
    AllowedIps, AllowedOrigins, ApiKey, AuthError, Cost, Credentials, EndClient, KeyFormatError,
    KeyId, KeyType, Metadata, PlainKey, RefusalCode, Scope, Scopes, TenantId, Verdict,
};
use serde::{Deserialize, Serialize, Serializer};
use time::OffsetDateTime;
#[cfg(feature = "openapi")]
use utoipa::ToSchema;

use crate::auth::{authenticator_of, single_headers, Lookup, TENANT_HEADER};
use crate::blocking::storage_wait;
use crate::body::{parse_object, read_json_bytes, JsonObject};
use crate::dto::{timestamp, CreditsObject, LimitsObject, RateLimitObject};
#[cfg(feature = "openapi")]
use crate::dto::{KeyTypeDto, ModeDto};
#[cfg(feature = "openapi")]
use crate::error::ErrorBody;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::parse_key_type;
use crate::metrics::{self, Via};
use crate::rate_limit::{Client, FailureLimiter};
use crate::redact::REDACTED;
use crate::route::routes;
use crate::snapshot::PerSnapshot;
use crate::usage::judge_use;

routes! {
    /// Verification. Before `/v1/api-keys/{id}` (`crate::route_table`).
    /// `no_store` wraps the whole resource, 405 included.
    VERIFY = "/v1/api-keys/verify" wrap(no_store()) { POST verify_key },
}

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
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<crate::openapi::schemas::Scope>>, example = json!(["users:read"])))]
    pub scopes: Option<Vec<String>>,
    /// The key type your service accepts here: a key of the other type is
    /// answered `key_type_mismatch`. Absent or `null`: either type.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<KeyTypeDto>))]
    pub key_type: Option<String>,
    /// What this use spends of a limited key's budget, 0–1000 (default 1;
    /// docs/api.md, "Limiting a key's use"). 0 spends nothing.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1000))]
    pub cost: Option<u32>,
    /// The end client's address, as your service saw it (IPv4 or IPv6). A
    /// key with `allowed_ips` verified without it, or from an address
    /// outside them, is answered `ip_not_allowed`.
    #[cfg_attr(feature = "openapi", schema(example = "203.0.113.7"))]
    pub ip: Option<String>,
    /// The end client's origin (`Origin`, or the `Referer` URL), as your
    /// service saw it. A publishable key with `allowed_origins` verified
    /// without it, or from another origin, is answered `origin_not_allowed`.
    #[cfg_attr(feature = "openapi", schema(example = "https://app.example.com"))]
    pub origin: Option<String>,
}

impl fmt::Debug for VerifyKeyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyKeyRequest")
            .field("key", &REDACTED)
            .field("scopes", &self.scopes)
            .field("type", &self.key_type)
            .field("cost", &self.cost)
            .field("ip", &self.ip)
            .field("origin", &self.origin)
            .finish()
    }
}

/// The verdict's `code`: `valid`, or why the key is not good for the tenant,
/// in the order authentication checks (then the scopes).
// A view of the catalogue, not a table of its own: a refusal is the
// `ErrorCode` authentication answers with (`ErrorCode::of_auth`), one of
// `REFUSALS`. Its doc comment's first paragraph is the schema's
// description in the OpenAPI document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyCode {
    /// The key authenticates for the tenant and has every scope asked for.
    Valid,
    /// Why the key is not good: one of [`VerifyCode::REFUSALS`].
    Refused(ErrorCode),
}

impl VerifyCode {
    /// The refusals a verdict may carry, in the order authentication checks
    /// (then the scopes): what authenticating with the key would have been
    /// refused with, as docs/api.md's verdict table lists them.
    pub const REFUSALS: [ErrorCode; 10] = [
        ErrorCode::InvalidApiKey,
        ErrorCode::ApiKeyRevoked,
        ErrorCode::ApiKeyExpired,
        ErrorCode::TenantMismatch,
        ErrorCode::IpNotAllowed,
        ErrorCode::OriginNotAllowed,
        ErrorCode::KeyTypeMismatch,
        ErrorCode::InsufficientScope,
        ErrorCode::RateLimited,
        ErrorCode::UsageExceeded,
    ];

    /// The code as it appears in the verdict.
    pub const fn as_str(self) -> &'static str {
        match self {
            VerifyCode::Valid => "valid",
            VerifyCode::Refused(code) => code.as_str(),
        }
    }
}

impl Serialize for VerifyCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for VerifyCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let codes = std::iter::once(VerifyCode::Valid)
            .chain(VerifyCode::REFUSALS.map(VerifyCode::Refused))
            .map(VerifyCode::as_str);
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "The verdict's `code`: `valid`, or why the key is not good for the tenant,\n\
                 in the order authentication checks (then the scopes).",
            ))
            .enum_values(Some(codes))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl ToSchema for VerifyCode {}

// Borrowed from the authenticated (usually cached) key, so that writing a
// verdict allocates little beyond the buffer it is written into
// (docs/performance.md, "Load"). The doc comment is the schema's
// description in the OpenAPI document.
/// The verified key: what a service needs to decide what the caller may do.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct VerifiedKey<'a> {
    /// `key_` + ULID.
    #[serde(serialize_with = "as_display")]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::schemas::KeyId))]
    pub id: &'a KeyId,
    /// The tenant the key belongs to (the one `X-Tenant-ID` named).
    #[serde(serialize_with = "as_display")]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::schemas::TenantId))]
    pub tenant_id: &'a TenantId,
    /// Label.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::schemas::KeyName))]
    pub name: &'a str,
    /// `publishable` or `secret`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(value_type = KeyTypeDto))]
    pub key_type: &'static str,
    /// `live` or `test`.
    #[cfg_attr(feature = "openapi", schema(value_type = ModeDto))]
    pub mode: &'static str,
    /// The key's scopes, `["*"]` for full access.
    #[serde(serialize_with = "scope_names")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::openapi::schemas::Scope>))]
    pub scopes: Scopes,
    /// Expiry, or null.
    #[serde(serialize_with = "as_timestamp")]
    #[cfg_attr(feature = "openapi", schema(required = true, format = DateTime, value_type = Option<String>))]
    pub expires_at: Option<OffsetDateTime>,
    /// When a scheduled revocation (a rotation's grace period) takes effect,
    /// or null.
    #[serde(serialize_with = "as_timestamp")]
    #[cfg_attr(feature = "openapi", schema(required = true, format = DateTime, value_type = Option<String>))]
    pub revokes_at: Option<OffsetDateTime>,
    /// The key's rate limit, or null.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub rate_limit: Option<RateLimitObject>,
    /// The key's credits, or null (`remaining` as this node last read it).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub credits: Option<CreditsObject>,
    /// CIDR blocks the key may be used from; null: any address.
    #[serde(serialize_with = "crate::dto::allowed_ips_out")]
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = Option<crate::openapi::schemas::AllowedIpsList>))]
    pub allowed_ips: &'a Option<AllowedIps>,
    /// Origins a publishable key may be used from; null: any origin.
    #[serde(serialize_with = "crate::dto::allowed_origins_out")]
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = Option<crate::openapi::schemas::AllowedOriginsList>))]
    pub allowed_origins: &'a Option<AllowedOrigins>,
    /// The key's metadata, to know whom it belongs to without another lookup.
    #[serde(serialize_with = "crate::dto::metadata_out")]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::schemas::MetadataObject))]
    pub metadata: &'a Metadata,
}

/// Writes a time as every timestamp of the API is written, only when the
/// answer is rendered (a remembered answer is not: [`rendered_once`]).
fn as_timestamp<S: Serializer>(at: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => s.serialize_str(&timestamp(*at)),
        None => s.serialize_none(),
    }
}

/// Writes an id by its `Display`, straight into the output.
fn as_display<T: fmt::Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// Writes scopes as their names, in canonical order.
fn scope_names<S: Serializer>(scopes: &Scopes, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(scopes.names())
}

impl<'a> From<&'a ApiKey> for VerifiedKey<'a> {
    fn from(key: &'a ApiKey) -> Self {
        VerifiedKey {
            id: &key.id,
            tenant_id: &key.tenant_id,
            name: key.name.as_str(),
            key_type: key.key_type.as_str(),
            mode: key.mode.as_str(),
            scopes: key.scopes,
            expires_at: key.expires_at,
            revokes_at: key.revokes_at,
            rate_limit: RateLimitObject::of(key.limits.rate_limit),
            credits: CreditsObject::of(key.limits.credits),
            allowed_ips: &key.restrictions.allowed_ips,
            allowed_origins: &key.restrictions.allowed_origins,
            metadata: &key.metadata,
        }
    }
}

/// `200` body of `POST /v1/api-keys/verify`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct VerifyKeyResponse<'a> {
    /// Whether the key is good for the tenant (and the scopes).
    pub valid: bool,
    /// `valid`, or why not.
    pub code: VerifyCode,
    /// The key, when `code` is `valid` or `insufficient_scope`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub key: Option<VerifiedKey<'a>>,
    /// The scopes asked for that the key lacks, in canonical order; only
    /// with `insufficient_scope`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false, value_type = Option<Vec<crate::openapi::schemas::Scope>>))]
    pub missing_scopes: Option<Vec<&'static str>>,
    /// A limited key's budget after this use (`limit`, `remaining`,
    /// `reset`, as the `RateLimit-*` headers of other routes); only for a
    /// key with a rate limit or credits, when `code` is `valid`,
    /// `rate_limited` or `usage_exceeded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub limits: Option<LimitsObject>,
}

impl<'a> VerifyKeyResponse<'a> {
    /// A key that is not good for the tenant.
    fn refused(code: VerifyCode) -> Self {
        VerifyKeyResponse {
            valid: false,
            code,
            key: None,
            missing_scopes: None,
            limits: None,
        }
    }

    /// The verdict on a key that authenticated, given the scopes required.
    fn of(key: &'a ApiKey, required: &[Scope]) -> Self {
        let missing: Vec<&'static str> = Scope::ALL
            .into_iter()
            .filter(|s| required.contains(s) && !key.scopes.allow_for(key.key_type, *s))
            .map(Scope::as_str)
            .collect();
        let valid = missing.is_empty();
        VerifyKeyResponse {
            valid,
            code: if valid {
                VerifyCode::Valid
            } else {
                VerifyCode::Refused(ErrorCode::InsufficientScope)
            },
            key: Some(VerifiedKey::from(key)),
            missing_scopes: (!valid).then_some(missing),
            limits: None,
        }
    }

    /// This verdict after the key's budget was judged: a refusal makes it
    /// `valid: false` with `rate_limited` or `usage_exceeded`, the key
    /// still shown.
    fn metered(mut self, verdict: Option<Verdict>) -> Self {
        match verdict {
            None => {}
            Some(Ok(report)) => self.limits = Some(report.into()),
            Some(Err(refusal)) => {
                self.valid = false;
                self.code = VerifyCode::Refused(match refusal.code {
                    RefusalCode::RateLimited => ErrorCode::RateLimited,
                    RefusalCode::UsageExceeded => ErrorCode::UsageExceeded,
                });
                self.limits = Some(refusal.report.into());
            }
        }
        self
    }

    /// Whether this is a refusal of a key that authenticated because its
    /// budget is spent: not a failed authentication (docs/api.md, "Abuse
    /// limits").
    fn is_spent(&self) -> bool {
        matches!(
            self.code,
            VerifyCode::Refused(ErrorCode::RateLimited | ErrorCode::UsageExceeded)
        )
    }
}

/// The verdict for an authentication failure: the code authentication
/// answers with ([`ErrorCode::of_auth`]). A storage failure is no verdict
/// but an error (503 or 500, as on every route), and so is a malformed
/// tenant (checked before the body).
fn refusal(e: AuthError) -> Result<VerifyKeyResponse<'static>, ApiError> {
    match ErrorCode::of_auth(&e) {
        // `MissingKey` cannot come from an authenticator given a parsed
        // key; if one says so, the key is not good.
        Some(ErrorCode::MissingApiKey) => Ok(VerifyKeyResponse::refused(VerifyCode::Refused(
            ErrorCode::InvalidApiKey,
        ))),
        Some(code) if VerifyCode::REFUSALS.contains(&code) => {
            Ok(VerifyKeyResponse::refused(VerifyCode::Refused(code)))
        }
        _ => Err(e.into()),
    }
}

/// What the handler needs of the body: the key string's verdict (its own
/// shape is a verdict, not an error), the scopes required, once each, the
/// key type required, if any, and the end client (`ip`, `origin`).
type Asked = (
    Result<PlainKey, KeyFormatError>,
    Vec<Scope>,
    Option<KeyType>,
    Cost,
    EndClient,
);

/// The end client a verification is for, from the body's `ip` (which must
/// be an address) and `origin`.
fn end_client(ip: Option<&str>, origin: Option<&str>) -> Result<EndClient, ApiError> {
    let ip = ip
        .map(|ip| {
            ip.trim().parse::<IpAddr>().map_err(|_| {
                ApiError::invalid_parameter("ip", "ip must be an IPv4 or IPv6 address")
            })
        })
        .transpose()?;
    Ok(EndClient {
        ip,
        origin: origin.map(str::to_owned),
    })
}

/// The verify body with its fields borrowed from the bytes: the fast path
/// of [`read_body`]. Only a body it reads in full is taken from it; any
/// other body goes the general way, which gives each failure its code.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BorrowedBody<'a> {
    #[serde(borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    scopes: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, rename = "type")]
    key_type: Option<Cow<'a, str>>,
    cost: Option<u64>,
    #[serde(borrow)]
    ip: Option<Cow<'a, str>>,
    #[serde(borrow)]
    origin: Option<Cow<'a, str>>,
}

/// Reads the body: a JSON object of `key` (a string), `scopes` (an array
/// of scope names) and `type` (a key type), checked in order: `key` (JSON
/// type), `scopes` (JSON type, then each name), `type` (JSON type, then
/// value).
///
/// Why two ways: building a `serde_json::Value` map for a two-field body
/// was a measurable share of a cache-hit verification (docs/performance.md,
/// "Load"). The borrowed read accepts only an object whose fields are known,
/// present once and of the right type, which the general reader would read
/// to the same values; everything else (the errors included) is the
/// general reader's, so every answer is the same either way (tested).
fn read_body(bytes: &[u8]) -> Result<Asked, ApiError> {
    read_borrowed(bytes).unwrap_or_else(|| read_fields(&parse_object(bytes, &FIELDS)?))
}

/// The fields of the body.
const FIELDS: [&str; 6] = ["key", "scopes", "type", "cost", "ip", "origin"];

/// `cost`, 0–1000, default 1.
fn cost(raw: Option<u64>) -> Result<Cost, ApiError> {
    raw.map_or(Ok(Cost::ONE), |c| {
        Cost::new(c).map_err(|e| ApiError::invalid_parameter("cost", e.to_string()))
    })
}

/// `type`, when asked for.
fn required_type(raw: Option<&str>) -> Result<Option<KeyType>, ApiError> {
    raw.map(parse_key_type).transpose()
}

/// The fast path of [`read_body`]: `None` when the body is not a JSON
/// object of known fields, each present once and of the right type.
fn read_borrowed(bytes: &[u8]) -> Option<Result<Asked, ApiError>> {
    // A struct also reads from a JSON array; only an object may take the
    // fast path.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    let BorrowedBody {
        key: Some(key),
        scopes,
        key_type,
        cost: raw_cost,
        ip,
        origin,
    } = serde_json::from_slice(bytes).ok()?
    else {
        return None;
    };
    let names = scopes.unwrap_or_default();
    Some(
        required_scopes(names.iter().map(|n| &**n)).and_then(|scopes| {
            let key_type = required_type(key_type.as_deref())?;
            let client = end_client(ip.as_deref(), origin.as_deref())?;
            Ok((
                PlainKey::parse(&key),
                scopes,
                key_type,
                cost(raw_cost)?,
                client,
            ))
        }),
    )
}

/// The fields of a body read the general way, in the order of
/// [`read_body`].
fn read_fields(body: &JsonObject) -> Result<Asked, ApiError> {
    let key = body.req_str("key")?;
    let names = body.opt_str_array("scopes")?.unwrap_or_default();
    let scopes = required_scopes(names)?;
    let key_type = required_type(body.opt_str("type")?)?;
    let raw_cost = match body.raw("cost") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            ApiError::invalid_parameter("cost", "`cost` must be a whole number from 0 to 1000")
        })?),
    };
    let client = end_client(body.opt_str("ip")?, body.opt_str("origin")?)?;
    Ok((
        PlainKey::parse(key),
        scopes,
        key_type,
        cost(raw_cost)?,
        client,
    ))
}

/// The scopes named, each once, in the order first named.
fn required_scopes<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Vec<Scope>, ApiError> {
    let mut required = Vec::new();
    for name in names {
        let scope =
            Scope::parse(name).map_err(|e| ApiError::invalid_parameter("scopes", e.to_string()))?;
        if !required.contains(&scope) {
            required.push(scope);
        }
    }
    Ok(required)
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
        path = VERIFY.path,
        tag = "api-key-verification",
        operation_id = "verify_api_key",
        request_body(content = VerifyKeyRequest, content_type = "application/json"),
        responses(
            (status = 200, description = "The verdict: `valid` true with the key, or false with the reason in `code` (with the key and `missing_scopes` when only scopes are lacking).", body = VerifyKeyResponse,
                headers(("Cache-Control" = String, description = "`no-store`"))),
            (status = 400, description = "`invalid_tenant_id` (checked before the body), `invalid_json`, `unknown_field`, `missing_parameter` (`key`), `invalid_parameter` (`key`, `scopes`, `type`, `ip`), `duplicate_header` (`Authorization`, `X-Tenant-ID`; checked first).", body = ErrorBody,
                headers(("Cache-Control" = String, description = "`no-store`"))),
            (status = 405, description = "`method_not_allowed`.", body = ErrorBody,
                headers(("Cache-Control" = String, description = "`no-store`"))),
            (status = 413, description = "`payload_too_large`.", body = ErrorBody,
                headers(("Cache-Control" = String, description = "`no-store`"))),
            (status = 415, description = "`unsupported_media_type`: not `application/json`, or a `Content-Encoding` other than `identity`.", body = ErrorBody,
                headers(("Cache-Control" = String, description = "`no-store`"))),
            (status = 429, description = "`too_many_requests`: too many `valid: false` verdicts or failed authentications from this address.", body = ErrorBody,
                headers(("Retry-After" = String, description = "Seconds until the address is admitted again."), ("Cache-Control" = String, description = "`no-store`"))),
            (status = 500, description = "`internal_error`.", body = ErrorBody,
                headers(("Cache-Control" = String, description = "`no-store`"))),
            (status = 503, description = "`service_unavailable`.", body = ErrorBody,
                headers(("Retry-After" = String, description = "Seconds to wait."), ("Cache-Control" = String, description = "`no-store`"))),
        ),
        params(crate::openapi::params::TenantHeader),
    )
)]
pub(crate) async fn verify_key(
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // A doubled header first: not a verdict, nor a failure to count.
    single_headers(req.headers())?;
    // An address over the failure limit is refused next; every `valid:
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
    let (key, required, required_type, cost, client_seen) =
        read_body(&read_json_bytes(&req, payload).await?)?;
    // `key`: the key the verdict is on, when there is one.
    let verdict = |response: VerifyKeyResponse<'_>,
                   key: Option<&Arc<ApiKey>>|
     -> Result<HttpResponse, ApiError> {
        let response = counted(response);
        if !response.valid && !response.is_spent() {
            if let Some(too_many) = limiter.as_ref().and_then(|l| l.failed(client)) {
                return Err(too_many);
            }
        }
        answer(&response, key)
    };
    // Not a key string: refused without any I/O, as authentication does.
    let Ok(key) = key else {
        return verdict(
            VerifyKeyResponse::refused(VerifyCode::Refused(ErrorCode::InvalidApiKey)),
            None,
        );
    };
    let authenticator = authenticator_of(&req).ok_or_else(|| {
        ApiError::internal().with_source("no web::Data<dyn Authenticator> registered in the app")
    })?;
    // The same lookup as every authentication: a cache hit is answered on
    // the executor thread. Where the key may be used from is judged with
    // it, on the end client the body names (docs/api.md, "Restricting a
    // key").
    let credentials = Credentials::new(key, tenant).from_client(client_seen);
    let outcome = Lookup::start(authenticator, credentials)
        .finish(storage_wait(&req))
        .await?;
    match outcome {
        // The type after authentication, as a key's rights are judged
        // after it authenticates (docs/api.md, the verdict table's order).
        Ok(key) if required_type.is_some_and(|t| t != key.key_type) => verdict(
            VerifyKeyResponse::refused(VerifyCode::Refused(ErrorCode::KeyTypeMismatch)),
            None,
        ),
        Ok(key) => {
            let response = VerifyKeyResponse::of(&key, &required);
            // A use refused by its scopes spends nothing (docs/api.md,
            // "Limiting a key's use").
            let spent = if response.valid {
                judge_use(&req, key.id, key.limits, cost).await?
            } else {
                None
            };
            verdict(response.metered(spent), Some(&key))
        }
        Err(e) => verdict(
            refusal(e).inspect_err(|e| {
                metrics::record_auth(Via::Verify, Err(e.code().as_str()));
            })?,
            None,
        ),
    }
}

/// Counts the verdict by its code (docs/metrics.md) and passes it on.
fn counted(response: VerifyKeyResponse<'_>) -> VerifyKeyResponse<'_> {
    let outcome = match response.code {
        VerifyCode::Valid => Ok(()),
        VerifyCode::Refused(code) => Err(code.as_str()),
    };
    metrics::record_auth(Via::Verify, outcome);
    response
}

/// The 200 answer. A `valid` verdict on `key` is the same bytes every time
/// for the same snapshot of the key, so each thread renders it once
/// ([`rendered_once`]); any other verdict is rendered as it comes.
fn answer(
    response: &VerifyKeyResponse<'_>,
    key: Option<&Arc<ApiKey>>,
) -> Result<HttpResponse, ApiError> {
    let body = match key {
        // A limited key's answer carries its budget: never the same bytes.
        Some(key) if response.valid && response.limits.is_none() => rendered_once(key, response)?,
        _ => render(response)?,
    };
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(body))
}

/// Writes `response` once into a buffer sized for a verdict with a key
/// (about 300 bytes), so it is not grown step by step.
fn render(response: &VerifyKeyResponse<'_>) -> Result<Bytes, ApiError> {
    let mut body = Vec::with_capacity(512);
    serde_json::to_writer(&mut body, response)
        .map_err(|e| ApiError::internal().with_source(e.to_string()))?;
    Ok(Bytes::from(body))
}

/// The slot of `key`'s snapshot among the remembered answers.
#[cfg(test)]
fn rendered_slot(key: &Arc<ApiKey>) -> usize {
    PerSnapshot::<Bytes>::slot(key)
}

thread_local! {
    /// Per thread, the last `valid` answers rendered, each with the key
    /// snapshot it was rendered from.
    static RENDERED: RefCell<PerSnapshot<Bytes>> = RefCell::new(PerSnapshot::new());
}

/// The `valid` answer on `key`: rendered on this thread's first verdict on
/// this snapshot, then the same bytes.
///
/// Why: serializing the key was the largest cost of a cache-hit
/// verification left in the handler (docs/performance.md, "Load"), and a
/// service verifies the same few callers' keys again and again.
fn rendered_once(key: &Arc<ApiKey>, response: &VerifyKeyResponse<'_>) -> Result<Bytes, ApiError> {
    RENDERED.with_borrow_mut(|rendered| rendered.get_or_make(key, || render(response)))
}

/// Resource middleware of the verify route: `Cache-Control: no-store` on
/// every answer, errors (also 405) included. Nothing on the route sets
/// another `Cache-Control`, so adding the header where it is missing is
/// setting it; actix's own middleware does that without boxing a future per
/// request, as a `from_fn` one would.
pub(crate) fn no_store() -> DefaultHeaders {
    DefaultHeaders::new().add((CACHE_CONTROL, HeaderValue::from_static("no-store")))
}

#[cfg(test)]
mod tests {
    use domain::{KeyName, KeyType, Mode, Scope, Scopes};
    use time::macros::datetime;

    use super::*;

    fn key(name: &str) -> Arc<ApiKey> {
        Arc::new(ApiKey {
            id: KeyId::parse("key_01HABCDEF0123456789ABCDEFG").unwrap_or_else(|e| panic!("{e}")),
            tenant_id: TenantId::parse("tnt_01HABCDEF0123456789ABCDEFG")
                .unwrap_or_else(|e| panic!("{e}")),
            name: KeyName::parse(name).unwrap_or_else(|e| panic!("{e}")),
            key_type: KeyType::Secret,
            mode: Mode::Live,
            prefix: "sk_live_abc1".to_owned(),
            last_four: "x123".to_owned(),
            scopes: Scopes::new([Scope::UsersRead]).unwrap_or_else(|e| panic!("{e}")),
            created_at: datetime!(2024-01-09 09:00:00 UTC),
            last_used_at: None,
            expires_at: Some(datetime!(2025-01-09 09:00:00 UTC)),
            revokes_at: None,
            replaced_by: None,
            limits: Default::default(),
            restrictions: Default::default(),
            metadata: Default::default(),
        })
    }

    fn valid_body(key: &Arc<ApiKey>) -> Bytes {
        let response = VerifyKeyResponse::of(key, &[Scope::UsersRead]);
        assert!(response.valid);
        rendered_once(key, &response).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_valid_answer_is_rendered_once_per_snapshot_and_is_the_rendering() {
        let worker = key("Worker");
        let first = valid_body(&worker);
        let fresh = render(&VerifyKeyResponse::of(&worker, &[Scope::UsersRead]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, fresh);
        assert_eq!(
            std::str::from_utf8(&first).unwrap_or_default(),
            r#"{"valid":true,"code":"valid","key":{"id":"key_01HABCDEF0123456789ABCDEFG","tenant_id":"tnt_01HABCDEF0123456789ABCDEFG","name":"Worker","type":"secret","mode":"live","scopes":["users:read"],"expires_at":"2025-01-09T09:00:00Z","revokes_at":null,"rate_limit":null,"credits":null,"allowed_ips":null,"allowed_origins":null,"metadata":{}}}"#
        );
        let again = valid_body(&worker);
        assert_eq!(
            again.as_ptr(),
            first.as_ptr(),
            "the same bytes, not a new rendering"
        );
    }

    #[test]
    fn a_new_snapshot_of_the_key_is_rendered_anew() {
        let before = key("Before");
        assert!(std::str::from_utf8(&valid_body(&before))
            .unwrap_or_default()
            .contains(r#""name":"Before""#));
        // Another snapshot in the same slot (kept alive, so addresses differ).
        let mut others = Vec::new();
        let after = loop {
            let candidate = key("After");
            if rendered_slot(&candidate) == rendered_slot(&before) {
                break candidate;
            }
            others.push(candidate);
        };
        let body = valid_body(&after);
        assert!(std::str::from_utf8(&body)
            .unwrap_or_default()
            .contains(r#""name":"After""#));
        // A clone of the same snapshot's value in another `Arc` is another
        // snapshot as far as the memory goes: rendered, and equal.
        let twin = Arc::new(ApiKey::clone(&after));
        let twin_body = valid_body(&twin);
        assert_eq!(twin_body, body);
        assert_ne!(twin_body.as_ptr(), body.as_ptr());
    }

    #[test]
    fn a_refused_authentication_is_the_verdict_of_its_code() {
        let verdict = |e: AuthError| refusal(e).map(|r| (r.valid, r.code.as_str()));
        for (e, code) in [
            (AuthError::InvalidKey, "invalid_api_key"),
            (AuthError::MissingKey, "invalid_api_key"),
            (AuthError::Revoked, "api_key_revoked"),
            (AuthError::Expired, "api_key_expired"),
            (AuthError::TenantMismatch, "tenant_mismatch"),
        ] {
            assert_eq!(verdict(e).ok(), Some((false, code)), "{code}");
        }
        let e = verdict(AuthError::InvalidTenantId).err().map(|e| e.code());
        assert_eq!(e, Some(ErrorCode::InvalidTenantId));
        let down = AuthError::Repository(domain::RepositoryError::unavailable("pool", "down"));
        let e = verdict(down).err().map(|e| e.code());
        assert_eq!(e, Some(ErrorCode::ServiceUnavailable));
    }

    /// docs/api.md's verdict table lists `valid` and the refusals, in order.
    #[test]
    fn the_documented_verdict_codes_are_the_refusals() {
        let api_md = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md"));
        let documented: Vec<&str> = api_md
            .split("| `code` | `valid` |")
            .nth(1)
            .unwrap_or_default()
            .lines()
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .filter_map(|line| line.split('`').nth(1))
            .collect();
        let expected: Vec<&str> = std::iter::once(VerifyCode::Valid)
            .chain(VerifyCode::REFUSALS.map(VerifyCode::Refused))
            .map(VerifyCode::as_str)
            .collect();
        assert_eq!(documented, expected);
    }

    #[test]
    fn only_a_valid_verdict_is_remembered() {
        let worker = key("Scoped");
        let lacking = VerifyKeyResponse::of(&worker, &[Scope::UsersWrite]);
        assert!(!lacking.valid);
        let answered = answer(&lacking, Some(&worker)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(answered.status(), 200);
        let held = RENDERED.with_borrow(|rendered| rendered.holds(&worker));
        assert!(!held, "an insufficient_scope answer is not remembered");
    }
}

/// The two ways of reading the body agree on every body the fast one takes.
#[cfg(test)]
mod properties {
    use domain::testing::SeqSecretSource;
    use domain::{KeyType, Mode};
    use proptest::prelude::*;
    use serde_json::{json, Map, Value};

    use super::*;

    /// A well-formed key (shape and checksum), made for the test.
    fn well_formed(key_type: KeyType, mode: Mode) -> String {
        PlainKey::generate(key_type, mode, &SeqSecretSource::new(7)).into_secret()
    }

    fn general(bytes: &[u8]) -> Result<Asked, ApiError> {
        read_fields(&parse_object(bytes, &FIELDS)?)
    }

    fn same(fast: &Result<Asked, ApiError>, general: &Result<Asked, ApiError>) -> bool {
        match (fast, general) {
            (Ok(a), Ok(b)) => a == b,
            (Err(a), Err(b)) => {
                (a.code(), a.param(), a.message()) == (b.code(), b.param(), b.message())
            }
            _ => false,
        }
    }

    /// Scope lists: known, unknown and repeated names, now and then a
    /// value that is not a string.
    fn scopes() -> impl Strategy<Value = Value> {
        let scope = prop_oneof![
            6 => prop_oneof![
                Just(json!("*")),
                Just(json!("users:read")),
                Just(json!("users:write")),
                Just(json!("users:read\n")),
                Just(json!("nope")),
            ],
            1 => prop_oneof![Just(Value::Null), Just(json!(1))],
        ];
        prop_oneof![
            8 => prop::collection::vec(scope, 0..4).prop_map(Value::Array),
            1 => Just(Value::Null),
            1 => Just(json!("users:read")),
        ]
    }

    /// Key values: well-formed keys, other strings, now and then not a string.
    fn key() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => Just(json!(well_formed(KeyType::Secret, Mode::Live))),
            4 => Just(json!(well_formed(KeyType::Publishable, Mode::Test))),
            4 => any::<String>().prop_map(Value::String),
            1 => Just(Value::Null),
            1 => any::<i32>().prop_map(Value::from),
        ]
    }

    /// Key types: both, names that are not one, now and then not a string.
    fn key_type() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => Just(json!("secret")),
            4 => Just(json!("publishable")),
            1 => Just(json!("Secret")),
            1 => Just(json!("sk")),
            1 => Just(Value::Null),
            1 => Just(json!(["secret"])),
        ]
    }

    /// Any field value.
    fn field_value() -> impl Strategy<Value = Value> {
        prop_oneof![key(), scopes(), key_type(), Just(json!({"key": "x"}))]
    }

    /// Object texts built the way clients send them (`key`, often
    /// `scopes`), now and then with a field repeated, an unknown field, odd
    /// spacing or an escaped name, which `serde_json::Value` could not
    /// produce by itself; in any order.
    fn body() -> impl Strategy<Value = String> {
        let extra = (
            prop_oneof![
                Just("key"),
                Just("scopes"),
                Just("type"),
                Just("other"),
                Just("Key")
            ],
            field_value(),
        );
        (
            key(),
            prop::option::of(scopes()),
            prop::option::of(key_type()),
            prop::option::weighted(0.2, extra),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_flat_map(|(key, scopes, key_type, extra, spaced, escaped)| {
                let mut fields = vec![("key", key)];
                fields.extend(scopes.map(|s| ("scopes", s)));
                fields.extend(key_type.map(|t| ("type", t)));
                fields.extend(extra);
                (Just(fields).prop_shuffle(), Just(spaced), Just(escaped))
            })
            .prop_map(|(fields, spaced, escaped)| {
                let members: Vec<String> = fields
                    .iter()
                    .map(|(name, value)| {
                        let name = if escaped && *name == "key" {
                            "\\u006bey".to_owned()
                        } else {
                            (*name).to_owned()
                        };
                        format!("\"{name}\":{value}")
                    })
                    .collect();
                let sep = if spaced { " ,\n " } else { "," };
                format!(
                    "{}{{{}}}",
                    if spaced { " \t" } else { "" },
                    members.join(sep)
                )
            })
    }

    /// Bodies of [`body`] with one to three bytes replaced, inserted or
    /// removed, often with a byte that means something to JSON. Random bytes
    /// alone would never be a body the fast path reads; these often still
    /// are, in shapes no generator of valid bodies makes (a field name
    /// changed by one letter, a value cut short, an extra comma).
    fn mutated() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            3 => prop::sample::select(b" \t\n{}[],:\"\\0123456789aekysu*".to_vec()),
            1 => any::<u8>(),
        ];
        let edit = (any::<prop::sample::Index>(), byte, 0..3u8);
        (body(), prop::collection::vec(edit, 1..4)).prop_map(|(text, edits)| {
            let mut bytes = text.into_bytes();
            for (at, byte, kind) in edits {
                let i = at.index(bytes.len() + 1);
                match kind {
                    0 if i < bytes.len() => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ if i < bytes.len() => {
                        bytes.remove(i);
                    }
                    _ => {}
                }
            }
            bytes
        })
    }

    /// The property over mutated bodies compares the two readers only if
    /// some of them take the fast path: it must be a fair share.
    #[test]
    fn mutated_bodies_often_take_the_fast_path() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = mutated();
        let fast = (0..1000)
            .filter(|_| {
                strategy
                    .new_tree(&mut runner)
                    .map(|tree| read_borrowed(&ValueTree::current(&tree)).is_some())
                    .unwrap_or(false)
            })
            .count();
        assert!(
            fast >= 100,
            "only {fast} of 1000 mutated bodies take the fast path"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn the_fast_path_answers_as_the_general_one(text in body()) {
            if let Some(fast) = read_borrowed(text.as_bytes()) {
                let general = general(text.as_bytes());
                prop_assert!(same(&fast, &general), "{text}");
            }
            prop_assert!(same(&read_body(text.as_bytes()), &general(text.as_bytes())), "{text}");
        }

        #[test]
        fn mutated_bodies_are_answered_as_the_general_way_does(bytes in mutated()) {
            prop_assert!(
                same(&read_body(&bytes), &general(&bytes)),
                "{}",
                String::from_utf8_lossy(&bytes)
            );
        }

        #[test]
        fn any_json_object_is_answered_as_the_general_way_does(
            fields in prop::collection::vec(("(key|scopes|type|x)", field_value()), 0..4)
        ) {
            let text = Value::Object(fields.into_iter().collect::<Map<_, _>>()).to_string();
            prop_assert!(same(&read_body(text.as_bytes()), &general(text.as_bytes())), "{text}");
        }
    }

    #[test]
    fn a_usual_body_takes_the_fast_path() {
        let usual = json!({ "key": well_formed(KeyType::Secret, Mode::Live) }).to_string();
        for text in [
            usual.as_str(),
            r#"{"key":"nope","scopes":["users:read","users:read"]}"#,
            r#" {"scopes": null, "key": "x"}"#,
            r#"{"key": "\u0073k_live_x", "scopes": ["users:rea\u0064"]}"#,
            r#"{"key": "x", "type": "publishable"}"#,
            r#"{"type": null, "key": "x", "scopes": []}"#,
        ] {
            let fast = read_borrowed(text.as_bytes());
            assert!(fast.is_some(), "{text}");
        }
        let Some(Ok((_, scopes, key_type, _, _))) = read_borrowed(
            br#"{"key":"nope","scopes":["users:read","*","users:read"],"type":"secret"}"#,
        ) else {
            panic!("a body the fast path reads");
        };
        assert_eq!(scopes, vec![Scope::UsersRead, Scope::All]);
        assert_eq!(key_type, Some(KeyType::Secret));
    }

    #[test]
    fn what_the_fast_path_leaves_is_for_the_general_one() {
        for text in [
            r#"["sk_live_x"]"#,
            r#"["sk_live_x", null]"#,
            r#" ["sk_live_x", ["users:read"]]"#,
            r#"{"key":"a","key":"b"}"#,
            r#"{"key":"a","other":1}"#,
            r#"{"key":null}"#,
            r#"{"scopes":[]}"#,
            r#"{"key":"a","scopes":[null]}"#,
            r#"{"key":1}"#,
            r#"{"key":"a","type":1}"#,
            r#"{"key":"a","type":"a","type":"b"}"#,
        ] {
            assert!(read_borrowed(text.as_bytes()).is_none(), "{text}");
        }
    }
}
