//! The routes: [`configure`] registers the API (with JSON errors for actix's
//! own extractor errors), [`app`] wraps it in the request context and
//! [`server`] serves it.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpRequest, HttpServer};

use crate::error::{ApiError, ErrorCode};
use crate::request_id::{json_errors, request_context};
use crate::state::AppState;
use crate::{audit, handlers, leaks, verify};
use crate::{BODY_LIMIT, SHUTDOWN_TIMEOUT_SECS};

fn json_error(e: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    let api = match &e {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::payload_too_large()
        }
        JsonPayloadError::ContentType => ApiError::unsupported_media_type(),
        JsonPayloadError::Deserialize(de) if de.is_data() => ApiError::new(
            ErrorCode::InvalidParameter,
            "a field has the wrong type or value",
        ),
        JsonPayloadError::Deserialize(_) => {
            ApiError::invalid_json("the request body is not valid JSON")
        }
        JsonPayloadError::Serialize(_) => ApiError::internal(),
        _ => ApiError::invalid_json("the request body could not be read"),
    };
    api.with_source(e.to_string()).into()
}

fn query_error(e: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::new(
        ErrorCode::InvalidParameter,
        "a query parameter has the wrong type or value",
    )
    .with_source(e.to_string())
    .into()
}

fn path_error(e: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::route_not_found()
        .with_source(e.to_string())
        .into()
}

/// Registers the API on an app or scope: state, extractor configuration
/// (JSON, query and path errors as JSON, 16 KiB bodies), every route (`HEAD`
/// wherever `GET` is: the same answer without a body), a JSON 405 for a wrong
/// method and a JSON 404 for an unknown route. Each resource is named by
/// its template: the metrics label requests with that name
/// ([`crate::metrics::ROUTES`]).
///
/// Wrap the app in [`request_context`] too (as [`app`] does): it sets
/// `X-Request-ID` and puts the request's id into error bodies.
pub fn configure(state: AppState) -> impl FnOnce(&mut web::ServiceConfig) + Clone {
    move |cfg: &mut web::ServiceConfig| {
        let not_allowed = |allow: &'static str| {
            web::to(move || async move {
                Err::<actix_web::HttpResponse, _>(ApiError::method_not_allowed(allow))
            })
        };
        cfg.app_data(web::Data::from(Arc::clone(&state.authenticator)))
            .app_data(web::Data::from(Arc::clone(&state.limiter)))
            .app_data(state.limits)
            .app_data(web::Data::new(state))
            .app_data(
                web::JsonConfig::default()
                    .limit(BODY_LIMIT)
                    .error_handler(json_error),
            )
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .app_data(web::PathConfig::default().error_handler(path_error))
            .app_data(web::PayloadConfig::new(BODY_LIMIT))
            .service(
                web::resource("/v1/api-keys")
                    .name("/v1/api-keys")
                    .route(web::get().to(handlers::list_keys))
                    .route(web::head().to(handlers::list_keys))
                    .route(web::post().to(handlers::create_key))
                    .default_service(not_allowed("GET, HEAD, POST")),
            )
            .service(
                web::resource("/v1/audit-events")
                    .name("/v1/audit-events")
                    .route(web::get().to(audit::list_events))
                    .route(web::head().to(audit::list_events))
                    .default_service(not_allowed("GET, HEAD")),
            )
            // No `Authorization`, no `X-Tenant-ID`: anyone may report a key.
            .service(
                web::resource("/v1/leaked-keys")
                    .name("/v1/leaked-keys")
                    .route(web::post().to(leaks::report_leaked_keys))
                    .default_service(not_allowed("POST")),
            )
            // Before `/{id}`, which would otherwise take `rotate` for an id.
            .service(
                web::resource("/v1/api-keys/rotate")
                    .name("/v1/api-keys/rotate")
                    .route(web::post().to(handlers::rotate_key))
                    .default_service(not_allowed("POST")),
            )
            // Before `/{id}` too. `no_store` wraps the whole resource, 405
            // included.
            .service(
                web::resource("/v1/api-keys/verify")
                    .name("/v1/api-keys/verify")
                    .route(web::post().to(verify::verify_key))
                    .default_service(not_allowed("POST"))
                    .wrap(verify::no_store()),
            )
            .service(
                web::resource("/v1/api-keys/{id}")
                    .name("/v1/api-keys/{id}")
                    .route(web::get().to(handlers::get_key))
                    .route(web::head().to(handlers::get_key))
                    .route(web::patch().to(handlers::update_key))
                    .route(web::delete().to(handlers::revoke_key))
                    .default_service(not_allowed("GET, HEAD, PATCH, DELETE")),
            )
            .service(
                web::resource("/healthz")
                    .name("/healthz")
                    .route(web::get().to(handlers::healthz))
                    .route(web::head().to(handlers::healthz))
                    .default_service(not_allowed("GET, HEAD")),
            )
            .service(
                web::resource("/readyz")
                    .name("/readyz")
                    .route(web::get().to(handlers::readyz))
                    .route(web::head().to(handlers::readyz))
                    .default_service(not_allowed("GET, HEAD")),
            )
            .default_service(web::to(handlers::route_not_found));
        #[cfg(feature = "openapi")]
        cfg.service(
            web::resource("/openapi.json")
                .name("/openapi.json")
                .route(web::get().to(handlers::openapi_json))
                .route(web::head().to(handlers::openapi_json))
                .default_service(not_allowed("GET, HEAD")),
        )
        .service(
            web::resource("/openapi-3.0.json")
                .name("/openapi-3.0.json")
                .route(web::get().to(handlers::openapi_30_json))
                .route(web::head().to(handlers::openapi_30_json))
                .default_service(not_allowed("GET, HEAD")),
        );
    }
}

/// The whole API as an app: [`configure`] wrapped in [`request_context`],
/// and, since every route is this service's own, a safety net inside it that
/// turns any error response actix answered with a bare status into the JSON
/// error body. Tests and [`server`] build exactly this.
pub fn app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .configure(configure(state))
        .wrap(from_fn(json_errors))
        .wrap(from_fn(request_context))
}

/// An HTTP server for the API on `listener`, with `workers` worker threads
/// (actix's default, one per core, when `None`). It stops gracefully on
/// SIGTERM or SIGINT, waiting up to [`SHUTDOWN_TIMEOUT_SECS`] for in-flight
/// requests. Await the returned [`Server`] to run it.
///
/// # Errors
/// When the listener cannot be used.
pub fn server(
    listener: TcpListener,
    state: AppState,
    workers: Option<usize>,
) -> std::io::Result<Server> {
    let head_timeout = state.limits.head_timeout;
    let mut server = HttpServer::new(move || app(state.clone()))
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        .client_request_timeout(head_timeout);
    if let Some(workers) = workers {
        server = server.workers(workers);
    }
    Ok(server.listen(listener)?.run())
}
