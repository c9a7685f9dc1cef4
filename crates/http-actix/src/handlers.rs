//! The route handlers. Each management handler authenticates with
//! [`Authenticated`] like any other handler would, checks the caller may
//! manage keys (so that a forbidden caller learns nothing from validation),
//! validates its input field by field, then calls the domain through
//! [`blocking`].

use actix_web::http::header::{CACHE_CONTROL, LOCATION};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::{
    CreateKey, CreatedKey, ExpiresIn, GracePeriod, KeyId, KeyName, KeyType, ListKeys, Mode,
    Principal, RotatedKey, Scopes, UpdateKey,
};

use crate::auth::Authenticated;
use crate::blocking::blocking_within;
use crate::body::read_object;
// The request types only describe the bodies in the OpenAPI document; the
// handlers read a body field by field (`crate::body`).
#[cfg(feature = "openapi")]
use crate::dto::{CreateKeyRequest, RotateKeyRequest, UpdateKeyRequest};
use crate::dto::{CreatedKeyResponse, KeyList, KeyObject, RotatedKeyResponse, StatusBody};
#[cfg(feature = "openapi")]
use crate::error::ErrorBody;
use crate::error::{ApiError, ErrorCode};
use crate::idempotency::{self, idempotency_key, json_response, ReplayableResponse};
use crate::query::{parse_cursor, parse_limit, query_pairs};
use crate::request_id::request_id_of;
use crate::restriction_fields;
use crate::route::routes;
use crate::state::AppState;

routes! {
    /// The tenant's keys: list, create.
    KEYS = "/v1/api-keys" { GET list_keys, POST create_key },
    /// Rotation. Before `/{id}`, which would otherwise take `rotate` for an
    /// id.
    ROTATE = "/v1/api-keys/rotate" { POST rotate_key },
    /// One key.
    KEY = "/v1/api-keys/{id}" { GET get_key, PATCH update_key, DELETE revoke_key },
    /// Liveness.
    HEALTHZ = "/healthz" { GET healthz },
    /// Readiness.
    READYZ = "/readyz" { GET readyz },
}

/// The `id` path parameter as a key id; a malformed id is as unknown as a
/// missing key.
fn path_key_id(req: &HttpRequest) -> Result<KeyId, ApiError> {
    req.match_info()
        .get("id")
        .and_then(|raw| KeyId::parse(raw).ok())
        .ok_or_else(ApiError::key_not_found)
}

fn invalid_duration(param: &str, e: &domain::DurationError) -> ApiError {
    ApiError::new(ErrorCode::InvalidDuration, format!("`{param}`: {e}")).with_param(param)
}

fn parse_scopes(names: &[&str]) -> Result<Scopes, ApiError> {
    Scopes::parse(names.iter().copied())
        .map_err(|e| ApiError::invalid_parameter("scopes", e.to_string()))
}

fn parse_name(raw: &str) -> Result<KeyName, ApiError> {
    KeyName::parse(raw).map_err(|e| ApiError::invalid_parameter("name", e.to_string()))
}

/// `type`, in the body of a creation or the query of a listing.
pub(crate) fn parse_key_type(raw: &str) -> Result<KeyType, ApiError> {
    KeyType::parse(raw)
        .map_err(|_| ApiError::invalid_parameter("type", "`type` must be publishable or secret"))
}

/// `mode`, in the body of a creation or the query of a listing.
fn parse_mode(raw: &str) -> Result<Mode, ApiError> {
    Mode::parse(raw).map_err(|_| ApiError::invalid_parameter("mode", "`mode` must be live or test"))
}

/// The query string of `GET /v1/api-keys`, checked parameter by parameter.
fn parse_list_query(query: &str) -> Result<ListKeys, ApiError> {
    let mut request = ListKeys::default();
    let known = ["type", "revoked", "mode", "limit", "starting_after"];
    for (name, value) in query_pairs(query, &known)? {
        match name.as_str() {
            "type" => request.key_type = Some(parse_key_type(&value)?),
            "mode" => request.mode = Some(parse_mode(&value)?),
            "revoked" => {
                request.include_revoked = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ApiError::invalid_parameter(
                            "revoked",
                            "`revoked` must be true or false",
                        ))
                    }
                };
            }
            "limit" => request.limit = parse_limit(&value)?,
            // `query_pairs` lets only the known names through.
            _ => {
                request.starting_after =
                    Some(parse_cursor(&value, |v| KeyId::parse(v).ok(), "a key id")?);
            }
        }
    }
    Ok(request)
}

