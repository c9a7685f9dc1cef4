//! The limit on failed authentications per client address (docs/api.md,
//! "Abuse limits"; the design is in docs/decisions.md).
//!
//! Every 401 other than `missing_api_key`, and every `valid: false`
//! verification, is one failure of the client's address. Failures pass
//! through a GCRA (`governor`) that allows a burst of `limit` and one more
//! every `window / limit`; a failure past that blocks the address for one
//! `window`: every authenticated route, verification and leaked-key reports
//! answer it 429 `too_many_requests` with `Retry-After` until the window has
//! passed, and by then its full allowance is back.
//!
//! The check sits where authentication happens (the
//! [`Authenticated`](crate::Authenticated) extractor, verification and
//! leaked-key reports), so every route that authenticates, also one added
//! later, is covered without a middleware that would cost every request an
//! allocation. A request pays one lookup of its address in a bounded map;
//! a disabled limiter costs nothing.
//!
//! The per-address state lives in a `moka` cache of at most
//! [`FailureLimitConfig::max_addresses`] entries (least recently and
//! frequently used go first), each dropped after a window without use, when
//! it holds nothing a new entry would not.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::HttpRequest;
use domain::AuthError;
use governor::clock::{Clock, FakeRelativeClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::Quota;
use moka::sync::Cache;

use crate::client_addr::{client_address, limit_key, TrustedProxies};
use crate::error::ApiError;

/// Failed authentications allowed per address and window unless configured.
pub const DEFAULT_FAILURE_LIMIT: u32 = 100;
/// The window of [`DEFAULT_FAILURE_LIMIT`].
pub const DEFAULT_FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at most unless configured.
pub const DEFAULT_MAX_ADDRESSES: u64 = 100_000;

/// The limit's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureLimitConfig {
    /// Failures allowed per address and window; 0 disables the limit.
    pub limit: u32,
    /// The window.
    pub window: Duration,
    /// Most addresses tracked at once: the memory bound.
    pub max_addresses: u64,
    /// Whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
}

impl Default for FailureLimitConfig {
    fn default() -> Self {
        FailureLimitConfig {
            limit: DEFAULT_FAILURE_LIMIT,
            window: DEFAULT_FAILURE_WINDOW,
            max_addresses: DEFAULT_MAX_ADDRESSES,
            trusted_proxies: TrustedProxies::none(),
        }
    }
}

/// The limiter's time: the monotonic clock, or one a test moves by hand.
#[derive(Debug, Clone)]
pub struct LimiterClock(ClockKind);

#[derive(Debug, Clone)]
enum ClockKind {
    System(Instant),
    Manual(FakeRelativeClock),
}

impl LimiterClock {
    /// The monotonic clock.
    pub fn system() -> Self {
        LimiterClock(ClockKind::System(Instant::now()))
    }

    /// A clock that stands still until [`ManualClock::advance`]d.
    pub fn manual(clock: &ManualClock) -> Self {
        LimiterClock(ClockKind::Manual(clock.0.clone()))
    }
}

impl Clock for LimiterClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        match &self.0 {
            ClockKind::System(start) => Nanos::from(start.elapsed()),
            ClockKind::Manual(clock) => clock.now(),
        }
    }
}

/// A clock for tests: time moves only when told.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(FakeRelativeClock);

impl ManualClock {
    /// Moves time forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.0.advance(by);
    }
}

/// One address's state: the GCRA's theoretical arrival time and the end of
/// its block, in nanoseconds of the limiter's clock (0: none).
#[derive(Debug, Default)]
struct AddressState {
    arrival: AtomicU64,
    blocked_until: AtomicU64,
}

/// The per-address states, bounded.
#[derive(Clone)]
struct AddressStore(Cache<IpAddr, Arc<AddressState>>);

impl StateStore for AddressStore {
    type Key = IpAddr;

    // As governor's own in-memory state: compare-and-swap until the
    // decision was made on the value it replaces.
    fn measure_and_replace<T, F, E>(&self, key: &IpAddr, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let state = self.0.get_with(*key, || Arc::new(AddressState::default()));
        let seen = |raw: u64| (raw != 0).then(|| Nanos::from(raw));
        let mut prev = state.arrival.load(Ordering::Acquire);
        loop {
            let (result, next) = f(seen(prev))?;
            match state.arrival.compare_exchange_weak(
                prev,
                next.as_u64(),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(result),
                Err(actual) => prev = actual,
            }
        }
    }
}

type Gcra = governor::RateLimiter<IpAddr, AddressStore, LimiterClock, NoOpMiddleware<Nanos>>;

struct Active {
    gcra: Gcra,
    store: AddressStore,
    clock: LimiterClock,
    window: Nanos,
    proxies: TrustedProxies,
    /// The end of the latest block of any address (clock nanoseconds; 0:
    /// none yet). While it is past, no address is blocked and admission
    /// skips the store: the success path pays no map lookup.
    latest_block_until: AtomicU64,
}

