//! A restart or failover of PostgreSQL, stood in for by terminating every
//! session of the test database (the cluster is shared by the tests): every
//! pooled connection is dead at once. The first call to meet a dead
//! connection reveals it and the pool checks the others before reusing them;
//! reads, and writes that provably did not run, are run again on another
//! connection. So no read fails, and at most the first write that is not in a
//! transaction does.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::dsl::sql;
use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{sql_query, RunQueryDsl};
use domain::testing::contract::{events_of, rename, Fixture, T0};
use domain::{
    ApiKeyRepository, EventQuery, EventRepository, ListQuery, RepositoryError, RotateRepoError,
    Tenant, TenantRepository,
};
use infra_postgres::testing::TestDatabase;
use infra_postgres::{PgStore, PoolConfig};

/// Connections in the stores under test.
const SIZE: u32 = 4;

/// The number of sessions on `db` matching `condition` (SQL on
/// `pg_stat_activity`), not counting `admin`'s own.
fn sessions(admin: &mut PgConnection, db: &TestDatabase, condition: &str) -> i64 {
    diesel::select(sql::<BigInt>(&format!(
        "(SELECT count(*) FROM pg_stat_activity
          WHERE datname = '{}' AND pid <> pg_backend_pid() AND {condition})",
        db.name()
    )))
    .get_result(admin)
    .expect("count sessions")
}

/// A store on `db` with a tenant "Acme", whose [`SIZE`] connections are all
/// open and idle: [`SIZE`] calls wait at once behind a table lock, each on a
/// connection of its own, then the lock goes.
fn store_with_idle_connections(db: &TestDatabase) -> (PgStore, Tenant) {
    let store = PgStore::connect(
        db.url(),
        &PoolConfig {
            max_size: SIZE,
            ..PoolConfig::default()
        },
    )
    .expect("pool");
    let tenant = Fixture::new().stored_tenant(&store, "Acme");
    let mut admin = super::connect(db);
    let mut holder = super::connect(db);
    holder
        .batch_execute("BEGIN; LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE")
        .expect("lock");
    std::thread::scope(|s| {
        let calls: Vec<_> = (0..SIZE)
            .map(|_| s.spawn(|| store.find_tenant_by_name("Acme")))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(4);
        while sessions(&mut admin, db, "wait_event_type = 'Lock'") < i64::from(SIZE) {
            assert!(Instant::now() < deadline, "the calls do not all wait");
            std::thread::sleep(Duration::from_millis(10));
        }
        holder.batch_execute("ROLLBACK").expect("unlock");
        for call in calls {
            let found = call.join().expect("thread").expect("find");
            assert!(found.is_some());
        }
    });
    (store, tenant)
}

/// Terminates every session of `db` (a restart, for the pool), returning how
/// many; once they are gone.
fn terminate_every_session(db: &TestDatabase) -> i64 {
    let mut admin = super::connect(db);
    let ended = sql_query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind::<Text, _>(db.name())
    .execute(&mut admin)
    .expect("terminate");
    let deadline = Instant::now() + Duration::from_secs(4);
    while sessions(&mut admin, db, "true") > 0 {
        assert!(Instant::now() < deadline, "the sessions do not end");
        std::thread::sleep(Duration::from_millis(10));
    }
    i64::try_from(ended).expect("count")
}

fn list_query() -> ListQuery {
    ListQuery {
        key_type: None,
        mode: None,
        include_revoked: true,
        starting_after: None,
        limit: 10,
        now: T0,
    }
}

fn event_query() -> EventQuery {
    EventQuery {
        key_id: None,
        event_type: None,
        mode: None,
        starting_after: None,
        limit: 10,
    }
}

/// A named call and whether it succeeded.
type Call<'a> = (&'static str, Box<dyn Fn() -> Result<(), String> + 'a>);

