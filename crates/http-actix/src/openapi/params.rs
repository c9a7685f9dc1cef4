//! The header parameters operations share (docs/api.md, "Conventions").

use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::{Ref, Required};
use utoipa::IntoParams;

/// The `X-Tenant-ID` header, required on every `/v1` operation but
/// `POST /v1/leaked-keys`. A parameter of each operation rather than a
/// security scheme, so that every generated client has a typed argument for
/// it (generators give API-key security schemes no setter, or one only).
pub struct TenantHeader;

impl IntoParams for TenantHeader {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![ParameterBuilder::new()
            // As docs/api.md spells it (`TENANT_HEADER` is actix's lower case).
            .name("X-Tenant-ID")
            .parameter_in(ParameterIn::Header)
            .required(Required::True)
            .description(Some(
                "The tenant: `tnt_` + ULID. Missing or malformed: 400 `invalid_tenant_id`; sent more than once: 400 `duplicate_header`.",
            ))
            .schema(Some(Ref::from_schema_name("TenantId")))
            .build()]
    }
}

/// The optional `Idempotency-Key` header of `POST /v1/api-keys` and
/// `POST /v1/api-keys/rotate` (docs/api.md, "Idempotent requests").
pub struct IdempotencyKeyHeader;

impl IntoParams for IdempotencyKeyHeader {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![ParameterBuilder::new()
            .name(crate::IDEMPOTENCY_KEY_HEADER)
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Makes the request safe to retry: for 24 hours, a repeat with the same body \
                 gets the first 2xx response again (with `Idempotent-Replayed: true`) and \
                 changes nothing. 1–255 printable ASCII characters; otherwise 400 \
                 `invalid_parameter`.",
            ))
            .schema(Some(Ref::from_schema_name("IdempotencyKey")))
            .build()]
    }
}

/// Forward-auth's optional key and tenant headers (docs/api.md, "Forward
/// authentication"): `X-API-Key` (instead of `Authorization`) and
/// `X-Tenant-ID` (when sent, the key must be the tenant's).
pub struct ForwardAuthHeaders;

impl IntoParams for ForwardAuthHeaders {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("X-API-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "The key, instead of `Authorization: Bearer <key>` (both, or either twice: \
                     400 `duplicate_header`).",
                ))
                .schema(Some(
                    utoipa::openapi::schema::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::Type::String),
                ))
                .build(),
            ParameterBuilder::new()
                .name("X-Tenant-ID")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "Optional here: when sent, the key must belong to this tenant (403 \
                     `tenant_mismatch`); malformed: 400 `invalid_tenant_id`; sent more than \
                     once: 400 `duplicate_header`.",
                ))
                .schema(Some(Ref::from_schema_name("TenantId")))
                .build(),
        ]
    }
}