/// What the limiter has counted since start: for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimitCounts {
    /// Failed authentications counted.
    pub failures: u64,
    /// Requests answered 429 `too_many_requests`.
    pub refusals: u64,
    /// Times an address went over the limit and was blocked.
    pub blocks: u64,
}

/// The client of a request as the limiter counts it (no address when the
/// limit is off or the request has no peer address), and the request's route
/// for `apikeys_rate_limited_total` (docs/metrics.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Client {
    ip: Option<IpAddr>,
    route: &'static str,
}

/// The limit on failed authentications per client address. Register it in
/// the app as `web::Data<FailureLimiter>` ([`crate::AppState`] does); without
/// it, nothing is limited.
pub struct FailureLimiter {
    active: Option<Active>,
    /// Whose `X-Forwarded-For` is believed, kept even when the limit is
    /// off: the client address of a request is the same for every rule
    /// that needs one (`crate::key_use`'s `allowed_ips` too).
    proxies: TrustedProxies,
    /// What it counts, for its log line: failed authentications unless
    /// [`FailureLimiter::counting`] says otherwise.
    what: &'static str,
    failures: AtomicU64,
    refusals: AtomicU64,
    blocks: AtomicU64,
}

impl fmt::Debug for FailureLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailureLimiter")
            .field("enabled", &self.active.is_some())
            .field("counts", &self.counts())
            .finish()
    }
}

impl FailureLimiter {
    /// A limiter on the monotonic clock.
    pub fn new(config: &FailureLimitConfig) -> Self {
        Self::with_clock(config, LimiterClock::system())
    }

    /// No limit at all.
    pub fn disabled() -> Self {
        Self::with_clock(
            &FailureLimitConfig {
                limit: 0,
                ..FailureLimitConfig::default()
            },
            LimiterClock::system(),
        )
    }

    /// A limiter on `clock` (tests move a [`ManualClock`]).
    pub fn with_clock(config: &FailureLimitConfig, clock: LimiterClock) -> Self {
        let quota = NonZeroU32::new(config.limit).and_then(|burst| {
            let per_cell = config.window.checked_div(burst.get())?;
            Quota::with_period(per_cell).map(|q| q.allow_burst(burst))
        });
        let active = quota.map(|quota| {
            let store = AddressStore(
                Cache::builder()
                    .max_capacity(config.max_addresses.max(1))
                    // Idle for a window: allowance full, no block; nothing lost.
                    .time_to_idle(config.window.max(Duration::from_secs(1)))
                    .build(),
            );
            Active {
                gcra: governor::RateLimiter::new(quota, store.clone(), clock.clone()),
                store,
                clock,
                window: Nanos::from(config.window),
                proxies: config.trusted_proxies.clone(),
                latest_block_until: AtomicU64::new(0),
            }
        });
        FailureLimiter {
            active,
            proxies: config.trusted_proxies.clone(),
            what: "failed authentications",
            failures: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            blocks: AtomicU64::new(0),
        }
    }

    /// The same limiter counting something else than failed
    /// authentications (its log line names it), such as leak reports.
    #[must_use]
    pub fn counting(mut self, what: &'static str) -> Self {
        self.what = what;
        self
    }

