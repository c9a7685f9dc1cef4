//! Faults: an unreachable database answers "unavailable" within the pool's
//! timeout, and connections the server closed are replaced, not reused.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use diesel::sql_types::Text;
use diesel::{sql_query, RunQueryDsl};
use domain::testing::contract::{Fixture, T0};
use domain::{
    ApiKeyRepository, CreateTenantRepoError, InsertError, KeyChanges, ListQuery, RepositoryError,
    RevokeRepoError, RotateRepoError, TenantRepository, UpdateRepoError,
};
use infra_postgres::testing::TestDatabase;
use infra_postgres::{PgStore, PoolConfig};

/// A local port where nothing listens.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A named call and whether it came back "unavailable".
type Call<'a> = (&'static str, Box<dyn Fn() -> bool + 'a>);

fn unavailable(e: &RepositoryError) -> bool {
    e.is_unavailable()
}

#[test]
fn every_call_is_unavailable_within_the_timeout_when_nothing_listens() {
    // Given a store whose database does not answer (the pool builds anyway)
    let timeout = Duration::from_millis(300);
    let url = format!("postgres://postgres@127.0.0.1:{}/apikeys", closed_port());
    let store = PgStore::connect(
        &url,
        &PoolConfig {
            max_size: 2,
            connection_timeout: timeout,
        },
    )
    .expect("the pool is built without a database");
    let f = Fixture::new();
    let tenant = f.tenant("Acme");
    let key = f.key(&tenant);
    let query = ListQuery {
        key_type: None,
        mode: None,
        include_revoked: false,
        starting_after: None,
        limit: 10,
        now: T0,
    };

    // When every call is made, each is "unavailable" within the timeout
    let calls: Vec<Call<'_>> = vec![
        (
            "ping",
            Box::new(|| store.ping().is_err_and(|e| unavailable(&e))),
        ),
        (
            "migrate",
            Box::new(|| store.migrate().is_err_and(|e| e.is_unavailable())),
        ),
        (
            "insert",
            Box::new(
                || matches!(store.insert(&key, 10, T0), Err(InsertError::Repository(e)) if unavailable(&e)),
            ),
        ),
        (
            "find_by_hash",
            Box::new(|| {
                store
                    .find_by_hash(&key.hash)
                    .is_err_and(|e| unavailable(&e))
            }),
        ),
        (
            "find",
            Box::new(|| {
                store
                    .find(&tenant.id, &key.key.id)
                    .is_err_and(|e| unavailable(&e))
            }),
        ),
        (
            "list",
            Box::new(|| {
                store
                    .list(&tenant.id, &query)
                    .is_err_and(|e| unavailable(&e))
            }),
        ),
        (
            "update",
            Box::new(|| {
                matches!(
                    store.update(&tenant.id, &key.key.id, &KeyChanges::default(), T0),
                    Err(UpdateRepoError::Repository(e)) if unavailable(&e)
                )
            }),
        ),
        (
            "revoke",
            Box::new(|| {
                matches!(
                    store.revoke(&tenant.id, &key.key.id, T0),
                    Err(RevokeRepoError::Repository(e)) if unavailable(&e)
                )
            }),
        ),
        (
            "rotate",
            Box::new(|| {
                matches!(
                    store.rotate(&tenant.id, &key.key.id, &key, T0, T0),
                    Err(RotateRepoError::Repository(e)) if unavailable(&e)
                )
            }),
        ),
        (
            "touch_last_used",
            Box::new(|| {
                store
                    .touch_last_used(&tenant.id, &key.key.id, T0)
                    .is_err_and(|e| unavailable(&e))
            }),
        ),
        (
            "create",
            Box::new(|| {
                matches!(
                    store.create(&tenant, &[]),
                    Err(CreateTenantRepoError::Repository(e)) if unavailable(&e)
                )
            }),
        ),
        (
            "find_tenant",
            Box::new(|| {
                store
                    .find_tenant(&tenant.id)
                    .is_err_and(|e| unavailable(&e))
            }),
        ),
        (
            "find_tenant_by_name",
            Box::new(|| {
                store
                    .find_tenant_by_name("Acme")
                    .is_err_and(|e| unavailable(&e))
            }),
        ),
    ];
    for (name, call) in calls {
        let started = Instant::now();
        assert!(call(), "{name} is not unavailable");
        let took = started.elapsed();
        assert!(
            took < timeout + Duration::from_millis(500),
            "{name} took {took:?}"
        );
    }
}

#[test]
fn a_connection_the_server_closed_fails_once_and_is_replaced() {
    // Given a store with a pooled connection
    let db = TestDatabase::new();
    let f = Fixture::new();
    let tenant = f.stored_tenant(&*db, "Acme");
    assert!(db.find_tenant(&tenant.id).expect("find").is_some());

    // When the server terminates every connection to the database
    let mut admin = super::connect(&db);
    sql_query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind::<Text, _>(db.name())
    .execute(&mut admin)
    .expect("terminate");
    drop(admin);
    std::thread::sleep(Duration::from_millis(100));

    // Then the next call on the dead connection is "unavailable", and the one
    // after it works on a fresh connection
    let first = db.find_tenant(&tenant.id);
    assert!(
        first.as_ref().is_err_and(RepositoryError::is_unavailable),
        "{first:?}"
    );
    assert_eq!(
        db.find_tenant(&tenant.id).expect("recovered").map(|t| t.id),
        Some(tenant.id)
    );
}
