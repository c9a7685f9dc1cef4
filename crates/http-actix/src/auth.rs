//! The authentication extractor (docs/api.md, "Conventions",
//! authentication), usable on any actix handler.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header::{HeaderMap, HeaderName, AUTHORIZATION};
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use domain::{
    AccessError, ApiKey, AuthError, Authenticator, Cost, Credentials, PlainKey, Principal,
    TenantId, UsageLimits,
};

use crate::blocking::{blocking_within, storage_wait};
use crate::error::ApiError;
use crate::key_use::end_client;
use crate::metrics::{self, Via};
use crate::rate_limit::{Client, FailureLimiter};

/// The tenant header.
pub const TENANT_HEADER: &str = "x-tenant-id";

/// The headers a request may carry at most once, each with its name as
/// docs/api.md spells it (the `param` of `duplicate_header`).
const SINGLE_HEADERS: [(HeaderName, &str); 2] = [
    (AUTHORIZATION, "Authorization"),
    (HeaderName::from_static(TENANT_HEADER), "X-Tenant-ID"),
];

/// 400 `duplicate_header` when `Authorization` or `X-Tenant-ID` comes more
/// than once (docs/api.md, "Conventions", authentication). Which copy
/// counts is not for the service to guess: a gateway that appends its own
/// `X-Tenant-ID` after the client's must not find the client's one used.
/// Checked before anything else, and not a failed authentication.
///
/// # Errors
/// [`ApiError::duplicate_header`] naming the first such header.
pub(crate) fn single_headers(headers: &HeaderMap) -> Result<(), ApiError> {
    match SINGLE_HEADERS
        .iter()
        .find(|(name, _)| headers.get_all(name).nth(1).is_some())
    {
        Some((_, shown)) => Err(ApiError::duplicate_header(shown)),
        None => Ok(()),
    }
}

/// An authenticated caller, as an extractor.
///
/// Put it first among a handler's arguments (actix polls extractors
/// together, so a later extractor's error could otherwise answer before
/// authentication does). It checks, in the order docs/api.md gives
/// ("Conventions", authentication):
///
/// 0. `Authorization` and `X-Tenant-ID` at most once each: otherwise 400
///    `duplicate_header`, before anything else (not a failed
///    authentication);
/// 1. when a [`FailureLimiter`] is registered (`web::Data<FailureLimiter>`,
///    as [`crate::configure`] does): an address over the limit of failed
///    authentications is 429 `too_many_requests`, and every failure below
///    but `missing_api_key` counts against it (docs/api.md, "Abuse limits");
/// 2. `Authorization: Bearer <key>` (scheme case-insensitive): missing, or
///    another scheme, or an empty token: 401 `missing_api_key`; not a key
///    string (also a token that is not visible ASCII): 401
///    `invalid_api_key`, without any I/O;
/// 3. `X-Tenant-ID`: 400 `invalid_tenant_id`;
/// 4. and 5. the [`Authenticator`]: first
///    [`authenticate_cached`](Authenticator::authenticate_cached) on the
///    executor thread (a cache hit costs no thread hop), else
///    [`authenticate`](Authenticator::authenticate) on the blocking pool:
///    401 `invalid_api_key`, `api_key_revoked`, `api_key_expired`, 403
///    `tenant_mismatch`, or 503 when storage is down;
/// 6. the key's restrictions (docs/api.md, "Restricting a key"): the client
///    address (the peer, or `X-Forwarded-For` from a proxy the registered
///    [`FailureLimiter`] trusts) inside `allowed_ips`, else 403
///    `ip_not_allowed`; for a publishable key, `Origin` (or `Referer`)
///    matching `allowed_origins`, else 403 `origin_not_allowed`.
///
/// Recording the key's use is the authenticator's business, not the
/// extractor's.
///
/// Authorization is the handler's: `require_secret()` first on any route a
/// publishable key must not reach (a publishable key is public by design and
/// has every scope by default), then `require_scope(..)`; or
/// `require_key_management()`, which does both (through `Deref`), each
/// convertible into an [`ApiError`] with `?`.
///
/// # Registering it in another app
/// The extractor finds the authenticator as `web::Data<dyn Authenticator>`;
/// it needs no middleware ([`request_context`](crate::request_context) is
/// optional, see docs/embedding.md):
///
/// ```no_run
/// use std::sync::Arc;
/// use actix_web::{web, App, HttpResponse};
/// use domain::{Authenticator, Scope};
/// use http_actix::{ApiError, Authenticated};
///
/// async fn list_users(caller: Authenticated) -> Result<HttpResponse, ApiError> {
///     // The key type first: a publishable key is public by design, and its
///     // scopes (`*` by default) must not open a server-side route.
///     caller.require_secret()?;
///     caller.require_scope(Scope::UsersRead)?;
///     Ok(HttpResponse::Ok().finish())
/// }
///
/// fn build(authenticator: Arc<dyn Authenticator>) {
///     let _app = App::new()
///         .app_data(web::Data::from(authenticator))
///         .route("/v1/users", web::get().to(list_users));
/// }
/// ```
///
/// Without the authenticator the extractor answers 500 `internal_error` and
/// logs why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated(pub Principal, UsageLimits);

