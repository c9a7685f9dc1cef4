//! Composition: the PostgreSQL store, the domain service and the HTTP server,
//! wired once. The program and the end-to-end tests build the same
//! [`Application`].

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use composition::Services;
use domain::{Clock, HashKey, RepositoryError};
use http_actix::{
    AppState, FailureLimitConfig, FailureLimiter, GithubPublicKeys, LeakReportGate, Readiness,
    RequestLimits, DEFAULT_LEAK_REPORTS_IN_FLIGHT, DEFAULT_LEAK_REPORTS_PER_MINUTE,
};
use infra_postgres::PgStore;

/// `/readyz` over the store's connection pool.
#[derive(Debug, Clone)]
pub struct StoreReadiness(pub PgStore);

impl Readiness for StoreReadiness {
    fn check(&self) -> Result<(), RepositoryError> {
        self.0.ping()
    }
}

pub use composition::service;

/// How the server authenticates and follows other nodes' changes; the
/// defaults suit tests and a single node.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// HTTP worker threads (`None`: one per core).
    pub workers: Option<usize>,
    /// The key cache, the event feed and the last-used writer.
    pub services: composition::Settings,
    /// Where `GET /metrics` listens (`None`: no metrics listener, and
    /// nothing is recorded).
    pub metrics_bind: Option<SocketAddr>,
    /// The limit on failed authentications per client address.
    pub failure_limit: FailureLimitConfig,
    /// How long a request's head and body may take to arrive.
    pub request_limits: RequestLimits,
    /// The bounds on leak reports.
    pub leak_reports: LeakReportLimits,
    /// GitHub's secret scanning public keys: with them, `POST
    /// /v1/secret-scanning/github` is served (docs/secret-scanning.md);
    /// `None` (the default): 404.
    pub github_public_keys: Option<Arc<GithubPublicKeys>>,
}

/// The bounds on `POST /v1/leaked-keys`, which anyone may call
/// (docs/api.md, "POST /v1/leaked-keys").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeakReportLimits {
    /// Reports per client address and minute (the client address as for
    /// the failure limit: the peer, or a trusted proxy's `X-Forwarded-For`);
    /// 0: no limit.
    pub per_minute: u32,
    /// Reports processed at once on this node; more get 503 at once.
    pub in_flight: usize,
}

impl Default for LeakReportLimits {
    fn default() -> Self {
        LeakReportLimits {
            per_minute: DEFAULT_LEAK_REPORTS_PER_MINUTE,
            in_flight: DEFAULT_LEAK_REPORTS_IN_FLIGHT,
        }
    }
}

/// A bound, not yet running server, with the threads that keep its key
/// cache fresh.
pub struct Application {
    addr: SocketAddr,
    server: actix_web::dev::Server,
    metrics: Option<(SocketAddr, actix_web::dev::Server)>,
    services: Services,
    limiter: Arc<FailureLimiter>,
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
        // Installed before anything records, and bound before anything
        // starts, so that a taken metrics address fails the start.
        let metrics = settings
            .metrics_bind
            .map(|bind| anyhow::Ok((crate::metrics::recorder()?, crate::metrics::bind(bind)?)))
            .transpose()?;
        // The same call an app embedding the service makes (docs/embedding.md).
        let services_settings = composition::Settings {
            failure_limit: settings.failure_limit.clone(),
            ..settings.services.clone()
        };
        let services = Services::start(store, clock, hash_key, &services_settings)
            .context("cannot start the event feed or the last-used writer")?;
        let metrics = match metrics {
            None => None,
            Some((handle, listener)) => {
                let metrics_addr = listener.local_addr().context("no local address")?;
                let sources = crate::metrics::Sources {
                    store: store.clone(),
                    cache: services.cache().clone(),
                    uses: services.uses().clone(),
                    freshness: services.freshness().clone(),
                };
                let server = crate::metrics::server(listener, handle, sources)
                    .with_context(|| format!("cannot serve metrics on {metrics_addr}"))?;
                Some((metrics_addr, server))
            }
        };
        let readiness: Arc<dyn Readiness> = Arc::new(StoreReadiness(store.clone()));
        // The one limiter, also what `Services::register` registers.
        let limiter = services.failure_limiter().clone();
        let reports = FailureLimiter::new(&FailureLimitConfig {
            limit: settings.leak_reports.per_minute,
            window: Duration::from_secs(60),
            ..settings.failure_limit.clone()
        });
        let leak_reports = Arc::new(LeakReportGate::new(
            reports,
            settings.leak_reports.in_flight,
        ));
        let mut state = AppState::new(
            services.service().clone(),
            services.authenticator().clone(),
            readiness,
        )
        .with_failure_limiter(limiter.clone())
        .with_usage_meter(services.usage_meter().clone())
        .with_leak_report_gate(leak_reports)
        .with_webhooks(services.webhooks().clone())
        .with_request_limits(RequestLimits {
            // What the store's settings allow a call, not a guess of them.
            storage_wait: store.call_bound(),
            ..settings.request_limits
        });
        if let Some(keys) = &settings.github_public_keys {
            state = state.with_github_public_keys(keys.clone());
        }
        let server = http_actix::server(listener, state, settings.workers)
            .with_context(|| format!("cannot serve on {addr}"))?;
        Ok(Application {
            addr,
            server,
            metrics,
            services,
            limiter,
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

    /// The metrics listener's address, when there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(addr, _)| *addr)
    }

    /// Serves until SIGINT or SIGTERM; requests in flight finish first, then
    /// the buffered key uses are written and the event feed stops.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application {
            server,
            metrics,
            mut services,
            ..
        } = self;
        let metrics = metrics.map(|(_, metrics)| {
            let handle = metrics.handle();
            actix_web::rt::spawn(metrics);
            handle
        });
        let served = server.await;
        if let Some(metrics) = metrics {
            metrics.stop(true).await;
        }
        services.stop();
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
