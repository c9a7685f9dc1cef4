//! `/v1/webhook-endpoints`: webhook endpoints, their secrets and their
//! deliveries (docs/api.md, "Webhooks"; docs/webhooks.md).
//!
//! Each handler checks the caller first (a secret key with `*`, or
//! `webhooks:read` for reads and `webhooks:write` for changes), so that a
//! forbidden caller learns nothing from validation; endpoints belong to the
//! caller's tenant and mode.

use std::sync::Arc;

use actix_web::http::header::{CACHE_CONTROL, LOCATION};
use actix_web::{web, HttpRequest, HttpResponse};
use domain::{
    CreateEndpoint, CreatedEndpoint, Delivery, DeliveryId, EndpointId, PageLimit, Scope,
    UpdateEndpoint, WebhookEndpoint, Webhooks,
};
use serde::{Deserialize, Serialize};
#[cfg(feature = "openapi")]
use utoipa::ToSchema;

use crate::auth::Authenticated;
use crate::body::read_object;
use crate::dto::timestamp;
#[cfg(feature = "openapi")]
use crate::error::ErrorBody;
use crate::error::{ApiError, ErrorCode};
use crate::query::{parse_cursor, parse_limit, query_pairs};
use crate::route::routes;
use crate::state::AppState;

routes! {
    /// The tenant's endpoints (in the caller's mode): list, create.
    ENDPOINTS = "/v1/webhook-endpoints" { GET list_endpoints, POST create_endpoint },
    /// One endpoint.
    ENDPOINT = "/v1/webhook-endpoints/{id}" { GET get_endpoint, PATCH update_endpoint, DELETE delete_endpoint },
    /// A new secret.
    ROTATE_SECRET = "/v1/webhook-endpoints/{id}/rotate-secret" { POST rotate_endpoint_secret },
    /// The endpoint's deliveries.
    DELIVERIES = "/v1/webhook-endpoints/{id}/deliveries" { GET list_deliveries },
    /// Schedule a delivery again.
    RETRY = "/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/retry" { POST retry_delivery },
}

/// A webhook endpoint.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EndpointObject {
    /// `whe_` + ULID.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^whe_[0-7][0-9A-HJKMNP-TV-Z]{25}$")
    )]
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// `["*"]` or event types.
    pub events: Vec<&'static str>,
    /// Free text; null when none.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub description: Option<String>,
    /// Whether events are sent (an endpoint failing for 5 days is disabled).
    pub enabled: bool,
    /// When it was created.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
}

impl From<&WebhookEndpoint> for EndpointObject {
    fn from(e: &WebhookEndpoint) -> Self {
        EndpointObject {
            id: e.id.to_string(),
            url: e.url.as_str().to_owned(),
            events: e.events.names(),
            description: e.description.clone(),
            enabled: e.enabled,
            created_at: timestamp(e.created_at),
        }
    }
}

/// An endpoint with its signing secret, shown this once.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EndpointWithSecret {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: EndpointObject,
    /// `whsec_` + base64 of 32 random bytes. Shown once.
    #[cfg_attr(feature = "openapi", schema(pattern = "^whsec_[A-Za-z0-9+/]{43}=$"))]
    pub secret: String,
}

impl From<&CreatedEndpoint> for EndpointWithSecret {
    fn from(c: &CreatedEndpoint) -> Self {
        EndpointWithSecret {
            endpoint: EndpointObject::from(&c.endpoint),
            secret: c.secret.reveal(),
        }
    }
}

/// A page of endpoints, newest first.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EndpointList {
    /// The endpoints.
    pub data: Vec<EndpointObject>,
    /// Whether more follow (`starting_after` the last one).
    pub has_more: bool,
}

/// One event's delivery to an endpoint.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DeliveryObject {
    /// `whd_` + ULID.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^whd_[0-7][0-9A-HJKMNP-TV-Z]{25}$")
    )]
    pub id: String,
    /// The event (`webhook-id` of each attempt).
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::schemas::EventId))]
    pub event_id: String,
    /// The event's type.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::audit::EventTypeDto))]
    pub event_type: &'static str,
    /// `pending`, `delivered` or `failed`.
    #[cfg_attr(feature = "openapi", schema(value_type = DeliveryStatusDto))]
    pub status: &'static str,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's HTTP status; null without a response.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub last_status: Option<u16>,
    /// The last attempt's error; null after a success or before any attempt.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub last_error: Option<String>,
    /// When the next attempt is due; null unless pending.
    #[cfg_attr(feature = "openapi", schema(required = true, format = DateTime))]
    pub next_attempt_at: Option<String>,
    /// When the event was committed.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
}

