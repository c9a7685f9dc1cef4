//! The `Authenticated` extractor and the error safety net, with a mock
//! authenticator and handlers another team might write: the extractor asks
//! `authenticate_cached` first, on the executor thread, and falls back to
//! `authenticate` on the blocking pool; recording a key's use is the
//! authenticator's business.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};

use actix_web::http::{Method, StatusCode};
use actix_web::middleware::from_fn;
use actix_web::test::{self, TestRequest};
use actix_web::{web, App, HttpResponse};
use common::{authed, send, Fx};
use domain::mocks::{
    MockApiKeyRepository, MockAuthenticator, MockEventRepository, MockIdempotencyRepository,
    MockTenantRepository,
};
use domain::testing::{SeqSecretSource, TestClock};
use domain::{
    ApiKey, ApiKeyRepository, ApiKeys, AuthError, Authenticator, HashKey, KeyId, KeyName, KeyType,
    Mode, OsSecretSource, PlainKey, Principal, RepositoryError, Scope, Scopes, TenantId,
};
use http_actix::{configure, request_context, ApiError, AppState, Authenticated, Readiness};
use serde::Deserialize;
use serde_json::json;
use time::macros::datetime;

struct AlwaysReady;

impl Readiness for AlwaysReady {
    fn check(&self) -> Result<(), RepositoryError> {
        Ok(())
    }
}

fn principal(scopes: &[&str]) -> Principal {
    let now = datetime!(2024-01-10 09:00:00 UTC);
    Principal {
        tenant_id: TenantId::generate(now, &OsSecretSource),
        key_id: KeyId::generate(now, &OsSecretSource),
        key_type: KeyType::Secret,
        mode: Mode::Live,
        scopes: Scopes::parse(scopes.iter().copied()).unwrap(),
    }
}

fn any_key() -> String {
    PlainKey::generate(KeyType::Secret, Mode::Live, &OsSecretSource).into_secret()
}

/// The key `who` presents, as stored: never used.
fn key_of(who: &Principal) -> Arc<ApiKey> {
    let created = datetime!(2024-01-09 09:00:00 UTC);
    Arc::new(ApiKey {
        id: who.key_id,
        tenant_id: who.tenant_id,
        name: KeyName::parse("Foreign").unwrap(),
        key_type: who.key_type,
        mode: who.mode,
        prefix: "sk_live_abc1".to_owned(),
        last_four: "x123".to_owned(),
        scopes: who.scopes,
        created_at: created,
        last_used_at: None,
        expires_at: None,
        revokes_at: None,
        replaced_by: None,
        restrictions: domain::KeyRestrictions::default(),
        metadata: domain::Metadata::default(),
    })
}

/// A mock authenticator without a cache: `authenticate_cached` answers
/// `None`, so every request needs `authenticate`.
fn uncached() -> MockAuthenticator {
    let mut m = MockAuthenticator::new();
    m.expect_authenticate_cached().returning(|_| None);
    m
}

/// A mock without a cache that authenticates every well-formed request as
/// `who`, counting its `authenticate` calls.
fn mock(who: Principal) -> (MockAuthenticator, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&count);
    let mut m = uncached();
    let key = key_of(&who);
    m.expect_authenticate().returning(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::clone(&key))
    });
    (m, count)
}

async fn users(caller: Authenticated) -> Result<HttpResponse, ApiError> {
    caller.require_scope(Scope::UsersRead)?;
    Ok(HttpResponse::Ok().json(json!({"key_id": caller.key_id.to_string()})))
}

/// Another team's app: only the extractor, the authenticator and the
/// request-context middleware, with an error type of its own (`POST`) and no
/// route for `/openapi.json`.
macro_rules! foreign_app {
    ($authenticator:expr) => {{
        let authenticator: Arc<dyn Authenticator> = Arc::new($authenticator);
        test::init_service(
            App::new()
                .app_data(web::Data::from(authenticator))
                .wrap(from_fn(request_context))
                .route("/v1/users", web::get().to(users))
                .route("/v1/users", web::post().to(create_user)),
        )
        .await
    }};
}