impl Authenticated {
    /// The caller that presented `key`.
    fn of(key: &ApiKey) -> Self {
        Authenticated(Principal::of(key), key.limits)
    }

    /// Checks what the route requires with `check` (such as
    /// [`Principal::require_key_management`]), then spends one use of a
    /// limited key's budget (docs/api.md, "Limiting a key's use"): a use
    /// refused by `check` spends nothing, and a spent budget is 429
    /// `rate_limited` or `usage_exceeded`, not a failed authentication.
    /// Every route of this service authorizes through here; the
    /// `RateLimit-*` headers come from [`crate::request_context`].
    ///
    /// # Errors
    /// 403 from `check`; 429 when the budget is spent; 503 when a share of
    /// it cannot be taken from storage.
    pub async fn authorize(
        &self,
        req: &HttpRequest,
        check: impl FnOnce(&Principal) -> Result<(), AccessError>,
    ) -> Result<(), ApiError> {
        if let Err(refused) = check(&self.0) {
            // Refused before the budget: it carries the headers, unspent.
            crate::usage::report_unspent(req, &self.0.key_id, &self.1);
            return Err(refused.into());
        }
        crate::usage::spend_use(req, self.0.key_id, self.1, Cost::ONE).await?;
        Ok(())
    }

    /// The caller.
    pub fn principal(&self) -> &Principal {
        &self.0
    }

    /// The caller, by value.
    pub fn into_principal(self) -> Principal {
        self.0
    }
}

impl Deref for Authenticated {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
}

/// What the `Authorization` header holds, read as bytes: a header value may
/// carry any byte but controls, and a bearer token with a byte that is not
/// visible ASCII is a wrong key, not a missing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bearer<'a> {
    /// No header, another scheme, or an empty token.
    Missing,
    /// A token of visible ASCII.
    Token(&'a str),
    /// A bearer token with other bytes (a Cyrillic letter, a full-width
    /// letter, a trailing no-break or zero-width space): never a key.
    NotAscii,
}

/// HTTP's optional white space: space and horizontal tab only. A no-break
/// space is part of the token, and makes it wrong.
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// Reads an `Authorization` header's value.
fn read_bearer(value: Option<&[u8]>) -> Bearer<'_> {
    let Some(value) = value else {
        return Bearer::Missing;
    };
    let value = trim_ows(value);
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        return Bearer::Missing;
    };
    let (scheme, token) = (&value[..space], &value[space..]);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Bearer::Missing;
    }
    read_token(token)
}

/// Reads a token, the part after `Bearer ` or a whole `X-API-Key` value:
/// empty (after optional white space) is missing.
fn read_token(token: &[u8]) -> Bearer<'_> {
    let token = trim_ows(token);
    if token.is_empty() {
        return Bearer::Missing;
    }
    match std::str::from_utf8(token) {
        Ok(token) if token.bytes().all(|b| b.is_ascii_graphic()) => Bearer::Token(token),
        _ => Bearer::NotAscii,
    }
}

fn authorization(headers: &HeaderMap) -> Option<&[u8]> {
    headers.get(AUTHORIZATION).map(|v| v.as_bytes())
}

/// The token of an `Authorization: Bearer <token>` header, if there is one
/// and it is visible ASCII (anything else is never a key).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    match read_bearer(authorization(headers)) {
        Bearer::Token(token) => Some(token),
        Bearer::Missing | Bearer::NotAscii => None,
    }
}

/// Steps 1 and 2 of authentication, without I/O: a bearer token that is not
/// visible ASCII is 401 `invalid_api_key`, like any other string that is not
/// a key.
fn credentials(headers: &HeaderMap) -> Result<Credentials, AuthError> {
    let tenant = headers.get(TENANT_HEADER).and_then(|v| v.to_str().ok());
    match read_bearer(authorization(headers)) {
        Bearer::Missing => Credentials::parse(None, tenant),
        Bearer::Token(token) => Credentials::parse(Some(token), tenant),
        Bearer::NotAscii => Err(AuthError::InvalidKey),
    }
}