/// List the tenant's keys, newest first.
#[cfg_attr(
    feature = "openapi",
    utoipa::path(
        get,
        path = KEYS.path,
        tag = "api-keys",
        operation_id = "list_api_keys",
        params(
            crate::openapi::params::TenantHeader,
            ("type" = Option<crate::dto::KeyTypeDto>, Query, description = "Only keys of this type."),
            ("revoked" = Option<bool>, Query, description = "`true` includes revoked keys (default `false`)."),
            ("mode" = Option<crate::dto::ModeDto>, Query, description = "Only keys of this mode (a test key sees only test keys)."),
            ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, 1–100 (default 100)."),
            ("starting_after" = Option<crate::openapi::schemas::KeyId>, Query, description = "Cursor: a key id; the page starts after it."),
        ),
        responses(
            (status = 200, description = "A page of keys.", body = KeyList),
            (status = 400, description = "`duplicate_header` (`Authorization`, `X-Tenant-ID`: checked first), `invalid_tenant_id`, `invalid_parameter`, `unknown_parameter`.", body = ErrorBody),
            crate::openapi::responses::KeyManagementForbidden,
            crate::openapi::responses::AuthenticatedErrors,
        ),
        security(("bearer" = [])),
    )
)]
pub(crate) async fn list_keys(
    caller: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    caller
        .authorize(&req, Principal::require_key_management)
        .await?;
    let request = parse_list_query(req.query_string())?;
    let service = state.service().clone();
    let principal = caller.into_principal();
    let page = state
        .storage(move || service.list(&principal, request))
        .await??;
    Ok(HttpResponse::Ok().json(KeyList {
        data: page.keys.iter().map(KeyObject::from).collect(),
        has_more: page.has_more,
    }))
}

/// Create a key. Its value is in the response, and never again.
#[cfg_attr(
    feature = "openapi",
    utoipa::path(
        post,
        path = KEYS.path,
        tag = "api-keys",
        operation_id = "create_api_key",
        params(crate::openapi::params::TenantHeader, crate::openapi::params::IdempotencyKeyHeader),
        request_body(content = CreateKeyRequest, content_type = "application/json"),
        responses(
            (status = 201, description = "The new key, with its value.", body = CreatedKeyResponse,
                headers(("Location" = String, description = "`/v1/api-keys/{id}`"),
                    ("Idempotent-Replayed" = String, description = "`true` on a replay of an `Idempotency-Key` request; absent otherwise."))),
            (status = 400, description = "`duplicate_header` (`Authorization`, `X-Tenant-ID`: checked first), `invalid_tenant_id`, `invalid_json`, `unknown_field`, `missing_parameter`, `invalid_parameter`, `invalid_duration`.", body = ErrorBody),
            (status = 403, description = "`tenant_mismatch`, `secret_key_required`, `insufficient_scope`, `live_mode_required`.", body = ErrorBody),
            (status = 409, description = "`key_limit_reached`, `idempotency_key_in_use`.", body = ErrorBody),
            (status = 413, description = "`payload_too_large`.", body = ErrorBody),
            (status = 415, description = "`unsupported_media_type`: not `application/json`, or a `Content-Encoding` other than `identity`.", body = ErrorBody),
            (status = 422, description = "`idempotency_key_reused`.", body = ErrorBody),
            crate::openapi::responses::AuthenticatedErrors,
        ),
        security(("bearer" = [])),
    )
)]
pub(crate) async fn create_key(
    caller: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    caller
        .authorize(&req, Principal::require_key_management)
        .await?;
    let once = idempotency_key(&req)?;
    let body = read_object(
        &req,
        payload,
        &[
            "name",
            "type",
            "scopes",
            "expires_in",
            "mode",
            "rate_limit",
            "credits",
            "allowed_ips",
            "allowed_origins",
            "metadata",
        ],
    )
    .await?;
    // Each field's JSON type first (in this order), then each value (in the
    // order of the fields below), as the error for a body with several
    // faults has always been chosen.
    let name = body.req_str("name")?;
    let key_type = body.req_str("type")?;
    let scopes = body.opt_str_array("scopes")?;
    let expires_in = body.opt_str("expires_in")?;
    let mode = body.opt_str("mode")?;
    let limits = crate::limits_body::limits_update(&body)?;
    let request = CreateKey {
        name: parse_name(name)?,
        key_type: parse_key_type(key_type)?,
        mode: mode.map(parse_mode).transpose()?,
        scopes: match scopes {
            Some(names) => parse_scopes(&names)?,
            None => Scopes::full(),
        },
        expires_in: expires_in
            .map(ExpiresIn::parse)
            .transpose()
            .map_err(|e| invalid_duration("expires_in", &e))?,
        limits: domain::UsageLimits {
            rate_limit: limits.rate_limit.flatten(),
            credits: limits.credits.flatten(),
            credits_since: None,
        },
        restrictions: restriction_fields::restrictions(&body)?,
        metadata: restriction_fields::metadata(&body)?,
    };
    let service = state.service().clone();
    let principal = caller.into_principal();
    let request_id = request_id_of(&req);
    Ok(match once {
        Some(key) => idempotency::send(
            state
                .storage(move || {
                    service.create_idempotent(
                        &principal,
                        request_id,
                        request,
                        &key,
                        created_response,
                    )
                })
                .await??,
        ),
        None => {
            let created = state
                .storage(move || service.create(&principal, request_id, request))
                .await??;
            idempotency::send_once(created_response(created))
        }
    })
}

