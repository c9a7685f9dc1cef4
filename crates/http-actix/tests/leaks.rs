//! `POST /v1/leaked-keys` (docs/api.md, "POST /v1/leaked-keys"), through
//! `actix_web::test` over the in-memory store: the 202 and its body, which
//! never tells keys from junk, every body error, no credentials needed, the
//! revocations that follow the answer (polled: they happen after it), the
//! OpenAPI entry, and a failed report's log line (without the keys).
//!
//! The report's strings must never come back: every answer is checked for
//! them ([`checked`]).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
#![allow(
    clippy::await_holding_lock,
    reason = "each test holds the log lock for its whole run, on its own thread"
)]

mod common;

use std::sync::{PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration as StdDuration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use common::{send, Fx, Reply};
use domain::{
    Actor, ApiKey, ApiKeyRepository, EventData, GracePeriod, KeyEvent, KeyId, KeyType, Mode,
    TenantId,
};
use http_actix::app;
use serde_json::{json, Value};

const URI: &str = "/v1/leaked-keys";

/// How long the revocations may take after the 202 before a test fails.
const DEADLINE: StdDuration = StdDuration::from_secs(5);

/// Tracing caches per call site whether anyone listens, process-wide: a
/// call site first reached on another thread while the log test sets up its
/// subscriber can stay silent for it. So the log test runs alone: it takes
/// this lock to write, every other test to read ([`not_logging`]).
static LOGS: RwLock<()> = RwLock::new(());

/// Held by every test but the log test.
fn not_logging() -> RwLockReadGuard<'static, ()> {
    LOGS.read().unwrap_or_else(PoisonError::into_inner)
}

macro_rules! init {
    ($fx:expr) => {
        test::init_service(app($fx.state())).await
    };
}

/// A report with the JSON `body` and no `Authorization` or `X-Tenant-ID`.
fn report_req(body: &Value) -> TestRequest {
    raw_req(body.to_string())
}

/// A report with this exact body text.
fn raw_req(body: String) -> TestRequest {
    TestRequest::default()
        .method(Method::POST)
        .uri(URI)
        .insert_header(("Content-Type", "application/json"))
        .set_payload(body)
}

/// Sends `req` and checks that none of `secrets` (the strings it carried),
/// nor any part of one after its prefix, is in the answer.
async fn checked<S, R, B>(app: &S, req: R, secrets: &[&str]) -> Reply
where
    S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let r = send(app, req).await;
    assert!(r.header("x-request-id").is_some());
    let body = String::from_utf8_lossy(&r.body);
    for secret in secrets.iter().filter(|s| s.len() >= 12) {
        assert!(
            !body.contains(secret),
            "a reported key is in the answer: {body}"
        );
        assert!(
            !body.contains(&secret[8..]),
            "part of a reported key is in the answer: {body}"
        );
    }
    r
}

/// Reports `keys` (as a JSON array) and checks the answer.
macro_rules! report {
    ($app:expr, $keys:expr) => {{
        let owned = $keys;
        let keys: Vec<&str> = owned.iter().map(|k| k.as_ref()).collect();
        checked(&$app, report_req(&json!({ "keys": keys })).to_request(), &keys).await
    }};
}

/// Asserts the 202 and its exact body.
fn assert_accepted(r: &Reply, received: usize) {
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        format!(r#"{{"received":{received}}}"#)
    );
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
}

fn tenant(fx: &Fx) -> TenantId {
    fx.acme.tenant.parse().unwrap()
}

/// The key as stored now.
fn stored(fx: &Fx, id: &str) -> ApiKey {
    fx.store
        .find(&tenant(fx), &id.parse().unwrap())
        .unwrap()
        .unwrap()
}

/// Waits (yielding to the runtime, which runs the report's work) until
/// every key of `ids` is revoked; fails after [`DEADLINE`].
async fn until_revoked(fx: &Fx, ids: &[&str]) {
    let start = Instant::now();
    loop {
        let now = fx.service.now();
        if ids.iter().all(|id| stored(fx, id).is_revoked(now)) {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "not revoked within {DEADLINE:?} of the 202"
        );
        actix_web::rt::time::sleep(StdDuration::from_millis(5)).await;
    }
}

/// The events stored after the first `before` ones.
fn events_after(fx: &Fx, before: usize) -> Vec<KeyEvent> {
    fx.store
        .stored_events()
        .into_iter()
        .skip(before)
        .map(|s| s.event)
        .collect()
}

/// `n` strings that are not keys.
fn junk(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("not a key {i}")).collect()
}

