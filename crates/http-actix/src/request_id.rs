//! The request context: `X-Request-ID`, the request's tracing span, and the
//! rendering of every error response as the JSON error body (docs/api.md,
//! "Conventions", errors).

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use domain::{OsSecretSource, SecretSource};
use tracing::Instrument;

use crate::error::ApiError;

/// The `X-Request-ID` header.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id echoed back.
pub const MAX_REQUEST_ID_LEN: usize = 128;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The id of the current request, in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// The incoming id if it is 1 to 128 characters of `[A-Za-z0-9._-]` and
    /// does not look like an API key (it is echoed and logged).
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = (1..=MAX_REQUEST_ID_LEN).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && !crate::redact::has_key(raw);
        ok.then(|| RequestId(raw.to_owned()))
    }

    /// A fresh id: `req_` and 26 Crockford base32 characters from the OS's
    /// random source.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 26];
        OsSecretSource.fill(&mut bytes);
        let mut id = String::with_capacity(30);
        id.push_str("req_");
        id.extend(
            bytes
                .iter()
                .map(|b| char::from(CROCKFORD[usize::from(b & 31)])),
        );
        RequestId(id)
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The request id [`request_context`] gave `req`, to record with the changes
/// the request makes; `None` when the middleware is not installed.
pub fn request_id_of(req: &actix_web::HttpRequest) -> Option<String> {
    req.extensions()
        .get::<RequestId>()
        .map(|id| id.as_str().to_owned())
}

/// Middleware (use with [`actix_web::middleware::from_fn`]) that every app
/// serving this API, or using [`crate::Authenticated`], should wrap:
///
/// - takes a well-formed incoming `X-Request-ID` or makes one, stores it as
///   a [`RequestId`] in the request's extensions and sets it on the response;
/// - runs the request in a `http_request` tracing span with the request id,
///   method, path and (once known) status;
/// - renders every error response as the JSON error body with that request
///   id, logging the cause chain of server errors. A non-JSON error response
///   from anywhere in actix becomes the JSON body matching its status.
///
/// # Errors
/// None of its own: errors of the wrapped service become JSON responses.
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
    async move {
        // A head too large for our limits, though not for actix's, is
        // refused here, before any route runs, in the JSON error shape.
        let outcome = match crate::edge::check_head(req.head()) {
            Err(e) => Ok(req.error_response(e)),
            Ok(()) => next
                .call(req)
                .await
                .map(ServiceResponse::map_into_boxed_body),
        };
        let res = match outcome {
            Ok(res) => res,
            Err(e) => {
                // Only middleware inside this one can fail this way (the
                // router turns handler errors into responses). Without the
                // request (the router needs it unshared) answer through
                // actix's error path, still as our JSON with the id.
                let api_error = match e.as_error::<ApiError>() {
                    Some(api) => api.to_response(request_id.as_str()),
                    None => ApiError::from_status(e.as_response_error().status_code())
                        .to_response(request_id.as_str()),
                };
                let mut response = api_error;
                if let Ok(value) = HeaderValue::from_str(request_id.as_str()) {
                    response.headers_mut().insert(REQUEST_ID_HEADER, value);
                }
                tracing::error!(error = %e, "request failed in middleware");
                return Err(InternalError::from_response(e.to_string(), response).into());
            }
        };
        let mut res = render_error(res, &request_id);
        if let Ok(value) = HeaderValue::from_str(request_id.as_str()) {
            res.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        let status = res.status().as_u16();
        tracing::Span::current().record("status", status);
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

/// Re-renders an error response as our JSON error with the request id.
fn render_error(res: ServiceResponse<BoxBody>, request_id: &RequestId) -> ServiceResponse<BoxBody> {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let fallback;
    let api_error = match res
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>())
    {
        Some(e) => e,
        None => {
            let is_json = res
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.starts_with("application/json"));
            if is_json && res.response().error().is_none() {
                // A handler of another team answered its own JSON error.
                return res;
            }
            let mut e = ApiError::from_status(status);
            if let Some(cause) = res.response().error() {
                e = e.with_source(cause.to_string());
            }
            fallback = e;
            &fallback
        }
    };
    if api_error.status().is_server_error() {
        tracing::error!(
            code = %api_error.code(),
            cause = api_error.cause_chain().as_deref().unwrap_or("none"),
            "request failed"
        );
    }
    let response = api_error.to_response(request_id.as_str());
    let (req, _) = res.into_parts();
    ServiceResponse::new(req, response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_of_1_to_128_safe_characters_are_accepted() {
        assert!(RequestId::parse("a").is_some());
        assert!(RequestId::parse("A-z_0.9").is_some());
        assert!(RequestId::parse(&"x".repeat(128)).is_some());
        assert!(RequestId::parse("").is_none());
        assert!(RequestId::parse(&"x".repeat(129)).is_none());
        assert!(RequestId::parse("a b").is_none());
        assert!(RequestId::parse("a/b").is_none());
        assert!(RequestId::parse("é").is_none());
        let key = domain::PlainKey::generate(
            domain::KeyType::Secret,
            domain::Mode::Live,
            &domain::testing::SeqSecretSource::default(),
        )
        .into_secret();
        assert!(RequestId::parse(&key).is_none());
    }

    #[test]
    fn generated_request_ids_are_well_formed_and_distinct() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("req_"));
        assert_eq!(a.as_str().len(), 30);
        assert!(RequestId::parse(a.as_str()).is_some());
    }
}