/// `X-API-Key`: forward-auth also takes the key from it (docs/api.md,
/// "Forward authentication").
pub(crate) const API_KEY_HEADER: &str = "x-api-key";

/// Forward-auth's doubled headers, before anything else: those of
/// [`single_headers`], `X-API-Key` more than once, or both `X-API-Key` and
/// `Authorization` (which key counts is not for the service to guess).
///
/// # Errors
/// [`ApiError::duplicate_header`].
pub(crate) fn single_key_header(headers: &HeaderMap) -> Result<(), ApiError> {
    single_headers(headers)?;
    let mut api_keys = headers.get_all(API_KEY_HEADER);
    let doubled = api_keys.next().is_some()
        && (api_keys.next().is_some() || headers.contains_key(AUTHORIZATION));
    if doubled {
        return Err(ApiError::duplicate_header("X-API-Key"));
    }
    Ok(())
}

/// Steps 1 and 2 for forward-auth, without I/O: the key from `X-API-Key`
/// or `Authorization: Bearer` (at most one of them: [`single_key_header`]),
/// and `X-Tenant-ID` only when sent (then it must be well-formed, and the
/// key must be the tenant's).
pub(crate) fn gateway_credentials(headers: &HeaderMap) -> Result<Credentials, AuthError> {
    let token = match headers.get(API_KEY_HEADER) {
        Some(value) => read_token(value.as_bytes()),
        None => read_bearer(authorization(headers)),
    };
    let key = match token {
        Bearer::Missing => return Err(AuthError::MissingKey),
        Bearer::NotAscii => return Err(AuthError::InvalidKey),
        Bearer::Token(token) => PlainKey::parse(token).map_err(|_| AuthError::InvalidKey)?,
    };
    match headers.get(TENANT_HEADER) {
        None => Ok(Credentials::for_any_tenant(key)),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|t| TenantId::parse(t).ok())
            .map(|tenant| Credentials::new(key, tenant))
            .ok_or(AuthError::InvalidTenantId),
    }
}

/// The extractor's future (and forward-auth's, with its own `T`): ready at
/// once for everything decided on the executor thread (a malformed request,
/// a cache hit), so those cost no allocation; boxed only when the
/// authenticator must block.
pub enum AuthFuture<T = Authenticated> {
    /// Decided already; taken on the first poll.
    Ready(Option<Result<T, ApiError>>),
    /// Waiting for the blocking pool.
    Pending(Pin<Box<dyn Future<Output = Result<T, ApiError>>>>),
}

impl<T> AuthFuture<T> {
    fn ready(outcome: Result<T, ApiError>) -> Self {
        AuthFuture::Ready(Some(outcome))
    }
}

