//! `/v1/forward-auth`: the endpoint a gateway asks before it passes a
//! request on (nginx `auth_request`, Caddy `forward_auth`, Traefik
//! `ForwardAuth`, Envoy's HTTP `ext_authz`; docs/api.md, "Forward
//! authentication", and docs/gateways.md).
//!
//! Any method; the body is never read. The key comes from
//! `Authorization: Bearer` or `X-API-Key`, `X-Tenant-ID` is optional. It is
//! the same authentication as every route's
//! ([`authenticate_request`](crate::auth::authenticate_request): the failure
//! limiter, the cache and its blocking fallback, the last-used record, the
//! key's restrictions judged on the end client: its address from a trusted
//! gateway's `X-Forwarded-For`, its `Origin` or `Referer`), then the query's
//! `type` and `scopes`. Allowed: 200 with an empty body and the
//! `X-ApiKey-*` headers for the gateway to pass upstream. Refused: the
//! error's status and JSON body, and the same body in `X-ApiKey-Error` for
//! nginx, whose `auth_request` drops the body of the answer it was given.
//! Every answer carries `Cache-Control: no-store` ([`no_store`]).

use std::cell::RefCell;
use std::sync::Arc;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use domain::{AccessError, ApiKey, Cost, KeyType, Metadata, Scope};

use crate::auth::{authenticate_request, gateway_credentials, single_key_header};
#[cfg(feature = "openapi")]
use crate::error::ErrorBody;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::parse_key_type;
use crate::metrics::Via;
use crate::query::query_pairs;
use crate::request_id::REQUEST_ID_HEADER;
use crate::route::routes;
use crate::snapshot::PerSnapshot;
use crate::usage::{report_unspent, spend_use};
use crate::verify::no_store;

routes! {
    /// Forward authentication for gateways: any method.
    FORWARD_AUTH = "/v1/forward-auth" wrap(no_store()) { ANY forward_auth },
}

/// `X-ApiKey-Id`: the key's id.
pub(crate) const KEY_ID_HEADER: HeaderName = HeaderName::from_static("x-apikey-id");
/// `X-ApiKey-Tenant-Id`: the key's tenant.
pub(crate) const KEY_TENANT_HEADER: HeaderName = HeaderName::from_static("x-apikey-tenant-id");
/// `X-ApiKey-Type`: `secret` or `publishable`.
pub(crate) const KEY_TYPE_HEADER: HeaderName = HeaderName::from_static("x-apikey-type");
/// `X-ApiKey-Mode`: `live` or `test`.
pub(crate) const KEY_MODE_HEADER: HeaderName = HeaderName::from_static("x-apikey-mode");
/// `X-ApiKey-Scopes`: the key's scopes, space-separated.
pub(crate) const KEY_SCOPES_HEADER: HeaderName = HeaderName::from_static("x-apikey-scopes");
/// `X-ApiKey-Metadata`: the key's metadata JSON, base64url without padding;
/// absent when the metadata is empty.
pub(crate) const KEY_METADATA_HEADER: HeaderName = HeaderName::from_static("x-apikey-metadata");
/// `X-ApiKey-Error`: a refusal's JSON body, for gateways that drop the body
/// (nginx).
pub(crate) const KEY_ERROR_HEADER: HeaderName = HeaderName::from_static("x-apikey-error");

/// The query's parameters.
const PARAMETERS: [&str; 3] = ["scopes", "type", "cost"];

/// Most a use may cost (`cost`).
const MAX_COST: u16 = 1000;

/// What the query asks of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Asked {
    /// Scopes the key must all have, each once.
    scopes: Vec<Scope>,
    /// The key type required, if any.
    key_type: Option<KeyType>,
    /// What the use costs, 0 to 1000 (default 1): spent of a limited key's
    /// budget once the key passed its checks (docs/api.md, "Forward
    /// authentication" and "Limiting a key's use").
    cost: u16,
}

/// Reads the query: `scopes` (comma-separated scope names), `type`
/// (`secret` or `publishable`), `cost` (0 to 1000); each at most once, no
/// other parameter.
fn read_query(query: &str) -> Result<Asked, ApiError> {
    let mut asked = Asked {
        scopes: Vec::new(),
        key_type: None,
        cost: 1,
    };
    for (name, value) in query_pairs(query, &PARAMETERS)? {
        match name.as_str() {
            "scopes" => asked.scopes = read_scopes(&value)?,
            "type" => asked.key_type = Some(parse_key_type(&value)?),
            // `query_pairs` lets only the known names through.
            _ => asked.cost = read_cost(&value)?,
        }
    }
    Ok(asked)
}

