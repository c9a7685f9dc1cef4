//! Where a key is used from (docs/api.md, "Restricting a key"): the end
//! client of a request, which every way of using a key over HTTP hands to
//! the authenticator with the credentials ([`domain::Credentials::from_client`]),
//! so that a key refused by its restrictions is never recorded as used.
//! Verify, whose client is named in its body, builds the same
//! [`EndClient`] from the body.

use actix_web::http::header::{ORIGIN, REFERER};
use actix_web::{web, HttpRequest};
use domain::EndClient;

use crate::client_addr::{client_address, TrustedProxies};
use crate::rate_limit::FailureLimiter;

/// The end client of `req`: its address (§15's rule, [`client_address`],
/// with the trusted proxies the registered [`FailureLimiter`] was
/// configured with; none without one) and its `Origin`, or else its
/// `Referer`.
pub(crate) fn end_client(req: &HttpRequest) -> EndClient {
    let none = TrustedProxies::none();
    let limiter = req.app_data::<web::Data<FailureLimiter>>();
    let proxies = limiter.map_or(&none, |l| l.trusted_proxies());
    let headers = req.headers();
    let origin = headers
        .get(ORIGIN)
        .or_else(|| headers.get(REFERER))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    EndClient {
        ip: client_address(req, proxies),
        origin,
    }
}
