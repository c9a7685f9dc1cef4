//! What the handlers share: [`AppState`], and the [`Readiness`] check the
//! binary implements over its database.

use std::sync::Arc;

use domain::{ApiKeys, Authenticator, RepositoryError, UsageMeter, Webhooks};

use crate::github_keys::GithubPublicKeys;
use crate::rate_limit::FailureLimiter;
use crate::report_limits::LeakReportGate;
use crate::request_limits::RequestLimits;

/// Whether the service can serve requests (`GET /readyz`): the binary
/// implements it over its database.
pub trait Readiness: Send + Sync {
    /// Checks that storage is reachable. Called on the blocking pool.
    ///
    /// # Errors
    /// [`RepositoryError`] when it is not; `/readyz` then answers 503.
    fn check(&self) -> Result<(), RepositoryError>;
}

/// What the handlers share: the use cases, the authenticator and the
/// readiness check.
#[derive(Clone)]
pub struct AppState {
    pub(crate) service: Arc<ApiKeys>,
    pub(crate) authenticator: Arc<dyn Authenticator>,
    pub(crate) readiness: Arc<dyn Readiness>,
    /// The limit on failed authentications per client address.
    pub(crate) limiter: Arc<FailureLimiter>,
    /// How long a request body may take to arrive.
    pub(crate) limits: RequestLimits,
    /// The bounds on leak reports.
    pub(crate) leak_reports: Arc<LeakReportGate>,
    /// The webhook use cases; without them the webhook routes answer 503.
    pub(crate) webhooks: Option<Arc<Webhooks>>,
    /// GitHub's secret scanning keys; `None`: the route is not served.
    pub(crate) github_keys: Option<Arc<GithubPublicKeys>>,
    /// Spends limited keys' budgets (none: nothing is metered).
    pub(crate) usage: Option<Arc<UsageMeter>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Runs a storage call on the blocking pool, answered within
    /// [`RequestLimits::storage_wait`] (else 503).
    pub(crate) async fn storage<F, R>(&self, f: F) -> Result<R, crate::ApiError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        crate::blocking::blocking_within(self.limits.storage_wait, f).await
    }

    /// The state over the service, the authenticator (often the service
    /// itself, or a cache around it) and the readiness check.
    pub fn new(
        service: Arc<ApiKeys>,
        authenticator: Arc<dyn Authenticator>,
        readiness: Arc<dyn Readiness>,
    ) -> Self {
        AppState {
            service,
            authenticator,
            readiness,
            limiter: Arc::new(FailureLimiter::disabled()),
            limits: RequestLimits::default(),
            leak_reports: Arc::new(LeakReportGate::unlimited()),
            webhooks: None,
            github_keys: None,
            usage: None,
        }
    }

    /// Serves the webhook routes with `webhooks` (docs/webhooks.md).
    #[must_use]
    pub fn with_webhooks(mut self, webhooks: Arc<Webhooks>) -> Self {
        self.webhooks = Some(webhooks);
        self
    }

    /// Limits failed authentications per client address with `limiter`
    /// (none unless set).
    #[must_use]
    pub fn with_failure_limiter(mut self, limiter: Arc<FailureLimiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// Bounds leak reports with `gate` (unless set: no limit per address,
    /// [`DEFAULT_LEAK_REPORTS_IN_FLIGHT`](crate::DEFAULT_LEAK_REPORTS_IN_FLIGHT) at once).
    #[must_use]
    pub fn with_leak_report_gate(mut self, gate: Arc<LeakReportGate>) -> Self {
        self.leak_reports = gate;
        self
    }

    /// Serves `POST /v1/secret-scanning/github` with GitHub's public keys
    /// (docs/secret-scanning.md); unless set, the route is not served (404).
    #[must_use]
    pub fn with_github_public_keys(mut self, keys: Arc<GithubPublicKeys>) -> Self {
        self.github_keys = Some(keys);
        self
    }

    /// Meters limited keys with `meter` (docs/limits.md); unless set, a
    /// key's `rate_limit` and `credits` are not enforced.
    #[must_use]
    pub fn with_usage_meter(mut self, meter: Arc<UsageMeter>) -> Self {
        self.usage = Some(meter);
        self
    }

    /// Request limits other than the body size (defaults unless set).
    #[must_use]
    pub fn with_request_limits(mut self, limits: RequestLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The limit on failed authentications.
    pub fn failure_limiter(&self) -> &Arc<FailureLimiter> {
        &self.limiter
    }

    /// The use cases.
    pub fn service(&self) -> &Arc<ApiKeys> {
        &self.service
    }

    /// The authenticator the [`Authenticated`](crate::Authenticated) extractor uses.
    pub fn authenticator(&self) -> &Arc<dyn Authenticator> {
        &self.authenticator
    }
}