/// `scopes`: scope names separated by commas, each known; empty: none.
fn read_scopes(value: &str) -> Result<Vec<Scope>, ApiError> {
    let mut scopes = Vec::new();
    for name in value.split(',').filter(|_| !value.is_empty()) {
        let scope = Scope::parse(name.trim()).map_err(|e| {
            ApiError::invalid_parameter(
                "scopes",
                format!("{e}; `scopes` is a comma-separated list of scopes"),
            )
        })?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    Ok(scopes)
}

/// `cost`: digits only, 0 to 1000.
fn read_cost(value: &str) -> Result<u16, ApiError> {
    let wrong = || ApiError::invalid_parameter("cost", "`cost` must be an integer from 0 to 1000");
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(wrong());
    }
    value
        .parse::<u16>()
        .ok()
        .filter(|cost| *cost <= MAX_COST)
        .ok_or_else(wrong)
}

/// The key's judgement after it authenticated: its type, then every scope
/// asked for (a publishable key never has a sensitive scope).
fn judge(key: &ApiKey, asked: &Asked) -> Result<(), ApiError> {
    if asked.key_type.is_some_and(|t| t != key.key_type) {
        return Err(ApiError::new(
            ErrorCode::KeyTypeMismatch,
            format!(
                "this request requires a {} key",
                asked.key_type.map_or("", KeyType::as_str)
            ),
        ));
    }
    match asked
        .scopes
        .iter()
        .find(|s| !key.scopes.allow_for(key.key_type, **s))
    {
        Some(missing) => Err(AccessError::InsufficientScope { required: *missing }.into()),
        None => Ok(()),
    }
}

/// Ask whether a request may pass: for gateways (nginx `auth_request`,
/// Caddy `forward_auth`, Traefik `ForwardAuth`, Envoy `ext_authz`).
///
/// Any method; the body is ignored. The key comes from `Authorization:
/// Bearer <key>` or `X-API-Key: <key>` (both: 400 `duplicate_header`);
/// `X-Tenant-ID` is optional (when sent, the key must be the tenant's). The
/// client's address is the peer's, or the `X-Forwarded-For` entry of a
/// trusted proxy. Allowed: 200 with an empty body and the `X-ApiKey-*`
/// headers for the gateway to pass upstream; a use (`last_used_at`).
/// Refused: the status and JSON error body (also in `X-ApiKey-Error`).
#[cfg_attr(
    feature = "openapi",
    utoipa::path(
        method(get, post, put, patch, delete),
        path = FORWARD_AUTH.path,
        tag = "forward-auth",
        operation_id = "forward_auth",
        security(("bearer" = [])),
        params(
            crate::openapi::params::ForwardAuthHeaders,
            ("scopes" = Option<String>, Query, description = "Scopes the key must all have, comma-separated (`users:read,users:write`); a key with `*` has every scope, a publishable key never a sensitive one. Absent or empty: none."),
            ("type" = Option<crate::dto::KeyTypeDto>, Query, description = "The key type accepted: a key of the other type is refused 403 `key_type_mismatch`."),
            ("cost" = Option<u16>, Query, minimum = 0, maximum = 1000, description = "What this use costs against the key's usage limits, 0–1000 (default 1)."),
        ),
        responses(
            (status = 200, description = "The request may pass. Empty body; the `X-ApiKey-*` headers describe the key, for the gateway to pass upstream.",
                headers(
                    ("X-ApiKey-Id" = crate::openapi::schemas::KeyId, description = "The key's id."),
                    ("X-ApiKey-Tenant-Id" = crate::openapi::schemas::TenantId, description = "The key's tenant."),
                    ("X-ApiKey-Type" = crate::dto::KeyTypeDto, description = "`secret` or `publishable`."),
                    ("X-ApiKey-Mode" = crate::dto::ModeDto, description = "`live` or `test`."),
                    ("X-ApiKey-Scopes" = String, description = "The key's scopes, space-separated (`*` for full access)."),
                    ("X-ApiKey-Metadata" = String, description = "The key's metadata JSON, base64url without padding; absent when the metadata is empty."),
                    ("Cache-Control" = String, description = "`no-store`"),
                )),
            (status = 400, description = "`duplicate_header` (`Authorization`, `X-Tenant-ID`, `X-API-Key`; checked first), `invalid_tenant_id`, `invalid_parameter` (`scopes`, `type`, `cost`), `unknown_parameter`.", body = ErrorBody,
                headers(("X-ApiKey-Error" = String, description = "The same JSON body, for gateways that drop it."), ("Cache-Control" = String, description = "`no-store`"))),
            (status = 401, description = "`missing_api_key`, `invalid_api_key`, `api_key_revoked`, `api_key_expired`.", body = ErrorBody,
                headers(("WWW-Authenticate" = String, description = "`Bearer`"), ("X-ApiKey-Error" = String, description = "The same JSON body, for gateways that drop it."), ("Cache-Control" = String, description = "`no-store`"))),
            (status = 403, description = "`tenant_mismatch`, `ip_not_allowed`, `origin_not_allowed` (the end client's address and origin), `key_type_mismatch`, `insufficient_scope`.", body = ErrorBody,
                headers(("X-ApiKey-Error" = String, description = "The same JSON body, for gateways that drop it."), ("Cache-Control" = String, description = "`no-store`"))),
            (status = 429, description = "`too_many_requests`: too many failed authentications from the client's address; `rate_limited` or `usage_exceeded`: the key's rate limit or credits are used up (with the `RateLimit-*` headers).", body = ErrorBody,
                headers(("Retry-After" = String, description = "Seconds until the address is admitted again, or until the key's budget allows a use."), ("X-ApiKey-Error" = String, description = "The same JSON body, for gateways that drop it."), ("Cache-Control" = String, description = "`no-store`"))),
            (status = 500, description = "`internal_error`.", body = ErrorBody,
                headers(("X-ApiKey-Error" = String, description = "The same JSON body, for gateways that drop it."), ("Cache-Control" = String, description = "`no-store`"))),
            (status = 503, description = "`service_unavailable`.", body = ErrorBody,
                headers(("Retry-After" = String, description = "Seconds to wait."), ("X-ApiKey-Error" = String, description = "The same JSON body, for gateways that drop it."), ("Cache-Control" = String, description = "`no-store`"))),
        ),
    )
)]
pub(crate) async fn forward_auth(req: HttpRequest) -> HttpResponse {
    match allowed(&req).await {
        Ok(headers) => allow(&headers),
        Err(e) => refuse(&e),
    }
}