    /// The trusted proxies it was configured with.
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.proxies
    }

    /// Whether failures are limited at all.
    pub fn is_enabled(&self) -> bool {
        self.active.is_some()
    }

    /// What has been counted since start.
    pub fn counts(&self) -> LimitCounts {
        LimitCounts {
            failures: self.failures.load(Ordering::Relaxed),
            refusals: self.refusals.load(Ordering::Relaxed),
            blocks: self.blocks.load(Ordering::Relaxed),
        }
    }

    /// Admits a request, or refuses it 429 while its client's address is
    /// blocked. The client it returns is for [`FailureLimiter::failed`].
    ///
    /// # Errors
    /// [`ApiError::too_many_requests`] with the seconds left of the block.
    pub fn admit(&self, req: &HttpRequest) -> Result<Client, ApiError> {
        let Some(active) = &self.active else {
            return Ok(Client::default());
        };
        let Some(ip) = client_address(req, &active.proxies).map(limit_key) else {
            return Ok(Client::default());
        };
        let client = Client {
            ip: Some(ip),
            route: crate::metrics::route_of(req),
        };
        let latest = active.latest_block_until.load(Ordering::Relaxed);
        if latest == 0 {
            return Ok(client);
        }
        let now = active.clock.now().as_u64();
        if latest <= now {
            return Ok(client);
        }
        if let Some(state) = active.store.0.get(&ip) {
            let until = state.blocked_until.load(Ordering::Relaxed);
            if until > now {
                return Err(self.refuse(until - now, client.route));
            }
        }
        Ok(client)
    }

    /// Counts one failed authentication of `client`. `None` while the client
    /// is within its limit; the 429 to answer instead of the failure when
    /// this failure went over it, which blocks the address for a window.
    pub fn failed(&self, client: Client) -> Option<ApiError> {
        let (Some(active), Some(ip)) = (&self.active, client.ip) else {
            return None;
        };
        self.failures.fetch_add(1, Ordering::Relaxed);
        if active.gcra.check_key(&ip).is_ok() {
            return None;
        }
        let now = active.clock.now().as_u64();
        let until = now.saturating_add(active.window.as_u64());
        if let Some(state) = active.store.0.get(&ip) {
            state.blocked_until.fetch_max(until, Ordering::Relaxed);
        }
        active
            .latest_block_until
            .fetch_max(until, Ordering::Relaxed);
        self.blocks.fetch_add(1, Ordering::Relaxed);
        // Once per address and window: an attack cannot fill the log.
        tracing::warn!(
            client = %ip,
            counted = self.what,
            window_secs = active.window.as_u64() / 1_000_000_000,
            "over the limit per address; the address is refused for a window"
        );
        Some(self.refuse(until - now, client.route))
    }

    /// The answer to a failed authentication of `client`: `e`, counted
    /// when it is a failure the limit counts (a 401 other than
    /// `missing_api_key`), or 429 when it went over the limit.
    pub fn failed_auth(&self, client: Client, e: AuthError) -> ApiError {
        let counted = matches!(
            e,
            AuthError::InvalidKey | AuthError::Revoked | AuthError::Expired
        );
        match counted.then(|| self.failed(client)).flatten() {
            Some(too_many) => too_many,
            None => e.into(),
        }
    }

    fn refuse(&self, nanos_left: u64, route: &'static str) -> ApiError {
        self.refusals.fetch_add(1, Ordering::Relaxed);
        crate::metrics::record_rate_limited(route);
        ApiError::too_many_requests(nanos_left.div_ceil(1_000_000_000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn limiter(limit: u32, clock: &ManualClock) -> FailureLimiter {
        FailureLimiter::with_clock(
            &FailureLimitConfig {
                limit,
                window: Duration::from_secs(60),
                ..FailureLimitConfig::default()
            },
            LimiterClock::manual(clock),
        )
    }

    fn from(addr: &str) -> HttpRequest {
        TestRequest::default()
            .peer_addr(addr.parse().unwrap())
            .to_http_request()
    }

    #[test]
    fn the_failure_past_the_limit_blocks_the_address_for_the_window() {
        let clock = ManualClock::default();
        let limiter = limiter(3, &clock);
        let req = from("203.0.113.1:5000");
        for _ in 0..3 {
            let client = limiter.admit(&req).unwrap();
            assert!(limiter.failed(client).is_none());
        }
        let client = limiter.admit(&req).unwrap();
        let refused = limiter.failed(client).unwrap();
        assert_eq!(refused.code().as_str(), "too_many_requests");
        let r = refused.to_response("r");
        assert_eq!(r.headers().get("retry-after").unwrap(), "60");

        clock.advance(Duration::from_millis(59_500));
        let refused = limiter.admit(&req).unwrap_err();
        let r = refused.to_response("r");
        assert_eq!(r.headers().get("retry-after").unwrap(), "1");

        clock.advance(Duration::from_millis(500));
        let client = limiter.admit(&req).unwrap();
        // The whole allowance is back.
        for _ in 0..3 {
            assert!(limiter.failed(client).is_none());
        }
        assert_eq!(
            limiter.counts(),
            LimitCounts {
                failures: 7,
                refusals: 2,
                blocks: 1
            }
        );
    }

    #[test]
    fn failures_replenish_over_the_window() {
        let clock = ManualClock::default();
        let limiter = limiter(3, &clock);
        let client = limiter.admit(&from("203.0.113.1:1")).unwrap();
        for _ in 0..3 {
            assert!(limiter.failed(client).is_none());
        }
        // One failure every window / limit is always allowed.
        for _ in 0..10 {
            clock.advance(Duration::from_secs(20));
            assert!(limiter.failed(client).is_none());
        }
    }

    #[test]
    fn zero_disables_the_limit() {
        let clock = ManualClock::default();
        let limiter = limiter(0, &clock);
        assert!(!limiter.is_enabled());
        let req = from("203.0.113.1:5000");
        for _ in 0..1000 {
            let client = limiter.admit(&req).unwrap();
            assert!(limiter.failed(client).is_none());
        }
        assert_eq!(limiter.counts(), LimitCounts::default());
    }

    #[test]
    fn a_request_without_a_peer_is_not_counted() {
        let clock = ManualClock::default();
        let limiter = limiter(1, &clock);
        let req = TestRequest::default().to_http_request();
        for _ in 0..5 {
            let client = limiter.admit(&req).unwrap();
            assert!(limiter.failed(client).is_none());
        }
    }
}
