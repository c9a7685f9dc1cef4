//! `Idempotency-Key` end to end (docs/api.md, "Idempotent requests"): the
//! real application on a fresh database, over real HTTP.

#![allow(clippy::expect_used, reason = "tests")]

mod common;

use std::process::Command;

use common::{json, TestApp};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

const REPLAYED: &str = "idempotent-replayed";

async fn create_with(app: &TestApp, key: &str, body: &Value) -> Response {
    app.request(Method::POST, "/v1/api-keys")
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("send")
}

async fn rotate_with(app: &TestApp, key: &str, body: &Value) -> Response {
    app.request(Method::POST, "/v1/api-keys/rotate")
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("send")
}

/// Status, `Location`, `Idempotent-Replayed` and the body's bytes.
async fn parts(response: Response) -> (StatusCode, Option<String>, Option<String>, Vec<u8>) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().expect("ascii").to_owned())
    };
    let (location, replayed) = (header("location"), header(REPLAYED));
    let status = response.status();
    let body = response.bytes().await.expect("body").to_vec();
    (status, location, replayed, body)
}

async fn key_count(app: &TestApp) -> usize {
    let listed = json(
        app.request(Method::GET, "/v1/api-keys?revoked=true")
            .send()
            .await
            .expect("send"),
    )
    .await;
    listed["data"].as_array().expect("data").len()
}

async fn event_count(app: &TestApp) -> usize {
    let listed = json(
        app.request(Method::GET, "/v1/audit-events")
            .send()
            .await
            .expect("send"),
    )
    .await;
    listed["data"].as_array().expect("data").len()
}

#[actix_web::test]
async fn a_replayed_create_returns_the_same_bytes_and_key_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let body = json!({"name": "Backend", "type": "secret", "scopes": ["users:read"]});

    let (status, location, replayed, first) =
        parts(create_with(&app, "create-1", &body).await).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(replayed, None, "a first run is not a replay");
    let created: Value = serde_json::from_slice(&first).expect("json");
    assert_eq!(
        location,
        Some(format!(
            "/v1/api-keys/{}",
            created["id"].as_str().expect("id")
        ))
    );
    let (keys, events) = (key_count(&app).await, event_count(&app).await);

    // The same body, spelled otherwise (field order, whitespace).
    let respelled = app
        .request(Method::POST, "/v1/api-keys")
        .header("Idempotency-Key", "create-1")
        .header("Content-Type", "application/json")
        .body(r#"{ "scopes": ["users:read"], "type": "secret", "name": "Backend" }"#)
        .send()
        .await
        .expect("send");
    let (status, again_location, replayed, again) = parts(respelled).await;

    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(replayed.as_deref(), Some("true"));
    assert_eq!(again_location, location);
    assert_eq!(again, first, "byte for byte, the full key included");
    assert_eq!(
        (key_count(&app).await, event_count(&app).await),
        (keys, events)
    );
    // The replayed key is the one that works.
    let full_key = created["key"].as_str().expect("key");
    let authenticated = app
        .request_as(Method::GET, "/v1/audit-events", full_key)
        .send()
        .await
        .expect("send");
    assert_eq!(
        authenticated.status(),
        StatusCode::FORBIDDEN,
        "scoped key authenticates"
    );
    app.stop().await;
}

#[actix_web::test]
async fn a_replayed_rotation_returns_the_same_successor_instead_of_key_already_rotated() {
    let app = TestApp::spawn().await;
    let old = json(
        app.create_key(json!({"name": "Old", "type": "secret"}))
            .await,
    )
    .await;
    let body = json!({"id": old["id"], "grace_period": "1h"});

    let (status, _, replayed, first) = parts(rotate_with(&app, "rotate-1", &body).await).await;
    assert_eq!((status, replayed), (StatusCode::OK, None));
    let (status, _, replayed, again) = parts(rotate_with(&app, "rotate-1", &body).await).await;
    assert_eq!(
        (status, replayed.as_deref()),
        (StatusCode::OK, Some("true"))
    );
    assert_eq!(again, first);

    let without = app
        .request(Method::POST, "/v1/api-keys/rotate")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(without.status(), StatusCode::CONFLICT);
    assert_eq!(json(without).await["error"]["code"], "key_already_rotated");
    app.stop().await;
}

#[actix_web::test]
async fn another_body_under_a_used_key_is_422_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let first = create_with(&app, "k", &json!({"name": "A", "type": "secret"})).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let (keys, events) = (key_count(&app).await, event_count(&app).await);

    let other = create_with(&app, "k", &json!({"name": "B", "type": "secret"})).await;
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.headers().get(REPLAYED), None);
    let error = json(other).await;
    assert_eq!(error["error"]["code"], "idempotency_key_reused");
    assert_eq!(
        (key_count(&app).await, event_count(&app).await),
        (keys, events)
    );
    app.stop().await;
}

