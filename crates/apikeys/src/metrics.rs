//! `GET /metrics` in the Prometheus text format, on a listener of its own
//! (`APIKEYS_METRICS_BIND`; docs/metrics.md lists every family).
//!
//! What changes per request (requests, latency, authentication outcomes) and
//! per write (events) is recorded where it happens, through the `metrics`
//! facade into the Prometheus recorder installed here. What is cheaper to
//! read than to record (the pool's connections, the cache's counters, the
//! last-use writer's counters, the event feed's lag) is read on each scrape
//! by [`Sources::sample`].

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::{anyhow, Context};
use infra_postgres::PgStore;
use key_cache::{Freshness, KeyCache, UseBuffer};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Gauge: pool connections by `state` (`in_use`, `idle`).
pub const DB_POOL_CONNECTIONS: &str = "apikeys_db_pool_connections";
/// Counter: authentications answered from a cached key.
pub const CACHE_HITS: &str = "apikeys_cache_hits_total";
/// Counter: authentications answered from a cached "no such key".
pub const CACHE_NEGATIVE_HITS: &str = "apikeys_cache_negative_hits_total";
/// Counter: authentications that asked the database.
pub const CACHE_MISSES: &str = "apikeys_cache_misses_total";
/// Counter: key changes that dropped a cached key (this node's and the
/// event feed's).
pub const CACHE_INVALIDATIONS: &str = "apikeys_cache_invalidations_total";
/// Gauge (seconds): age of the event feed's last confirmation that every
/// change was seen; past 1 the cache stops answering. `+Inf` before the
/// first.
pub const EVENT_FEED_LAG: &str = "apikeys_event_feed_lag_seconds";
/// Counter: `last_used_at` batches written.
pub const LAST_USED_BATCHES: &str = "apikeys_last_used_batches_total";
/// Counter: `last_used_at` rows those batches updated.
pub const LAST_USED_ROWS: &str = "apikeys_last_used_rows_total";

/// How often histograms are folded into their buckets between scrapes, so
/// that an unscraped node's memory stays bounded.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process's Prometheus recorder, installed once (the facade has one
/// global recorder), with its upkeep thread.
///
/// # Errors
/// When another recorder was installed first, or the upkeep thread cannot
/// start.
pub fn recorder() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(http_actix::metrics::HTTP_REQUEST_DURATION.to_owned()),
            http_actix::metrics::LATENCY_BUCKETS,
        )
        .context("the latency buckets")?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|_| anyhow!("another metrics recorder is installed already"))?;
    describe();
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("apikeys-metrics".to_owned())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        })
        .context("cannot start the metrics upkeep thread")?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// The `# HELP` lines.