/// The request's verdict: the headers of the key, or the refusal.
async fn allowed(req: &HttpRequest) -> Result<KeyHeaders, ApiError> {
    // Doubled headers first: not a failed authentication.
    single_key_header(req.headers())?;
    let asked = read_query(req.query_string())?;
    let cost = Cost::new(u64::from(asked.cost))
        .map_err(|e| ApiError::invalid_parameter("cost", e.to_string()))?;
    let (headers, id, limits) = authenticate_request(
        req,
        Via::ForwardAuth,
        gateway_credentials(req.headers()),
        move |req, key, _| {
            if let Err(refused) = judge(key, &asked) {
                // Refused before the budget: it carries the headers, unspent.
                report_unspent(req, &key.id, &key.limits);
                return Err(refused);
            }
            Ok((key_headers(key), key.id, key.limits))
        },
    )
    .await?;
    // A use refused by its type or scopes spends nothing; a spent budget
    // is 429 `rate_limited` or `usage_exceeded` with `Retry-After`, and a
    // limited key's answer carries the `RateLimit-*` headers, as on every
    // route (docs/api.md, "Limiting a key's use").
    spend_use(req, id, limits, cost).await?;
    Ok(headers)
}

/// The `X-ApiKey-*` values of a key that change with it (the others are
/// one of two words).
#[derive(Clone)]
struct KeyHeaders {
    key_type: KeyType,
    mode: &'static str,
    id: HeaderValue,
    tenant: HeaderValue,
    scopes: HeaderValue,
    metadata: Option<HeaderValue>,
}

thread_local! {
    /// Per thread, the headers of the last keys allowed, by snapshot.
    static HEADERS: RefCell<PerSnapshot<KeyHeaders>> = RefCell::new(PerSnapshot::new());
}

/// The headers of `key`: made on this thread's first answer for this
/// snapshot of it, then the same values (cloning a `HeaderValue` copies no
/// bytes).
fn key_headers(key: &Arc<ApiKey>) -> KeyHeaders {
    HEADERS.with_borrow_mut(|headers| {
        headers
            .get_or_make(key, || Ok::<_, std::convert::Infallible>(make_headers(key)))
            .unwrap_or_else(|never| match never {})
    })
}

