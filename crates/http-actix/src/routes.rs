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
use crate::metrics::RouteLabel;
use crate::request_context::{json_errors, request_context};
use crate::state::AppState;
use crate::{handlers, route_table};
use crate::{BODY_LIMIT, KEEP_ALIVE_SECS, SHUTDOWN_TIMEOUT_SECS};

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
/// (JSON, query and path errors as JSON, 16 KiB bodies), every route of
/// the route table (`crate::route_table`) (`HEAD` wherever `GET` is: the same answer without
/// a body), a JSON 405 with the route's `Allow` for a wrong method and a
/// JSON 404 for an unknown route. Each resource carries its template as its
/// metrics label (`metrics::RouteLabel`).
///
/// Wrap the app in [`request_context`] too (as [`app`] does): it sets
/// `X-Request-ID` and puts the request's id into error bodies.
pub fn configure(state: AppState) -> impl FnOnce(&mut web::ServiceConfig) + Clone {
    move |cfg: &mut web::ServiceConfig| {
        // Without GitHub's keys its route is an unknown route (404).
        let scanning = state.github_keys.is_some();
        cfg.app_data(web::Data::from(Arc::clone(&state.authenticator)))
            .app_data(web::Data::from(Arc::clone(&state.limiter)))
            .app_data(state.limits);
        if let Some(meter) = &state.usage {
            cfg.app_data(web::Data::from(Arc::clone(meter)));
        }
        cfg.app_data(web::Data::new(state))
            .app_data(
                web::JsonConfig::default()
                    .limit(BODY_LIMIT)
                    .error_handler(json_error),
            )
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .app_data(web::PathConfig::default().error_handler(path_error))
            .app_data(web::PayloadConfig::new(BODY_LIMIT));
        #[cfg(feature = "openapi")]
        cfg.app_data(web::Data::new(crate::openapi::documents().clone()));
        let served = route_table::all()
            .filter(|route| scanning || route.path != crate::secret_scanning::GITHUB.path);
        for route in served {
            let allow = route.allow;
            let resource = web::resource(route.path)
                .app_data(RouteLabel(route.path))
                .default_service(web::to(move || async move {
                    Err::<actix_web::HttpResponse, _>(ApiError::method_not_allowed(allow))
                }));
            (route.register)(resource, cfg);
        }
        cfg.default_service(web::to(handlers::route_not_found));
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
/// requests, and keeps idle connections open for [`KEEP_ALIVE_SECS`]. Await the returned [`Server`] to run it.
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
        .keep_alive(std::time::Duration::from_secs(KEEP_ALIVE_SECS))
        .client_request_timeout(head_timeout);
    if let Some(workers) = workers {
        server = server.workers(workers);
    }
    Ok(server.listen(listener)?.run())
}
