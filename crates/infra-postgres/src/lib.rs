//! The PostgreSQL adapter of the `apikeys` domain ports.
//!
//! [`PgStore`] implements [`domain::ApiKeyRepository`] and
//! [`domain::TenantRepository`] with Diesel over an r2d2 pool. The schema
//! lives in the repository's top-level `migrations/`, embedded in the binary
//! and applied with [`PgStore::migrate`].
//!
//! # Guarantees
//! - Every query on tenant data filters by tenant id, except
//!   [`find_by_hash`](domain::ApiKeyRepository::find_by_hash), which finds a
//!   key across tenants by its unique hash (the tenant is checked after).
//! - Time comes from the caller (the domain's clock): no `now()` in SQL.
//! - Inserts (the active key limit), updates and revocations (the full-access
//!   guard) lock the tenant row first, so they are serialised per tenant.
//!   A rotation is one statement that schedules the old key's revocation only
//!   if it is still active and inserts the successor only if it did.
//! - A connection failure, pool timeout or statement timeout is
//!   [`RepositoryError::Unavailable`](domain::RepositoryError::Unavailable);
//!   unique violations are the domain's `Duplicate` variants; nothing panics.
//!   A connection that failed at the connection level is discarded, and the
//!   other idle connections are checked once (`SELECT 1`) before their next
//!   use, so the pool recovers by itself when the database returns at the
//!   cost of at most one failed call, without testing every checkout in the
//!   steady state. A call that provably changed nothing (a read, or a
//!   transaction that never reached `COMMIT`) is retried once on a fresh
//!   connection.
//! - No call hangs on a fault: getting a connection is bounded by the pool's
//!   `connection_timeout`, opening one by libpq's `connect_timeout`, and every
//!   statement by `statement_timeout` ([`PoolConfig`]).
//! - Diesel types never leave the crate.
//!
//! # Features
//! - `test-support`: the `testing` module's `TestDatabase`, a fresh migrated database per
//!   test, dropped afterwards.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod admin;
mod errors;
mod event_feed;
mod events;
mod health;
mod idempotency;
pub mod metrics;
mod models;
mod pool;
mod repositories;
mod schema;
#[cfg(feature = "test-support")]
mod stalling_proxy;
mod statement;
mod store;
mod usage;
mod verifier;
mod webhooks;

#[cfg(feature = "test-support")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-support")))]
pub mod testing;

pub use admin::{database_url_for, database_url_with_schema, ensure_database, EnsureDatabaseError};
pub use errors::{ConnectError, MigrateError};
pub use event_feed::{EventFeed, FeedConfig};
pub use store::{PgStore, PoolConfig, PoolState};
pub use usage::SHARE_WRITES;