#[actix_web::test]
async fn after_24_hours_the_same_key_creates_again() {
    let app = TestApp::spawn().await;
    let body = json!({"name": "Backend", "type": "secret"});
    let (_, _, _, first) = parts(create_with(&app, "daily", &body).await).await;

    app.clock.advance(time::Duration::hours(24));
    let (status, _, replayed, later) = parts(create_with(&app, "daily", &body).await).await;

    assert_eq!((status, replayed), (StatusCode::CREATED, None));
    assert_ne!(later, first);
    app.stop().await;
}

#[actix_web::test]
async fn an_error_is_not_replayed_and_the_retry_runs() {
    let app = TestApp::spawn().await;
    // A test key cannot create a live key: 403, not kept.
    let body = json!({"name": "Backend", "type": "secret", "mode": "live"});
    let refused = app
        .request_as(Method::POST, "/v1/api-keys", &app.test_key)
        .header("Idempotency-Key", "k")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    // The same key, now with a body that can work, runs (no 422: the error
    // left no record).
    let retry = app
        .request_as(Method::POST, "/v1/api-keys", &app.test_key)
        .header("Idempotency-Key", "k")
        .json(&json!({"name": "Backend", "type": "secret"}))
        .send()
        .await
        .expect("send");
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.headers().get(REPLAYED), None);
    app.stop().await;
}

#[actix_web::test]
async fn a_malformed_idempotency_key_is_400_with_its_param() {
    let app = TestApp::spawn().await;
    let keys = key_count(&app).await;
    for bad in ["x".repeat(256), "tab\there".to_owned()] {
        let response = create_with(&app, &bad, &json!({"name": "A", "type": "secret"})).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        let error = json(response).await;
        assert_eq!(error["error"]["code"], "invalid_parameter");
        assert_eq!(error["error"]["param"], "Idempotency-Key");
    }
    assert_eq!(key_count(&app).await, keys);
    app.stop().await;
}

#[actix_web::test]
async fn sixteen_identical_concurrent_creates_make_one_key() {
    let app = TestApp::spawn().await;
    let keys = key_count(&app).await;
    let body = json!({"name": "Once", "type": "secret"});

    let sends: Vec<_> = (0..16)
        .map(|_| {
            let request = app
                .request(Method::POST, "/v1/api-keys")
                .header("Idempotency-Key", "burst")
                .json(&body);
            actix_web::rt::spawn(async move { request.send().await.expect("send") })
        })
        .collect();
    let mut responses = Vec::new();
    for send in sends {
        responses.push(send.await.expect("request task"));
    }

    let mut created = Vec::new();
    let mut replays = Vec::new();
    let mut in_use = 0;
    for response in responses {
        let (status, _, replayed, bytes) = parts(response).await;
        match (status, replayed.as_deref()) {
            (StatusCode::CREATED, None) => created.push(bytes),
            (StatusCode::CREATED, Some("true")) => replays.push(bytes),
            (StatusCode::CONFLICT, None) => {
                let error: Value = serde_json::from_slice(&bytes).expect("json");
                assert_eq!(error["error"]["code"], "idempotency_key_in_use");
                in_use += 1;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(created.len(), 1, "one first run");
    assert!(
        replays.iter().all(|r| *r == created[0]),
        "replays are the first response"
    );
    assert_eq!(1 + replays.len() + in_use, 16);
    assert_eq!(key_count(&app).await, keys + 1, "never a second key");
    app.stop().await;
}

#[actix_web::test]
async fn pg_dump_of_a_database_with_fresh_idempotent_creates_holds_no_full_key() {
    let app = TestApp::spawn().await;
    let mut full_keys = Vec::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        let body = json!({"name": format!("Dumped {i}"), "type": "secret"});
        let created = json(create_with(&app, &format!("dump-{i}"), &body).await).await;
        full_keys.push(created["key"].as_str().expect("key").to_owned());
        ids.push(created["id"].clone());
    }
    let rotated =
        json(rotate_with(&app, "dump-3", &json!({"id": ids[0], "grace_period": "0s"})).await).await;
    full_keys.push(rotated["key"].as_str().expect("successor key").to_owned());

    let dump = Command::new("pg_dump")
        .arg("--data-only")
        .arg("--dbname")
        .arg(app.store.database_url())
        .output()
        .expect("run pg_dump (PostgreSQL's client tools)");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8(dump.stdout).expect("utf-8 dump");

    // The records are in the dump (the check can see them) ...
    for i in 0..4 {
        assert!(dump.contains(&format!("dump-{i}")), "record {i} is dumped");
    }
    // ... and no full key is, nor its random part.
    for key in &full_keys {
        assert!(!dump.contains(key.as_str()), "a full key is in the dump");
        assert!(
            !dump.contains(&key[8..40]),
            "a key's secret part is in the dump"
        );
    }
    app.stop().await;
}
