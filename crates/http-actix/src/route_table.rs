//! Every route of the API, in registration order: each module's
//! [`routes!`](crate::route::routes) rows. [`crate::configure`] registers
//! them, the OpenAPI document lists their operations.

use crate::route::Route;
use crate::{audit, forward_auth, handlers, leaks, secret_scanning, verify, webhooks};

/// Every route, in the order actix tries them: a literal path before a
/// template that would match it (`/v1/api-keys/verify` and
/// `/v1/api-keys/rotate` before `/v1/api-keys/{id}`).
pub(crate) fn all() -> impl Iterator<Item = &'static Route> {
    let api: [&'static [Route]; 7] = [
        verify::ROUTES,
        forward_auth::ROUTES,
        audit::ROUTES,
        leaks::ROUTES,
        secret_scanning::ROUTES,
        handlers::ROUTES,
        webhooks::ROUTES,
    ];
    #[cfg(feature = "openapi")]
    let documents = crate::openapi::serve::ROUTES;
    #[cfg(not(feature = "openapi"))]
    let documents: &[Route] = &[];
    api.into_iter().flatten().chain(documents)
}
