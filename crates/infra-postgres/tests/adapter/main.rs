//! Tests of the PostgreSQL adapter beyond the contract suite: concurrency,
//! migrations, what the database keeps and refuses, and faults. Each test gets
//! a fresh database of its own ([`TestDatabase`]).

#![expect(
    clippy::expect_used,
    reason = "test helpers outside #[test] functions: a failed step is a failed test"
)]

mod admin;
mod concurrency;
mod events;
mod faults;
mod hang;
mod idempotency;
mod migrations;
mod reconnect;
mod schema;
mod search_path;
mod secrets;

use diesel::pg::PgConnection;
use diesel::Connection;
use infra_postgres::testing::TestDatabase;

/// A direct connection to the test database, for looking behind the store.
fn connect(db: &TestDatabase) -> PgConnection {
    PgConnection::establish(db.url()).expect("connect to the test database")
}