/// A delivery's state.
#[derive(Debug, Clone, Copy, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = DeliveryStatus))]
#[serde(rename_all = "snake_case")]
#[allow(dead_code, reason = "the document's schema only")]
pub enum DeliveryStatusDto {
    /// Not delivered yet.
    Pending,
    /// A 2xx answered.
    Delivered,
    /// Every attempt failed.
    Failed,
}

impl From<&Delivery> for DeliveryObject {
    fn from(d: &Delivery) -> Self {
        DeliveryObject {
            id: d.id.to_string(),
            event_id: d.event_id.to_string(),
            event_type: d.event_type.as_str(),
            status: d.status.as_str(),
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            next_attempt_at: d.next_attempt_at.map(timestamp),
            created_at: timestamp(d.created_at),
        }
    }
}

/// A page of deliveries, newest first.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DeliveryList {
    /// The deliveries.
    pub data: Vec<DeliveryObject>,
    /// Whether more follow (`starting_after` the last one).
    pub has_more: bool,
}

/// `POST /v1/webhook-endpoints` body (the document's schema).
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "the document's schema only")]
pub struct CreateEndpointRequest {
    /// `https://...`, or `http://` to a host in `APIKEYS_WEBHOOK_ALLOW_HOSTS`.
    pub url: String,
    /// `["*"]` or one or more event types.
    pub events: Vec<String>,
    /// Up to 500 characters.
    pub description: Option<String>,
}

/// `PATCH /v1/webhook-endpoints/{id}` body (the document's schema).
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "the document's schema only")]
pub struct UpdateEndpointRequest {
    /// A new URL.
    pub url: Option<String>,
    /// New event types.
    pub events: Option<Vec<String>>,
    /// A new description; null removes it.
    pub description: Option<String>,
    /// Enable (also after 5 days of failures) or disable.
    pub enabled: Option<bool>,
}

fn service(state: &AppState) -> Result<Arc<Webhooks>, ApiError> {
    state
        .webhooks
        .clone()
        .ok_or_else(|| ApiError::unavailable().with_source("webhooks are not configured"))
}

fn endpoint_id(req: &HttpRequest) -> Result<EndpointId, ApiError> {
    req.match_info()
        .get("id")
        .and_then(|raw| EndpointId::parse(raw).ok())
        .ok_or_else(ApiError::webhook_endpoint_not_found)
}

/// `limit` and `starting_after` (an id parsed by `parse`).
fn page_query<T>(
    req: &HttpRequest,
    parse: fn(&str) -> Option<T>,
    what: &'static str,
) -> Result<(Option<T>, PageLimit), ApiError> {
    let mut limit = PageLimit::default();
    let mut after = None;
    for (name, value) in query_pairs(req.query_string(), &["limit", "starting_after"])? {
        if name == "limit" {
            limit = parse_limit(&value)?;
        } else {
            after = Some(parse_cursor(&value, parse, what)?);
        }
    }
    Ok((after, limit))
}

/// A secret key with `scope` (or `*`), then a use of a limited key's
/// budget, as on every route (docs/api.md, "Limiting a key's use").
async fn authorize(
    caller: &Authenticated,
    req: &HttpRequest,
    scope: Scope,
) -> Result<(), ApiError> {
    caller
        .authorize(req, |p| {
            p.require_secret()?;
            p.require_scope(scope)
        })
        .await
}

fn shown_once(status: actix_web::http::StatusCode, created: &CreatedEndpoint) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    response.insert_header((CACHE_CONTROL, "no-store"));
    if status == actix_web::http::StatusCode::CREATED {
        response.insert_header((
            LOCATION,
            format!("/v1/webhook-endpoints/{}", created.endpoint.id),
        ));
    }
    response.json(EndpointWithSecret::from(created))
}

