//! Hardening at the HTTP edge, end to end (docs/api.md, "Conventions",
//! "Limits", `POST /v1/api-keys/verify`): doubled key and tenant headers,
//! verify's `type`, key material where no key belongs (`X-Request-ID`,
//! names, `Idempotency-Key`), encoded bodies and the keep-alive.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use apikeys::application::Settings;
use common::{json, serve_with, TestApp};
use domain::{KeyType, Mode, OsSecretSource, PlainKey};
use http_actix::FailureLimitConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A well-formed key of no tenant.
fn stranger() -> String {
    PlainKey::generate(KeyType::Secret, Mode::Live, &OsSecretSource).into_secret()
}

/// The part of a key after its prefix (`sk_live_`): its random part and
/// checksum.
fn tail(key: &str) -> &str {
    &key["sk_live_".len()..]
}

/// The status and body of a response.
async fn answer(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, json(response).await)
}

fn error(body: &Value) -> (&str, &str) {
    (
        body["error"]["code"].as_str().unwrap_or("<no code>"),
        body["error"]["param"].as_str().unwrap_or("<no param>"),
    )
}

/// `POST /v1/api-keys/verify` of `body` for the app's tenant.
async fn verify(app: &TestApp, body: Value) -> (StatusCode, Value) {
    answer(
        app.client
            .post(format!("{}/v1/api-keys/verify", app.base))
            .header("X-Tenant-ID", &app.tenant)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// How many keys the live key sees.
async fn key_count(app: &TestApp) -> usize {
    let (status, body) = answer(
        app.request(Method::GET, "/v1/api-keys?limit=100")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].as_array().unwrap().len()
}

#[actix_web::test]
async fn a_doubled_key_or_tenant_header_is_400_duplicate_header_on_every_route() {
    let app = TestApp::spawn().await;
    let before = key_count(&app).await;
    let url = |path: &str| format!("{}{path}", app.base);
    let live = format!("Bearer {}", app.live_key);
    // Each route that reads a key, with each header doubled: the first copy
    // is the good one, so a service that took it would answer 200.
    let routes = [
        (Method::GET, "/v1/api-keys"),
        (Method::GET, "/v1/audit-events"),
        (Method::POST, "/v1/api-keys"),
    ];
    for (method, path) in routes {
        for (header, first, second) in [
            ("Authorization", live.as_str(), "Bearer x"),
            (
                "X-Tenant-ID",
                app.tenant.as_str(),
                "tnt_01HABCDEF0123456789ABCDEFG",
            ),
        ] {
            let mut request = app.client.request(method.clone(), url(path));
            for (name, value) in [
                ("Authorization", live.as_str()),
                ("X-Tenant-ID", app.tenant.as_str()),
            ] {
                if name != header {
                    request = request.header(name, value);
                }
            }
            let (status, body) = answer(
                request
                    .header(header, first)
                    .header(header, second)
                    .json(&json!({"name": "Doubled", "type": "secret"}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path} {header}");
            assert_eq!(error(&body), ("duplicate_header", header), "{body}");
        }
    }
    // Verify: the tenant header is its only binding.
    let (status, body) = answer(
        app.client
            .post(url("/v1/api-keys/verify"))
            .header("X-Tenant-ID", &app.tenant)
            .header("X-Tenant-ID", "tnt_01HABCDEF0123456789ABCDEFG")
            .json(&json!({"key": app.live_key}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error(&body), ("duplicate_header", "X-Tenant-ID"), "{body}");
    // Nothing was created by the doubled creations.
    assert_eq!(key_count(&app).await, before);
    app.stop().await;
}

#[actix_web::test]
async fn a_doubled_header_is_checked_first_and_is_not_a_failed_authentication() {
    let served = serve_with(&Settings {
        workers: Some(1),
        failure_limit: FailureLimitConfig {
            limit: 1,
            ..FailureLimitConfig::default()
        },
        ..Settings::default()
    })
    .await;
    let (base, tenant, handle) = (
        format!("http://{}", served.addr),
        &served.tenant,
        &served.handle,
    );
    let client = reqwest::Client::new();
    // Unknown keys, twice: each would be a 401 and count against the limit
    // of 1; doubled, they are refused before authentication.
    for _ in 0..3 {
        let (status, body) = answer(
            client
                .get(format!("{base}/v1/api-keys"))
                .header("Authorization", format!("Bearer {}", stranger()))
                .header("Authorization", format!("Bearer {}", stranger()))
                .header("X-Tenant-ID", &tenant.id)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error(&body), ("duplicate_header", "Authorization"));
        let (status, body) = answer(
            client
                .post(format!("{base}/v1/api-keys/verify"))
                .header("X-Tenant-ID", &tenant.id)
                .header("X-Tenant-ID", &tenant.id)
                .json(&json!({"key": stranger()}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error(&body), ("duplicate_header", "X-Tenant-ID"));
    }
    // The address was never counted: the good key still gets in.
    let response = client
        .get(format!("{base}/v1/api-keys"))
        .header("Authorization", format!("Bearer {}", tenant.live))
        .header("X-Tenant-ID", &tenant.id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    handle.stop(true).await;
    drop(served);
}

#[actix_web::test]
async fn verify_refuses_a_key_of_the_other_type_than_asked() {
    let app = TestApp::spawn().await;
    let created = json(
        app.create_key(json!({"name": "Web", "type": "publishable"}))
            .await,
    )
    .await;
    let publishable = created["key"].as_str().unwrap().to_owned();
    assert_eq!(created["scopes"], json!(["*"]), "{created}");

    let refused = json!({"valid": false, "code": "key_type_mismatch"});
    let (status, body) = verify(&app, json!({"key": publishable, "type": "secret"})).await;
    assert_eq!((status, body), (StatusCode::OK, refused.clone()));
    let (status, body) = verify(&app, json!({"key": app.live_key, "type": "publishable"})).await;
    assert_eq!((status, body), (StatusCode::OK, refused));

    for (key, key_type) in [(&publishable, "publishable"), (&app.live_key, "secret")] {
        let (status, body) = verify(&app, json!({"key": key, "type": key_type})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["valid"], true, "{body}");
        assert_eq!(body["key"]["type"], key_type);
    }
    // Absent or null: either type.
    let (_, body) = verify(&app, json!({"key": publishable, "type": null})).await;
    assert_eq!(body["valid"], true, "{body}");

    let (status, body) = verify(&app, json!({"key": publishable, "type": "Secret"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error(&body), ("invalid_parameter", "type"), "{body}");
    app.stop().await;
}

#[actix_web::test]
async fn a_publishable_key_with_every_scope_never_verifies_for_a_write_scope() {
    let app = TestApp::spawn().await;
    let created = json(
        app.create_key(json!({"name": "Web", "type": "publishable"}))
            .await,
    )
    .await;
    let publishable = created["key"].as_str().unwrap();
    let (status, body) = verify(&app, json!({"key": publishable, "scopes": ["users:write"]})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["valid"], false, "{body}");
    assert_eq!(body["code"], "insufficient_scope");
    assert_eq!(body["missing_scopes"], json!(["users:write"]));
    assert_eq!(body["key"]["scopes"], json!(["*"]));
    let (_, body) = verify(&app, json!({"key": publishable, "scopes": ["users:read"]})).await;
    assert_eq!(body["valid"], true, "{body}");
    app.stop().await;
}

#[actix_web::test]
async fn an_x_request_id_holding_key_material_is_replaced_by_a_fresh_one() {
    let app = TestApp::spawn().await;
    let other = stranger();
    for sent in [
        tail(&app.live_key).to_owned(),
        format!("trace-{}", tail(&other)),
    ] {
        let response = app
            .request(Method::POST, "/v1/api-keys")
            .header("X-Request-ID", &sent)
            .json(&json!({"name": "Traced", "type": "secret"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let answered = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let id = json(response).await["id"].as_str().unwrap().to_owned();
        assert_ne!(answered, sent);
        assert!(answered.starts_with("req_"), "{answered}");
        // The event the request wrote carries the fresh id.
        let (_, events) = answer(
            app.request(Method::GET, &format!("/v1/audit-events?key_id={id}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(events["data"].as_array().unwrap().len(), 1, "{events}");
        assert_eq!(events["data"][0]["type"], "api_key.created", "{events}");
        assert_eq!(events["data"][0]["request_id"], answered.as_str());
    }
    // An ordinary id is still taken.
    let response = app
        .request(Method::GET, "/v1/api-keys")
        .header("X-Request-ID", "trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-42");
    app.stop().await;
}

#[actix_web::test]
async fn key_material_in_a_name_or_an_idempotency_key_is_refused_and_not_echoed() {
    let app = TestApp::spawn().await;
    let before = key_count(&app).await;
    let other = stranger();
    for name in [
        tail(&app.live_key).to_owned(),
        other.clone(),
        format!("copy of {}", tail(&other)),
    ] {
        let (status, body) = answer(
            app.create_key(json!({"name": name, "type": "secret"}))
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error(&body), ("invalid_parameter", "name"), "{body}");
        assert!(!body.to_string().contains(tail(&other)), "{body}");
        assert!(!body.to_string().contains(tail(&app.live_key)), "{body}");
    }
    for idempotency_key in [other.clone(), format!("retry-{}", tail(&other))] {
        let (status, body) = answer(
            app.request(Method::POST, "/v1/api-keys")
                .header("Idempotency-Key", &idempotency_key)
                .json(&json!({"name": "Retried", "type": "secret"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error(&body), ("invalid_parameter", "Idempotency-Key"));
        assert!(!body.to_string().contains(tail(&other)), "{body}");
    }
    // A name that is kept cannot be a key's tail: a renaming is refused too.
    let id = json(
        app.create_key(json!({"name": "Kept", "type": "secret"}))
            .await,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = answer(
        app.request(Method::PATCH, &format!("/v1/api-keys/{id}"))
            .json(&json!({"name": tail(&other)}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error(&body), ("invalid_parameter", "name"));
    // Nothing stored: the tenant's keys and "Kept".
    let (_, listed) = answer(
        app.request(Method::GET, "/v1/api-keys")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let names: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), before + 1, "{listed}");
    assert!(names.contains(&"Kept"), "{listed}");
    let (_, events) = answer(
        app.request(Method::GET, "/v1/audit-events")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(!events.to_string().contains(tail(&other)), "{events}");
    app.stop().await;
}

#[actix_web::test]
async fn an_encoded_body_is_415_on_create_and_verify() {
    let app = TestApp::spawn().await;
    let before = key_count(&app).await;
    for encoding in ["gzip", "br", "deflate", "identity, gzip"] {
        let (status, body) = answer(
            app.request(Method::POST, "/v1/api-keys")
                .header("Content-Encoding", encoding)
                .json(&json!({"name": "Encoded", "type": "secret"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{encoding}");
        assert_eq!(error(&body).0, "unsupported_media_type", "{body}");
        let (status, body) = answer(
            app.client
                .post(format!("{}/v1/api-keys/verify", app.base))
                .header("X-Tenant-ID", &app.tenant)
                .header("Content-Encoding", encoding)
                .json(&json!({"key": app.live_key}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{encoding}");
        assert_eq!(error(&body).0, "unsupported_media_type", "{body}");
    }
    assert_eq!(key_count(&app).await, before);
    // `identity` is no encoding.
    let response = app
        .request(Method::POST, "/v1/api-keys")
        .header("Content-Encoding", "identity")
        .json(&json!({"name": "Plain", "type": "secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    app.stop().await;
}

/// Sends a `GET /healthz` on `stream` and reads its whole answer (the body
/// is `Content-Length` long); `None` when the server closed the connection.
fn healthz(stream: &mut TcpStream) -> Option<String> {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .ok()?;
    let mut read = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        read.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&read).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return Some(head.to_owned());
            }
        }
    }
}

#[actix_web::test]
async fn an_idle_connection_outlives_the_pools_wait() {
    let app = TestApp::spawn().await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let outcome = actix_web::rt::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let first = healthz(&mut stream);
        // Longer than the pool's default wait (5 s), actix's own keep-alive.
        std::thread::sleep(Duration::from_secs(7));
        (first, healthz(&mut stream))
    })
    .await
    .unwrap();
    assert!(outcome.0.is_some_and(|h| h.starts_with("HTTP/1.1 200")));
    let second = outcome.1.expect("the connection was closed while idle");
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    app.stop().await;
}