/// `GET /v1/users` with a well-formed key, for a fresh tenant.
fn anyones_request() -> TestRequest {
    users_request(&principal(&["*"]).tenant_id)
}

fn users_request(tenant: &TenantId) -> TestRequest {
    authed(Method::GET, "/v1/users", &any_key(), &tenant.to_string())
}

#[actix_web::test]
async fn a_cache_miss_falls_back_to_authenticate_once_per_request() {
    let who = principal(&["users:read"]);
    let (m, count) = mock(who);
    let app = foreign_app!(m);
    for n in 1..=3 {
        let r = send(&app, users_request(&who.tenant_id).to_request()).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["key_id"], who.key_id.to_string());
        assert_eq!(count.load(Ordering::SeqCst), n);
    }
}

#[actix_web::test]
async fn a_cache_hit_answers_and_authenticate_is_never_called() {
    let who = principal(&["users:read"]);
    let key = key_of(&who);
    let mut m = MockAuthenticator::new();
    m.expect_authenticate_cached()
        .times(2)
        .returning(move |_| Some(Ok(Arc::clone(&key))));
    m.expect_authenticate().never();
    let app = foreign_app!(m);
    for _ in 0..2 {
        let r = send(&app, users_request(&who.tenant_id).to_request()).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["key_id"], who.key_id.to_string());
    }
}

#[actix_web::test]
async fn a_cached_refusal_answers_and_authenticate_is_never_called() {
    let who = principal(&["*"]);
    let cases = [
        (
            AuthError::Revoked,
            StatusCode::UNAUTHORIZED,
            "api_key_revoked",
        ),
        (
            AuthError::TenantMismatch,
            StatusCode::FORBIDDEN,
            "tenant_mismatch",
        ),
    ];
    for (error, status, code) in cases {
        let error = Mutex::new(Some(error));
        let mut m = MockAuthenticator::new();
        m.expect_authenticate_cached()
            .times(1)
            .returning(move |_| error.lock().unwrap().take().map(Err));
        m.expect_authenticate().never();
        let app = foreign_app!(m);
        let r = send(&app, users_request(&who.tenant_id).to_request()).await;
        r.assert_error(status, code, None);
    }
}

#[actix_web::test]
async fn the_cache_is_asked_first_on_the_executor_thread_and_authenticate_then_blocks_elsewhere() {
    // Given an authenticator that notes the thread of each call,
    let who = principal(&["*"]);
    let key = key_of(&who);
    let threads: Arc<Mutex<Vec<(&str, ThreadId)>>> = Arc::default();
    let mut m = MockAuthenticator::new();
    let (cached, blocking) = (Arc::clone(&threads), Arc::clone(&threads));
    m.expect_authenticate_cached().times(1).returning(move |_| {
        cached
            .lock()
            .unwrap()
            .push(("authenticate_cached", thread::current().id()));
        None
    });
    m.expect_authenticate().times(1).returning(move |_| {
        blocking
            .lock()
            .unwrap()
            .push(("authenticate", thread::current().id()));
        Ok(Arc::clone(&key))
    });
    let app = foreign_app!(m);

    // when a request misses the cache,
    let r = send(&app, users_request(&who.tenant_id).to_request()).await;
    assert_eq!(r.status, StatusCode::OK);

    // then the cache was asked first, on this (the executor's) thread, and
    // `authenticate` then ran on another.
    let threads = threads.lock().unwrap();
    let executor = thread::current().id();
    assert_eq!(threads.len(), 2);
    assert_eq!(threads[0], ("authenticate_cached", executor));
    assert_eq!(threads[1].0, "authenticate");
    assert_ne!(threads[1].1, executor);
}

// ---- the use of a key: recorded by the authenticator, never by the extractor

/// Another team's app over a real service (`ApiKeys` as the authenticator).
macro_rules! foreign_app_over {
    ($service:expr) => {{
        let authenticator: Arc<dyn Authenticator> = $service;
        test::init_service(
            App::new()
                .app_data(web::Data::from(authenticator))
                .wrap(from_fn(request_context))
                .route("/v1/users", web::get().to(users)),
        )
        .await
    }};
}

