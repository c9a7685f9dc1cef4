//! The `apikeys` HTTP API on actix-web 4, and an authentication extractor
//! other services can use.
//!
//! - [`app`] (or [`configure`] plus [`request_context`]) builds the whole API:
//!   the seven key routes of the product document, `GET /healthz`,
//!   `GET /readyz` and `GET /openapi.json`, JSON errors for everything
//!   (CONTRACT §7, also actix's own), `X-Request-ID` and a tracing span per
//!   request. [`server`] serves it with graceful shutdown.
//! - [`Authenticated`] is the authentication extractor (CONTRACT §3); its
//!   principal's `require_scope` does authorization.
//! - [`blocking`] is the one way domain calls leave the executor threads.
//! - [`ApiError`] is the one error type; domain errors map to a code through
//!   one exhaustive `match` per error type, and each [`ErrorCode`] has its
//!   one status.

mod auth;
mod blocking;
mod body;
pub mod dto;
mod error;
mod handlers;
pub mod openapi;
mod redact;
mod request_id;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpRequest, HttpServer};
use domain::{Authenticator, DynApiKeys, RepositoryError};

pub use auth::{bearer_token, Authenticated, TENANT_HEADER};
pub use blocking::blocking;
pub use error::{ApiError, ErrorBody, ErrorCode, ErrorDetail, RETRY_AFTER_SECONDS};
pub use openapi::ApiDoc;
pub use request_id::{request_context, RequestId, MAX_REQUEST_ID_LEN, REQUEST_ID_HEADER};

/// Largest request body accepted (16 KiB); larger: 413 `payload_too_large`.
pub const BODY_LIMIT: usize = 16 * 1024;

/// Seconds the server waits for in-flight requests on SIGTERM/SIGINT.
pub const SHUTDOWN_TIMEOUT_SECS: u64 = 30;

/// Whether the service can serve requests (`GET /readyz`): the binary
/// implements it over its database.
pub trait Readiness: Send + Sync {
    /// Checks that storage is reachable. Called on the blocking pool.
    ///
    /// # Errors
    /// [`RepositoryError`] when it is not; `/readyz` then answers 503.
    fn check(&self) -> Result<(), RepositoryError>;
}

/// What the handlers share: the use cases, the authenticator and the
/// readiness check.
#[derive(Clone)]
pub struct AppState {
    service: Arc<DynApiKeys>,
    authenticator: Arc<dyn Authenticator>,
    readiness: Arc<dyn Readiness>,
    /// Rendered once; each response shares these bytes instead of copying them.
    openapi: web::Bytes,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The state over the service, the authenticator (often the service
    /// itself, or a cache around it) and the readiness check.
    pub fn new(
        service: Arc<DynApiKeys>,
        authenticator: Arc<dyn Authenticator>,
        readiness: Arc<dyn Readiness>,
    ) -> Self {
        AppState {
            service,
            authenticator,
            readiness,
            openapi: web::Bytes::from(openapi::openapi_json()),
        }
    }

    /// The use cases.
    pub fn service(&self) -> &Arc<DynApiKeys> {
        &self.service
    }

    /// The authenticator the [`Authenticated`] extractor uses.
    pub fn authenticator(&self) -> &Arc<dyn Authenticator> {
        &self.authenticator
    }
}

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
/// method and a JSON 404 for an unknown route.
///
/// Wrap the app in [`request_context`] too (as [`app`] does): it sets
/// `X-Request-ID` and puts the request id into error bodies.
pub fn configure(state: AppState) -> impl FnOnce(&mut web::ServiceConfig) + Clone {
    move |cfg: &mut web::ServiceConfig| {
        let not_allowed = |allow: &'static str| {
            web::to(move || async move {
                Err::<actix_web::HttpResponse, _>(ApiError::method_not_allowed(allow))
            })
        };
        cfg.app_data(web::Data::from(Arc::clone(&state.authenticator)))
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
                    .route(web::get().to(handlers::list_keys))
                    .route(web::head().to(handlers::list_keys))
                    .route(web::post().to(handlers::create_key))
                    .default_service(not_allowed("GET, HEAD, POST")),
            )
            // Before `/{id}`, which would otherwise take `rotate` for an id.
            .service(
                web::resource("/v1/api-keys/rotate")
                    .route(web::post().to(handlers::rotate_key))
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/v1/api-keys/{id}")
                    .route(web::get().to(handlers::get_key))
                    .route(web::head().to(handlers::get_key))
                    .route(web::patch().to(handlers::update_key))
                    .route(web::delete().to(handlers::revoke_key))
                    .default_service(not_allowed("GET, HEAD, PATCH, DELETE")),
            )
            .service(
                web::resource("/healthz")
                    .route(web::get().to(handlers::healthz))
                    .route(web::head().to(handlers::healthz))
                    .default_service(not_allowed("GET, HEAD")),
            )
            .service(
                web::resource("/readyz")
                    .route(web::get().to(handlers::readyz))
                    .route(web::head().to(handlers::readyz))
                    .default_service(not_allowed("GET, HEAD")),
            )
            .service(
                web::resource("/openapi.json")
                    .route(web::get().to(handlers::openapi_json))
                    .route(web::head().to(handlers::openapi_json))
                    .default_service(not_allowed("GET, HEAD")),
            )
            .default_service(web::to(handlers::route_not_found));
    }
}

/// The whole API as an app: [`configure`] wrapped in [`request_context`].
/// Tests and [`server`] build exactly this.
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
    let mut server =
        HttpServer::new(move || app(state.clone())).shutdown_timeout(SHUTDOWN_TIMEOUT_SECS);
    if let Some(workers) = workers {
        server = server.workers(workers);
    }
    Ok(server.listen(listener)?.run())
}