/// List the endpoints of the caller's tenant and mode, newest first.
#[cfg_attr(
    feature = "openapi",
    utoipa::path(
        get,
        path = ENDPOINTS.path,
        tag = "webhooks",
        operation_id = "list_webhook_endpoints",
        params(
            crate::openapi::params::TenantHeader,
            ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, 1–100 (default 100)."),
            ("starting_after" = Option<String>, Query, description = "Cursor: an endpoint id; the page starts after it."),
        ),
        responses(
            (status = 200, description = "A page of endpoints.", body = EndpointList),
            (status = 400, description = "`invalid_tenant_id`, `invalid_parameter`, `unknown_parameter`.", body = ErrorBody),
            (status = 403, description = "`tenant_mismatch`, `secret_key_required`, `insufficient_scope` (needs `*` or `webhooks:read`).", body = ErrorBody),
            crate::openapi::responses::AuthenticatedErrors,
        ),
        security(("bearer" = [])),
    )
)]
pub(crate) async fn list_endpoints(
    caller: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authorize(&caller, &req, Scope::WebhooksRead).await?;
    let (after, limit) = page_query(&req, |s| EndpointId::parse(s).ok(), "an endpoint id")?;
    let webhooks = service(&state)?;
    let principal = caller.into_principal();
    let page = state
        .storage(move || webhooks.list(&principal, after, limit))
        .await??;
    Ok(HttpResponse::Ok().json(EndpointList {
        data: page.endpoints.iter().map(EndpointObject::from).collect(),
        has_more: page.has_more,
    }))
}

/// Create an endpoint; its secret is shown this once.
#[cfg_attr(
    feature = "openapi",
    utoipa::path(
        post,
        path = ENDPOINTS.path,
        tag = "webhooks",
        operation_id = "create_webhook_endpoint",
        params(crate::openapi::params::TenantHeader),
        request_body(content = CreateEndpointRequest, content_type = "application/json"),
        responses(
            (status = 201, description = "The endpoint, with its secret.", body = EndpointWithSecret,
                headers(("Location" = String, description = "`/v1/webhook-endpoints/{id}`"))),
            (status = 400, description = "`invalid_tenant_id`, `invalid_json`, `unknown_field`, `missing_parameter`, `invalid_parameter` (`url`, `events`, `description`).", body = ErrorBody),
            (status = 403, description = "`tenant_mismatch`, `secret_key_required`, `insufficient_scope` (needs `*` or `webhooks:write`).", body = ErrorBody),
            (status = 409, description = "`webhook_endpoint_limit_reached`.", body = ErrorBody),
            (status = 413, description = "`payload_too_large`.", body = ErrorBody),
            (status = 415, description = "`unsupported_media_type`.", body = ErrorBody),
            crate::openapi::responses::AuthenticatedErrors,
        ),
        security(("bearer" = [])),
    )
)]
pub(crate) async fn create_endpoint(
    caller: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    authorize(&caller, &req, Scope::WebhooksWrite).await?;
    let body = read_object(&req, payload, &["url", "events", "description"]).await?;
    let url = body.req_str("url")?.to_owned();
    let events = body
        .opt_str_array("events")?
        .ok_or_else(|| ApiError::missing_parameter("events"))?
        .into_iter()
        .map(str::to_owned)
        .collect();
    let description = body.opt_str("description")?.map(str::to_owned);
    let webhooks = service(&state)?;
    let principal = caller.into_principal();
    let request = CreateEndpoint {
        url,
        events,
        description,
    };
    let created = state
        .storage(move || webhooks.create(&principal, request))
        .await??;
    Ok(shown_once(actix_web::http::StatusCode::CREATED, &created))
}

/// One endpoint.
#[cfg_attr(
    feature = "openapi",
    utoipa::path(
        get,
        path = ENDPOINT.path,
        tag = "webhooks",
        operation_id = "get_webhook_endpoint",
        params(crate::openapi::params::TenantHeader, ("id" = String, Path, description = "The endpoint id (`whe_` + ULID).")),
        responses(
            (status = 200, description = "The endpoint.", body = EndpointObject),
            (status = 400, description = "`invalid_tenant_id`.", body = ErrorBody),
            (status = 403, description = "`tenant_mismatch`, `secret_key_required`, `insufficient_scope` (needs `*` or `webhooks:read`).", body = ErrorBody),
            (status = 404, description = "`webhook_endpoint_not_found`.", body = ErrorBody),
            crate::openapi::responses::AuthenticatedErrors,
        ),
        security(("bearer" = [])),
    )
)]
pub(crate) async fn get_endpoint(
    caller: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authorize(&caller, &req, Scope::WebhooksRead).await?;
    let id = endpoint_id(&req)?;
    let webhooks = service(&state)?;
    let principal = caller.into_principal();
    let endpoint = state
        .storage(move || webhooks.get(&principal, &id))
        .await??;
    Ok(HttpResponse::Ok().json(EndpointObject::from(&endpoint)))
}

