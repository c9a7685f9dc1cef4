//! Creating and dropping databases.

use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{sql_query, Connection, QueryableByName, RunQueryDsl};
use infra_postgres::testing::TestDatabase;
use infra_postgres::{database_url_for, ensure_database, PgStore, PoolConfig};

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

fn database_count(name: &str) -> i64 {
    let mut admin = PgConnection::establish(&TestDatabase::admin_url()).expect("admin");
    sql_query("SELECT count(*) AS count FROM pg_database WHERE datname = $1")
        .bind::<Text, _>(name)
        .get_result::<Count>(&mut admin)
        .expect("count")
        .count
}

/// Drops the database when the test ends, passed or not.
struct DropOnExit(String);

impl Drop for DropOnExit {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&TestDatabase::admin_url()) {
            let _ = sql_query(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.0
            ))
            .execute(&mut admin);
        }
    }
}

#[test]
fn ensure_database_creates_a_missing_database_once() {
    // Given a database name that does not exist
    let name = format!("apikeys_test_ensure_{}", std::process::id());
    let _cleanup = DropOnExit(name.clone());
    let admin_url = TestDatabase::admin_url();

    // When it is ensured twice
    let first = ensure_database(&admin_url, &name).expect("ensure");
    let second = ensure_database(&admin_url, &name).expect("ensure again");

    // Then it was created once, and a store can use and migrate it
    assert!(first);
    assert!(!second);
    let store = PgStore::connect(&database_url_for(&admin_url, &name), &PoolConfig::default())
        .expect("pool");
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations"))
        .expect("the migrations folder")
        .count();
    assert_eq!(store.migrate().expect("migrate").len(), migrations);
    store.ping().expect("ping");
}

#[test]
fn a_test_database_is_dropped_with_its_open_connections() {
    let db = TestDatabase::new();
    let name = db.name().to_owned();
    db.ping().expect("a pooled connection is open");
    assert_eq!(database_count(&name), 1);

    drop(db);

    assert_eq!(database_count(&name), 0);
}
