//! Where a key may be used from (docs/api.md, "Restricting a key"): after a
//! key authenticated and before its scopes are looked at, every way a key
//! is used over HTTP asks [`check_request`] (or, for verify, whose client is
//! named in the body, [`domain::check_use`] itself, which decides for both).

use actix_web::http::header::{ORIGIN, REFERER};
use actix_web::{web, HttpRequest};
use domain::{check_use, ApiKey, AuthError};

use crate::client_addr::{client_address, TrustedProxies};
use crate::rate_limit::FailureLimiter;

/// Whether `key` may be used by the client of `req`: its address (§15's
/// rule, [`client_address`], with the trusted proxies the registered
/// [`FailureLimiter`] was configured with; none without one) and its
/// `Origin`, or else its `Referer`. Costs nothing for a key without
/// restrictions: the request is not read.
///
/// # Errors
/// [`AuthError::IpNotAllowed`] or [`AuthError::OriginNotAllowed`].
pub(crate) fn check_request(req: &HttpRequest, key: &ApiKey) -> Result<(), AuthError> {
    if key.restrictions.is_unrestricted() {
        return Ok(());
    }
    let none = TrustedProxies::none();
    let limiter = req.app_data::<web::Data<FailureLimiter>>();
    let proxies = limiter.map_or(&none, |l| l.trusted_proxies());
    let ip = client_address(req, proxies);
    let headers = req.headers();
    let origin = headers
        .get(ORIGIN)
        .or_else(|| headers.get(REFERER))
        .and_then(|v| v.to_str().ok());
    check_use(key, ip, origin)
}
