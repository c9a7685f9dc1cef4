//! The OpenAPI document, generated from the handlers and types: 3.1 as
//! utoipa writes it (`GET /openapi.json`), and the same document converted
//! to 3.0.3 for generators that read only 3.0, such as progenitor
//! (`GET /openapi-3.0.json`, [`openapi_30_json`]).
//!
//! Its operations come from the route table (`crate::route_table`): each
//! route's handlers' `#[utoipa::path]` operations under the route's path,
//! with the 405 row and its `Allow` from the route's methods. [`schemas`]
//! holds the schemas of the wire's value types, [`TenantHeader`] and
//! [`IdempotencyKeyHeader`] the shared header parameters, and `responses`
//! the shared error rows.

use std::sync::OnceLock;

use actix_web::web::Bytes;
use serde_json::Value;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{Modify, OpenApi};

pub(crate) mod params;
pub(crate) mod responses;
pub mod schemas;
pub(crate) mod serve;

pub use params::{ForwardAuthHeaders, IdempotencyKeyHeader, TenantHeader};

use crate::dto::{
    CreateKeyRequest, CreatedKeyResponse, KeyList, KeyObject, KeyTypeDto, ModeDto,
    RotateKeyRequest, RotatedKeyResponse, StatusBody, UpdateKeyRequest,
};
use crate::error::{ErrorBody, ErrorCode, ErrorDetail};
use schemas::{
    EventId, ExpiresInSchema, FullKey, GracePeriodSchema, KeyId, KeyName, KeyNameInput, Scope,
    ScopeList, TenantId,
};
use serve::Documents;

/// The API's OpenAPI document: `ApiDoc::openapi()`.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "apikeys",
        description = "Create, list, update, revoke, rotate and verify a tenant's API keys. Every `/v1` request but `POST /v1/leaked-keys` and `POST /v1/secret-scanning/github` needs the `X-Tenant-ID` header (a parameter of each operation), and `Authorization: Bearer <secret key>` except `POST /v1/api-keys/verify`, whose body carries the key to check; `POST /v1/leaked-keys` (reporting leaked keys) needs neither, nor does `POST /v1/secret-scanning/github` (GitHub's signed reports). Every response carries `X-Request-ID`. Every error is `{\"error\": {\"code\", \"message\", \"param\"?, \"request_id\"}}`; the codes are the `ErrorCode` schema, and any route answers 404 `not_found` for an unknown path and 405 `method_not_allowed` for a wrong method.",
    ),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        ErrorCode,
        KeyObject,
        KeyList,
        KeyTypeDto,
        ModeDto,
        CreateKeyRequest,
        UpdateKeyRequest,
        RotateKeyRequest,
        CreatedKeyResponse,
        RotatedKeyResponse,
        crate::verify::VerifyKeyRequest,
        crate::verify::VerifyKeyResponse,
        crate::verify::VerifiedKey,
        crate::verify::VerifyCode,
        crate::leaks::LeakedKeysRequest,
        crate::leaks::LeakReportAccepted,
        crate::secret_scanning::GithubFoundToken,
        crate::secret_scanning::GithubTokenVerdict,
        crate::secret_scanning::TokenLabel,
        crate::audit::EventObject,
        crate::audit::ActorObject,
        crate::audit::EventList,
        crate::audit::EventTypeDto,
        crate::audit::ActorType,
        crate::webhooks::EndpointObject,
        crate::webhooks::EndpointWithSecret,
        crate::webhooks::EndpointList,
        crate::webhooks::DeliveryObject,
        crate::webhooks::DeliveryList,
        crate::webhooks::DeliveryStatusDto,
        crate::webhooks::CreateEndpointRequest,
        crate::webhooks::UpdateEndpointRequest,
        StatusBody,
        KeyId,
        TenantId,
        EventId,
        FullKey,
        KeyName,
        KeyNameInput,
        Scope,
        ScopeList,
        ExpiresInSchema,
        GracePeriodSchema,
    )),
    modifiers(&Security, &Operations),
    tags(
        (name = "api-keys", description = "Managing a tenant's API keys (secret key with `*` required)."),
        (name = "api-key-verification", description = "Checking a key presented to another service: the key is in the body, no `Authorization`."),
        (name = "forward-auth", description = "For gateways (nginx `auth_request`, Caddy `forward_auth`, Traefik `ForwardAuth`, Envoy `ext_authz`): may this request pass? Any method; the key in `Authorization: Bearer` or `X-API-Key`; `X-Tenant-ID` optional."),
        (name = "leaked-keys", description = "Reporting keys found where they should not be: no `Authorization`, no `X-Tenant-ID`; every active secret key reported is revoked."),
        (name = "secret-scanning", description = "GitHub's secret scanning partner program reports keys found in public code: no `Authorization`, the body is signed by GitHub; every active secret key found is revoked. 404 unless the service has GitHub's public keys."),
        (name = "audit-events", description = "The tenant's key events, newest first (secret key with `*` or `audit-logs:read`)."),
        (name = "webhooks", description = "Webhook endpoints of key events, their signing secrets and deliveries (docs/webhooks.md); secret key with `*`, or `webhooks:read` / `webhooks:write`."),
        (name = "health", description = "Probes and this document; no key needed."),
    ),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        // One named schema for both operations' header, so that a generated
        // client has one type for it.
        components.schemas.insert(
            "IdempotencyKey".to_owned(),
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(domain::idempotency::MAX_IDEMPOTENCY_KEY_LEN))
                .pattern(Some("^[ -~]+$"))
                .description(Some("1–255 printable ASCII characters."))
                .into(),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key: `sk_live_...` or `sk_test_...`."))
                    .build(),
            ),
        );
    }
}

