//! The `apikeys` service composed on PostgreSQL, in one call: what the
//! `apikeys` program runs, and what another Rust service embeds
//! (docs/embedding.md).
//!
//! [`Services::start`] takes a [`PgStore`] and gives the use cases
//! ([`ApiKeys`]: create tenants and keys, list, rotate, revoke, ...) and the
//! [`Authenticator`] that the `http_actix::Authenticated` extractor uses: the
//! key cache of `key-cache`, told of this node's changes by the service and
//! of other nodes' by the event feed (a `LISTEN` connection of its own), with
//! uses written in batches by a background thread. [`service`] is the use
//! cases alone, for a command-line tool.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use domain::{
    ApiKeys, Authenticator, Clock, HashKey, KeyChangeListener, OsSecretSource, UsageMeter, Webhooks,
};
use http_actix::{FailureLimitConfig, FailureLimiter};
use infra_postgres::{EventFeed, FeedConfig, PgStore, PoolConfig};
use key_cache::{CacheConfig, Freshness, KeyCache, UseBuffer, UseFlusher};

pub use hash_key::{check_hash_key, new_verifier, HashKeyCheck, HashKeyCheckError};
pub use sweeper::{Periodic, RecordSweeper, DEFAULT_SWEEP_EVERY};
pub use webhooks::{
    resolve_checked, DeliveryWorker, Waker, WebhookSettings, DELIVERIES, OLDEST_PENDING,
};

mod hash_key;
mod sweeper;
mod webhooks;

/// The use cases over the PostgreSQL store alone, without a cache: one store
/// (one pool) serves every repository port. For a command-line tool or a
/// test; a server wants [`Services::start`].
pub fn service(store: &PgStore, clock: impl Clock + 'static, hash_key: HashKey) -> ApiKeys {
    ApiKeys::new(
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        clock,
        OsSecretSource,
        hash_key,
    )
}

/// How the composed services authenticate and follow other nodes' changes;
/// the defaults suit a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The key cache.
    pub cache: CacheConfig,
    /// The event feed that keeps the cache in step with other nodes.
    pub feed: FeedConfig,
    /// How often buffered key uses (`last_used_at`) are written.
    pub flush_uses_every: Duration,
    /// How often expired idempotency records are deleted.
    pub sweep_records_every: Duration,
    /// The limit on failed authentications per client address, and the
    /// proxies whose `X-Forwarded-For` is believed (docs/api.md, "Abuse
    /// limits").
    pub failure_limit: FailureLimitConfig,
    /// Webhooks: the allowed hosts, the delivery worker and the expiry
    /// scheduler (docs/webhooks.md).
    pub webhooks: WebhookSettings,
}

impl Default for Settings {
    /// The defaults of [`CacheConfig`], [`FeedConfig`] and
    /// [`FailureLimitConfig`] (100 failures a minute per address, no trusted
    /// proxy); uses written every second, expired idempotency records
    /// deleted every minute.
    fn default() -> Self {
        Settings {
            cache: CacheConfig::default(),
            feed: FeedConfig::default(),
            flush_uses_every: Duration::from_secs(1),
            sweep_records_every: DEFAULT_SWEEP_EVERY,
            failure_limit: FailureLimitConfig::default(),
            webhooks: WebhookSettings::default(),
        }
    }
}

