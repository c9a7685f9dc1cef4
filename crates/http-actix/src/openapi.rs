//! The OpenAPI 3 document, generated from the handlers and types.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::dto::{
    CreateKeyRequest, CreatedKeyResponse, KeyList, KeyObject, KeyTypeDto, ModeDto,
    RotateKeyRequest, RotatedKeyResponse, StatusBody, UpdateKeyRequest,
};
use crate::error::{ErrorBody, ErrorCode, ErrorDetail};
use crate::handlers;

/// The API's OpenAPI document: `ApiDoc::openapi()`.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "apikeys",
        description = "Create, list, update, revoke, rotate and verify a tenant's API keys. Every `/v1` request needs `X-Tenant-ID`, and `Authorization: Bearer <secret key>` except `POST /v1/api-keys/verify`, whose body carries the key to check; `POST /v1/leaked-keys` (reporting leaked keys) needs neither. Every response carries `X-Request-ID`. Every error is `{\"error\": {\"code\", \"message\", \"param\"?, \"request_id\"}}`; the codes are the `ErrorCode` schema, and any route answers 404 `not_found` for an unknown path and 405 `method_not_allowed` for a wrong method.",
    ),
    paths(
        handlers::list_keys,
        handlers::create_key,
        handlers::rotate_key,
        crate::verify::verify_key,
        crate::leaks::report_leaked_keys,
        handlers::get_key,
        handlers::update_key,
        handlers::revoke_key,
        crate::audit::list_events,
        handlers::healthz,
        handlers::readyz,
        handlers::openapi_json,
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
        crate::audit::EventObject,
        crate::audit::ActorObject,
        crate::audit::EventList,
        StatusBody,
    )),
    modifiers(&Security),
    tags(
        (name = "api-keys", description = "Managing a tenant's API keys (secret key with `*` required)."),
        (name = "api-key-verification", description = "Checking a key presented to another service: the key is in the body, no `Authorization`."),
        (name = "leaked-keys", description = "Reporting keys found where they should not be: no `Authorization`, no `X-Tenant-ID`; every active secret key reported is revoked."),
        (name = "audit-events", description = "The tenant's key events, newest first (secret key with `*` or `audit-logs:read`)."),
        (name = "health", description = "Probes and this document; no key needed."),
    ),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key: `sk_live_...` or `sk_test_...`."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "tenant",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Tenant-ID",
                "The tenant: `tnt_` + ULID.",
            ))),
        );
    }
}

/// The document as JSON.
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_json()
        .unwrap_or_else(|_| String::from("{}"))
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
}