/// Adds every route's operations under its path, each with its 405 row
/// (`Allow`: the route's methods). A 405 row an operation writes itself
/// (verify's, for `Cache-Control`) keeps its other headers.
struct Operations;

impl Modify for Operations {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for route in crate::route_table::all() {
            for operation in (route.operations)() {
                openapi.merge(operation);
            }
            if let Some(item) = openapi.paths.paths.get_mut(route.path) {
                let methods = methods_mut(item).count();
                for (method, operation) in methods_mut(item) {
                    // A route answering any method never answers 405.
                    if route.allow != crate::route::ANY_METHODS {
                        not_allowed_row(operation, route.allow);
                    }
                    // One handler for several methods: an id for each.
                    if methods > 1 && route.allow == crate::route::ANY_METHODS {
                        if let Some(id) = &mut operation.operation_id {
                            id.push('_');
                            id.push_str(method);
                        }
                    }
                }
            }
        }
    }
}

/// Each operation of a path, with its method in lower case.
fn methods_mut(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|o| (method, o)))
}

/// The operation's 405 `method_not_allowed` row, with `Allow: allow`.
fn not_allowed_row(operation: &mut Operation, allow: &str) {
    let row = operation
        .responses
        .responses
        .entry("405".to_owned())
        .or_insert_with(|| RefOr::T(responses::error_row("`method_not_allowed`.", &[])));
    if let RefOr::T(row) = row {
        row.headers.insert(
            "Allow".to_owned(),
            responses::string_header(&format!("`{allow}`")),
        );
    }
}

/// The document in both versions, rendered once per process.
pub(crate) fn documents() -> &'static Documents {
    static DOCUMENTS: OnceLock<Documents> = OnceLock::new();
    DOCUMENTS.get_or_init(|| Documents {
        openapi: Bytes::from(openapi_json()),
        openapi_30: Bytes::from(openapi_30_json()),
    })
}

/// The document as JSON.
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_json()
        .unwrap_or_else(|_| String::from("{}"))
}

/// The same document as OpenAPI 3.0.3 ([`to_openapi_30`] of
/// [`openapi_json`]).
pub fn openapi_30_json() -> String {
    serde_json::from_str(&openapi_json())
        .map(to_openapi_30)
        .and_then(|doc| serde_json::to_string(&doc))
        .unwrap_or_else(|_| String::from("{}"))
}

