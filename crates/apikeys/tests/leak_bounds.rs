//! Leaked-key reports are bounded (docs/api.md, "POST /v1/leaked-keys"):
//! a report's revocations are committed before its 202, reports are limited
//! per client address (429), and a node processes a bounded number at once
//! (503 with `Retry-After` past it, never a queue).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use apikeys::application::{LeakReportLimits, Settings};
use common::{hash_key, serve_with, Served};
use domain::{ApiKeyRepository, PlainKey};
use infra_postgres::testing::TestDatabase;
use reqwest::StatusCode;
use serde_json::json;

async fn serve(leak_reports: LeakReportLimits) -> Served {
    serve_with(&Settings {
        workers: Some(2),
        leak_reports,
        ..Settings::default()
    })
    .await
}

async fn report(addr: SocketAddr, keys: &[&str]) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{addr}/v1/leaked-keys"))
        .json(&json!({ "keys": keys }))
        .send()
        .await
        .unwrap()
}

/// The stored key with value `key`, by its hash.
fn stored(db: &TestDatabase, key: &str) -> domain::ApiKey {
    let plain = PlainKey::parse(key).unwrap();
    db.find_by_hash(&hash_key().hash(&plain)).unwrap().unwrap()
}

#[actix_web::test]
async fn a_reports_revocation_is_committed_before_its_202() {
    let served = serve(LeakReportLimits::default()).await;
    let key = served.tenant.live.clone();
    assert_eq!(stored(&served.db, &key).revokes_at, None);

    let response = report(served.addr, &[&key, "junk"]).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.text().await.unwrap(), r#"{"received":2}"#);

    // Read at once, no polling: the 202 came after the commit.
    let key = stored(&served.db, &key);
    assert!(key.revokes_at.is_some(), "not revoked when the 202 came");
    served.handle.stop(true).await;
}

#[actix_web::test]
async fn reports_past_the_limit_per_address_get_429_with_retry_after() {
    let served = serve(LeakReportLimits {
        per_minute: 3,
        ..LeakReportLimits::default()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(
            report(served.addr, &["junk"]).await.status(),
            StatusCode::ACCEPTED
        );
    }
    let refused = report(served.addr, &[&served.tenant.live]).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_requests");
    // The refused report changed nothing.
    assert_eq!(stored(&served.db, &served.tenant.live).revokes_at, None);
    // Authenticated requests from the same address are not limited by it.
    let listed = reqwest::Client::new()
        .get(format!("http://{}/v1/api-keys", served.addr))
        .bearer_auth(&served.tenant.live)
        .header("X-Tenant-ID", &served.tenant.id)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    served.handle.stop(true).await;
}

#[actix_web::test]
async fn reports_past_the_bound_in_flight_get_503_at_once_not_a_queue() {
    let served = serve(LeakReportLimits {
        in_flight: 1,
        ..LeakReportLimits::default()
    })
    .await;
    // Hold the keys table so that the first report waits inside its lookup.
    let held = served.db.lock_table("api_keys");
    let first = {
        let key = served.tenant.live.clone();
        let addr = served.addr;
        actix_web::rt::spawn(async move { report(addr, &[&key]).await.status() })
    };
    let started = Instant::now();
    while served.db.sessions_waiting_for_locks() < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no report waits"
        );
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }

    let second = report(served.addr, &["junk"]).await;
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(second.headers()["retry-after"], "1");
    let body: serde_json::Value = second.json().await.unwrap();
    assert_eq!(body["error"]["code"], "service_unavailable");

    drop(held);
    assert_eq!(first.await.unwrap(), StatusCode::ACCEPTED);
    assert!(stored(&served.db, &served.tenant.live).revokes_at.is_some());
    // The place is given back: the next report is processed.
    assert_eq!(
        report(served.addr, &["junk"]).await.status(),
        StatusCode::ACCEPTED
    );
    served.handle.stop(true).await;
}