impl<T> Future for AuthFuture<T> {
    type Output = Result<T, ApiError>;

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        // Neither variant is structurally pinned: the box pins its future.
        match Pin::into_inner(self) {
            AuthFuture::Ready(outcome) => std::task::Poll::Ready(
                outcome
                    .take()
                    .unwrap_or_else(|| Err(ApiError::internal().with_source("polled twice"))),
            ),
            AuthFuture::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

impl<T> Unpin for AuthFuture<T> {}

/// Steps 3 and 4 on an [`Authenticator`]: answered from its cache on this
/// thread when it can ([`Authenticator::authenticate_cached`], no thread
/// hop), else on the blocking pool within the request's storage wait. The
/// one way the extractor, verify and forward-auth ask the authenticator
/// (which records the key's use).
pub(crate) enum Lookup {
    /// Decided on the executor thread.
    Done(Result<Arc<ApiKey>, AuthError>),
    /// For the blocking pool.
    Blocking(Arc<dyn Authenticator>, Credentials),
}

impl Lookup {
    /// The cache's answer, or what the blocking pool must do.
    pub(crate) fn start(authenticator: Arc<dyn Authenticator>, credentials: Credentials) -> Self {
        match authenticator.authenticate_cached(&credentials) {
            Some(verdict) => Lookup::Done(verdict),
            None => Lookup::Blocking(authenticator, credentials),
        }
    }

    /// The verdict; `Err` only when the blocking pool did not answer within
    /// `wait` (503).
    pub(crate) async fn finish(
        self,
        wait: std::time::Duration,
    ) -> Result<Result<Arc<ApiKey>, AuthError>, ApiError> {
        match self {
            Lookup::Done(verdict) => Ok(verdict),
            Lookup::Blocking(authenticator, credentials) => {
                blocking_within(wait, move || authenticator.authenticate(&credentials)).await
            }
        }
    }
}

/// The authenticator registered in the app (`web::Data<dyn Authenticator>`).
pub(crate) fn authenticator_of(req: &HttpRequest) -> Option<Arc<dyn Authenticator>> {
    req.app_data::<web::Data<dyn Authenticator>>()
        .map(|data| data.clone().into_inner())
}

/// The authentication of a request, one implementation for its front doors
/// (the [`Authenticated`] extractor and forward-auth, docs/api.md
/// "Authentication" and "Forward authentication"), after the front door has
/// checked its doubled headers:
///
/// 1. the failure limiter's admission (429 `too_many_requests` for an
///    address over the limit, when a [`FailureLimiter`] is registered);
/// 2. `presented`: the credentials the front door read from the headers
///    (steps 1 and 2, no I/O);
/// 3. the [`Lookup`] (steps 3 and 4, then where the key may be used from:
///    its `allowed_ips` and `allowed_origins` against the request's end
///    client, [`end_client`], 403 `ip_not_allowed` or `origin_not_allowed`),
///    every refusal counted against the client's address as
///    [`FailureLimiter::failed_auth`] decides;
/// 4. `then`: the front door's own judgement of the authenticated key
///    (forward-auth: type and scopes), given whether the lookup blocked.
///
/// The outcome, `then`'s refusals included, is counted by `via`
/// (docs/metrics.md).
pub(crate) fn authenticate_request<T, F>(
    req: &HttpRequest,
    via: Via,
    presented: Result<Credentials, AuthError>,
    then: F,
) -> AuthFuture<T>
where
    T: 'static,
    F: FnOnce(&HttpRequest, &Arc<ApiKey>, Blocked) -> Result<T, ApiError> + 'static,
{
    // An address over the failure limit is refused before anything else;
    // every refusal below counts against it (docs/api.md, "Abuse limits").
    let limiter = req.app_data::<web::Data<FailureLimiter>>();
    let client = match limiter.map(|l| l.admit(req)) {
        Some(Err(too_many)) => return AuthFuture::ready(Err(too_many)),
        Some(Ok(client)) => client,
        None => Client::default(),
    };
    let refused = |e: AuthError| refusal(limiter.map(|l| l.get_ref()), client, e);
    let (credentials, authenticator) = match (presented, authenticator_of(req)) {
        (Err(e), _) => return AuthFuture::ready(judged(via, Err(refused(e)))),
        (Ok(_), None) => {
            log_misregistration(req);
            return AuthFuture::ready(judged(
                via,
                Err(ApiError::internal()
                    .with_source("no web::Data<dyn Authenticator> registered in the app")),
            ));
        }
        (Ok(credentials), Some(authenticator)) => {
            (credentials.from_client(end_client(req)), authenticator)
        }
    };
    let lookup = match Lookup::start(authenticator, credentials) {
        // A cache hit is answered here, on the executor thread.
        Lookup::Done(verdict) => {
            return AuthFuture::ready(judged(
                via,
                verdict
                    .map_err(refused)
                    .and_then(|key| then(req, &key, Blocked(false))),
            ));
        }
        blocking => blocking,
    };
    let req = req.clone();
    let limiter = limiter.cloned();
    let wait = storage_wait(&req);
    AuthFuture::Pending(Box::pin(async move {
        let outcome = lookup.finish(wait).await.and_then(|verdict| {
            verdict.map_err(|e| refusal(limiter.as_ref().map(|l| l.get_ref()), client, e))
        });
        judged(via, outcome.and_then(|key| then(&req, &key, Blocked(true))))
    }))
}

/// Whether an authentication waited for the blocking pool (a cache miss):
/// then its outcome is worth keeping in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Blocked(pub(crate) bool);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = AuthFuture;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // A second extraction in the same request reuses the first.
        if let Some(caller) = req.extensions().get::<Authenticated>().cloned() {
            return AuthFuture::ready(Ok(caller));
        }
        if let Err(doubled) = single_headers(req.headers()) {
            return AuthFuture::ready(Err(doubled));
        }
        authenticate_request(
            req,
            Via::Request,
            credentials(req.headers()),
            |req, key, Blocked(blocked)| {
                let caller = Authenticated::of(key);
                // A cache hit is not remembered in the request: a second
                // extraction is another hit, cheaper than the map insert on
                // every request.
                Ok(if blocked {
                    remember(req, caller)
                } else {
                    caller
                })
            },
        )
    }
}

