//! The `Authenticated` extractor and the error safety net, with a mock
//! authenticator and handlers another team might write.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use actix_web::middleware::from_fn;
use actix_web::test::{self, TestRequest};
use actix_web::{web, App, HttpResponse};
use common::{authed, send, Fx};
use domain::testing::MockAuthenticator;
use domain::{
    AuthError, Authentication, Authenticator, KeyId, KeyType, Mode, OsSecretSource, PlainKey,
    Principal, RepositoryError, Scope, Scopes, TenantId,
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

/// A mock that authenticates every well-formed request as `who`, counting
/// `record_use` calls and signalling each on `used`.
fn mock(
    who: Principal,
    due: bool,
    record: Result<(), ()>,
) -> (MockAuthenticator, Arc<AtomicUsize>, mpsc::Receiver<()>) {
    let count = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let mut m = MockAuthenticator::new();
    m.expect_authenticate().returning(move |_| {
        Ok(Authentication {
            principal: who.clone(),
            last_used_due: due,
        })
    });
    let counter = Arc::clone(&count);
    m.expect_record_use().returning(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        tx.send(()).ok();
        record.map_err(|()| RepositoryError::unavailable("touch", "database down"))
    });
    (m, count, rx)
}

async fn users(caller: Authenticated) -> Result<HttpResponse, ApiError> {
    caller.require_scope(Scope::UsersRead)?;
    Ok(HttpResponse::Ok().json(json!({"key_id": caller.key_id.to_string()})))
}

/// Another team's app: only the extractor, the authenticator and the
/// request-context middleware.
macro_rules! foreign_app {
    ($authenticator:expr) => {{
        let authenticator: Arc<dyn Authenticator> = Arc::new($authenticator);
        test::init_service(
            App::new()
                .app_data(web::Data::from(authenticator))
                .wrap(from_fn(request_context))
                .route("/v1/users", web::get().to(users)),
        )
        .await
    }};
}

fn users_request(tenant: &TenantId) -> TestRequest {
    authed(Method::GET, "/v1/users", &any_key(), &tenant.to_string())
}

#[actix_web::test]
async fn record_use_is_called_off_the_request_path_when_due() {
    let who = principal(&["users:read"]);
    let (m, count, used) = mock(who.clone(), true, Ok(()));
    let app = foreign_app!(m);
    let r = send(&app, users_request(&who.tenant_id).to_request()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["key_id"], who.key_id.to_string());
    used.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[actix_web::test]
async fn record_use_is_not_called_when_not_due() {
    let who = principal(&["*"]);
    let (m, count, used) = mock(who.clone(), false, Ok(()));
    let app = foreign_app!(m);
    for _ in 0..3 {
        let r = send(&app, users_request(&who.tenant_id).to_request()).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    assert!(used.recv_timeout(Duration::from_millis(200)).is_err());
    assert_eq!(count.load(Ordering::SeqCst), 0);
}

#[actix_web::test]
async fn failing_record_use_never_fails_the_request() {
    let who = principal(&["*"]);
    let (m, count, used) = mock(who.clone(), true, Err(()));
    let app = foreign_app!(m);
    let r = send(&app, users_request(&who.tenant_id).to_request()).await;
    assert_eq!(r.status, StatusCode::OK);
    used.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[actix_web::test]
async fn foreign_handler_gets_403_insufficient_scope_from_require_scope() {
    let who = principal(&["sessions:read"]);
    let (m, _, _) = mock(who.clone(), false, Ok(()));
    let app = foreign_app!(m);
    let r = send(&app, users_request(&who.tenant_id).to_request()).await;
    r.assert_error(StatusCode::FORBIDDEN, "insufficient_scope", None);
}

#[actix_web::test]
async fn extractor_checks_headers_before_calling_the_authenticator() {
    let mut m = MockAuthenticator::new();
    m.expect_authenticate().never();
    m.expect_record_use().never();
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
    let mut m = MockAuthenticator::new();
    m.expect_authenticate().returning(|_| {
        Err(AuthError::Repository(RepositoryError::failure(
            "find key",
            "relation \"api_keys\" does not exist",
        )))
    });
    let app = foreign_app!(m);
    let r = send(
        &app,
        users_request(&principal(&["*"]).tenant_id).to_request(),
    )
    .await;
    r.assert_error(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", None);
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        !text.contains("api_keys") && !text.contains("find key"),
        "{text}"
    );
}

#[actix_web::test]
async fn repository_unavailable_during_authentication_is_503() {
    let mut m = MockAuthenticator::new();
    m.expect_authenticate().returning(|_| {
        Err(AuthError::Repository(RepositoryError::unavailable(
            "pool",
            "timed out",
        )))
    });
    let app = foreign_app!(m);
    let r = send(
        &app,
        users_request(&principal(&["*"]).tenant_id).to_request(),
    )
    .await;
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
        let mut m = MockAuthenticator::new();
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
    let r = send(
        &app,
        users_request(&principal(&["*"]).tenant_id).to_request(),
    )
    .await;
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

#[actix_web::test]
async fn plain_text_error_responses_become_json() {
    let app = configured_app!();
    let r = send(&app, TestRequest::get().uri("/plain").to_request()).await;
    r.assert_error(StatusCode::BAD_REQUEST, "bad_request", None);
}