/// `201` with `Location` and the new key: rendered once, for the client and,
/// under an `Idempotency-Key`, for its replays. It carries a full key, so
/// no cache may keep it (`Cache-Control: no-store`, docs/api.md).
fn created_response(created: CreatedKey) -> ReplayableResponse {
    let location = format!("/v1/api-keys/{}", created.key.id);
    json_response(
        StatusCode::CREATED,
        vec![(LOCATION.as_str().to_owned(), location), no_store()],
        &CreatedKeyResponse::from(created),
    )
}

/// `200` with the successor, rendered once as [`created_response`] is.
fn rotated_response(rotated: RotatedKey) -> ReplayableResponse {
    json_response(
        StatusCode::OK,
        vec![no_store()],
        &RotatedKeyResponse::from(rotated),
    )
}

/// `Cache-Control: no-store`, for a response that carries a full key.
fn no_store() -> (String, String) {
    (CACHE_CONTROL.as_str().to_owned(), "no-store".to_owned())
}

/// One key, without its value.
#[cfg_attr(
    feature = "openapi",
    utoipa::path(
        get,
        path = KEY.path,
        tag = "api-keys",
        operation_id = "get_api_key",
        params(crate::openapi::params::TenantHeader, ("id" = crate::openapi::schemas::KeyId, Path, description = "The key id (`key_` + ULID); a malformed one is 404 `key_not_found`.")),
        responses(
            (status = 200, description = "The key.", body = KeyObject),
            (status = 400, description = "`duplicate_header` (`Authorization`, `X-Tenant-ID`: checked first), `invalid_tenant_id`.", body = ErrorBody),
            crate::openapi::responses::KeyManagementForbidden,
            (status = 404, description = "`key_not_found` (unknown, malformed, another tenant's, or hidden by mode).", body = ErrorBody),
            crate::openapi::responses::AuthenticatedErrors,
        ),
        security(("bearer" = [])),
    )
)]
pub(crate) async fn get_key(
    caller: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    caller
        .authorize(&req, Principal::require_key_management)
        .await?;
    let id = path_key_id(&req)?;
    let service = state.service().clone();
    let principal = caller.into_principal();
    let key = state
        .storage(move || service.get(&principal, &id))
        .await??;
    Ok(HttpResponse::Ok().json(KeyObject::from(&key)))
}

