//! What the service logs, in a test binary of its own: the log capture is a
//! thread-local subscriber, and tracing's callsite cache is process-wide, so
//! other tests running in parallel would make it miss lines.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use common::{send, with_json, Fx};
use http_actix::app;
use serde_json::Value;

macro_rules! init {
    ($fx:expr) => {
        test::init_service(app($fx.state())).await
    };
}

/// Every log line written while the guard lives (on this thread).
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
}

#[actix_web::test]
async fn a_key_sent_in_the_wrong_place_is_neither_echoed_nor_logged() {
    // docs/api.md, "Secrets": no log line or error contains a full key, also when a
    // client puts one in the path, a parameter or field name, or the
    // request id (all of which are echoed or logged).
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let fx = Fx::new();
    let app = init!(fx);
    let key = fx.acme.live.clone();

    let path = format!("/v1/api-keys/{key}");
    let r = send(&app, fx.req(Method::GET, &path, &key).to_request()).await;
    r.assert_error(StatusCode::NOT_FOUND, "key_not_found", None);

    let query = format!("/v1/api-keys?{key}=1");
    let r = send(&app, fx.req(Method::GET, &query, &key).to_request()).await;
    r.assert_error(
        StatusCode::BAD_REQUEST,
        "unknown_parameter",
        Some("sk_live_[redacted]"),
    );

    let body: Value =
        serde_json::from_str(&format!(r#"{{"name": "x", "type": "secret", "{key}": 1}}"#)).unwrap();
    let r = send(
        &app,
        with_json(fx.req(Method::POST, "/v1/api-keys", &key), &body).to_request(),
    )
    .await;
    r.assert_error(
        StatusCode::BAD_REQUEST,
        "unknown_field",
        Some("sk_live_[redacted]"),
    );

    let r = send(
        &app,
        TestRequest::get()
            .uri("/healthz")
            .insert_header(("X-Request-ID", key.as_str()))
            .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("x-request-id").unwrap().starts_with("req_"));

    // The key without its prefix: as a request id, a name and an
    // `Idempotency-Key` (docs/api.md, "Conventions", "Names").
    let tail = &key[8..];
    let r = send(
        &app,
        fx.req(Method::GET, "/v1/api-keys", &key)
            .insert_header(("X-Request-ID", format!("trace-{tail}")))
            .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("x-request-id").unwrap().starts_with("req_"));
    let body: Value = serde_json::json!({"name": tail, "type": "secret"});
    let r = send(
        &app,
        with_json(fx.req(Method::POST, "/v1/api-keys", &key), &body).to_request(),
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_parameter", Some("name"));
    let body: Value = serde_json::json!({"name": "x", "type": "secret"});
    let r = send(
        &app,
        with_json(fx.req(Method::POST, "/v1/api-keys", &key), &body)
            .insert_header(("Idempotency-Key", format!("retry-{tail}")))
            .to_request(),
    )
    .await;
    r.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
        Some("Idempotency-Key"),
    );

    let logged = logs.text();
    assert!(logged.contains("request completed"), "{logged}");
    assert!(!logged.contains(&key), "{logged}");
    assert!(!logged.contains(&key[8..]), "{logged}");
}
