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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

    /// A fresh id: `req_` and 26 Crockford base32 characters from this
    /// thread's generator, seeded once from the OS.
    pub fn generate() -> Self {
        let mut id = String::with_capacity(30);
        id.push_str("req_");
        let (mut bits, mut left) = (0u64, 0u32);
        for _ in 0..26 {
            if left < 5 {
                bits = next_random();
                left = 64;
            }
            id.push(char::from(CROCKFORD[(bits & 31) as usize]));
            bits >>= 5;
            left -= 5;
        }
        RequestId(id)
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The next 64 bits of this thread's SplitMix64 generator, seeded once from
/// the OS's random source. A request id needs to be unique, not secret: a
/// `getrandom` system call on every request was work that can be done once
/// per thread (docs/performance.md, "Load").
fn next_random() -> u64 {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new({
            let mut seed = [0u8; 8];
            OsSecretSource.fill(&mut seed);
            u64::from_le_bytes(seed)
        });
    }
    STATE.with(|state| {
        let next = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(next);
        let mut z = next;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

tokio::task_local! {
    /// The id [`request_context`] gave the request being served: a task-local,
    /// because an [`ApiError`] renders its body through
    /// `ResponseError::error_response`, which is not given the request.
    static CURRENT: RequestId;
}

/// The id of the request being served on this task: the one
/// [`request_context`] gave it, else a fresh one (the middleware is not
/// installed), so an error body never carries an empty id.
pub(crate) fn current_or_new() -> RequestId {
    CURRENT
        .try_with(RequestId::clone)
        .unwrap_or_else(|_| RequestId::generate())
}

/// The request id [`request_context`] gave `req`, to record with the changes
/// the request makes; `None` when the middleware is not installed.
pub fn request_id_of(req: &actix_web::HttpRequest) -> Option<String> {
    req.extensions()
        .get::<RequestId>()
        .map(|id| id.as_str().to_owned())
}

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
                match crate::edge::check_head(req.head()) {
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
        let many: std::collections::HashSet<RequestId> =
            (0..10_000).map(|_| RequestId::generate()).collect();
        assert_eq!(many.len(), 10_000);
        let other_thread = std::thread::spawn(RequestId::generate)
            .join()
            .expect("thread");
        assert!(!many.contains(&other_thread));
        assert!(a.as_str().starts_with("req_"));
        assert_eq!(a.as_str().len(), 30);
        assert!(RequestId::parse(a.as_str()).is_some());
    }
}