/// Rename or re-scope a key.
#[cfg_attr(
    feature = "openapi",
    utoipa::path(
        patch,
        path = KEY.path,
        tag = "api-keys",
        operation_id = "update_api_key",
        params(crate::openapi::params::TenantHeader, ("id" = crate::openapi::schemas::KeyId, Path, description = "The key id (`key_` + ULID); a malformed one is 404 `key_not_found`.")),
        request_body(content = UpdateKeyRequest, content_type = "application/json"),
        responses(
            (status = 200, description = "The updated key.", body = KeyObject),
            (status = 400, description = "`duplicate_header` (`Authorization`, `X-Tenant-ID`: checked first), `invalid_tenant_id`, `invalid_json`, `unknown_field`, `missing_parameter`, `invalid_parameter`.", body = ErrorBody),
            crate::openapi::responses::KeyManagementForbidden,
            (status = 404, description = "`key_not_found`.", body = ErrorBody),
            (status = 409, description = "`key_revoked`, `last_full_access_key`.", body = ErrorBody),
            (status = 413, description = "`payload_too_large`.", body = ErrorBody),
            (status = 415, description = "`unsupported_media_type`: not `application/json`, or a `Content-Encoding` other than `identity`.", body = ErrorBody),
            crate::openapi::responses::AuthenticatedErrors,
        ),
        security(("bearer" = [])),
    )
)]
pub(crate) async fn update_key(
    caller: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    caller
        .authorize(&req, Principal::require_key_management)
        .await?;
    let id = path_key_id(&req)?;
    let body = read_object(
        &req,
        payload,
        &[
            "name",
            "scopes",
            "rate_limit",
            "credits",
            "allowed_ips",
            "allowed_origins",
            "metadata",
        ],
    )
    .await?;
    let name = body.opt_str("name")?;
    let scopes = body.opt_str_array("scopes")?;
    let limits = crate::limits_body::limits_update(&body)?;
    let allowed_ips = restriction_fields::allowed_ips(&body)?;
    let allowed_origins = restriction_fields::allowed_origins(&body)?;
    let metadata = restriction_fields::metadata_patch(&body)?;
    if name.is_none()
        && scopes.is_none()
        && limits == domain::LimitsUpdate::default()
        && allowed_ips.is_none()
        && allowed_origins.is_none()
        && metadata.is_none()
    {
        return Err(ApiError::new(
            ErrorCode::MissingParameter,
            "at least one of `name`, `scopes`, `rate_limit`, `credits`, `allowed_ips`, \
             `allowed_origins` or `metadata` is required",
        ));
    }
    let request = UpdateKey {
        name: name.map(parse_name).transpose()?,
        scopes: scopes.as_deref().map(parse_scopes).transpose()?,
        allowed_ips,
        allowed_origins,
        metadata,
        limits,
    };
    let service = state.service().clone();
    let principal = caller.into_principal();
    let request_id = request_id_of(&req);
    let key = state
        .storage(move || service.update_with(&principal, request_id, &id, &request))
        .await??;
    Ok(HttpResponse::Ok().json(KeyObject::from(&key)))
}

/// Revoke a key now (also one in its rotation grace period).
#[cfg_attr(
    feature = "openapi",
    utoipa::path(
        delete,
        path = KEY.path,
        tag = "api-keys",
        operation_id = "revoke_api_key",
        params(crate::openapi::params::TenantHeader, ("id" = crate::openapi::schemas::KeyId, Path, description = "The key id (`key_` + ULID); a malformed one is 404 `key_not_found`.")),
        responses(
            (status = 204, description = "Revoked (or already revoked); no body."),
            (status = 400, description = "`duplicate_header` (`Authorization`, `X-Tenant-ID`: checked first), `invalid_tenant_id`.", body = ErrorBody),
            crate::openapi::responses::KeyManagementForbidden,
            (status = 404, description = "`key_not_found`.", body = ErrorBody),
            (status = 409, description = "`last_full_access_key`.", body = ErrorBody),
            crate::openapi::responses::AuthenticatedErrors,
        ),
        security(("bearer" = [])),
    )
)]
pub(crate) async fn revoke_key(
    caller: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    caller
        .authorize(&req, Principal::require_key_management)
        .await?;
    let id = path_key_id(&req)?;
    let service = state.service().clone();
    let principal = caller.into_principal();
    let request_id = request_id_of(&req);
    state
        .storage(move || service.revoke(&principal, request_id, &id))
        .await??;
    Ok(HttpResponse::NoContent().finish())
}