/// Converts the 3.1 document utoipa writes into OpenAPI 3.0.3, for
/// generators that read only 3.0 (progenitor among them). It rewrites what
/// 3.0 spells differently and what utoipa uses of it:
/// - `openapi: 3.1.x` becomes `3.0.3`; the license loses its SPDX
///   `identifier` (3.0 has only `name` and `url`);
/// - `type: [T, "null"]` becomes `type: T, nullable: true`;
/// - `oneOf`/`anyOf` with a `{"type": "null"}` member becomes the other
///   member(s) with `nullable: true` (a lone `$ref` wrapped in `allOf`,
///   since 3.0 ignores the siblings of a `$ref`);
/// - a schema's `examples` array becomes `example` (its first item);
/// - `const` becomes a one-value `enum`.
///
/// Everything else is passed through unchanged.
pub fn to_openapi_30(mut doc: Value) -> Value {
    if let Some(version) = doc.get_mut("openapi") {
        *version = Value::from("3.0.3");
    }
    if let Some(Value::Object(license)) = doc.pointer_mut("/info/license") {
        license.remove("identifier");
    }
    for section in ["paths", "components"] {
        if let Some(value) = doc.get_mut(section) {
            convert_schemas_in(value);
        }
    }
    doc
}

/// Walks a part of the document and converts every schema object in it.
/// Schemas sit under `schema` (parameters, media types, headers) and under
/// `components.schemas`; everything else is walked for them.
fn convert_schemas_in(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match key.as_str() {
                    "schema" => convert_schema(child),
                    "schemas" => {
                        if let Value::Object(schemas) = child {
                            schemas.values_mut().for_each(convert_schema);
                        }
                    }
                    // Examples are data, not schemas.
                    "example" | "examples" => {}
                    _ => convert_schemas_in(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(convert_schemas_in),
        _ => {}
    }
}

fn is_null_type(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("null")
}

/// Converts one schema and the schemas inside it.
fn convert_schema(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    // Sub-schemas first.
    for key in ["items", "not", "additionalProperties"] {
        if let Some(child) = map.get_mut(key) {
            convert_schema(child);
        }
    }
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        properties.values_mut().for_each(convert_schema);
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(Value::Array(members)) = map.get_mut(key) {
            members.iter_mut().for_each(convert_schema);
        }
    }
    // 3.0 has no `propertyNames`: the rule on metadata's keys stays in the
    // schema's description (docs/api.md, "Restricting a key").
    map.remove("propertyNames");
    if let Some(Value::Array(types)) = map.get("type") {
        let nullable = types.iter().any(|t| t == "null");
        let rest: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        if let [single] = rest.as_slice() {
            map.insert("type".into(), single.clone());
        } else {
            map.remove("type");
        }
        if nullable {
            map.insert("nullable".into(), Value::Bool(true));
        }
    }
    for key in ["oneOf", "anyOf"] {
        let Some(Value::Array(members)) = map.get(key) else {
            continue;
        };
        if !members.iter().any(is_null_type) {
            continue;
        }
        let rest: Vec<Value> = members
            .iter()
            .filter(|m| !is_null_type(m))
            .cloned()
            .collect();
        map.remove(key);
        map.insert("nullable".into(), Value::Bool(true));
        match rest.as_slice() {
            [Value::Object(only)] if !only.contains_key("$ref") => {
                for (k, v) in only {
                    map.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            [only] => {
                map.insert("allOf".into(), Value::Array(vec![only.clone()]));
            }
            _ => {
                map.insert(key.into(), Value::Array(rest));
            }
        }
    }
    if let Some(Value::Array(examples)) = map.remove("examples") {
        if let Some(first) = examples.into_iter().next() {
            map.entry("example").or_insert(first);
        }
    }
    if let Some(value) = map.remove("const") {
        map.insert("enum".into(), Value::Array(vec![value]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The responses of each operation name the codes they may carry; each
    /// code must be documented under the status the catalogue gives it.
    #[test]
    fn documented_codes_sit_under_their_status() {
        let doc: serde_json::Value = serde_json::from_str(&openapi_json()).unwrap_or_default();
        let paths = doc["paths"]
            .as_object()
            .map(|p| p.values())
            .into_iter()
            .flatten();
        let mut checked = 0;
        for operation in paths.filter_map(|p| p.as_object()).flat_map(|p| p.values()) {
            let responses = operation["responses"].as_object().into_iter().flatten();
            for (status, response) in responses {
                let description = response["description"].as_str().unwrap_or_default();
                for code in ErrorCode::ALL {
                    if description.contains(&format!("`{}`", code.as_str())) {
                        assert_eq!(
                            status.as_str(),
                            code.status().as_str(),
                            "{code} documented under {status}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 50, "only {checked} documented codes found");
    }

    fn doc() -> Value {
        serde_json::from_str(&openapi_json()).unwrap_or_default()
    }

    /// The document's operations are the route table's: each route's path
    /// with its methods (`HEAD`, answered wherever `GET` is, is no
    /// operation of its own), each with a 405 whose `Allow` is the route's.
    #[test]
    fn the_documents_operations_are_the_route_tables() {
        let doc = doc();
        let mut documented: Vec<&String> = doc["paths"]
            .as_object()
            .into_iter()
            .flat_map(|p| p.keys())
            .collect();
        documented.sort();
        let mut declared: Vec<String> = crate::route_table::all()
            .map(|r| r.path.to_owned())
            .collect();
        declared.sort();
        assert_eq!(documented, declared.iter().collect::<Vec<_>>());
        for route in crate::route_table::all() {
            let item = doc["paths"][route.path]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let mut methods: Vec<String> = item.keys().map(|m| m.to_uppercase()).collect();
            methods.sort();
            let mut expected: Vec<&str> =
                route.allow.split(", ").filter(|m| *m != "HEAD").collect();
            expected.sort_unstable();
            assert_eq!(methods, expected, "{}", route.path);
            assert_eq!(
                route.allow.contains("GET"),
                route.allow.contains("HEAD"),
                "{}",
                route.path
            );
            for operation in item.values() {
                // A route answering any method never answers 405.
                let allow = (route.allow != crate::route::ANY_METHODS)
                    .then(|| Value::from(format!("`{}`", route.allow)));
                assert_eq!(
                    operation["responses"]["405"]["headers"]["Allow"]["description"],
                    allow.unwrap_or(Value::Null),
                    "{}",
                    route.path
                );
            }
        }
    }

    #[test]
    fn always_sent_nullable_fields_are_required_and_nullable() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        for (schema, field) in [
            ("KeyObject", "last_used_at"),
            ("KeyObject", "expires_at"),
            ("KeyObject", "revokes_at"),
            ("CreatedKeyResponse", "expires_at"),
            ("RotatedKeyResponse", "expires_at"),
            ("VerifiedKey", "expires_at"),
            ("VerifiedKey", "revokes_at"),
        ] {
            let required = schemas[schema]["required"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert!(
                required.contains(&Value::from(field)),
                "{schema}.{field} required"
            );
            assert_eq!(
                schemas[schema]["properties"][field],
                serde_json::json!({"type": ["string", "null"], "format": "date-time", "description": schemas[schema]["properties"][field]["description"]}),
                "{schema}.{field}"
            );
        }
        // Omitted when absent, never null.
        assert_eq!(
            schemas["ErrorDetail"]["properties"]["param"]["type"],
            "string"
        );
        let required = &schemas["ErrorDetail"]["required"];
        assert!(!required
            .as_array()
            .is_some_and(|r| r.contains(&Value::from("param"))));
    }

    #[test]
    fn patch_needs_a_name_or_scopes_that_is_not_null() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["UpdateKeyRequest"]["anyOf"],
            serde_json::json!([
                {"$ref": "#/components/schemas/UpdateKeyName"},
                {"$ref": "#/components/schemas/UpdateKeyScopes"},
                {"$ref": "#/components/schemas/UpdateKeyLimits"},
                {"$ref": "#/components/schemas/UpdateKeyRestrictions"}
            ])
        );
        assert_eq!(
            schemas["UpdateKeyName"]["required"],
            serde_json::json!(["name"])
        );
        assert_eq!(
            schemas["UpdateKeyScopes"]["required"],
            serde_json::json!(["scopes"])
        );
        assert_eq!(schemas["UpdateKeyRestrictions"]["required"], Value::Null);
    }

    #[test]
    fn every_v1_operation_but_leak_reports_takes_the_tenant_header() {
        // Required everywhere but leak reports (none) and forward-auth
        // (optional there).
        let doc = doc();
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for operation in item.as_object().into_iter().flat_map(|i| i.values()) {
                let header = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|p| p["name"] == "X-Tenant-ID" && p["in"] == "header")
                    .map(|p| p["required"] == true);
                let expected = match path.as_str() {
                    "/v1/leaked-keys" | "/v1/secret-scanning/github" => None,
                    "/v1/forward-auth" => Some(false),
                    v1 if v1.starts_with("/v1/") => Some(true),
                    _ => None,
                };
                assert_eq!(header, expected, "{path}");
                checked += 1;
            }
        }
        // 22 before forward-auth, which documents 5 methods.
        assert_eq!(checked, 27);
    }

    #[test]
    fn conversion_to_30_rewrites_what_30_spells_differently() {
        let converted = to_openapi_30(serde_json::json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1", "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
            "paths": {"/x": {"get": {"parameters": [{"name": "q", "in": "query", "schema": {"type": ["integer", "null"], "examples": [3]}}],
                "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/A"}, "example": {"type": ["kept"]}}}}}}}},
            "components": {"schemas": {
                "A": {"type": "object", "properties": {
                    "r": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/B"}]},
                    "s": {"type": ["string", "null"], "format": "date-time"},
                    "t": {"type": "array", "items": {"const": "*"}},
                    "u": {"anyOf": [{"type": "null"}, {"type": "string", "pattern": "^a$"}]},
                    "m": {"type": "object", "propertyNames": {"pattern": "^k$"}, "maxProperties": 2}
                }},
                "B": {"type": "string"}
            }}
        }));
        assert_eq!(
            converted,
            serde_json::json!({
                "openapi": "3.0.3",
                "info": {"title": "t", "version": "1", "license": {"name": "Apache-2.0"}},
                "paths": {"/x": {"get": {"parameters": [{"name": "q", "in": "query", "schema": {"type": "integer", "nullable": true, "example": 3}}],
                    "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/A"}, "example": {"type": ["kept"]}}}}}}}},
                "components": {"schemas": {
                    "A": {"type": "object", "properties": {
                        "r": {"allOf": [{"$ref": "#/components/schemas/B"}], "nullable": true},
                        "s": {"type": "string", "format": "date-time", "nullable": true},
                        "t": {"type": "array", "items": {"enum": ["*"]}},
                        "u": {"type": "string", "pattern": "^a$", "nullable": true},
                        "m": {"type": "object", "maxProperties": 2}
                    }},
                    "B": {"type": "string"}
                }}
            })
        );
    }

    /// The 3.0 document keeps the 3.1 one's operations and schemas, and has
    /// nothing left that 3.0 does not know. (That it is the 3.1 one
    /// converted holds by construction: [`openapi_30_json`].)
    #[test]
    fn the_30_document_keeps_step_with_the_31_one() {
        let v31 = doc();
        let v30: Value = serde_json::from_str(&openapi_30_json()).unwrap_or_default();
        assert_eq!(v30["openapi"], "3.0.3");
        let keys = |v: &Value, pointer: &str| -> Vec<String> {
            v.pointer(pointer)
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        };
        assert_eq!(keys(&v30, "/paths"), keys(&v31, "/paths"));
        assert_eq!(
            keys(&v30, "/components/schemas"),
            keys(&v31, "/components/schemas")
        );
        fn no_31_left(value: &Value, at: &str) {
            match value {
                Value::Object(map) => {
                    if let Some(t) = map.get("type") {
                        assert!(t.is_string(), "{at}: type {t}");
                        assert_ne!(t, "null", "{at}");
                    }
                    assert!(!map.contains_key("const"), "{at}");
                    for (k, v) in map {
                        match (k.as_str(), v) {
                            ("example", _) => {}
                            // A map of names to schemas: a property may be called `type`.
                            ("properties", Value::Object(properties)) => {
                                for (name, schema) in properties {
                                    no_31_left(schema, &format!("{at}/properties/{name}"));
                                }
                            }
                            _ => no_31_left(v, &format!("{at}/{k}")),
                        }
                    }
                }
                Value::Array(items) => items
                    .iter()
                    .enumerate()
                    .for_each(|(i, v)| no_31_left(v, &format!("{at}/{i}"))),
                _ => {}
            }
        }
        no_31_left(&v30["components"], "components");
        no_31_left(&v30["paths"], "paths");
    }
}
