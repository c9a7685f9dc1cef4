//! The database going away: 503 with `Retry-After` within the pool timeout,
//! never a hang or a panic, and recovery without a restart.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{json, store_at, TestApp};
use infra_postgres::testing::TestDatabase;
use reqwest::{Method, StatusCode};

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