/// Rotate a key: a new value now, the old one revoked after a grace period.
#[cfg_attr(
    feature = "openapi",
    utoipa::path(
        post,
        path = ROTATE.path,
        tag = "api-keys",
        operation_id = "rotate_api_key",
        params(crate::openapi::params::TenantHeader, crate::openapi::params::IdempotencyKeyHeader),
        request_body(content = RotateKeyRequest, content_type = "application/json"),
        responses(
            (status = 200, description = "The successor, with its value.", body = RotatedKeyResponse,
                headers(("Idempotent-Replayed" = String, description = "`true` on a replay of an `Idempotency-Key` request; absent otherwise."))),
            (status = 400, description = "`duplicate_header` (`Authorization`, `X-Tenant-ID`: checked first), `invalid_tenant_id`, `invalid_json`, `unknown_field`, `missing_parameter`, `invalid_parameter`, `invalid_duration`.", body = ErrorBody),
            crate::openapi::responses::KeyManagementForbidden,
            (status = 404, description = "`key_not_found` (also for a malformed `id`).", body = ErrorBody),
            (status = 409, description = "`key_revoked`, `key_already_rotated`, `key_expired`, `key_limit_reached` (a grace period at the key limit), `idempotency_key_in_use`.", body = ErrorBody),
            (status = 413, description = "`payload_too_large`.", body = ErrorBody),
            (status = 415, description = "`unsupported_media_type`: not `application/json`, or a `Content-Encoding` other than `identity`.", body = ErrorBody),
            (status = 422, description = "`idempotency_key_reused`.", body = ErrorBody),
            crate::openapi::responses::AuthenticatedErrors,
        ),
        security(("bearer" = [])),
    )
)]
pub(crate) async fn rotate_key(
    caller: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    caller
        .authorize(&req, Principal::require_key_management)
        .await?;
    let once = idempotency_key(&req)?;
    let body = read_object(&req, payload, &["id", "grace_period"]).await?;
    let id = body.req_str("id")?;
    let grace_period = body.opt_str("grace_period")?;
    let grace = match grace_period {
        Some(raw) => GracePeriod::parse(raw).map_err(|e| invalid_duration("grace_period", &e))?,
        None => GracePeriod::default(),
    };
    // A malformed id is as unknown as a missing key.
    let id = KeyId::parse(id).map_err(|_| ApiError::key_not_found())?;
    let service = state.service().clone();
    let principal = caller.into_principal();
    let request_id = request_id_of(&req);
    Ok(match once {
        Some(key) => idempotency::send(
            state
                .storage(move || {
                    service.rotate_idempotent(
                        &principal,
                        request_id,
                        &id,
                        grace,
                        &key,
                        rotated_response,
                    )
                })
                .await??,
        ),
        None => {
            let rotated = state
                .storage(move || service.rotate(&principal, request_id, &id, grace))
                .await??;
            idempotency::send_once(rotated_response(rotated))
        }
    })
}

/// Liveness: the process is up.
#[cfg_attr(
    feature = "openapi",
    utoipa::path(
        get,
        path = HEALTHZ.path,
        tag = "health",
        operation_id = "healthz",
        responses(
            (status = 200, description = "`{\"status\":\"ok\"}`.", body = StatusBody),
        ),
    )
)]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(StatusBody { status: "ok" })
}

/// The longest `/readyz` waits for its check: a probe with a 1 s timeout
/// gets 503, not a timeout, from a database that does not answer.
const READY_WAIT: std::time::Duration = std::time::Duration::from_millis(900);

/// Readiness: the database is reachable.
#[cfg_attr(
    feature = "openapi",
    utoipa::path(
        get,
        path = READYZ.path,
        tag = "health",
        operation_id = "readyz",
        responses(
            (status = 200, description = "`{\"status\":\"ready\"}`.", body = StatusBody),
            crate::openapi::responses::Unavailable,
        ),
    )
)]
pub(crate) async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let readiness = state.readiness.clone();
    blocking_within(READY_WAIT, move || readiness.check())
        .await?
        .map_err(|e| ApiError::unavailable().with_source(e))?;
    Ok(HttpResponse::Ok().json(StatusBody { status: "ready" }))
}

/// Any unknown route: 404 `not_found`.
pub(crate) async fn route_not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::route_not_found())
}