#[actix_web::test]
async fn a_report_is_accepted_with_the_number_of_strings_received() {
    let _shared = not_logging();
    let fx = Fx::new();
    let app = init!(fx);
    let live = fx.acme.live.clone();

    let r = report!(app, ["hello"]);
    assert_accepted(&r, 1);
    assert_eq!(r.keys_at(&[]), ["received"]);

    // Repetitions count: N is what was received.
    let r = report!(app, [live.as_str(), live.as_str(), "x"]);
    assert_accepted(&r, 3);

    let r = report!(app, junk(100));
    assert_accepted(&r, 100);

    // Empty and odd strings are strings too.
    let r = report!(app, ["", " ", "sk_live_", "\u{1F511}"]);
    assert_accepted(&r, 4);

    // Any parameters of the JSON media type are accepted.
    let r = send(
        &app,
        report_req(&json!({"keys": ["a"]}))
            .insert_header(("Content-Type", "application/json; charset=utf-8"))
            .to_request(),
    )
    .await;
    assert_accepted(&r, 1);
}

#[actix_web::test]
async fn the_answer_does_not_tell_keys_from_junk() {
    let _shared = not_logging();
    let fx = Fx::new();
    let app = init!(fx);
    let (_, secret) = fx.make_key(KeyType::Secret, Mode::Live, &["*"], None);
    let (_, publishable) = fx.make_key(KeyType::Publishable, Mode::Live, &["*"], None);
    let keys = [secret, publishable, fx.acme.test.clone()];
    let junk = junk(3);

    let for_keys = report!(app, keys);
    let for_junk = report!(app, junk);

    assert_accepted(&for_keys, 3);
    assert_eq!(for_keys.status, for_junk.status);
    assert_eq!(for_keys.body, for_junk.body);
    let names = |r: &Reply| {
        let mut names: Vec<String> = r.headers.keys().map(|n| n.to_string()).collect();
        names.sort();
        names
    };
    assert_eq!(names(&for_keys), names(&for_junk));
    for name in for_keys.headers.keys().filter(|n| *n != "x-request-id") {
        assert_eq!(for_keys.headers.get(name), for_junk.headers.get(name));
    }
}

#[actix_web::test]
async fn no_credentials_are_needed_and_any_sent_are_ignored() {
    let _shared = not_logging();
    let fx = Fx::new();
    let app = init!(fx);

    // Neither header: 202 (report_req sends none).
    let r = report!(app, ["junk"]);
    assert_accepted(&r, 1);

    // A bad bearer and a bad tenant header change nothing.
    let r = send(
        &app,
        report_req(&json!({"keys": ["junk"]}))
            .insert_header(("Authorization", "Bearer not-a-key"))
            .insert_header(("X-Tenant-ID", "nope"))
            .to_request(),
    )
    .await;
    assert_accepted(&r, 1);
    assert_eq!(r.header("www-authenticate"), None);

    // Nor does another tenant's header: a report is not scoped to a tenant.
    let globex = Fx::tenant_of(&fx.service, "Globex");
    let r = send(
        &app,
        report_req(&json!({"keys": [fx.acme.test]}))
            .insert_header(("X-Tenant-ID", globex.tenant.as_str()))
            .to_request(),
    )
    .await;
    assert_accepted(&r, 1);
    until_revoked(&fx, &[&fx.acme.test_id]).await;
}