/// Change an endpoint's URL, events, description or `enabled`.
#[cfg_attr(
    feature = "openapi",
    utoipa::path(
        patch,
        path = ENDPOINT.path,
        tag = "webhooks",
        operation_id = "update_webhook_endpoint",
        params(crate::openapi::params::TenantHeader, ("id" = String, Path, description = "The endpoint id (`whe_` + ULID).")),
        request_body(content = UpdateEndpointRequest, content_type = "application/json"),
        responses(
            (status = 200, description = "The endpoint.", body = EndpointObject),
            (status = 400, description = "`invalid_tenant_id`, `invalid_json`, `unknown_field`, `missing_parameter` (no field), `invalid_parameter`.", body = ErrorBody),
            (status = 403, description = "`tenant_mismatch`, `secret_key_required`, `insufficient_scope` (needs `*` or `webhooks:write`).", body = ErrorBody),
            (status = 404, description = "`webhook_endpoint_not_found`.", body = ErrorBody),
            (status = 413, description = "`payload_too_large`.", body = ErrorBody),
            (status = 415, description = "`unsupported_media_type`.", body = ErrorBody),
            crate::openapi::responses::AuthenticatedErrors,
        ),
        security(("bearer" = [])),
    )
)]
pub(crate) async fn update_endpoint(
    caller: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    authorize(&caller, &req, Scope::WebhooksWrite).await?;
    let id = endpoint_id(&req)?;
    let body = read_object(&req, payload, &["url", "events", "description", "enabled"]).await?;
    let request = UpdateEndpoint {
        url: body.opt_str("url")?.map(str::to_owned),
        events: body
            .opt_str_array("events")?
            .map(|e| e.into_iter().map(str::to_owned).collect()),
        description: if body.is_null("description") {
            Some(None)
        } else {
            body.opt_str("description")?.map(|d| Some(d.to_owned()))
        },
        enabled: body.opt_bool("enabled")?,
    };
    if request == UpdateEndpoint::default() {
        return Err(ApiError::new(
            ErrorCode::MissingParameter,
            "at least one of `url`, `events`, `description` or `enabled` is required",
        ));
    }
    let webhooks = service(&state)?;
    let principal = caller.into_principal();
    let endpoint = state
        .storage(move || webhooks.update(&principal, &id, request))
        .await??;
    Ok(HttpResponse::Ok().json(EndpointObject::from(&endpoint)))
}

/// Delete an endpoint: none of its deliveries is attempted again.
#[cfg_attr(
    feature = "openapi",
    utoipa::path(
        delete,
        path = ENDPOINT.path,
        tag = "webhooks",
        operation_id = "delete_webhook_endpoint",
        params(crate::openapi::params::TenantHeader, ("id" = String, Path, description = "The endpoint id (`whe_` + ULID).")),
        responses(
            (status = 204, description = "Deleted; no body."),
            (status = 400, description = "`invalid_tenant_id`.", body = ErrorBody),
            (status = 403, description = "`tenant_mismatch`, `secret_key_required`, `insufficient_scope` (needs `*` or `webhooks:write`).", body = ErrorBody),
            (status = 404, description = "`webhook_endpoint_not_found`.", body = ErrorBody),
            crate::openapi::responses::AuthenticatedErrors,
        ),
        security(("bearer" = [])),
    )
)]
pub(crate) async fn delete_endpoint(
    caller: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authorize(&caller, &req, Scope::WebhooksWrite).await?;
    let id = endpoint_id(&req)?;
    let webhooks = service(&state)?;
    let principal = caller.into_principal();
    state
        .storage(move || webhooks.delete(&principal, &id))
        .await??;
    Ok(HttpResponse::NoContent().finish())
}

