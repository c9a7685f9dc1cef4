//! The `apikeys` HTTP API on actix-web 4, and an authentication extractor
//! other services can use.
//!
//! - [`app`] (or [`configure`] plus [`request_context`]) builds the whole API:
//!   the seven key routes of the product document, verification for other
//!   services (`POST /v1/api-keys/verify`), the audit log
//!   (`GET /v1/audit-events`), leaked-key reports (`POST /v1/leaked-keys`)
//!   and GitHub's secret scanning (`POST /v1/secret-scanning/github`, with
//!   [`GithubPublicKeys`]), `GET /healthz`, `GET /readyz` and
//!   `GET /openapi.json` (feature `openapi`), JSON errors for everything (docs/api.md,
//!   "Conventions"; also actix's own), `X-Request-ID` and a tracing span per
//!   request. [`server`] serves it with graceful shutdown.
//! - [`Authenticated`] is the authentication extractor (docs/api.md, "Authentication"); its
//!   principal's `require_secret` then `require_scope` do authorization. It
//!   needs no middleware, and [`request_context`] (optional in another
//!   team's app) never rewrites that app's own responses
//!   (docs/embedding.md).
//! - [`blocking`] is the one way domain calls leave the executor threads.
//! - [`metrics`] records requests, latencies and authentication outcomes
//!   through the `metrics` facade, for the program's Prometheus listener.
//! - [`ApiError`] is the one error type; domain errors map to a code through
//!   one exhaustive `match` per error type, and each [`ErrorCode`] has its
//!   one status.
//!
//! # Features
//! - `openapi` (default): the OpenAPI document of this service's own routes
//!   (the `openapi` module and its `schemas`, `ApiDoc`, `GET /openapi.json`
//!   and `GET /openapi-3.0.json`), with utoipa. An app that only uses the
//!   extractor sets `default-features = false` and does not compile utoipa.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod audit;
mod auth;
mod blocking;
mod body;
mod client_addr;
pub mod dto;
mod error;
mod forward_auth;
mod github_keys;
mod handlers;
mod idempotency;
mod key_use;
mod leaks;
mod limits_body;
pub mod metrics;
#[cfg(feature = "openapi")]
#[cfg_attr(docsrs, doc(cfg(feature = "openapi")))]
pub mod openapi;
mod query;
pub mod rate_limit;
mod redact;
mod refusal_log;
mod report_limits;
mod request_context;
mod request_id;
pub mod request_limits;
mod restriction_fields;
mod route;
mod route_table;
mod routes;
pub mod secret_scanning;
mod snapshot;
mod state;
pub mod usage;
mod verify;
mod webhooks;

pub use audit::{ActorObject, EventObject};
pub use auth::{bearer_token, AuthFuture, Authenticated, TENANT_HEADER};
pub use blocking::{blocking, blocking_within};
pub use client_addr::TrustedProxies;
pub use error::{ApiError, ErrorBody, ErrorCode, ErrorDetail, RETRY_AFTER_SECONDS};
pub use github_keys::{GithubKeysError, GithubPublicKeys};
pub use idempotency::{IDEMPOTENCY_KEY_HEADER, IDEMPOTENT_REPLAYED_HEADER};
/// The former name of [`openapi::schemas`].
#[cfg(feature = "openapi")]
#[doc(hidden)]
pub use openapi::schemas as schema;
#[cfg(feature = "openapi")]
pub use openapi::ApiDoc;
pub use rate_limit::{FailureLimitConfig, FailureLimiter, LimitCounts, LimiterClock, ManualClock};
pub use report_limits::{
    LeakReportGate, DEFAULT_LEAK_REPORTS_IN_FLIGHT, DEFAULT_LEAK_REPORTS_PER_MINUTE,
};
pub use request_context::request_context;
pub use request_id::{request_id_of, RequestId, MAX_REQUEST_ID_LEN, REQUEST_ID_HEADER};
/// The former name of [`request_limits`].
#[doc(hidden)]
pub use request_limits as edge;
pub use request_limits::{
    RequestLimits, DEFAULT_STORAGE_WAIT, MAX_HEADERS, MAX_HEADER_BYTES, MAX_URI_LEN,
};
pub use routes::{app, configure, server};
pub use state::{AppState, Readiness};
pub use usage::{judge_use, spend_use};
pub use webhooks::{DeliveryObject, EndpointObject, EndpointWithSecret};

/// Largest request body accepted (16 KiB); larger: 413 `payload_too_large`.
pub const BODY_LIMIT: usize = 16 * 1024;

/// Seconds an idle keep-alive connection stays open (docs/api.md,
/// "Limits"). Longer than the pool's wait for a connection (5 s by
/// default) and than the usual proxies' upstream keep-alive (nginx: 60 s),
/// so a client or proxy that was held up for a pool wait on one
/// connection does not find its other idle connection closed under it;
/// actix's own default (5 s) equals the pool's wait.
pub const KEEP_ALIVE_SECS: u64 = 75;

/// Seconds the server waits for in-flight requests on SIGTERM/SIGINT.
pub const SHUTDOWN_TIMEOUT_SECS: u64 = 30;