#[actix_web::test]
async fn body_errors_have_their_code_and_param() {
    let _shared = not_logging();
    let fx = Fx::new();
    let app = init!(fx);
    let key = fx.acme.live.clone();
    let too_many: Vec<String> = junk(101);
    let huge = "a".repeat(http_actix::BODY_LIMIT);
    let cases: Vec<(Value, StatusCode, &str, Option<&str>)> = vec![
        (
            json!({}),
            StatusCode::BAD_REQUEST,
            "missing_parameter",
            Some("keys"),
        ),
        (
            json!({"keys": null}),
            StatusCode::BAD_REQUEST,
            "missing_parameter",
            Some("keys"),
        ),
        (
            json!({"keys": key}),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            Some("keys"),
        ),
        (
            json!({"keys": []}),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            Some("keys"),
        ),
        (
            json!({"keys": too_many}),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            Some("keys"),
        ),
        (
            json!({"keys": [key, 1]}),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            Some("keys"),
        ),
        (
            json!({"keys": [key, null]}),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            Some("keys"),
        ),
        (
            json!({"keys": [[key]]}),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            Some("keys"),
        ),
        (
            json!({"keys": {"k": key}}),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            Some("keys"),
        ),
        (
            json!({"keys": 3}),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            Some("keys"),
        ),
        (
            json!({"keys": [key], "tenant": "x"}),
            StatusCode::BAD_REQUEST,
            "unknown_field",
            Some("tenant"),
        ),
        // Unknown fields are checked before `keys`.
        (
            json!({"keys": 3, "key": key}),
            StatusCode::BAD_REQUEST,
            "unknown_field",
            Some("key"),
        ),
        // A key sent as a field name is not echoed.
        (
            json!({"keys": ["x"], key.clone(): 1}),
            StatusCode::BAD_REQUEST,
            "unknown_field",
            Some("sk_live_[redacted]"),
        ),
        (json!([key]), StatusCode::BAD_REQUEST, "invalid_json", None),
        (json!(key), StatusCode::BAD_REQUEST, "invalid_json", None),
        (
            json!({"keys": [huge]}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            None,
        ),
    ];
    for (body, status, code, param) in cases {
        let r = checked(&app, report_req(&body).to_request(), &[&key]).await;
        r.assert_error(status, code, param);
    }

    // Not JSON at all, or cut short.
    for text in ["{", "keys=sk_live_x", ""] {
        let r = checked(&app, raw_req(text.to_owned()).to_request(), &[&key]).await;
        r.assert_error(StatusCode::BAD_REQUEST, "invalid_json", None);
    }
    let r = checked(
        &app,
        raw_req(format!(r#"{{"keys": ["{key}"]"#)).to_request(),
        &[&key],
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_json", None);

    // Not declared JSON: 415 before anything else.
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut req = TestRequest::default()
            .method(Method::POST)
            .uri(URI)
            .set_payload(json!({"keys": [key]}).to_string());
        if let Some(ct) = content_type {
            req = req.insert_header(("Content-Type", ct));
        }
        let r = checked(&app, req.to_request(), &[&key]).await;
        r.assert_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        );
    }

    // 100 strings, the most a report holds, are fine; and no error revoked
    // anything.
    let mut hundred = junk(99);
    hundred.push("y".to_owned());
    assert_accepted(&report!(app, hundred), 100);
    assert!(!stored(&fx, &fx.acme.live_id).is_revoked(fx.service.now()));
}

#[actix_web::test]
async fn another_method_is_405_with_allow_post() {
    let _shared = not_logging();
    let fx = Fx::new();
    let app = init!(fx);
    for method in [Method::GET, Method::PUT, Method::DELETE, Method::PATCH] {
        let r = send(
            &app,
            TestRequest::default()
                .method(method.clone())
                .uri(URI)
                .to_request(),
        )
        .await;
        r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None);
        assert_eq!(r.header("allow"), Some("POST"), "{method}");
    }
}

#[actix_web::test]
async fn reported_secret_keys_are_revoked_soon_after_the_202() {
    let _shared = not_logging();
    // Given, in Acme, a live secret key, a key in its rotation grace period,
    // a publishable key, and the tenant's test key and its last full-access
    // live key,
    let fx = Fx::new();
    let app = init!(fx);
    let (secret_id, secret) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], None);
    let (grace_id, grace) = fx.make_key(KeyType::Secret, Mode::Test, &["*"], None);
    fx.service
        .rotate(
            &fx.live_principal(),
            None,
            &grace_id.parse::<KeyId>().unwrap(),
            GracePeriod::parse("1h").unwrap(),
        )
        .unwrap();
    let (publishable_id, publishable) = fx.make_key(KeyType::Publishable, Mode::Live, &["*"], None);
    let publishable_before = stored(&fx, &publishable_id);
    let before = fx.store.stored_events().len();
    let strings = [
        secret.as_str(),
        "junk",
        grace.as_str(),
        publishable.as_str(),
        fx.acme.test.as_str(),
        fx.acme.live.as_str(),
        secret.as_str(),
    ];

    // when they are reported in a request with an id,
    let r = checked(
        &app,
        report_req(&json!({ "keys": strings }))
            .insert_header(("X-Request-ID", "leak-report-1"))
            .to_request(),
        &strings,
    )
    .await;
    assert_accepted(&r, 7);
    assert_eq!(r.header("x-request-id"), Some("leak-report-1"));

    // then, within moments, every secret key is revoked, even the tenant's
    // last full-access key,
    let revoked = [
        secret_id.as_str(),
        grace_id.as_str(),
        fx.acme.test_id.as_str(),
        fx.acme.live_id.as_str(),
    ];
    until_revoked(&fx, &revoked).await;
    // each with one event by the leak report in that request,
    let events = events_after(&fx, before);
    let now = fx.service.now();
    // (in no particular order: the report's keys are looked up together)
    let mut about: Vec<String> = events
        .iter()
        .map(|e| e.key_id.unwrap().to_string())
        .collect();
    about.sort();
    let mut expected = revoked.map(str::to_owned).to_vec();
    expected.sort();
    assert_eq!(about, expected);
    for event in &events {
        let key = stored(&fx, &event.key_id.unwrap().to_string());
        assert_eq!(
            *event,
            KeyEvent {
                id: event.id,
                created_at: now,
                tenant_id: tenant(&fx),
                key_id: Some(key.id),
                mode: Some(key.mode),
                actor: Actor::LeakReport,
                request_id: Some("leak-report-1".to_owned()),
                data: EventData::KeyRevoked,
            }
        );
    }
    // the publishable key is left alone,
    assert_eq!(stored(&fx, &publishable_id), publishable_before);
    // and the revoked keys no longer authenticate.
    for key in [&secret, &fx.acme.live] {
        let r = send(&app, fx.req(Method::GET, "/v1/api-keys", key).to_request()).await;
        r.assert_error(StatusCode::UNAUTHORIZED, "api_key_revoked", None);
    }

    // Reporting them again changes nothing and writes nothing.
    let r = report!(app, [secret.as_str(), fx.acme.live.as_str()]);
    assert_accepted(&r, 2);
    actix_web::rt::time::sleep(StdDuration::from_millis(100)).await;
    assert_eq!(events_after(&fx, before).len(), revoked.len());
}

