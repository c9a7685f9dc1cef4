//! Faults: an unreachable database answers "unavailable" within the pool's
//! timeout, connections the server closed are replaced, not reused (more in
//! `reconnect.rs`), and a statement stuck behind a lock is cancelled by the
//! statement timeout and answers "unavailable" too.

use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{sql_query, RunQueryDsl};
use domain::testing::contract::{rename, Fixture, T0};
use domain::{
    ApiKeyRepository, CreateTenantRepoError, EventQuery, EventRepository, InsertError, KeyUse,
    ListQuery, RepositoryError, RevokeRepoError, RotateRepoError, TenantRepository,
    UpdateRepoError,
};
use infra_postgres::testing::TestDatabase;
use infra_postgres::{ConnectError, PgStore, PoolConfig};

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
            ..PoolConfig::default()
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
    let created = f.created_event(&key.key, T0);
    let changes = rename(&key.key, "Renamed");
    let updated = f.updated_event(&key.key, &changes, T0);
    let revoked = f.revoked_event(&key.key, T0);
    let (rotated, successor_created) =
        f.rotated_events(&key.key, &key.key, time::Duration::ZERO, T0);
    let events = EventQuery {
        key_id: None,
        event_type: None,
        mode: None,
        starting_after: None,
        limit: 10,
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
                || matches!(store.insert(&key, 10, &created), Err(InsertError::Repository(e)) if unavailable(&e)),
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
                    store.update(&tenant.id, &key.key.id, &changes, &updated),
                    Err(UpdateRepoError::Repository(e)) if unavailable(&e)
                )
            }),
        ),
        (
            "revoke",
            Box::new(|| {
                matches!(
                    store.revoke(&tenant.id, &key.key.id, &revoked),
                    Err(RevokeRepoError::Repository(e)) if unavailable(&e)
                )
            }),
        ),
        (
            "rotate",
            Box::new(|| {
                matches!(
                    store.rotate(&key.key.id, &key, T0, domain::DEFAULT_MAX_ACTIVE_KEYS, &rotated, &successor_created),
                    Err(RotateRepoError::Repository(e)) if unavailable(&e)
                )
            }),
        ),
        (
            "record_uses",
            Box::new(|| {
                store
                    .record_uses(&[KeyUse::of(&key.key, T0)])
                    .is_err_and(|e| unavailable(&e))
            }),
        ),
        (
            "create",
            Box::new(|| {
                matches!(
                    store.create(&tenant, &[], &[]),
                    Err(CreateTenantRepoError::Repository(e)) if unavailable(&e)
                )
            }),
        ),
        (
            "list_events",
            Box::new(|| {
                store
                    .list_events(&tenant.id, &events)
                    .is_err_and(|e| unavailable(&e))
            }),
        ),
        (
            "events_after",
            Box::new(|| store.events_after(0, 10).is_err_and(|e| unavailable(&e))),
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
fn a_connection_the_server_closed_is_replaced_without_failing_a_read() {
    // Given a store with a pooled connection
    let db = TestDatabase::new();
    let f = Fixture::new();
    let tenant = f.stored_tenant(&*db, "Acme");
    assert!(db.find_tenant_by_name("Acme").expect("find").is_some());

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

    // Then the next read meets the dead connection, which is discarded, and
    // runs again on a fresh one: it succeeds (see `reconnect.rs` for writes)
    assert_eq!(
        db.find_tenant_by_name("Acme")
            .expect("recovered")
            .map(|t| t.id),
        Some(tenant.id)
    );
}

/// The statement timeout of the stores in the lock tests.
const STATEMENT_TIMEOUT: Duration = Duration::from_millis(300);

/// The advisory lock `PgStore::migrate` takes (a private constant of the store).
const MIGRATION_LOCK: i64 = 0x0061_7069_6b65_7973;

/// A store on `db` with one connection (so every call reuses it) and a short
/// statement timeout.
fn store_with_statement_timeout(db: &TestDatabase, statement_timeout: Duration) -> PgStore {
    PgStore::connect(
        db.url(),
        &PoolConfig {
            max_size: 1,
            statement_timeout,
            ..PoolConfig::default()
        },
    )
    .expect("pool")
}

/// A plain connection that runs `lock` in a transaction it leaves open.
/// Should the store under test not time out, the server ends this session
/// after a few idle seconds, the lock goes, and the test fails instead of
/// hanging.
fn lock_holder(db: &TestDatabase, lock: &str) -> PgConnection {
    let mut conn = super::connect(db);
    conn.batch_execute(&format!(
        "SET idle_in_transaction_session_timeout = '5s'; BEGIN; {lock}"
    ))
    .expect("take the lock");
    conn
}

/// Whether `took` shows a call cancelled by [`STATEMENT_TIMEOUT`]: not before
/// it, and well before the lock holder's session would have ended.
fn cancelled_in_time(took: Duration) -> bool {
    took >= STATEMENT_TIMEOUT && took < STATEMENT_TIMEOUT + Duration::from_secs(2)
}

#[test]
fn a_write_waiting_for_a_locked_tenant_is_unavailable_and_changes_nothing() {
    // Given a tenant with two full-access keys (so either may be revoked) and
    // another session holding the tenant row's lock
    let db = TestDatabase::new();
    let f = Fixture::new();
    let tenant = f.stored_tenant(&*db, "Acme");
    let (key, other) = (f.key(&tenant), f.key(&tenant));
    f.insert(&*db, &key);
    f.insert(&*db, &other);
    let store = store_with_statement_timeout(&db, STATEMENT_TIMEOUT);
    let mut holder = lock_holder(
        &db,
        &format!(
            "SELECT id FROM tenants WHERE id = '{}' FOR UPDATE",
            tenant.id
        ),
    );

    // When the key is revoked
    let event = f.revoked_event(&key.key, T0);
    let started = Instant::now();
    let revoked = store.revoke(&tenant.id, &key.key.id, &event);
    let took = started.elapsed();

    // Then the statement timeout cancels the wait: "unavailable", promptly
    assert!(
        matches!(
            revoked,
            Err(RevokeRepoError::Repository(
                RepositoryError::Unavailable { .. }
            ))
        ),
        "{revoked:?}"
    );
    assert!(cancelled_in_time(took), "took {took:?}");

    // And once the lock is released nothing has changed, and the same
    // connection serves the retry
    holder.batch_execute("ROLLBACK").expect("release the lock");
    let stored = db.find(&tenant.id, &key.key.id).expect("find");
    assert_eq!(stored.map(|k| k.revokes_at), Some(None));
    let revoked = store
        .revoke(&tenant.id, &key.key.id, &f.revoked_event(&key.key, T0))
        .expect("retry");
    assert_eq!(revoked.revokes_at, Some(T0));
}

#[test]
fn reads_waiting_for_a_locked_table_are_unavailable() {
    // Given a stored key and another session holding an exclusive lock on
    // the keys table
    let db = TestDatabase::new();
    let f = Fixture::new();
    let tenant = f.stored_tenant(&*db, "Acme");
    let key = f.key(&tenant);
    f.insert(&*db, &key);
    let store = store_with_statement_timeout(&db, STATEMENT_TIMEOUT);
    let mut holder = lock_holder(&db, "LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE");

    // When the key is looked up by id and by hash (authentication), each
    // lookup is cancelled by the statement timeout: "unavailable", promptly
    let started = Instant::now();
    let found = store.find(&tenant.id, &key.key.id);
    let took = started.elapsed();
    assert!(
        matches!(found, Err(RepositoryError::Unavailable { .. })),
        "{found:?}"
    );
    assert!(cancelled_in_time(took), "find took {took:?}");

    let started = Instant::now();
    let found = store.find_by_hash(&key.hash);
    let took = started.elapsed();
    assert!(
        matches!(found, Err(RepositoryError::Unavailable { .. })),
        "{found:?}"
    );
    assert!(cancelled_in_time(took), "find_by_hash took {took:?}");

    // And once the lock is released the key is found, unchanged
    holder.batch_execute("ROLLBACK").expect("release the lock");
    let found = store.find(&tenant.id, &key.key.id).expect("find");
    assert_eq!(found, Some(key.key));
}

#[test]
fn migrations_are_not_cut_short_by_the_statement_timeout() {
    // Given an empty database whose migration lock another session holds for
    // longer than the store's statement timeout
    let db = TestDatabase::unmigrated();
    let store = store_with_statement_timeout(&db, Duration::from_millis(100));
    let hold_for = Duration::from_millis(600);
    let (locked_tx, locked) = mpsc::channel();
    let holder = {
        let mut conn = super::connect(&db);
        std::thread::spawn(move || {
            sql_query("SELECT pg_advisory_lock($1)")
                .bind::<BigInt, _>(MIGRATION_LOCK)
                .execute(&mut conn)
                .expect("take the migration lock");
            locked_tx.send(()).expect("signal");
            std::thread::sleep(hold_for);
            sql_query("SELECT pg_advisory_unlock($1)")
                .bind::<BigInt, _>(MIGRATION_LOCK)
                .execute(&mut conn)
                .expect("release the migration lock");
        })
    };
    locked.recv().expect("the lock is taken");

    // When the store migrates, it waits for the lock and then migrates
    let started = Instant::now();
    let applied = store.migrate();
    let took = started.elapsed();
    holder.join().expect("holder thread");
    assert!(
        applied.as_ref().is_ok_and(|versions| !versions.is_empty()),
        "{applied:?}"
    );
    assert!(took >= hold_for / 2, "migrate took {took:?}");

    // Then the pool's connections still have the statement timeout: the
    // migration's session was not returned to the pool
    let mut holder = lock_holder(&db, "LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE");
    let found = store.find_tenant_by_name("Acme");
    assert!(
        matches!(found, Err(RepositoryError::Unavailable { .. })),
        "{found:?}"
    );
    holder.batch_execute("ROLLBACK").expect("release the lock");
    assert_eq!(store.find_tenant_by_name("Acme").expect("find"), None);
}

#[test]
fn statement_timeouts_postgres_cannot_take_are_refused() {
    for statement_timeout in [
        Duration::ZERO,
        Duration::from_micros(999),
        Duration::from_secs(30 * 24 * 3600),
    ] {
        let refused = PgStore::connect(
            "postgres://127.0.0.1/apikeys",
            &PoolConfig {
                statement_timeout,
                ..PoolConfig::default()
            },
        );
        assert!(
            matches!(refused, Err(ConnectError::InvalidConfig(_))),
            "{statement_timeout:?}: {refused:?}"
        );
    }
}