/// Ids and scope names are visible ASCII: valid header values.
fn make_headers(key: &ApiKey) -> KeyHeaders {
    let value =
        |text: String| HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""));
    KeyHeaders {
        key_type: key.key_type,
        mode: key.mode.as_str(),
        id: value(key.id.to_string()),
        tenant: value(key.tenant_id.to_string()),
        scopes: value(key.scopes.names().collect::<Vec<_>>().join(" ")),
        metadata: (!key.metadata.is_empty()).then(|| value(metadata_header(&key.metadata))),
    }
}

/// The metadata as `X-ApiKey-Metadata` carries it: its JSON object (keys in
/// order), base64url without padding, so that any value is a valid header.
fn metadata_header(metadata: &Metadata) -> String {
    let object: serde_json::Map<String, serde_json::Value> = metadata
        .iter()
        .map(|(k, v)| (k.to_owned(), serde_json::Value::from(v)))
        .collect();
    URL_SAFE_NO_PAD.encode(serde_json::Value::Object(object).to_string())
}

/// 200, empty body, the key's headers.
fn allow(headers: &KeyHeaders) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    response
        .insert_header((KEY_ID_HEADER, headers.id.clone()))
        .insert_header((KEY_TENANT_HEADER, headers.tenant.clone()))
        .insert_header((
            KEY_TYPE_HEADER,
            HeaderValue::from_static(headers.key_type.as_str()),
        ))
        .insert_header((KEY_MODE_HEADER, HeaderValue::from_static(headers.mode)))
        .insert_header((KEY_SCOPES_HEADER, headers.scopes.clone()));
    if let Some(metadata) = &headers.metadata {
        response.insert_header((KEY_METADATA_HEADER, metadata.clone()));
    }
    response.finish()
}

/// The refusal as every route answers it (status, JSON body,
/// `WWW-Authenticate`, `Retry-After`), with the body also in
/// `X-ApiKey-Error`.
fn refuse(e: &ApiError) -> HttpResponse {
    let mut response = e.error_response();
    let request_id = response
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if let Some(body) = serde_json::to_string(&e.body(&request_id))
        .ok()
        .and_then(|json| HeaderValue::try_from(ascii_json(&json)).ok())
    {
        response.headers_mut().insert(KEY_ERROR_HEADER, body);
    }
    response
}

/// JSON with every character outside ASCII written as `\uXXXX`, so that it
/// is a valid header value (JSON already escapes controls).
fn ascii_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_read_with_its_defaults() {
        assert_eq!(
            read_query("").ok(),
            Some(Asked {
                scopes: vec![],
                key_type: None,
                cost: 1
            })
        );
        assert_eq!(
            read_query("scopes=users:read,*,users:read&type=secret&cost=0").ok(),
            Some(Asked {
                scopes: vec![Scope::UsersRead, Scope::All],
                key_type: Some(KeyType::Secret),
                cost: 0
            })
        );
        assert_eq!(
            read_query("scopes=users%3Aread&cost=1000")
                .ok()
                .map(|a| (a.scopes, a.cost)),
            Some((vec![Scope::UsersRead], 1000))
        );
        assert_eq!(read_query("scopes=").ok().map(|a| a.scopes), Some(vec![]));
    }

    #[test]
    fn a_wrong_query_names_its_parameter() {
        let refused = |query: &str| {
            read_query(query)
                .err()
                .map(|e| (e.code(), e.param().map(str::to_owned)))
        };
        let param = |code, p: &str| Some((code, Some(p.to_owned())));
        use ErrorCode::{InvalidParameter, UnknownParameter};
        assert_eq!(refused("cost=1001"), param(InvalidParameter, "cost"));
        assert_eq!(refused("cost=-1"), param(InvalidParameter, "cost"));
        assert_eq!(refused("cost="), param(InvalidParameter, "cost"));
        assert_eq!(refused("cost=1e3"), param(InvalidParameter, "cost"));
        assert_eq!(refused("scopes=nope"), param(InvalidParameter, "scopes"));
        assert_eq!(
            refused("scopes=users:read,,x"),
            param(InvalidParameter, "scopes")
        );
        assert_eq!(refused("type=both"), param(InvalidParameter, "type"));
        assert_eq!(
            refused("type=secret&type=secret"),
            param(InvalidParameter, "type")
        );
        assert_eq!(
            refused("scope=users:read"),
            param(UnknownParameter, "scope")
        );
    }

    #[test]
    fn a_header_json_is_ascii_and_reads_back_the_same() {
        let json = r#"{"message":"caf\u00e9 — 🔑"}"#;
        let value: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
        let text = value.to_string();
        let ascii = ascii_json(&text);
        assert!(ascii.is_ascii(), "{ascii}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&ascii).ok(),
            Some(value)
        );
    }
}
