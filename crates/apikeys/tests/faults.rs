//! The database going away: 503 with `Retry-After` within the pool timeout,
//! never a hang or a panic, and recovery without a restart; the database
//! restarting: no request fails for it.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{json, store_at, TestApp};
use infra_postgres::testing::{StallingProxy, TestDatabase};
use infra_postgres::{PgStore, PoolConfig};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// Generous bound for "within the pool timeout" (1 s here) on a loaded CI
/// machine; a hang would take far longer. This is a liveness bound, not a
/// speed measurement.
const PROMPTLY: Duration = Duration::from_secs(10);

#[actix_web::test]
async fn an_unreachable_database_gives_503_and_the_service_recovers() {
    // Given the application reaching its database through a proxy we can cut.
    let db = TestDatabase::new();
    let target: SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = Proxy::start(target);
    let store = store_at(proxy.port(), db.name(), 1);
    let app = TestApp::spawn_on(store, Some(db)).await;
    let list = || app.request(Method::GET, "/v1/api-keys").send();
    assert_eq!(list().await.unwrap().status(), StatusCode::OK);

    // When the database goes away.
    proxy.cut();
    let started = Instant::now();
    let response = list().await.unwrap();

    // Then a 503 with Retry-After, promptly.
    assert!(started.elapsed() < PROMPTLY, "took {:?}", started.elapsed());
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let body = json(response).await;
    assert_eq!(body["error"]["code"], "service_unavailable");
    let ready = app.get_public("/readyz").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let health = app.get_public("/healthz").await;
    assert_eq!(health.status(), StatusCode::OK);

    // And when it comes back, the same process serves again.
    proxy.restore();
    let mut recovered = false;
    for _ in 0..20 {
        if list().await.unwrap().status() == StatusCode::OK {
            recovered = true;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        recovered,
        "the service did not recover after the database returned"
    );
}

/// Sends 3 list requests and 1 key creation at once; their statuses.
#[expect(clippy::unwrap_used, reason = "test helper")]
async fn a_round_of_requests(app: &TestApp) -> Vec<StatusCode> {
    let mut pending = Vec::new();
    for i in 0..4 {
        let request = if i == 0 {
            app.request(Method::POST, "/v1/api-keys")
                .json(&json!({"name": "Worker", "type": "secret"}))
        } else {
            app.request(Method::GET, "/v1/api-keys")
        };
        pending.push(actix_web::rt::spawn(request.send()));
    }
    let mut statuses = Vec::new();
    for request in pending {
        statuses.push(request.await.unwrap().unwrap().status());
    }
    statuses
}

#[actix_web::test]
async fn requests_keep_succeeding_when_every_database_session_ends() {
    // Given the application under light load (its pool's connections open),
    // and a second pool on the same database.
    let db = TestDatabase::new();
    let killer = PgStore::connect(
        db.url(),
        &PoolConfig {
            max_size: 1,
            ..PoolConfig::default()
        },
    )
    .unwrap();
    let app = TestApp::spawn_on(db.store(), Some(db)).await;
    for _ in 0..5 {
        for status in a_round_of_requests(&app).await {
            assert!(status.is_success(), "{status}");
        }
    }

    // When every session of the application's database ends, as in a
    // restart or a failover (the cluster is shared by the tests: a real
    // restart is not an option).
    let terminate = || {
        let killer = killer.clone();
        async move {
            actix_web::rt::task::spawn_blocking(move || killer.terminate_other_sessions())
                .await
                .unwrap()
                .unwrap()
        }
    };
    let ended = terminate().await;
    assert!(ended >= 1, "{ended} sessions ended");

    // Then at most one request of 32 fails (none in practice: every one of
    // them reads, or writes in a transaction).
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.extend(a_round_of_requests(&app).await);
    }
    let failed: Vec<_> = statuses.iter().filter(|s| !s.is_success()).collect();
    assert!(failed.len() <= 1, "{failed:?} of {}", statuses.len());

    // And after it happens again, readiness says ready every time (the
    // application's pool has 4 connections).
    terminate().await;
    for _ in 0..6 {
        assert_eq!(app.get_public("/readyz").await.status(), StatusCode::OK);
    }
}

