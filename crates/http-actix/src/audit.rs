//! `GET /v1/audit-events`: the tenant's key events, newest first
//! (docs/api.md, "GET /v1/audit-events").

use actix_web::{web, HttpRequest, HttpResponse};
use domain::{Actor, EventData, EventId, EventType, KeyEvent, KeyId, ListEvents};
use serde::Serialize;
use serde_json::value::Serializer as ValueSerializer;
use serde_json::{json, Map, Value};
#[cfg(feature = "openapi")]
use utoipa::ToSchema;

use crate::auth::Authenticated;
use crate::dto::{
    allowed_ips_out, allowed_origins_out, metadata_out, timestamp, CreditsObject, RateLimitObject,
};
use crate::error::ApiError;
use crate::query::{parse_cursor, parse_limit, query_pairs};
use crate::route::routes;
use crate::state::AppState;

routes! {
    /// The audit log.
    EVENTS = "/v1/audit-events" { GET list_events },
}

/// An event's type (docs/api.md, "Key events and the audit log").
#[derive(Debug, Clone, Copy, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = EventType))]
#[allow(
    dead_code,
    reason = "the document's schema only; the domain names the types"
)]
pub enum EventTypeDto {
    /// A key was created (also a rotation's successor).
    #[serde(rename = "api_key.created")]
    ApiKeyCreated,
    /// A key's name or scopes changed.
    #[serde(rename = "api_key.updated")]
    ApiKeyUpdated,
    /// A key was revoked.
    #[serde(rename = "api_key.revoked")]
    ApiKeyRevoked,
    /// A key was rotated (on the old key).
    #[serde(rename = "api_key.rotated")]
    ApiKeyRotated,
    /// A tenant was created.
    #[serde(rename = "tenant.created")]
    TenantCreated,
    /// A key expires in 7 days (written by the service, actor `system`).
    #[serde(rename = "api_key.expiring")]
    ApiKeyExpiring,
    /// A key expired (written by the service, actor `system`).
    #[serde(rename = "api_key.expired")]
    ApiKeyExpired,
}

/// Who made a change.
#[derive(Debug, Clone, Copy, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
#[allow(
    dead_code,
    reason = "the document's schema only; the domain names the actors"
)]
pub enum ActorType {
    /// An API key (`key_id` says which).
    ApiKey,
    /// The operator's command line.
    Cli,
    /// A leaked-key report.
    LeakReport,
    /// The service itself (expiry events).
    System,
}

/// Who made a change: `{"type": "api_key", "key_id": "key_..."}`,
/// `{"type": "cli"}`, `{"type": "leak_report"}` or `{"type": "system"}`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ActorObject {
    /// `api_key`, `cli`, `leak_report` or `system`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(value_type = ActorType))]
    pub actor_type: &'static str,
    /// The calling key, for `api_key` only (absent otherwise, never `null`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false, value_type = Option<crate::openapi::schemas::KeyId>))]
    pub key_id: Option<String>,
}

/// One event of the audit log.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EventObject {
    /// `evt_` + ULID.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::schemas::EventId))]
    pub id: String,
    /// `api_key.created`, `api_key.updated`, `api_key.revoked`,
    /// `api_key.rotated`, `tenant.created`, `api_key.expiring` or
    /// `api_key.expired`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(value_type = EventTypeDto))]
    pub event_type: &'static str,
    /// When the change happened.
    #[cfg_attr(feature = "openapi", schema(format = DateTime, example = "2024-01-10T09:00:00Z"))]
    pub created_at: String,
    /// The tenant.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::schemas::TenantId))]
    pub tenant_id: String,
    /// The changed key; null for `tenant.created`.
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = Option<crate::openapi::schemas::KeyId>))]
    pub key_id: Option<String>,
    /// The changed key's mode; null for `tenant.created`.
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = Option<crate::dto::ModeDto>))]
    pub mode: Option<&'static str>,
    /// Who made the change.
    pub actor: ActorObject,
    /// The `X-Request-ID` of the request that made it; null outside HTTP.
    #[cfg_attr(
        feature = "openapi",
        schema(required = true, pattern = "^[A-Za-z0-9._-]{1,128}$")
    )]
    pub request_id: Option<String>,
    /// What changed: `changes` (updated), `replaced_by`, `grace_period`,
    /// `revokes_at` (rotated), `rotated_from` (created by a rotation), `name`
    /// (tenant created), `expires_at` (expiring, expired), `source` and `url`
    /// (revoked on a secret scanner's report).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: Value,
}

impl From<&KeyEvent> for EventObject {
    fn from(event: &KeyEvent) -> Self {
        EventObject {
            id: event.id.to_string(),
            event_type: event.event_type().as_str(),
            created_at: timestamp(event.created_at),
            tenant_id: event.tenant_id.to_string(),
            key_id: event.key_id.map(|id| id.to_string()),
            mode: event.mode.map(domain::Mode::as_str),
            actor: ActorObject {
                actor_type: event.actor.type_str(),
                key_id: match event.actor {
                    Actor::ApiKey(id) => Some(id.to_string()),
                    Actor::Cli | Actor::LeakReport | Actor::System => None,
                },
            },
            request_id: event.request_id.clone(),
            data: data_json(&event.data),
        }
    }
}

fn scope_list(scopes: &domain::Scopes) -> Value {
    Value::from(scopes.names().collect::<Vec<_>>())
}

/// A field rendered by the key object's own serializer (`out`).
fn as_in_key<T>(
    value: &T,
    out: fn(&T, ValueSerializer) -> Result<Value, serde_json::Error>,
) -> Value {
    // Strings, arrays of strings and maps of strings: nothing here fails.
    out(value, ValueSerializer).unwrap_or(Value::Null)
}