#[cfg(feature = "openapi")]
#[actix_web::test]
async fn the_openapi_document_describes_the_route() {
    let _shared = not_logging();
    let fx = Fx::new();
    let app = init!(fx);
    let r = send(&app, TestRequest::get().uri("/openapi.json").to_request()).await;
    let doc = r.json();
    let op = &doc["paths"][URI]["post"];
    assert_eq!(op["operationId"], "report_leaked_keys");
    for status in ["202", "400", "405", "413", "415"] {
        assert!(op["responses"][status].is_object(), "{status}");
    }
    assert!(op.get("security").is_none(), "{op}");
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["LeakReportAccepted"]["required"],
        json!(["received"])
    );
    assert_eq!(schemas["LeakedKeysRequest"]["required"], json!(["keys"]));
    assert_eq!(
        schemas["LeakedKeysRequest"]["properties"]["keys"]["maxItems"],
        100
    );
}

// ---- logs ----------------------------------------------------------------

/// Every log line written while the subscriber is the default (on this
/// thread, which also runs the report's work once the pool is done).
#[derive(Clone, Default)]
struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Waits until a line contains `needle`; fails after [`DEADLINE`].
    async fn until_contains(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let text = self.text();
            if text.contains(needle) {
                return text;
            }
            assert!(start.elapsed() < DEADLINE, "no {needle:?} in: {text}");
            actix_web::rt::time::sleep(StdDuration::from_millis(5)).await;
        }
    }
}

#[actix_web::test]
async fn the_outcome_is_logged_without_the_keys_and_a_failed_report_is_503() {
    let _alone = LOGS.write().unwrap_or_else(PoisonError::into_inner);
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let fx = Fx::new();
    let app = init!(fx);
    let keys = [fx.acme.test.clone(), fx.acme.live.clone()];

    // A report that works logs its counts (never the strings),
    let r = send(
        &app,
        report_req(&json!({ "keys": [keys[0], "junk"] }))
            .insert_header(("X-Request-ID", "leak-ok"))
            .to_request(),
    )
    .await;
    assert_accepted(&r, 2);
    let text = logs.until_contains("leaked-key report processed").await;
    assert!(text.contains("revoked=1"), "{text}");
    assert!(text.contains("ignored=1"), "{text}");

    // and one whose storage is down is answered 503 (it was not committed:
    // the reporter sends it again), with no key in the answer or the logs.
    fx.store.set_unavailable(true);
    let r = send(
        &app,
        report_req(&json!({ "keys": [keys[1]] }))
            .insert_header(("X-Request-ID", "leak-down"))
            .to_request(),
    )
    .await;
    fx.store.set_unavailable(false);
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.header("retry-after"), Some("1"));
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert!(body.contains("service_unavailable"), "{body}");
    let text = logs.text();
    for key in &keys {
        assert!(!body.contains(&key[8..]), "{body}");
        assert!(!text.contains(key.as_str()), "{text}");
        assert!(!text.contains(&key[8..]), "{text}");
    }
    assert!(!stored(&fx, &fx.acme.live_id).is_revoked(fx.service.now()));
}
