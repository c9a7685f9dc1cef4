//! A database that stops answering without closing its connections (its
//! processes frozen, a network that drops packets), stood in for by a proxy
//! that stops forwarding ([`StallingProxy`]): the store notices that a
//! statement got no answer within the statement timeout, fails every later
//! call at once, and lets calls through again as soon as a probe answers.

use std::time::{Duration, Instant};

use domain::{RepositoryError, TenantRepository};
use infra_postgres::testing::{StallingProxy, TestDatabase};
use infra_postgres::{PgStore, PoolConfig};

const STATEMENT_TIMEOUT: Duration = Duration::from_millis(500);

/// A store through `proxy`, with one connection already open.
fn store_through(proxy: &StallingProxy) -> PgStore {
    let store = PgStore::connect(
        proxy.url(),
        &PoolConfig {
            max_size: 4,
            connection_timeout: Duration::from_secs(2),
            statement_timeout: STATEMENT_TIMEOUT,
        },
    )
    .expect("pool");
    store
        .ping()
        .expect("the database answers through the proxy");
    store
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    started.elapsed()
}

#[test]
fn a_database_that_stops_answering_is_down_then_calls_fail_at_once() {
    let db = TestDatabase::new();
    let proxy = StallingProxy::start(db.url());
    let store = store_through(&proxy);
    assert!(!store.database_down());

    proxy.stall();
    // The call already on its way waits: nothing answers, nothing closes.
    let stuck = {
        let store = store.clone();
        std::thread::spawn(move || store.find_tenant_by_name("Acme"))
    };
    // The store notices once the statement has outlived the timeout that
    // the server would have enforced, plus the watchdog's margin and tick.
    wait_until(
        "the store counts the database as down",
        STATEMENT_TIMEOUT + Duration::from_secs(1),
        || store.database_down(),
    );
    assert!(
        !stuck.is_finished(),
        "the stalled call cannot have an answer"
    );

    // Every later call fails at once instead of waiting for the pool.
    for _ in 0..3 {
        let started = Instant::now();
        let outcome = store.find_tenant_by_name("Acme");
        let took = started.elapsed();
        assert!(
            matches!(outcome, Err(RepositoryError::Unavailable { .. })),
            "{outcome:?}"
        );
        assert!(took < Duration::from_millis(100), "took {took:?}");
        let started = Instant::now();
        assert!(matches!(
            store.ping(),
            Err(RepositoryError::Unavailable { .. })
        ));
        assert!(started.elapsed() < Duration::from_millis(100));
    }

    // The database answers again: the store lets calls through within 1 s.
    proxy.resume();
    wait_until(
        "the store counts the database as up again",
        Duration::from_secs(1),
        || !store.database_down(),
    );
    assert_eq!(store.find_tenant_by_name("Acme").expect("a read"), None);
    // The call that was stuck got its answer too.
    assert_eq!(stuck.join().expect("thread").expect("its answer"), None);
}

#[test]
fn a_database_that_refuses_connections_is_down_until_it_accepts_again() {
    let db = TestDatabase::new();
    let proxy = StallingProxy::start(db.url());
    let url = proxy.url().to_owned();
    let store = PgStore::connect(
        &url,
        &PoolConfig {
            max_size: 2,
            connection_timeout: Duration::from_secs(2),
            statement_timeout: STATEMENT_TIMEOUT,
        },
    )
    .expect("pool");
    // The proxy is gone: its port refuses connections (nothing opened yet).
    drop(proxy);
    std::thread::sleep(Duration::from_millis(50));
    let first = store.ping();
    assert!(
        matches!(first, Err(RepositoryError::Unavailable { .. })),
        "{first:?}"
    );
    assert!(store.database_down());
    let started = Instant::now();
    assert!(matches!(
        store.ping(),
        Err(RepositoryError::Unavailable { .. })
    ));
    assert!(started.elapsed() < Duration::from_millis(100));
    // A healthy store on the same database is not affected.
    assert_eq!(db.find_tenant_by_name("Acme").expect("a read"), None);
    assert!(!db.database_down());
}

#[test]
fn a_statement_within_the_timeout_does_not_make_the_database_down() {
    let db = TestDatabase::new();
    let store = PgStore::connect(
        db.url(),
        &PoolConfig {
            max_size: 2,
            connection_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_millis(1500),
        },
    )
    .expect("pool");
    let mut conn = super::connect(&db);
    // A statement that waits behind a lock for 1 s, inside its timeout.
    use diesel::connection::SimpleConnection;
    conn.batch_execute("BEGIN; LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE")
        .expect("lock");
    let call = {
        let store = store.clone();
        std::thread::spawn(move || store.find_tenant_by_name("Acme"))
    };
    std::thread::sleep(Duration::from_secs(1));
    conn.batch_execute("ROLLBACK").expect("unlock");
    assert_eq!(call.join().expect("thread").expect("its answer"), None);
    assert!(!store.database_down());
}
