//! The end-to-end harness: the real [`Application`] on a fresh database,
//! bound to port 0, driven over real HTTP.

#![allow(dead_code, reason = "each test binary uses part of the harness")]
#![expect(
    clippy::expect_used,
    reason = "test harness: a failed set-up is a failed test"
)]

pub mod proxy;

use std::net::SocketAddr;

use apikeys::application::{self, Application};
use domain::testing::TestClock;
use domain::{HashKey, Origin};
use infra_postgres::testing::TestDatabase;
use infra_postgres::{PgStore, PoolConfig};
use reqwest::{Client, RequestBuilder, Response};
use serde_json::Value;

/// A fixed hash key for tests.
pub fn hash_key() -> HashKey {
    HashKey::from_bytes(&[0x42; 32]).expect("hash key")
}

/// A running application with one tenant.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// An HTTP client.
    pub client: Client,
    /// The application's clock: advance it to move time.
    pub clock: TestClock,
    /// The tenant's id.
    pub tenant: String,
    /// Its live full-access secret key.
    pub live_key: String,
    /// Its test full-access secret key.
    pub test_key: String,
    /// The store the application uses.
    pub store: PgStore,
    handle: actix_web::dev::ServerHandle,
    // Dropped last: the database outlives the server that uses it.
    _db: Option<TestDatabase>,
}

/// A tenant made through the service, with its keys.
pub struct Tenant {
    /// `tnt_...`
    pub id: String,
    /// `sk_live_...`
    pub live: String,
    /// `sk_test_...`
    pub test: String,
}

/// Creates a tenant directly through the domain service over `store`.
pub fn create_tenant(store: &PgStore, clock: &TestClock, name: &str) -> Tenant {
    let created = application::service(store, clock.clone(), hash_key())
        .create_tenant(&Origin::cli(), name)
        .expect("create tenant");
    Tenant {
        id: created.tenant.id.to_string(),
        live: created.live.secret.into_secret(),
        test: created.test.secret.into_secret(),
    }
}

impl TestApp {
    /// The application on a fresh database with a tenant "Acme".
    pub async fn spawn() -> TestApp {
        let db = TestDatabase::new();
        let store = db.store();
        Self::spawn_on(store, Some(db)).await
    }

    /// The application over `store`, which may point anywhere (faults).
    pub async fn spawn_on(store: PgStore, db: Option<TestDatabase>) -> TestApp {
        let clock = TestClock::default();
        let tenant = create_tenant(&store, &clock, "Acme");
        let bind: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let app = Application::build(bind, &store, clock.clone(), hash_key(), Some(2))
            .expect("build application");
        let base = format!("http://{}", app.addr());
        let handle = app.handle();
        actix_web::rt::spawn(app.into_server());
        TestApp {
            base,
            client: Client::new(),
            clock,
            tenant: tenant.id,
            live_key: tenant.live,
            test_key: tenant.test,
            store,
            handle,
            _db: db,
        }
    }

    /// A request with the tenant's live key.
    pub fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.request_as(method, path, &self.live_key.clone())
    }

    /// A request with `key` for this tenant.
    pub fn request_as(&self, method: reqwest::Method, path: &str, key: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {key}"))
            .header("X-Tenant-ID", &self.tenant)
    }

    /// GET `path` without credentials (health, readiness, OpenAPI).
    pub async fn get_public(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("send")
    }

    /// POST /v1/api-keys with a JSON body as the live key.
    pub async fn create_key(&self, body: Value) -> Response {
        self.request(reqwest::Method::POST, "/v1/api-keys")
            .json(&body)
            .send()
            .await
            .expect("send")
    }

    /// Stops the server.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

/// The application with `settings` on a fresh database with a tenant
/// "Acme", served on a free port until `handle` stops it.
pub struct Served {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The tenant and its keys.
    pub tenant: Tenant,
    /// The database (dropped after the server).
    pub db: TestDatabase,
    /// Stops the server.
    pub handle: actix_web::dev::ServerHandle,
}

/// Builds and serves [`Served`]: the tests whose settings differ from
/// [`TestApp`]'s.
pub async fn serve_with(settings: &application::Settings) -> Served {
    let db = TestDatabase::new();
    let store = db.store();
    let clock = TestClock::default();
    let tenant = create_tenant(&store, &clock, "Acme");
    let app = Application::build_with(
        "127.0.0.1:0".parse().expect("addr"),
        &store,
        clock,
        hash_key(),
        settings,
    )
    .expect("build application");
    let addr = app.addr();
    let handle = app.handle();
    actix_web::rt::spawn(app.into_server());
    Served {
        addr,
        tenant,
        db,
        handle,
    }
}

/// A store pointed at `127.0.0.1:<port>`, database `name`, with a short timeout.
pub fn store_at(port: u16, database: &str, timeout_secs: u64) -> PgStore {
    let url = format!("postgres://postgres@127.0.0.1:{port}/{database}");
    let config = PoolConfig {
        max_size: 4,
        connection_timeout: std::time::Duration::from_secs(timeout_secs),
        ..PoolConfig::default()
    };
    PgStore::connect(&url, &config).expect("pool")
}

/// The JSON body of a response.
pub async fn json(response: Response) -> Value {
    response.json().await.expect("JSON body")
}

/// The keys of a JSON object, in order.
pub fn fields(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect()
}

/// One running `Application` in this process (one node of several on a
/// database): started on a free port, stopped gracefully.
pub struct Node {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    handle: actix_web::dev::ServerHandle,
    served: Option<actix_web::rt::task::JoinHandle<std::io::Result<()>>>,
}

impl Node {
    /// Builds the application over `store` with `clock` and `settings`, and
    /// spawns it.
    pub fn start(
        store: &PgStore,
        clock: impl domain::Clock + 'static,
        settings: &application::Settings,
    ) -> Node {
        let app = Application::build_with(
            "127.0.0.1:0".parse().expect("addr"),
            store,
            clock,
            hash_key(),
            settings,
        )
        .expect("build application");
        let base = format!("http://{}", app.addr());
        let handle = app.handle();
        let served = actix_web::rt::spawn(app.into_server());
        Node {
            base,
            handle,
            served: Some(served),
        }
    }

    /// Stops the server gracefully and waits until its background threads
    /// stopped (buffered key uses are written, a webhook worker abandons
    /// the attempts in flight).
    pub async fn stop(mut self) {
        self.handle.stop(true).await;
        if let Some(served) = self.served.take() {
            served.await.expect("server task").expect("server");
        }
    }
}
