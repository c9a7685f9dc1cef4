//! The error rows many operations share, written once: an operation lists
//! them in its `responses(...)` by type (docs/api.md, "Conventions").

use std::collections::BTreeMap;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::IntoResponses;

/// An error response: `description`, the `ErrorBody` schema, and `headers`
/// (name, description), each a string.
pub(crate) fn error_row(description: &str, headers: &[(&str, &str)]) -> Response {
    let mut row = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    );
    for (name, description) in headers {
        row = row.header(*name, string_header(description));
    }
    row.build()
}

/// A response header holding a string.
pub(crate) fn string_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(description))
        .build()
}

fn rows(rows: impl IntoIterator<Item = (u16, Response)>) -> BTreeMap<String, RefOr<Response>> {
    rows.into_iter()
        .map(|(status, row)| (status.to_string(), RefOr::T(row)))
        .collect()
}

fn unauthorized() -> (u16, Response) {
    (
        401,
        error_row(
            "`missing_api_key`, `invalid_api_key`, `api_key_revoked`, `api_key_expired`.",
            &[("WWW-Authenticate", "`Bearer`")],
        ),
    )
}

fn too_many_failures() -> (u16, Response) {
    (
        429,
        error_row(
            "`too_many_requests`: too many failed authentications from this address (docs/api.md, \"Abuse limits\"). `rate_limited`: the key's rate limit is used up in this window; `usage_exceeded`: its credits are used up (docs/api.md, \"Limiting a key's use\").",
            &[
                ("Retry-After", "Seconds until the address is admitted again, the next window starts, or the credits are refilled (absent without a refill)."),
                ("RateLimit-Limit", "For a key with a rate limit or credits: its limit per window (else its refill amount)."),
                ("RateLimit-Remaining", "For a limited key: what is left."),
                ("RateLimit-Reset", "For a limited key: seconds until the window ends (else until the next refill)."),
            ],
        ),
    )
}

fn internal() -> (u16, Response) {
    (500, error_row("`internal_error`.", &[]))
}

fn unavailable() -> (u16, Response) {
    (
        503,
        error_row(
            "`service_unavailable`.",
            &[("Retry-After", "Seconds to wait.")],
        ),
    )
}

/// The rows of every route that authenticates with `Authorization`: 401
/// (with `WWW-Authenticate`), 429, 500 and 503 (with `Retry-After`).
pub struct AuthenticatedErrors;

impl IntoResponses for AuthenticatedErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        rows([
            unauthorized(),
            too_many_failures(),
            internal(),
            unavailable(),
        ])
    }
}

/// 403 of the key-management routes (secret key with `*`).
pub struct KeyManagementForbidden;

impl IntoResponses for KeyManagementForbidden {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        rows([(
            403,
            error_row(
                "`tenant_mismatch`, `secret_key_required`, `insufficient_scope`.",
                &[],
            ),
        )])
    }
}

/// 503 `service_unavailable` with `Retry-After`.
pub struct Unavailable;

impl IntoResponses for Unavailable {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        rows([unavailable()])
    }
}