/// The composed services: the use cases, the authenticator and the limit on
/// failed authentications, the two threads that serve the cache (the event
/// feed, the last-used writer), and the thread that sweeps expired
/// idempotency records.
/// Dropping it, or [`Services::stop`], writes the uses still buffered and
/// stops the threads.
pub struct Services {
    service: Arc<ApiKeys>,
    authenticator: Arc<dyn Authenticator>,
    limiter: Arc<FailureLimiter>,
    cache: Arc<KeyCache>,
    uses_buffer: Arc<UseBuffer>,
    freshness: Arc<Freshness>,
    feed: EventFeed,
    uses: UseFlusher,
    records: RecordSweeper,
    webhooks: Arc<Webhooks>,
    delivery: Option<(DeliveryWorker, Periodic)>,
    usage: Arc<UsageMeter>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Services {
    /// Composes the service on `store`, telling time by `clock` and hashing
    /// keys with `hash_key`: the use cases, the key cache in front of
    /// authentication (told of this node's changes before each use case
    /// returns, and of other nodes' by the event feed), and the last-used
    /// writer. Connects nothing itself: the feed keeps trying until the
    /// database answers, and the cache asks the database until then.
    ///
    /// # Errors
    /// When a thread cannot be started.
    pub fn start(
        store: &PgStore,
        clock: impl Clock + 'static,
        hash_key: HashKey,
        settings: &Settings,
    ) -> std::io::Result<Self> {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        let waker = Arc::new(Waker::default());
        let webhooks = Arc::new(Webhooks::new(
            store.clone(),
            clock.clone(),
            OsSecretSource,
            &hash_key,
            settings.webhooks.allow_hosts.clone(),
        ));
        let delivery = if settings.webhooks.deliver {
            Some(start_delivery(
                store,
                clock.clone(),
                &hash_key,
                waker.clone(),
                &settings.webhooks,
            )?)
        } else {
            None
        };
        let freshness = Arc::new(Freshness::new(settings.cache.freshness));
        let uses = Arc::new(UseBuffer::new());
        let usage = Arc::new(UsageMeter::new(Arc::new(store.clone()), clock.clone()));
        let cache = Arc::new(KeyCache::new(
            Arc::new(store.clone()),
            clock.clone(),
            hash_key.clone(),
            freshness.clone(),
            uses.clone(),
            settings.cache.clone(),
        ));
        let service = Arc::new(
            ApiKeys::new(
                store.clone(),
                store.clone(),
                store.clone(),
                store.clone(),
                SharedClock(clock),
                OsSecretSource,
                hash_key,
            )
            .with_change_listener(cache.clone())
            .with_change_listener(waker.clone()),
        );
        let feed_listener: Arc<dyn KeyChangeListener> =
            Arc::new(webhooks::Fanout(vec![cache.clone(), waker]));
        let feed = EventFeed::spawn(store.database_url(), settings.feed.clone(), feed_listener)?;
        let uses_buffer = uses.clone();
        let uses = UseFlusher::spawn(uses, Arc::new(store.clone()), settings.flush_uses_every)?;
        let records =
            RecordSweeper::spawn(service.clone(), usage.clone(), settings.sweep_records_every)?;
        Ok(Services {
            service,
            authenticator: cache.clone(),
            limiter: Arc::new(FailureLimiter::new(&settings.failure_limit)),
            cache,
            uses_buffer,
            freshness,
            feed,
            uses,
            records,
            webhooks,
            delivery,
            usage,
        })
    }

    /// The webhook use cases (endpoints, deliveries log) over the request
    /// path's store: register it with `AppState::with_webhooks`.
    pub fn webhooks(&self) -> &Arc<Webhooks> {
        &self.webhooks
    }

    /// Spends limited keys' budgets (docs/limits.md): give it to
    /// `AppState::with_usage_meter`; [`Services::register`] registers it
    /// for other apps. [`Services::stop`] returns its unspent shares.
    pub fn usage_meter(&self) -> &Arc<UsageMeter> {
        &self.usage
    }

    /// The use cases.
    pub fn service(&self) -> &Arc<ApiKeys> {
        &self.service
    }

    /// The authenticator: register it in an actix app as
    /// `web::Data::from(services.authenticator().clone())` for the
    /// `Authenticated` extractor, or with [`Services::register`], which
    /// registers the failure limiter too.
    pub fn authenticator(&self) -> &Arc<dyn Authenticator> {
        &self.authenticator
    }

    /// The limit on failed authentications ([`Settings::failure_limit`]):
    /// the `Authenticated` extractor applies it when it is registered as
    /// `web::Data::from(limiter)`; [`Services::register`] does.
    pub fn failure_limiter(&self) -> &Arc<FailureLimiter> {
        &self.limiter
    }

    /// What an actix app needs for the `Authenticated` extractor: the
    /// authenticator and the failure limiter, each registered the one way
    /// the extractor finds it (`web::Data::from(arc)`). Clone it into the
    /// `HttpServer::new` closure and call
    /// `App::new().configure(|cfg| registration.register(cfg))`.
    pub fn registration(&self) -> Registration {
        Registration {
            authenticator: self.authenticator.clone(),
            limiter: self.limiter.clone(),
            usage: Some(self.usage.clone()),
        }
    }

    /// [`Services::registration`] registered in `cfg` at once:
    /// `App::new().configure(|cfg| services.register(cfg))`.
    pub fn register(&self, cfg: &mut web::ServiceConfig) {
        self.registration().register(cfg);
    }

    /// The key cache behind [`authenticator`](Self::authenticator), for its
    /// counters (hits, misses, invalidations).
    pub fn cache(&self) -> &Arc<KeyCache> {
        &self.cache
    }

    /// The buffer of key uses, for its counters (batches and rows written).
    pub fn uses(&self) -> &Arc<UseBuffer> {
        &self.uses_buffer
    }

    /// The event feed's confirmations, for its lag.
    pub fn freshness(&self) -> &Arc<Freshness> {
        &self.freshness
    }

    /// Writes the uses still buffered and stops the threads; a second call
    /// does nothing.
    pub fn stop(&mut self) {
        // Unspent shares of limited keys' budgets go back, so that other
        // nodes can spend them (docs/limits.md); a failure only strands
        // them, it never over-admits.
        match self.usage.release() {
            Ok(returned) if returned > 0 => {
                tracing::info!(returned, "unspent usage shares returned");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "unspent usage shares could not be returned"),
        }
        self.uses.stop();
        self.feed.stop();
        self.records.stop();
        if let Some((mut worker, mut expiry)) = self.delivery.take() {
            expiry.stop();
            worker.stop();
        }
    }
}

/// The delivery worker and the expiry scheduler, on a pool of their own (2
/// connections) so that they never take the request path's.
fn start_delivery(
    store: &PgStore,
    clock: Arc<dyn Clock>,
    hash_key: &HashKey,
    waker: Arc<Waker>,
    settings: &WebhookSettings,
) -> std::io::Result<(DeliveryWorker, Periodic)> {
    let pool = PoolConfig {
        max_size: 2,
        ..PoolConfig::default()
    };
    let own = PgStore::connect(store.database_url(), &pool).map_err(std::io::Error::other)?;
    let webhooks = Arc::new(Webhooks::new(
        own,
        clock,
        OsSecretSource,
        hash_key,
        settings.allow_hosts.clone(),
    ));
    let worker = DeliveryWorker::spawn(webhooks.clone(), waker.clone(), settings)?;
    let expiry =
        Periodic::spawn(
            "apikeys-expiry-events",
            settings.expiry_every,
            move || match webhooks.write_expiry_events() {
                Ok(0) => {}
                Ok(written) => {
                    tracing::info!(written, "wrote key expiry events");
                    waker.wake();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not write expiry events; retrying later")
                }
            },
        )?;
    Ok((worker, expiry))
}

/// The authenticator and the failure limiter, to register in each actix
/// worker's app ([`Services::registration`]).
#[derive(Clone)]
pub struct Registration {
    authenticator: Arc<dyn Authenticator>,
    limiter: Arc<FailureLimiter>,
    usage: Option<Arc<UsageMeter>>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").finish_non_exhaustive()
    }
}

impl Registration {
    /// `authenticator` with a failure limiter of its own under `limit`: for
    /// an app whose authenticator is not a [`Services`]' (a test's
    /// `ApiKeys` on the in-memory store).
    pub fn new(authenticator: Arc<dyn Authenticator>, limit: &FailureLimitConfig) -> Self {
        Registration {
            authenticator,
            limiter: Arc::new(FailureLimiter::new(limit)),
            usage: None,
        }
    }

    /// Registers the authenticator as `web::Data<dyn Authenticator>` and the
    /// limiter as `web::Data<FailureLimiter>`, where the `Authenticated`
    /// extractor looks for them.
    pub fn register(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(web::Data::from(self.authenticator.clone()))
            .app_data(web::Data::from(self.limiter.clone()));
        if let Some(usage) = &self.usage {
            cfg.app_data(web::Data::from(usage.clone()));
        }
    }
}

/// One clock shared by the service and the cache.
struct SharedClock(Arc<dyn Clock>);

impl Clock for SharedClock {
    fn now(&self) -> time::OffsetDateTime {
        self.0.now()
    }
}