fn describe() {
    use http_actix::metrics as http;
    metrics::describe_counter!(
        http::HTTP_REQUESTS,
        "Requests answered, by route template, method and status."
    );
    metrics::describe_histogram!(
        http::HTTP_REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time to the response's head, by route template and method."
    );
    metrics::describe_counter!(
        http::AUTH_OUTCOMES,
        "Authentication outcomes by code (valid or the error code) and via (request, verify)."
    );
    metrics::describe_counter!(
        http::RATE_LIMITED,
        "Requests refused by an abuse limit (429), by route template."
    );
    metrics::describe_counter!(
        infra_postgres::metrics::EVENTS_WRITTEN,
        "Key events committed, by type."
    );
    metrics::describe_gauge!(
        DB_POOL_CONNECTIONS,
        "Database pool connections by state (in_use, idle)."
    );
    metrics::describe_counter!(CACHE_HITS, "Authentications answered from a cached key.");
    metrics::describe_counter!(
        CACHE_NEGATIVE_HITS,
        "Authentications answered from a cached unknown key."
    );
    metrics::describe_counter!(CACHE_MISSES, "Authentications that asked the database.");
    metrics::describe_counter!(CACHE_INVALIDATIONS, "Key changes applied to the cache.");
    metrics::describe_gauge!(
        EVENT_FEED_LAG,
        metrics::Unit::Seconds,
        "Age of the event feed's last confirmation; the cache answers only under 1 s."
    );
    metrics::describe_counter!(LAST_USED_BATCHES, "last_used_at batches written.");
    metrics::describe_counter!(LAST_USED_ROWS, "last_used_at rows updated.");
    metrics::describe_counter!(
        composition::DELIVERIES,
        "Webhook attempts by outcome (delivered, retry, failed)."
    );
    metrics::describe_gauge!(
        composition::OLDEST_PENDING,
        "Age of the oldest pending webhook delivery, in seconds."
    );
    metrics::describe_counter!(
        http_actix::usage::USAGE_SHARES,
        "Shares of limited keys' budgets taken from the database, by budget (window, credits)."
    );
    metrics::describe_counter!(
        infra_postgres::SHARE_WRITES,
        "Database writes that took those shares, by budget (one per share)."
    );
    metrics::describe_counter!(
        http_actix::usage::USAGE_REFUSED,
        "Uses of limited keys refused because their budget was spent, by code."
    );
    // Known label values start at 0, so that a rate is defined before the
    // first limited key is used (docs/metrics.md).
    for budget in ["window", "credits"] {
        metrics::counter!(http_actix::usage::USAGE_SHARES, "budget" => budget).increment(0);
        metrics::counter!(infra_postgres::SHARE_WRITES, "budget" => budget).increment(0);
    }
    for code in ["rate_limited", "usage_exceeded"] {
        metrics::counter!(http_actix::usage::USAGE_REFUSED, "code" => code).increment(0);
    }
}

/// What is read on each scrape.
#[derive(Clone)]
pub struct Sources {
    /// The pool.
    pub store: PgStore,
    /// The key cache.
    pub cache: Arc<KeyCache>,
    /// The last-use buffer.
    pub uses: Arc<UseBuffer>,
    /// The event feed's confirmations.
    pub freshness: Arc<Freshness>,
}

impl Sources {
    /// Copies the current values into the recorder.
    pub fn sample(&self) {
        let pool = self.store.pool_state();
        metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "in_use").set(pool.in_use());
        metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(pool.idle);
        let cache = self.cache.stats();
        metrics::counter!(CACHE_HITS).absolute(cache.hits);
        metrics::counter!(CACHE_NEGATIVE_HITS).absolute(cache.negative_hits);
        metrics::counter!(CACHE_MISSES).absolute(cache.misses);
        metrics::counter!(CACHE_INVALIDATIONS).absolute(cache.invalidations);
        let lag = self
            .freshness
            .lag(Instant::now())
            .map_or(f64::INFINITY, |lag| lag.as_secs_f64());
        metrics::gauge!(EVENT_FEED_LAG).set(lag);
        let uses = self.uses.stats();
        metrics::counter!(LAST_USED_BATCHES).absolute(uses.batches);
        metrics::counter!(LAST_USED_ROWS).absolute(uses.rows);
    }
}

async fn scrape(handle: web::Data<PrometheusHandle>, sources: web::Data<Sources>) -> HttpResponse {
    sources.sample();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render())
}

/// The metrics server on `listener`: `GET /metrics`, one worker, 404
/// elsewhere. Await it to run it.
///
/// # Errors
/// When the listener cannot be used.
pub fn server(
    listener: TcpListener,
    handle: PrometheusHandle,
    sources: Sources,
) -> std::io::Result<actix_web::dev::Server> {
    let (handle, sources) = (web::Data::new(handle), web::Data::new(sources));
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(handle.clone())
            .app_data(sources.clone())
            .route("/metrics", web::get().to(scrape))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run())
}

/// Binds `bind` for [`server`].
///
/// # Errors
/// When the address cannot be bound.
pub fn bind(bind: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(bind).with_context(|| format!("cannot listen for metrics on {bind}"))
}
