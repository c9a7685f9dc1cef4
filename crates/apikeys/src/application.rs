//! Composition: the PostgreSQL store, the domain service and the HTTP server,
//! wired once. The program and the end-to-end tests build the same
//! [`Application`].

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use domain::{ApiKeys, Authenticator, Clock, HashKey, OsSecretSource, RepositoryError};
use http_actix::{AppState, FailureLimitConfig, FailureLimiter, Readiness, RequestLimits};
use infra_postgres::{EventFeed, FeedConfig, PgStore};
use key_cache::{CacheConfig, Freshness, KeyCache, UseBuffer, UseFlusher};

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

/// How the server authenticates and follows other nodes' changes; the
/// defaults suit tests and a single node.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// HTTP worker threads (`None`: one per core).
    pub workers: Option<usize>,
    /// The key cache.
    pub cache: CacheConfig,
    /// The event feed that keeps the cache in step with other nodes.
    pub feed: FeedConfig,
    /// How often buffered key uses are written.
    pub flush_uses_every: Option<Duration>,
    /// The limit on failed authentications per client address.
    pub failure_limit: FailureLimitConfig,
    /// How long a request's head and body may take to arrive.
    pub request_limits: RequestLimits,
}

/// The threads that serve the cache: the event feed and the last-used
/// writer. Stopping writes the uses still buffered.
#[derive(Debug)]
struct Background {
    feed: EventFeed,
    uses: UseFlusher,
}

impl Background {
    fn stop(&mut self) {
        self.uses.stop();
        self.feed.stop();
    }
}

/// A bound, not yet running server, with the threads that keep its key
/// cache fresh.
pub struct Application {
    addr: SocketAddr,
    server: actix_web::dev::Server,
    limiter: Arc<FailureLimiter>,
    background: Background,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// [`Application::build_with`] default [`Settings`] and `workers`.
    ///
    /// # Errors
    /// When the address cannot be bound or a thread cannot start.
    pub fn build(
        bind: SocketAddr,
        store: &PgStore,
        clock: impl Clock + 'static,
        hash_key: HashKey,
        workers: Option<usize>,
    ) -> anyhow::Result<Self> {
        let settings = Settings {
            workers,
            ..Settings::default()
        };
        Self::build_with(bind, store, clock, hash_key, &settings)
    }

    /// Binds `bind` (port 0 picks a free port) and builds the server over
    /// `store`, telling time by `clock`: the service, the key cache in front
    /// of authentication (told of this node's changes by the service and of
    /// other nodes' by the event feed), and the last-used writer.
    ///
    /// # Errors
    /// When the address cannot be bound or a thread cannot start.
    pub fn build_with(
        bind: SocketAddr,
        store: &PgStore,
        clock: impl Clock + 'static,
        hash_key: HashKey,
        settings: &Settings,
    ) -> anyhow::Result<Self> {
        let listener =
            TcpListener::bind(bind).with_context(|| format!("cannot listen on {bind}"))?;
        let addr = listener.local_addr().context("no local address")?;
        let clock: Arc<dyn Clock> = Arc::new(clock);
        let freshness = Arc::new(Freshness::new(settings.cache.freshness));
        let uses = Arc::new(UseBuffer::new());
        let cache = Arc::new(KeyCache::new(
            Arc::new(store.clone()),
            clock.clone(),
            hash_key.clone(),
            freshness,
            uses.clone(),
            settings.cache.clone(),
        ));
        let service = Arc::new(
            ApiKeys::new(
                store.clone(),
                store.clone(),
                store.clone(),
                SharedClock(clock),
                OsSecretSource,
                hash_key,
            )
            .with_change_listener(cache.clone()),
        );
        let feed = EventFeed::spawn(store.database_url(), settings.feed.clone(), cache.clone())
            .context("cannot start the event feed")?;
        let uses = UseFlusher::spawn(
            uses,
            Arc::new(store.clone()),
            settings.flush_uses_every.unwrap_or(Duration::from_secs(1)),
        )
        .context("cannot start the last-used writer")?;
        let authenticator: Arc<dyn Authenticator> = cache;
        let readiness: Arc<dyn Readiness> = Arc::new(StoreReadiness(store.clone()));
        let limiter = Arc::new(FailureLimiter::new(&settings.failure_limit));
        let state = AppState::new(service, authenticator, readiness)
            .with_failure_limiter(limiter.clone())
            .with_request_limits(settings.request_limits);
        let server = http_actix::server(listener, state, settings.workers)
            .with_context(|| format!("cannot serve on {addr}"))?;
        Ok(Application {
            addr,
            server,
            limiter,
            background: Background { feed, uses },
        })
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The limit on failed authentications, with its counts (for logs and
    /// metrics).
    pub fn failure_limiter(&self) -> &Arc<FailureLimiter> {
        &self.limiter
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Serves until SIGINT or SIGTERM; requests in flight finish first, then
    /// the buffered key uses are written and the event feed stops.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application {
            server,
            mut background,
            ..
        } = self;
        let served = server.await;
        background.stop();
        served
    }

    /// The running server's handle, to stop it (tests).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// [`Application::run_until_stopped`] as a future to spawn (tests).
    pub fn into_server(self) -> impl std::future::Future<Output = std::io::Result<()>> {
        self.run_until_stopped()
    }
}

/// One clock shared by the service and the cache.
struct SharedClock(Arc<dyn Clock>);

impl Clock for SharedClock {
    fn now(&self) -> time::OffsetDateTime {
        self.0.now()
    }
}