/// `data` as the API shows it.
fn data_json(data: &EventData) -> Value {
    match data {
        EventData::KeyCreated {
            rotated_from: Some(id),
        } => json!({ "rotated_from": id.to_string() }),
        EventData::KeyCreated { rotated_from: None } | EventData::KeyRevoked => json!({}),
        EventData::KeyRevokedFound { source, url } => {
            json!({ "source": source.as_str(), "url": url })
        }
        EventData::KeyUpdated { changes } => {
            // Each field as the key object shows it (docs/api.md, "Key
            // events and the audit log"): changed fields only.
            let mut fields = Map::new();
            let mut put = |field: &str, old: Value, new: Value| {
                fields.insert(field.to_owned(), json!({ "old": old, "new": new }));
            };
            if let Some(c) = &changes.name {
                put("name", json!(c.old.as_str()), json!(c.new.as_str()));
            }
            if let Some(c) = &changes.scopes {
                put("scopes", scope_list(&c.old), scope_list(&c.new));
            }
            if let Some(c) = &changes.rate_limit {
                let (old, new) = (RateLimitObject::of(c.old), RateLimitObject::of(c.new));
                put("rate_limit", json!(old), json!(new));
            }
            if let Some(c) = &changes.credits {
                let (old, new) = (CreditsObject::of(c.old), CreditsObject::of(c.new));
                put("credits", json!(old), json!(new));
            }
            if let Some(c) = &changes.allowed_ips {
                put(
                    "allowed_ips",
                    as_in_key(&c.old, allowed_ips_out),
                    as_in_key(&c.new, allowed_ips_out),
                );
            }
            if let Some(c) = &changes.allowed_origins {
                put(
                    "allowed_origins",
                    as_in_key(&c.old, allowed_origins_out),
                    as_in_key(&c.new, allowed_origins_out),
                );
            }
            if let Some(c) = &changes.metadata {
                put(
                    "metadata",
                    as_in_key(&c.old, metadata_out),
                    as_in_key(&c.new, metadata_out),
                );
            }
            json!({ "changes": fields })
        }
        EventData::KeyRotated {
            replaced_by,
            grace_period,
            revokes_at,
        } => json!({
            "replaced_by": replaced_by.to_string(),
            "grace_period": domain::format_duration(*grace_period),
            "revokes_at": timestamp(*revokes_at),
        }),
        EventData::TenantCreated { name } => json!({ "name": name }),
        EventData::KeyExpiring { expires_at } | EventData::KeyExpired { expires_at } => {
            json!({ "expires_at": timestamp(*expires_at) })
        }
    }
}

/// A page of events, newest first.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EventList {
    /// The events.
    pub data: Vec<EventObject>,
    /// Whether more events follow (`starting_after` the last one).
    pub has_more: bool,
}

/// The query string of `GET /v1/audit-events`, checked parameter by
/// parameter.
fn parse_query(query: &str) -> Result<ListEvents, ApiError> {
    let mut request = ListEvents::default();
    for (name, value) in query_pairs(query, &["key_id", "type", "limit", "starting_after"])? {
        match name.as_str() {
            "key_id" => {
                request.key_id = Some(KeyId::parse(&value).map_err(|_| {
                    ApiError::invalid_parameter("key_id", "`key_id` must be a key id")
                })?);
            }
            "type" => {
                request.event_type =
                    Some(EventType::parse(&value).map_err(|e| {
                        ApiError::invalid_parameter("type", format!("`type`: {e}"))
                    })?);
            }
            "limit" => request.limit = parse_limit(&value)?,
            // `query_pairs` lets only the names above through.
            _ => {
                request.starting_after = Some(parse_cursor(
                    &value,
                    |v| EventId::parse(v).ok(),
                    "an event id",
                )?);
            }
        }
    }
    Ok(request)
}

/// The tenant's key events, newest first.
#[cfg_attr(
    feature = "openapi",
    utoipa::path(
        get,
        path = EVENTS.path,
        tag = "audit-events",
        operation_id = "list_audit_events",
        params(
            crate::openapi::params::TenantHeader,
            ("key_id" = Option<crate::openapi::schemas::KeyId>, Query, description = "Only events of this key."),
            ("type" = Option<EventTypeDto>, Query, description = "Only events of this type."),
            ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "1 to 100 (default 100)."),
            ("starting_after" = Option<crate::openapi::schemas::EventId>, Query, description = "An event id: events older than it."),
        ),
        responses(
            (status = 200, description = "A page of events, newest first.", body = EventList),
            (status = 400, description = "`duplicate_header` (`Authorization`, `X-Tenant-ID`: checked first), `invalid_tenant_id`, `invalid_parameter`, `unknown_parameter`.", body = crate::ErrorBody),
            (status = 403, description = "`tenant_mismatch`, `secret_key_required`, `insufficient_scope` (needs `*` or `audit-logs:read`).", body = crate::ErrorBody),
            crate::openapi::responses::AuthenticatedErrors,
        ),
        security(("bearer" = [])),
    )
)]
pub(crate) async fn list_events(
    caller: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    // Authorization first, so that a forbidden caller learns nothing from
    // validation.
    caller
        .authorize(&req, |p| {
            p.require_secret()?;
            p.require_scope(domain::Scope::AuditLogsRead)
        })
        .await?;
    let request = parse_query(req.query_string())?;
    let service = state.service().clone();
    let principal = caller.into_principal();
    let page = state
        .storage(move || service.list_events(&principal, request))
        .await??;
    Ok(HttpResponse::Ok().json(EventList {
        data: page.events.iter().map(EventObject::from).collect(),
        has_more: page.has_more,
    }))
}