#[actix_web::test]
async fn a_request_records_the_use_when_due_and_not_again_within_the_minute() {
    // Given a real service over the in-memory store,
    let fx = Fx::new();
    let app = foreign_app_over!(fx.service.clone());
    let tenant: TenantId = fx.acme.tenant.parse().unwrap();
    let id: KeyId = fx.acme.live_id.parse().unwrap();
    let last_used = || fx.store.find(&tenant, &id).unwrap().unwrap().last_used_at;
    let t0 = datetime!(2024-01-10 09:00:00 UTC);
    let request = || authed(Method::GET, "/v1/users", &fx.acme.live, &fx.acme.tenant);
    assert_eq!(last_used(), None);

    // when its key makes requests, then the first one records the use, by
    // the time it is answered,
    let r = send(&app, request().to_request()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(last_used(), Some(t0));
    // and the next ones within 60 s do not,
    for seconds in [1, 59] {
        fx.clock.set(t0 + time::Duration::seconds(seconds));
        let r = send(&app, request().to_request()).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(last_used(), Some(t0), "{seconds} s later");
    }
    // until a minute has passed.
    let later = t0 + time::Duration::seconds(60);
    fx.clock.set(later);
    let r = send(&app, request().to_request()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(last_used(), Some(later));
}

#[actix_web::test]
async fn failing_to_record_the_use_never_fails_the_request() {
    // Given a service whose repository finds the key but fails every write,
    let who = principal(&["*"]);
    let secret = PlainKey::generate(KeyType::Secret, Mode::Live, &OsSecretSource);
    let hash_key = HashKey::from_bytes(&[9u8; 32]).unwrap();
    let expected_hash = hash_key.hash(&secret);
    let mut keys = MockApiKeyRepository::new();
    let found = key_of(&who);
    keys.expect_find_by_hash()
        .withf(move |hash| *hash == expected_hash)
        .times(1)
        .returning(move |_| Ok(Some((*found).clone())));
    keys.expect_record_uses()
        .times(1)
        .returning(|_| Err(RepositoryError::unavailable("record uses", "database down")));
    let service = ApiKeys::new(
        keys,
        MockTenantRepository::new(),
        MockEventRepository::new(),
        MockIdempotencyRepository::new(),
        TestClock::default(),
        SeqSecretSource::new(1),
        hash_key,
    );
    let app = foreign_app_over!(Arc::new(service));

    // when its key makes a request, then the request succeeds.
    let r = send(
        &app,
        authed(
            Method::GET,
            "/v1/users",
            secret.expose_secret(),
            &who.tenant_id.to_string(),
        )
        .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["key_id"], who.key_id.to_string());
}

#[actix_web::test]
async fn foreign_handler_gets_403_insufficient_scope_from_require_scope() {
    let who = principal(&["sessions:read"]);
    let (m, _) = mock(who);
    let app = foreign_app!(m);
    let r = send(&app, users_request(&who.tenant_id).to_request()).await;
    r.assert_error(StatusCode::FORBIDDEN, "insufficient_scope", None);
}

#[actix_web::test]
async fn extractor_checks_headers_before_calling_the_authenticator() {
    let mut m = MockAuthenticator::new();
    m.expect_authenticate_cached().never();
    m.expect_authenticate().never();
    let app = foreign_app!(m);
    let r = send(&app, TestRequest::get().uri("/v1/users").to_request()).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "missing_api_key", None);
    let r = send(
        &app,
        TestRequest::get()
            .uri("/v1/users")
            .insert_header(("Authorization", format!("Bearer {}", any_key())))
            .insert_header(("X-Tenant-ID", "acme"))
            .to_request(),
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_tenant_id", None);
}

#[actix_web::test]
async fn repository_failure_is_500_internal_error_without_the_cause() {
    let mut m = uncached();
    m.expect_authenticate().returning(|_| {
        Err(AuthError::Repository(RepositoryError::failure(
            "find key",
            "relation \"api_keys\" does not exist",
        )))
    });
    let app = foreign_app!(m);
    let r = send(&app, anyones_request().to_request()).await;
    r.assert_error(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", None);
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        !text.contains("api_keys") && !text.contains("find key"),
        "{text}"
    );
}

#[actix_web::test]
async fn repository_unavailable_during_authentication_is_503() {
    let mut m = uncached();
    m.expect_authenticate().returning(|_| {
        Err(AuthError::Repository(RepositoryError::unavailable(
            "pool",
            "timed out",
        )))
    });
    let app = foreign_app!(m);
    let r = send(&app, anyones_request().to_request()).await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", None);
}

#[actix_web::test]
async fn authentication_errors_of_the_authenticator_keep_their_codes() {
    let cases = [
        (
            AuthError::InvalidKey,
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
        ),
        (
            AuthError::Revoked,
            StatusCode::UNAUTHORIZED,
            "api_key_revoked",
        ),
        (
            AuthError::Expired,
            StatusCode::UNAUTHORIZED,
            "api_key_expired",
        ),
        (
            AuthError::TenantMismatch,
            StatusCode::FORBIDDEN,
            "tenant_mismatch",
        ),
    ];
    for (error, status, code) in cases {
        let error = Arc::new(std::sync::Mutex::new(Some(error)));
        let mut m = uncached();
        m.expect_authenticate()
            .returning(move |_| Err(error.lock().unwrap().take().unwrap()));
        let app = foreign_app!(m);
        let r = send(
            &app,
            users_request(&principal(&["*"]).tenant_id).to_request(),
        )
        .await;
        r.assert_error(status, code, None);
    }
}

#[actix_web::test]
async fn extractor_without_a_registered_authenticator_is_500() {
    let app = test::init_service(
        App::new()
            .wrap(from_fn(request_context))
            .route("/v1/users", web::get().to(users)),
    )
    .await;
    let r = send(&app, anyones_request().to_request()).await;
    r.assert_error(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", None);
}

// ---- actix's own errors, in an app built with `configure` ------------------

#[derive(Debug, Deserialize)]
#[expect(dead_code, reason = "only deserialised")]
struct Thing {
    count: u32,
}

async fn json_thing(_: web::Json<Thing>) -> HttpResponse {
    HttpResponse::Ok().finish()
}

async fn query_thing(_: web::Query<Thing>) -> HttpResponse {
    HttpResponse::Ok().finish()
}

async fn path_thing(_: web::Path<u32>) -> HttpResponse {
    HttpResponse::Ok().finish()
}

async fn plain_teapot() -> HttpResponse {
    HttpResponse::BadRequest().body("plain text from a handler")
}

macro_rules! configured_app {
    () => {{
        let fx = Fx::new();
        let authenticator: Arc<dyn Authenticator> = fx.service.clone();
        let state = AppState::new(fx.service.clone(), authenticator, Arc::new(AlwaysReady));
        test::init_service(
            App::new()
                .configure(configure(state))
                .wrap(from_fn(request_context))
                .route("/things", web::post().to(json_thing))
                .route("/things", web::get().to(query_thing))
                .route("/things/{n}", web::get().to(path_thing))
                .route("/plain", web::get().to(plain_teapot)),
        )
        .await
    }};
}

#[actix_web::test]
async fn actix_json_extractor_errors_are_json() {
    let app = configured_app!();
    let cases: [(&str, Option<&str>, StatusCode, &str); 4] = [
        (
            "{\"count\": ",
            Some("application/json"),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "{\"count\": \"x\"}",
            Some("application/json"),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        (
            "{\"count\": 1}",
            Some("text/plain"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "{\"count\": 1}",
            None,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
    ];
    for (payload, content_type, status, code) in cases {
        let mut req = TestRequest::post().uri("/things").set_payload(payload);
        if let Some(ct) = content_type {
            req = req.insert_header(("Content-Type", ct));
        }
        let r = send(&app, req.to_request()).await;
        r.assert_error(status, code, None);
    }
    let big = format!("{{\"count\": 1, \"pad\": \"{}\"}}", "x".repeat(20_000));
    let r = send(
        &app,
        TestRequest::post()
            .uri("/things")
            .insert_header(("Content-Type", "application/json"))
            .set_payload(big)
            .to_request(),
    )
    .await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None);
}

#[actix_web::test]
async fn actix_query_and_path_errors_are_json() {
    let app = configured_app!();
    let r = send(
        &app,
        TestRequest::get().uri("/things?count=many").to_request(),
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_parameter", None);
    let r = send(&app, TestRequest::get().uri("/things/seven").to_request()).await;
    r.assert_error(StatusCode::NOT_FOUND, "not_found", None);
}

// ---- a guest in another team's app: its own responses pass untouched ------

#[actix_web::test]
async fn a_host_handlers_plain_text_error_passes_through_untouched() {
    let app = configured_app!();
    let r = send(&app, TestRequest::get().uri("/plain").to_request()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body, b"plain text from a handler");
}

/// Another team's own error type, rendered as its own JSON.
#[derive(Debug)]
struct UserExists;

impl std::fmt::Display for UserExists {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("user exists")
    }
}

impl actix_web::ResponseError for UserExists {
    fn status_code(&self) -> StatusCode {
        StatusCode::CONFLICT
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::Conflict().json(json!({"error": {"code": "user_exists"}}))
    }
}

async fn create_user(caller: Authenticated) -> Result<HttpResponse, actix_web::Error> {
    caller.require_secret().map_err(ApiError::from)?;
    Err(UserExists.into())
}

#[actix_web::test]
async fn a_host_handlers_own_json_error_passes_through_untouched() {
    let who = principal(&["*"]);
    let (m, _) = mock(who);
    let app = foreign_app!(m);
    let r = send(
        &app,
        authed(
            Method::POST,
            "/v1/users",
            &any_key(),
            &who.tenant_id.to_string(),
        )
        .insert_header(("X-Request-ID", "host-req-1"))
        .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json(), json!({"error": {"code": "user_exists"}}));
    assert_eq!(r.header("x-request-id"), Some("host-req-1"));
}

#[actix_web::test]
async fn a_host_apps_unknown_route_keeps_its_own_404() {
    let (m, _) = mock(principal(&["*"]));
    let app = foreign_app!(m);
    let r = send(&app, TestRequest::get().uri("/v1/nothing").to_request()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.is_empty(), "{:?}", r.body);
    assert!(r
        .header("x-request-id")
        .is_some_and(|id| id.starts_with("req_")));
}

#[actix_web::test]
async fn with_the_middleware_an_extractor_error_carries_the_incoming_request_id() {
    let (m, _) = mock(principal(&["*"]));
    let app = foreign_app!(m);
    let r = send(
        &app,
        TestRequest::get()
            .uri("/v1/users")
            .insert_header(("X-Request-ID", "host-req-2"))
            .to_request(),
    )
    .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "missing_api_key", None);
    assert_eq!(r.json()["error"]["request_id"], "host-req-2");
}

#[actix_web::test]
async fn without_the_middleware_the_extractor_works_and_errors_carry_a_fresh_request_id() {
    // Given another team's app with the extractor and no middleware at all,
    let who = principal(&["users:read"]);
    let (m, _) = mock(who);
    let authenticator: Arc<dyn Authenticator> = Arc::new(m);
    let app = test::init_service(
        App::new()
            .app_data(web::Data::from(authenticator))
            .route("/v1/users", web::get().to(users)),
    )
    .await;

    // a good key is let in,
    let r = send(&app, users_request(&who.tenant_id).to_request()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["key_id"], who.key_id.to_string());

    // and each refusal carries a request id of its own, in the body and the
    // header alike.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = send(&app, TestRequest::get().uri("/v1/users").to_request()).await;
        r.assert_error(StatusCode::UNAUTHORIZED, "missing_api_key", None);
        let id = r.json()["error"]["request_id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("req_") && id.len() == 30, "{id}");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1]);
}

#[actix_web::test]
async fn a_mock_panicking_on_the_blocking_pool_fails_the_request_with_500() {
    // Given an authenticator whose `authenticate` has no expectation (a
    // mockall mock panics when called),
    let m = uncached();
    let app = foreign_app!(m);

    // when a request needs it, then the panic is a 500, not an outage's 503
    // a test could mistake for the answer it expected.
    let r = send(&app, anyones_request().to_request()).await;
    r.assert_error(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", None);
}