/// Runs `calls` in order, returning the names of those that failed.
fn failures(calls: &[Call<'_>]) -> Vec<String> {
    calls
        .iter()
        .filter_map(|(name, call)| call().err().map(|e| format!("{name}: {e}")))
        .collect()
}

fn ok<T, E: std::fmt::Debug>(result: Result<T, E>) -> Result<(), String> {
    result.map(drop).map_err(|e| format!("{e:?}"))
}

#[test]
fn every_read_after_every_connection_was_terminated_succeeds() {
    // Given a store whose connections are all open and idle, and a key
    let db = TestDatabase::new();
    let (store, tenant) = store_with_idle_connections(&db);
    let f = Fixture::new();
    let key = f.key(&tenant);
    f.insert(&store, &key);

    // When every session is terminated
    let ended = terminate_every_session(&db);
    assert!(ended >= i64::from(SIZE), "{ended} sessions ended");

    // Then each read succeeds, readiness first: SIZE + 4 calls, none failing
    let calls: Vec<Call<'_>> = vec![
        ("ping", Box::new(|| ok(store.ping()))),
        (
            "find_by_hash",
            Box::new(|| ok(store.find_by_hash(&key.hash))),
        ),
        ("find", Box::new(|| ok(store.find(&tenant.id, &key.key.id)))),
        (
            "list",
            Box::new(|| ok(store.list(&tenant.id, &list_query()))),
        ),
        (
            "list_events",
            Box::new(|| ok(store.list_events(&tenant.id, &event_query()))),
        ),
        ("events_after", Box::new(|| ok(store.events_after(0, 10)))),
        (
            "find_tenant_by_name",
            Box::new(|| ok(store.find_tenant_by_name("Acme"))),
        ),
        ("ping", Box::new(|| ok(store.ping()))),
    ];
    let failed = failures(&calls);
    eprintln!(
        "reads after termination: {} of {} failed",
        failed.len(),
        calls.len()
    );
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn ping_after_every_connection_was_terminated_says_the_database_is_up() {
    // Given a store whose connections are all open and idle
    let db = TestDatabase::new();
    let (store, _) = store_with_idle_connections(&db);

    // When every session is terminated
    terminate_every_session(&db);

    // Then readiness never says the (healthy) database is down
    let failed = (0..SIZE + 2)
        .filter_map(|_| store.ping().err())
        .collect::<Vec<_>>();
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn after_every_connection_was_terminated_only_a_first_write_outside_a_transaction_fails() {
    // Given a store whose connections are all open and idle, and keys
    let db = TestDatabase::new();
    let (store, tenant) = store_with_idle_connections(&db);
    let f = Fixture::new();
    let (key, other) = (f.key(&tenant), f.key(&tenant));
    f.insert(&store, &key);
    f.insert(&store, &other);
    let successor = f.key(&tenant);

    // When every session is terminated
    terminate_every_session(&db);

    // Then the first call, a rotation that revokes at once (one statement,
    // no transaction), meets
    // a dead connection: the pool ran no query on checkout. It is not run
    // again (it might have committed) and is "unavailable"; in fact it did
    // not commit.
    let rotate = || f.rotate(&store, &key.key, &successor, time::Duration::ZERO, T0);
    let first = rotate();
    assert!(
        matches!(
            &first,
            Err(RotateRepoError::Repository(
                RepositoryError::Unavailable { .. }
            ))
        ),
        "{first:?}"
    );
    assert_eq!(
        store.find(&tenant.id, &successor.key.id).expect("find"),
        None
    );

    // And the next SIZE + 2 calls, writes in and out of transactions and
    // reads, all succeed: the other dead connections were checked, not used
    let third = f.key(&tenant);
    let calls: Vec<Call<'_>> = vec![
        ("rotate", Box::new(|| ok(rotate()))),
        (
            "update",
            Box::new(|| ok(f.update(&store, &other.key, &rename(&other.key, "Renamed"), T0))),
        ),
        (
            "insert",
            Box::new(|| ok(store.insert(&third, 10, &f.created_event(&third.key, T0)))),
        ),
        ("revoke", Box::new(|| ok(f.revoke(&store, &third.key, T0)))),
        (
            "find_by_hash",
            Box::new(|| ok(store.find_by_hash(&key.hash))),
        ),
        ("ping", Box::new(|| ok(store.ping()))),
    ];
    let failed = failures(&calls);
    eprintln!(
        "calls after termination: {} of {} failed (the first rotation included)",
        failed.len() + 1,
        calls.len() + 1
    );
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn a_write_in_a_transaction_that_meets_a_dead_connection_runs_again_once() {
    // Given a store whose connections are all open and idle
    let db = TestDatabase::new();
    let (store, tenant) = store_with_idle_connections(&db);
    let f = Fixture::new();
    let key = f.key(&tenant);
    let events_before = events_of(&store, &tenant.id).len();

    // When every session is terminated and a key is inserted (BEGIN, tenant
    // lock, insert, COMMIT)
    terminate_every_session(&db);
    let inserted = store.insert(&key, 10, &f.created_event(&key.key, T0));

    // Then the insert succeeds: its transaction died before COMMIT, so it
    // was run again on a fresh connection, and took effect once
    assert!(inserted.is_ok(), "{inserted:?}");
    assert_eq!(
        store.find(&tenant.id, &key.key.id).expect("find"),
        Some(key.key.clone())
    );
    assert_eq!(events_of(&store, &tenant.id).len(), events_before + 1);

    // And so does a tenant's creation after another termination
    terminate_every_session(&db);
    let other = f.tenant("Globex");
    let created = store.create(&other, &[], &[f.tenant_created_event(&other)]);
    assert!(created.is_ok(), "{created:?}");
    assert_eq!(
        store
            .find_tenant_by_name("Globex")
            .expect("find")
            .map(|t| t.id),
        Some(other.id)
    );
}

#[test]
fn concurrent_reads_after_every_connection_was_terminated_all_succeed() {
    // Given a store whose connections are all open and idle, and a key
    let db = TestDatabase::new();
    let (store, tenant) = store_with_idle_connections(&db);
    let f = Fixture::new();
    let key = f.key(&tenant);
    f.insert(&store, &key);

    // When every session is terminated and twice as many threads as
    // connections authenticate and list at once
    terminate_every_session(&db);
    let failed: Vec<String> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..2 * SIZE)
            .map(|_| {
                s.spawn(|| {
                    [
                        ok(store.find_by_hash(&key.hash)),
                        ok(store.list(&tenant.id, &list_query())),
                    ]
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("thread"))
            .filter_map(Result::err)
            .collect()
    });

    // Then none fails
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn pool_state_counts_open_idle_and_checked_out_connections() {
    let db = TestDatabase::new();
    let store = PgStore::connect(
        db.url(),
        &PoolConfig {
            max_size: 3,
            ..PoolConfig::default()
        },
    )
    .expect("pool");
    store.ping().expect("ping");
    let state = store.pool_state();
    assert!(state.connections >= 1, "{state:?}");
    assert_eq!(state.in_use(), 0, "a finished call returns its connection");
    assert_eq!(state.idle, state.connections);
}