#[actix_web::test]
async fn a_database_that_never_answered_gives_503_not_a_hang() {
    // A port where nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let db = TestDatabase::new();
    let good = db.store();
    let tenant = common::create_tenant(&good, &domain::testing::TestClock::default(), "Acme");
    let store = store_at(port, db.name(), 1);
    let app = spawn_without_tenant(store).await;

    let started = Instant::now();
    let response = app
        .client
        .get(format!("{}/v1/api-keys", app.base))
        .header("Authorization", format!("Bearer {}", tenant.live))
        .header("X-Tenant-ID", &tenant.id)
        .send()
        .await
        .unwrap();

    assert!(started.elapsed() < PROMPTLY, "took {:?}", started.elapsed());
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(response).await["error"]["code"], "service_unavailable");
    drop(db);
}

struct Bare {
    base: String,
    client: reqwest::Client,
}

#[expect(clippy::unwrap_used, reason = "test set-up")]
async fn spawn_without_tenant(store: infra_postgres::PgStore) -> Bare {
    let app = apikeys::application::Application::build(
        "127.0.0.1:0".parse().unwrap(),
        &store,
        domain::testing::TestClock::default(),
        common::hash_key(),
        Some(1),
    )
    .unwrap();
    let base = format!("http://{}", app.addr());
    actix_web::rt::spawn(app.into_server());
    Bare {
        base,
        client: reqwest::Client::new(),
    }
}

#[actix_web::test]
async fn a_database_that_stops_answering_gives_503_within_the_bound_then_at_once() {
    // Given the application reaching its database through a proxy that can
    // stop forwarding without closing anything (frozen database processes,
    // or a network dropping packets), with 1 s pool and statement timeouts:
    // no request may wait longer than 1 + 1 + 1 s.
    let db = TestDatabase::new();
    let proxy = StallingProxy::start(db.url());
    let timeouts = Duration::from_secs(1);
    let store = PgStore::connect(
        proxy.url(),
        &PoolConfig {
            max_size: 4,
            connection_timeout: timeouts,
            statement_timeout: timeouts,
        },
    )
    .unwrap();
    let bound = store.call_bound();
    assert_eq!(bound, Duration::from_secs(3));
    let app = TestApp::spawn_on(store.clone(), Some(db)).await;
    let list = || app.request(Method::GET, "/v1/api-keys").send();
    assert_eq!(list().await.unwrap().status(), StatusCode::OK);

    // When the database stops answering.
    proxy.stall();

    // Then the request already on its way gets 503 at the bound, not when
    // TCP gives up.
    let started = Instant::now();
    let response = list().await.unwrap();
    let waited = started.elapsed();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(json(response).await["error"]["code"], "service_unavailable");
    assert!(
        waited < bound + Duration::from_millis(500),
        "waited {waited:?}"
    );
    // The node knows by now; every request that needs the database gets
    // its 503 at once, and readiness answers 503 within 1 s.
    assert!(store.database_down());
    for _ in 0..3 {
        let started = Instant::now();
        let response = list().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let took = started.elapsed();
        assert!(took < Duration::from_millis(100), "took {took:?}");
        let started = Instant::now();
        let ready = app.get_public("/readyz").await;
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    assert_eq!(app.get_public("/healthz").await.status(), StatusCode::OK);

    // And within 1 s of the database answering again, requests succeed.
    proxy.resume();
    let resumed = Instant::now();
    loop {
        if list().await.unwrap().status() == StatusCode::OK {
            break;
        }
        assert!(
            resumed.elapsed() < Duration::from_secs(1),
            "not serving 1 s after the database answers again"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.get_public("/readyz").await.status(), StatusCode::OK);
}

#[actix_web::test]
async fn readiness_answers_within_a_second_while_the_database_stops_answering() {
    // A fresh node whose database hangs before the node has noticed
    // anything: readiness itself must not wait for the pool.
    let db = TestDatabase::new();
    let proxy = StallingProxy::start(db.url());
    let store = PgStore::connect(
        proxy.url(),
        &PoolConfig {
            max_size: 4,
            ..PoolConfig::default()
        },
    )
    .unwrap();
    let app = TestApp::spawn_on(store, Some(db)).await;
    assert_eq!(app.get_public("/readyz").await.status(), StatusCode::OK);
    proxy.stall();
    let started = Instant::now();
    let ready = app.get_public("/readyz").await;
    let took = started.elapsed();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(took < Duration::from_secs(1), "took {took:?}");
    proxy.resume();
}