/// A new signing secret, shown this once; the old one also signs for 24
/// hours.
#[cfg_attr(
    feature = "openapi",
    utoipa::path(
        post,
        path = ROTATE_SECRET.path,
        tag = "webhooks",
        operation_id = "rotate_webhook_secret",
        params(crate::openapi::params::TenantHeader, ("id" = String, Path, description = "The endpoint id (`whe_` + ULID).")),
        responses(
            (status = 200, description = "The endpoint, with its new secret.", body = EndpointWithSecret),
            (status = 400, description = "`invalid_tenant_id`.", body = ErrorBody),
            (status = 403, description = "`tenant_mismatch`, `secret_key_required`, `insufficient_scope` (needs `*` or `webhooks:write`).", body = ErrorBody),
            (status = 404, description = "`webhook_endpoint_not_found`.", body = ErrorBody),
            crate::openapi::responses::AuthenticatedErrors,
        ),
        security(("bearer" = [])),
    )
)]
pub(crate) async fn rotate_endpoint_secret(
    caller: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authorize(&caller, &req, Scope::WebhooksWrite).await?;
    let id = endpoint_id(&req)?;
    let webhooks = service(&state)?;
    let principal = caller.into_principal();
    let rotated = state
        .storage(move || webhooks.rotate_secret(&principal, &id))
        .await??;
    Ok(shown_once(actix_web::http::StatusCode::OK, &rotated))
}

/// The endpoint's deliveries, newest first.
#[cfg_attr(
    feature = "openapi",
    utoipa::path(
        get,
        path = DELIVERIES.path,
        tag = "webhooks",
        operation_id = "list_webhook_deliveries",
        params(
            crate::openapi::params::TenantHeader,
            ("id" = String, Path, description = "The endpoint id (`whe_` + ULID)."),
            ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, 1–100 (default 100)."),
            ("starting_after" = Option<String>, Query, description = "Cursor: a delivery id; the page starts after it."),
        ),
        responses(
            (status = 200, description = "A page of deliveries.", body = DeliveryList),
            (status = 400, description = "`invalid_tenant_id`, `invalid_parameter`, `unknown_parameter`.", body = ErrorBody),
            (status = 403, description = "`tenant_mismatch`, `secret_key_required`, `insufficient_scope` (needs `*` or `webhooks:read`).", body = ErrorBody),
            (status = 404, description = "`webhook_endpoint_not_found`.", body = ErrorBody),
            crate::openapi::responses::AuthenticatedErrors,
        ),
        security(("bearer" = [])),
    )
)]
pub(crate) async fn list_deliveries(
    caller: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authorize(&caller, &req, Scope::WebhooksRead).await?;
    let id = endpoint_id(&req)?;
    let (after, limit) = page_query(&req, |s| DeliveryId::parse(s).ok(), "a delivery id")?;
    let webhooks = service(&state)?;
    let principal = caller.into_principal();
    let page = state
        .storage(move || webhooks.list_deliveries(&principal, &id, after, limit))
        .await??;
    Ok(HttpResponse::Ok().json(DeliveryList {
        data: page.deliveries.iter().map(DeliveryObject::from).collect(),
        has_more: page.has_more,
    }))
}

/// Schedule a delivery again, now (also a delivered or failed one).
#[cfg_attr(
    feature = "openapi",
    utoipa::path(
        post,
        path = RETRY.path,
        tag = "webhooks",
        operation_id = "retry_webhook_delivery",
        params(
            crate::openapi::params::TenantHeader,
            ("id" = String, Path, description = "The endpoint id (`whe_` + ULID)."),
            ("delivery_id" = String, Path, description = "The delivery id (`whd_` + ULID)."),
        ),
        responses(
            (status = 200, description = "The delivery, pending.", body = DeliveryObject),
            (status = 400, description = "`invalid_tenant_id`.", body = ErrorBody),
            (status = 403, description = "`tenant_mismatch`, `secret_key_required`, `insufficient_scope` (needs `*` or `webhooks:write`).", body = ErrorBody),
            (status = 404, description = "`webhook_endpoint_not_found`, `webhook_delivery_not_found`.", body = ErrorBody),
            crate::openapi::responses::AuthenticatedErrors,
        ),
        security(("bearer" = [])),
    )
)]
pub(crate) async fn retry_delivery(
    caller: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authorize(&caller, &req, Scope::WebhooksWrite).await?;
    let id = endpoint_id(&req)?;
    let delivery = req
        .match_info()
        .get("delivery_id")
        .and_then(|raw| DeliveryId::parse(raw).ok());
    let webhooks = service(&state)?;
    let principal = caller.into_principal();
    let delivery = delivery.ok_or_else(ApiError::webhook_delivery_not_found)?;
    let retried = state
        .storage(move || webhooks.retry_delivery(&principal, &id, &delivery))
        .await??;
    Ok(HttpResponse::Ok().json(DeliveryObject::from(&retried)))
}
