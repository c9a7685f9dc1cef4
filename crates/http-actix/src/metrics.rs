//! What the HTTP layer records through the `metrics` facade (docs/metrics.md):
//! requests by route template, method and status, their latency, and
//! authentication outcomes by code. The program installs the Prometheus
//! recorder; without one every call here does nothing.
//!
//! Labels are route templates (`/v1/api-keys/{id}`), methods and codes from
//! fixed lists, never a raw path, a key, a tenant id or a key id. Recording
//! is cheap: each worker thread keeps the handle of every label combination
//! it has seen, so a request costs one small map lookup per metric and no
//! allocation once a combination has been seen.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use actix_web::http::Method;
use actix_web::HttpRequest;
use metrics::{Counter, Histogram};

/// Counter: requests answered, by `route`, `method` and `status`.
pub const HTTP_REQUESTS: &str = "apikeys_http_requests_total";
/// Histogram (seconds): time to the response's head, by `route` and `method`.
pub const HTTP_REQUEST_DURATION: &str = "apikeys_http_request_duration_seconds";
/// Counter: authentication outcomes by `code` (`valid` or the error code) and
/// `via` (`request`: the `Authorization` header of a `/v1` request;
/// `verify`: the body of `POST /v1/api-keys/verify`; `forward_auth`: a
/// gateway's request to `/v1/forward-auth`).
pub const AUTH_OUTCOMES: &str = "apikeys_auth_outcomes_total";
/// Counter: requests refused by an abuse limit (429), by `route`.
pub const RATE_LIMITED: &str = "apikeys_rate_limited_total";

/// Upper bounds of the latency histogram's buckets, in seconds: from 100 µs
/// (a cache hit answers in tens of microseconds) to 10 s (beyond every
/// timeout).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The metrics label of a route: its template. `crate::configure` gives
/// each resource its own as resource data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteLabel(pub(crate) &'static str);

/// The route label of a request that matched no route (a 404), or that
/// failed inside a middleware before its route was known.
pub const UNMATCHED: &str = "unmatched";

/// How a key was presented, for [`AUTH_OUTCOMES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Via {
    /// `Authorization: Bearer` on a `/v1` route (the extractor).
    Request,
    /// The body of `POST /v1/api-keys/verify`.
    Verify,
    /// A gateway's request to `/v1/forward-auth`.
    ForwardAuth,
}

impl Via {
    const fn as_str(self) -> &'static str {
        match self {
            Via::Request => "request",
            Via::Verify => "verify",
            Via::ForwardAuth => "forward_auth",
        }
    }
}

/// The template of the route `req` matched ([`RouteLabel`]), or
/// [`UNMATCHED`].
pub(crate) fn route_of(req: &HttpRequest) -> &'static str {
    req.app_data::<RouteLabel>()
        .map_or(UNMATCHED, |label| label.0)
}

pub(crate) fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::OPTIONS => "OPTIONS",
        // Any other method is 405 or 404; it gets no label of its own, so a
        // client cannot create series at will.
        _ => "other",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CounterKey {
    Request {
        route: &'static str,
        method: &'static str,
        status: u16,
    },
    Auth {
        via: Via,
        code: &'static str,
    },
    RateLimited {
        route: &'static str,
    },
}

thread_local! {
    static COUNTERS: RefCell<HashMap<CounterKey, Counter>> = RefCell::new(HashMap::new());
    static LATENCIES: RefCell<HashMap<(&'static str, &'static str), Histogram>> =
        RefCell::new(HashMap::new());
}

fn increment(key: CounterKey) {
    COUNTERS.with_borrow_mut(|counters| {
        counters
            .entry(key)
            .or_insert_with(|| match key {
                CounterKey::Request {
                    route,
                    method,
                    status,
                } => metrics::counter!(
                    HTTP_REQUESTS,
                    "route" => route,
                    "method" => method,
                    "status" => status.to_string()
                ),
                CounterKey::Auth { via, code } => {
                    metrics::counter!(AUTH_OUTCOMES, "via" => via.as_str(), "code" => code)
                }
                CounterKey::RateLimited { route } => {
                    metrics::counter!(RATE_LIMITED, "route" => route)
                }
            })
            .increment(1);
    });
}

/// Records one answered request (the request-context middleware calls it).
pub(crate) fn record_request(
    route: &'static str,
    method: &'static str,
    status: u16,
    elapsed: Duration,
) {
    increment(CounterKey::Request {
        route,
        method,
        status,
    });
    LATENCIES.with_borrow_mut(|latencies| {
        latencies
            .entry((route, method))
            .or_insert_with(
                || metrics::histogram!(HTTP_REQUEST_DURATION, "route" => route, "method" => method),
            )
            .record(elapsed.as_secs_f64());
    });
}

/// Records an authentication outcome: `Ok` for a key that authenticated,
/// else the code it was answered with.
pub(crate) fn record_auth(via: Via, outcome: Result<(), &'static str>) {
    let code = match outcome {
        Ok(()) => "valid",
        Err(code) => code,
    };
    increment(CounterKey::Auth { via, code });
}

/// Records a request to `route` (as [`route_of`] names it) refused by an
/// abuse limit (429 `too_many_requests`). The limiter calls it once per
/// refusal.
pub(crate) fn record_rate_limited(route: &'static str) {
    increment(CounterKey::RateLimited { route });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_list_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        let custom = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&custom), "other");
    }

    #[test]
    fn latency_buckets_start_at_100_microseconds_and_rise() {
        assert_eq!(LATENCY_BUCKETS.first(), Some(&0.000_1));
        assert!(LATENCY_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }
}
