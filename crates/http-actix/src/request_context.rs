//! The request context middleware: `X-Request-ID` on every response, the
//! request's tracing span and metrics, and the rendering of every error
//! response as the JSON error body (docs/api.md, "Conventions", errors).

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use tracing::Instrument;

use crate::error::ApiError;
use crate::request_id::{RequestId, CURRENT, REQUEST_ID_HEADER};

/// Optional middleware (use with [`actix_web::middleware::from_fn`]) for an
/// app serving this API or using [`crate::Authenticated`]. The extractor and
/// [`ApiError`] work without it; with it:
///
/// - a well-formed incoming `X-Request-ID` is taken, or one is made; it is
///   stored as a [`RequestId`] in the request's extensions, set on the
///   response (unless the app set one itself), and every [`ApiError`]
///   answered in the request carries it in its body;
/// - the request runs in a `http_request` tracing span with the request id,
///   method, path and (once known) status;
/// - the request's route template, method, status and latency are recorded
///   ([`crate::metrics`]).
///
/// It never rewrites a response the app produced itself: another team's
/// errors, 404s and bodies pass through untouched (docs/embedding.md).
///
/// # Errors
/// None of its own: an error of an inner middleware becomes its JSON
/// response when it is an [`ApiError`], and is passed on otherwise.
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let request_id = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(RequestId::parse)
        .unwrap_or_else(RequestId::generate);
    req.extensions_mut().insert(request_id.clone());
    let span = tracing::info_span!(
        "http_request",
        request_id = %request_id.as_str(),
        method = %req.method(),
        path = %crate::redact::redact_keys(req.path()),
        status = tracing::field::Empty,
    );
    let started = Instant::now();
    let header = HeaderValue::from_str(request_id.as_str()).ok();
    // Taken now: a request that fails inside a middleware is gone by the
    // time its error comes back (and the router needs it unshared, so it
    // cannot be kept).
    let method = crate::metrics::method_label(req.method());
    async move {
        // A head too large for our limits, though not for actix's, is
        // refused here, before any route runs, in the JSON error shape.
        let outcome = CURRENT
            .scope(request_id, async move {
                match crate::request_limits::check_head(req.head()) {
                    Err(e) => Ok(req.error_response(e)),
                    Ok(()) => next
                        .call(req)
                        .await
                        .map(ServiceResponse::map_into_boxed_body),
                }
            })
            .await;
        let mut res = match outcome {
            Ok(res) => res,
            Err(e) => {
                // Only middleware inside this one can fail this way (the
                // router turns handler errors into responses), and without
                // the request (the router needs it unshared) there is no
                // response to build here: actix renders the error with
                // `error_response`, outside the scope above. An `ApiError`
                // is rendered now instead, with this request's id.
                let Some(api) = e.as_error::<ApiError>() else {
                    return Err(e);
                };
                let mut response = api.to_response(id_of(header.as_ref()));
                if let Some(value) = header {
                    response.headers_mut().insert(REQUEST_ID_HEADER, value);
                }
                crate::metrics::record_request(
                    crate::metrics::UNMATCHED,
                    method,
                    response.status().as_u16(),
                    started.elapsed(),
                );
                return Err(InternalError::from_response(e.to_string(), response).into());
            }
        };
        if let Some(value) = header {
            if !res.headers().contains_key(&REQUEST_ID_HEADER) {
                res.headers_mut().insert(REQUEST_ID_HEADER, value);
            }
        }
        let (head, mut body) = res.into_parts();
        crate::usage::add_headers(&head, body.headers_mut());
        let res = ServiceResponse::new(head, body);
        let status = res.status().as_u16();
        tracing::Span::current().record("status", status);
        crate::metrics::record_request(
            crate::metrics::route_of(res.request()),
            method,
            status,
            started.elapsed(),
        );
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if crate::refusal_log::is_refusal(res.status()) {
            // Sampled: an attack must not fill the disk. The line carries
            // how many refusals went unlogged since the last one.
            if let Some(unlogged) = crate::refusal_log::sample() {
                tracing::info!(
                    status,
                    latency_ms,
                    unlogged_refusals = unlogged,
                    "request completed"
                );
            }
        } else {
            tracing::info!(status, latency_ms, "request completed");
        }
        Ok(res)
    }
    .instrument(span)
    .await
}

/// The id a header value was made from (it was made from a `RequestId`, so it
/// is visible ASCII).
fn id_of(header: Option<&HeaderValue>) -> &str {
    header.and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// Middleware of this service's own app ([`crate::app`]), inside
/// [`request_context`]: an error response that is not an [`ApiError`]'s
/// (actix answered with a bare status somewhere) becomes the JSON error body
/// matching its status. Never installed in another team's app.
///
/// # Errors
/// The wrapped service's.
pub(crate) async fn json_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let res = next.call(req).await?.map_into_boxed_body();
    let status = res.status();
    let error = res.response().error();
    let ours = error.is_some_and(|e| e.as_error::<ApiError>().is_some());
    // A JSON answer a handler chose to give (`/readyz`'s 503) is kept too.
    let chosen_json = error.is_none()
        && res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/json"));
    if ours || chosen_json || !(status.is_client_error() || status.is_server_error()) {
        return Ok(res);
    }
    let mut e = ApiError::from_status(status);
    if let Some(cause) = res.response().error() {
        e = e.with_source(cause.to_string());
    }
    let (req, _) = res.into_parts();
    Ok(ServiceResponse::new(
        req,
        actix_web::ResponseError::error_response(&e),
    ))
}