/// Says once per process, as an error, how to register the authenticator:
/// the usual mistake, `web::Data::new(arc)`, compiles (it registers a
/// `Data<Arc<dyn Authenticator>>`) and would otherwise show only as 500s.
fn log_misregistration(req: &HttpRequest) {
    static LOGGED: std::sync::Once = std::sync::Once::new();
    LOGGED.call_once(|| {
        let wrapped = req
            .app_data::<web::Data<std::sync::Arc<dyn Authenticator>>>()
            .is_some();
        tracing::error!(
            data_new_of_an_arc = wrapped,
            "no web::Data<dyn Authenticator> in the app, so every authenticated request \
             answers 500: register it with `web::Data::from(arc)`, not `web::Data::new(arc)`, \
             or with composition's `Services::register` (docs/embedding.md)"
        );
    });
}

/// Counts the outcome of an authentication (`valid` or its error code) by
/// how the key came, and passes it on.
fn judged<T>(via: Via, outcome: Result<T, ApiError>) -> Result<T, ApiError> {
    metrics::record_auth(
        via,
        outcome.as_ref().map(|_| ()).map_err(|e| e.code().as_str()),
    );
    outcome
}

/// The answer to a failed authentication, counted against the client when a
/// limiter is registered.
fn refusal(limiter: Option<&FailureLimiter>, client: Client, e: AuthError) -> ApiError {
    match limiter {
        Some(limiter) => limiter.failed_auth(client, e),
        None => e.into(),
    }
}

/// Keeps the caller in the request, for a second extraction.
fn remember(req: &HttpRequest, caller: Authenticated) -> Authenticated {
    req.extensions_mut().insert(caller.clone());
    caller
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn token(value: &str) -> Option<String> {
        let req = TestRequest::default()
            .insert_header((AUTHORIZATION, value))
            .to_http_request();
        bearer_token(req.headers()).map(str::to_owned)
    }

    #[test]
    fn bearer_token_takes_any_case_of_the_scheme() {
        assert_eq!(token("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(token("bearer abc").as_deref(), Some("abc"));
        assert_eq!(token("BEARER   abc  ").as_deref(), Some("abc"));
        assert_eq!(token("Basic abc"), None);
        assert_eq!(token("Bearer"), None);
        assert_eq!(token("Bearer "), None);
        assert_eq!(token("abc"), None);
    }

    #[test]
    fn a_doubled_key_or_tenant_header_is_duplicate_header_naming_it() {
        let doubled = |name: &str| {
            let req = TestRequest::default()
                .append_header((AUTHORIZATION, "Bearer a"))
                .append_header((TENANT_HEADER, "tnt_1"))
                .append_header((name, "again"))
                .to_http_request();
            single_headers(req.headers())
                .err()
                .map(|e| (e.status().as_u16(), e.code(), e.param().map(str::to_owned)))
        };
        for (name, shown) in [
            ("authorization", "Authorization"),
            ("Authorization", "Authorization"),
            ("x-tenant-id", "X-Tenant-ID"),
            ("X-TENANT-ID", "X-Tenant-ID"),
        ] {
            assert_eq!(
                doubled(name),
                Some((
                    400,
                    crate::ErrorCode::DuplicateHeader,
                    Some(shown.to_owned())
                )),
                "{name}"
            );
        }
        assert_eq!(doubled("x-request-id"), None);
    }

    fn read(value: &[u8]) -> Bearer<'_> {
        read_bearer(Some(value))
    }

    #[test]
    fn a_bearer_token_that_is_not_visible_ascii_is_a_wrong_key_not_a_missing_one() {
        for value in [
            "Bearer sk_live_\u{0455}abc".as_bytes(),
            "Bearer \u{FF53}\u{FF4B}_live_abc".as_bytes(),
            "Bearer sk_live_abc\u{200B}".as_bytes(),
            "Bearer sk_live_abc\u{A0}".as_bytes(),
            b"Bearer sk_live_\xff\xfe",
        ] {
            assert_eq!(read(value), Bearer::NotAscii, "{value:?}");
        }
        assert_eq!(read(b"Bearer \tabc\t "), Bearer::Token("abc"));
        assert_eq!(read("Bearer \u{A0}".as_bytes()), Bearer::NotAscii);
        assert_eq!(read("Basic \u{0455}".as_bytes()), Bearer::Missing);
    }
}
