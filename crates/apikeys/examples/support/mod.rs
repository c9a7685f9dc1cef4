//! What the measuring examples share.

use std::time::Duration;

/// The value at rank `p` (0 < p ≤ 1) of sorted `values`: nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let n = sorted.len();
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "n is 100; the rank is within 1..=n"
    )]
    let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
    sorted.get(rank - 1).copied().unwrap_or_default()
}

/// `d` in milliseconds.
pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One `Application` serving in this process on a free port.
pub struct Node {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    handle: actix_web::dev::ServerHandle,
    served: actix_web::rt::task::JoinHandle<std::io::Result<()>>,
}

impl Node {
    /// Builds the application over `store` with `settings` and spawns it.
    pub fn start(
        store: &infra_postgres::PgStore,
        hash_key: domain::HashKey,
        settings: &apikeys::application::Settings,
    ) -> anyhow::Result<Node> {
        let bind: std::net::SocketAddr = "127.0.0.1:0".parse()?;
        let app = apikeys::application::Application::build_with(
            bind,
            store,
            domain::SystemClock,
            hash_key,
            settings,
        )?;
        Ok(Node {
            base: format!("http://{}", app.addr()),
            handle: app.handle(),
            served: actix_web::rt::spawn(app.into_server()),
        })
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        use anyhow::Context;
        self.handle.stop(true).await;
        self.served.await.context("server task")??;
        Ok(())
    }
}

/// A scratch database (created, migrated and dropped as the tests'
/// `TestDatabase` is) with two pools on it, as two processes would have,
/// and a tenant made through the service.
pub struct TwoPools {
    /// Dropped last: the nodes must be stopped first.
    pub db: infra_postgres::testing::TestDatabase,
    /// The hash key of both nodes.
    pub hash_key: domain::HashKey,
    /// Node A's pool (the database's own).
    pub store_a: infra_postgres::PgStore,
    /// Node B's pool, 4 connections.
    pub store_b: infra_postgres::PgStore,
    /// The tenant's id.
    pub tenant: String,
    /// The tenant's live full-access key.
    pub admin: String,
}

impl TwoPools {
    /// Creates the database, the pools and the tenant `Acme`.
    pub fn new() -> anyhow::Result<TwoPools> {
        use anyhow::Context;
        let db = infra_postgres::testing::TestDatabase::new();
        let hash_key = domain::HashKey::from_bytes(&[0x42; 32]).context("hash key")?;
        let store_a = db.store();
        let pool = infra_postgres::PoolConfig {
            max_size: 4,
            ..infra_postgres::PoolConfig::default()
        };
        let store_b = infra_postgres::PgStore::connect(db.url(), &pool).context("node B's pool")?;
        let created =
            apikeys::application::service(&store_a, domain::SystemClock, hash_key.clone())
                .create_tenant(&domain::Origin::cli(), "Acme")
                .context("create tenant")?;
        Ok(TwoPools {
            tenant: created.tenant.id.to_string(),
            admin: created.live.secret.into_secret(),
            db,
            hash_key,
            store_a,
            store_b,
        })
    }
}
