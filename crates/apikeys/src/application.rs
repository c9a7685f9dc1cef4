//! Composition: the PostgreSQL store, the domain service and the HTTP server,
//! wired once. The program and the end-to-end tests build the same
//! [`Application`].

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use anyhow::Context;
use domain::{ApiKeys, Authenticator, Clock, HashKey, OsSecretSource, RepositoryError};
use http_actix::{AppState, Readiness};
use infra_postgres::PgStore;

/// `/readyz` over the store's connection pool.
#[derive(Debug, Clone)]
pub struct StoreReadiness(pub PgStore);

impl Readiness for StoreReadiness {
    fn check(&self) -> Result<(), RepositoryError> {
        self.0.ping()
    }
}

/// The domain service over the PostgreSQL store: one store (one pool) serves
/// every repository port.
pub fn service(store: &PgStore, clock: impl Clock + 'static, hash_key: HashKey) -> ApiKeys {
    ApiKeys::new(
        store.clone(),
        store.clone(),
        store.clone(),
        clock,
        OsSecretSource,
        hash_key,
    )
}

/// A bound, not yet running server.
pub struct Application {
    addr: SocketAddr,
    server: actix_web::dev::Server,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Binds `bind` (port 0 picks a free port) and builds the server over
    /// `store`, telling time by `clock`.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub fn build(
        bind: SocketAddr,
        store: &PgStore,
        clock: impl Clock + 'static,
        hash_key: HashKey,
        workers: Option<usize>,
    ) -> anyhow::Result<Self> {
        let listener =
            TcpListener::bind(bind).with_context(|| format!("cannot listen on {bind}"))?;
        let addr = listener.local_addr().context("no local address")?;
        let service = Arc::new(service(store, clock, hash_key));
        let authenticator: Arc<dyn Authenticator> = service.clone();
        let readiness: Arc<dyn Readiness> = Arc::new(StoreReadiness(store.clone()));
        let state = AppState::new(service, authenticator, readiness);
        let server = http_actix::server(listener, state, workers)
            .with_context(|| format!("cannot serve on {addr}"))?;
        Ok(Application { addr, server })
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Serves until SIGINT or SIGTERM; requests in flight finish first.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }

    /// The running server's handle, to stop it (tests).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// The server future itself, to spawn it (tests).
    pub fn into_server(self) -> actix_web::dev::Server {
        self.server
    }
}
