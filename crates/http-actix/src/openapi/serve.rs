//! `GET /openapi.json` and `GET /openapi-3.0.json`: the document, rendered
//! once ([`Documents`]) and served as it is (docs/api.md, "GET
//! /openapi.json").

use actix_web::web::{Bytes, Data};
use actix_web::HttpResponse;

use crate::route::routes;

/// The document in both versions, rendered once; each response shares these
/// bytes instead of copying them. [`crate::configure`] registers it as app
/// data.
#[derive(Debug, Clone)]
pub(crate) struct Documents {
    /// OpenAPI 3.1, as utoipa writes it.
    pub(crate) openapi: Bytes,
    /// The same document as OpenAPI 3.0.3.
    pub(crate) openapi_30: Bytes,
}

routes! {
    /// This document.
    DOCUMENT = "/openapi.json" { GET openapi_json },
    /// This document as OpenAPI 3.0.3.
    DOCUMENT_30 = "/openapi-3.0.json" { GET openapi_30_json },
}

/// This document.
#[utoipa::path(
    get,
    path = DOCUMENT.path,
    tag = "health",
    operation_id = "openapi",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object, content_type = "application/json"),
    ),
)]
pub(crate) async fn openapi_json(documents: Data<Documents>) -> HttpResponse {
    json_document(&documents.openapi)
}

/// This document as OpenAPI 3.0.3, for generators that read only 3.0.
#[utoipa::path(
    get,
    path = DOCUMENT_30.path,
    tag = "health",
    operation_id = "openapi_30",
    responses(
        (status = 200, description = "The same document as OpenAPI 3.0.3, converted from the 3.1 one.", body = Object, content_type = "application/json"),
    ),
)]
pub(crate) async fn openapi_30_json(documents: Data<Documents>) -> HttpResponse {
    json_document(&documents.openapi_30)
}

/// A rendered document, its bytes shared, not copied.
fn json_document(bytes: &Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(bytes.clone())
}
