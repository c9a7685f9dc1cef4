//! The port docs' concurrency guarantees, with real threads and connections.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use domain::testing::contract::rescope;
use domain::testing::contract::{Fixture, T0};
use domain::{
    ApiKeyRepository, InsertError, ListQuery, RevokeRepoError, RotateRepoError, Scope, Scopes,
    UpdateRepoError,
};
use infra_postgres::testing::TestDatabase;
use infra_postgres::{PgStore, PoolConfig};

/// A pool with a connection per thread, so that the threads really race in
/// the database rather than queue for connections.
fn pool_for(db: &TestDatabase, threads: u32) -> PgStore {
    PgStore::connect(
        db.url(),
        &PoolConfig {
            max_size: threads,
            connection_timeout: Duration::from_secs(5),
            ..PoolConfig::default()
        },
    )
    .expect("pool")
}

/// Runs `work(i)` on `n` threads released together; returns the results in order.
fn race<T: Send + 'static>(n: usize, work: impl Fn(usize) -> T + Send + Sync + 'static) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(n));
    let work = Arc::new(work);
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (barrier, work) = (barrier.clone(), work.clone());
            thread::spawn(move || {
                barrier.wait();
                work(i)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect()
}

#[test]
fn of_sixteen_concurrent_rotations_of_one_key_exactly_one_succeeds() {
    // Given a key and 16 candidate successors
    let db = TestDatabase::new();
    let store = pool_for(&db, 16);
    let f = Fixture::new();
    let tenant = f.stored_tenant(&store, "Acme");
    let old = f.key(&tenant);
    f.insert(&store, &old);
    let grace = time::Duration::hours(1);
    let successors: Arc<Vec<_>> = Arc::new(
        (0..16)
            .map(|_| {
                let successor = f.key(&tenant);
                let events = f.rotated_events(&old.key, &successor.key, grace, T0);
                (successor, events)
            })
            .collect(),
    );

    // When 16 threads rotate it at once
    let results = {
        let (store, successors) = (store.clone(), successors.clone());
        let old_id = old.key.id;
        race(16, move |i| {
            let (successor, (rotated, created)) = &successors[i];
            store.rotate(
                &old_id,
                successor,
                T0 + grace,
                domain::DEFAULT_MAX_ACTIVE_KEYS,
                rotated,
                created,
            )
        })
    };

    // Then exactly one wins, the others are told the key is no longer active,
    // and only the winner's successor exists
    let winners: Vec<usize> = (0..16).filter(|&i| results[i].is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(results
        .iter()
        .filter(|r| r.is_err())
        .all(|r| matches!(r, Err(RotateRepoError::NotActive))));
    let winner = &successors[winners[0]].0;
    let stored_old = store
        .find(&tenant.id, &old.key.id)
        .expect("find")
        .expect("old");
    assert_eq!(stored_old.replaced_by, Some(winner.key.id));
    for (i, (successor, _)) in successors.iter().enumerate() {
        let found = store.find_by_hash(&successor.hash).expect("find");
        assert_eq!(found.is_some(), i == winners[0]);
    }
}

#[test]
fn concurrent_removals_of_the_last_two_guard_keys_cannot_both_succeed() {
    let db = TestDatabase::new();
    let store = pool_for(&db, 2);
    let f = Fixture::new();
    let narrow = Scopes::new([Scope::UsersRead]).expect("scopes");
    for round in 0..12 {
        // Given a tenant whose only guard keys are `a` and `b`
        let tenant = f.stored_tenant(&store, "Acme");
        let (a, b) = (f.key(&tenant), f.key(&tenant));
        f.insert(&store, &a);
        f.insert(&store, &b);

        // When two threads take one each away at once (revoking both, or
        // narrowing one and revoking the other)
        let changes = rescope(&a.key, narrow);
        let narrowed = f.updated_event(&a.key, &changes, T0);
        let revoked = [f.revoked_event(&a.key, T0), f.revoked_event(&b.key, T0)];
        let results = {
            let store = store.clone();
            let (tenant_id, ids) = (tenant.id, [a.key.id, b.key.id]);
            race(2, move |i| {
                if round % 2 == 1 && i == 0 {
                    store
                        .update(&tenant_id, &ids[i], &changes, &narrowed)
                        .map(drop)
                        .map_err(|e| matches!(e, UpdateRepoError::LastFullAccessKey))
                } else {
                    store
                        .revoke(&tenant_id, &ids[i], &revoked[i])
                        .map(drop)
                        .map_err(|e| matches!(e, RevokeRepoError::LastFullAccessKey))
                }
            })
        };

        // Then exactly one succeeds, the other is refused as the last guard
        // key, and the tenant keeps one guard key
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "round {round}: {results:?}"
        );
        assert!(results.contains(&Err(true)), "round {round}: {results:?}");
        let guards = [a.key.id, b.key.id]
            .iter()
            .filter_map(|id| store.find(&tenant.id, id).expect("find"))
            .filter(|k| k.counts_for_full_access_guard(T0))
            .count();
        assert_eq!(guards, 1, "round {round}");
    }
}

#[test]
fn concurrent_creates_never_exceed_the_key_limit() {
    // Given a tenant with one key and a limit of 5
    let db = TestDatabase::new();
    let store = pool_for(&db, 16);
    let f = Fixture::new();
    let tenant = f.stored_tenant(&store, "Acme");
    f.insert(&store, &f.key(&tenant));
    let keys: Arc<Vec<_>> = new_keys(&f, &tenant, 16);

    // When 16 threads create a key at once
    let results = {
        let (store, keys) = (store.clone(), keys.clone());
        race(16, move |i| store.insert(&keys[i].0, 5, &keys[i].1))
    };

    // Then exactly 4 fit and the others are refused
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        4,
        "{results:?}"
    );
    assert!(results
        .iter()
        .filter(|r| r.is_err())
        .all(|r| matches!(r, Err(InsertError::LimitReached))));
    assert_eq!(stored_keys(&store, &tenant), 5);
}

#[test]
fn concurrent_rotations_and_creates_never_exceed_the_key_limit() {
    // Given a tenant with 8 keys and a limit of 12
    let db = TestDatabase::new();
    let store = pool_for(&db, 16);
    let f = Fixture::new();
    let tenant = f.stored_tenant(&store, "Acme");
    let grace = time::Duration::hours(1);
    let olds: Vec<_> = (0..8).map(|_| f.key(&tenant)).collect();
    for old in &olds {
        f.insert(&store, old);
    }
    let rotations: Arc<Vec<_>> = Arc::new(
        olds.iter()
            .map(|old| {
                let successor = f.key(&tenant);
                let events = f.rotated_events(&old.key, &successor.key, grace, T0);
                (old.key.id, successor, events)
            })
            .collect(),
    );
    let creations: Arc<Vec<_>> = new_keys(&f, &tenant, 8);

    // When 8 threads rotate a key each (with a grace period, so the old key
    // keeps counting) while 8 create a key, at once
    let results = {
        let (store, rotations, creations) = (store.clone(), rotations.clone(), creations.clone());
        race(16, move |i| {
            if i < 8 {
                let (old, successor, (rotated, created)) = &rotations[i];
                store
                    .rotate(old, successor, T0 + grace, 12, rotated, created)
                    .map_err(|e| format!("{e:?}"))
            } else {
                let (key, event) = &creations[i - 8];
                store.insert(key, 12, event).map_err(|e| format!("{e:?}"))
            }
        })
    };

    // Then exactly 4 fit, the others are refused for the limit, and 12 keys
    // count
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        4,
        "{results:?}"
    );
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| e == "LimitReached"));
    assert_eq!(stored_keys(&store, &tenant), 12);
}

/// How many keys `tenant` has, revoked ones included (at most 100).
fn stored_keys(store: &PgStore, tenant: &domain::Tenant) -> usize {
    let page = store
        .list(
            &tenant.id,
            &ListQuery {
                key_type: None,
                mode: None,
                include_revoked: true,
                starting_after: None,
                limit: 100,
                now: T0,
            },
        )
        .expect("list");
    page.keys.len()
}

/// `n` new keys of `tenant`, each with its `api_key.created` event at T0.
fn new_keys(
    f: &Fixture,
    tenant: &domain::Tenant,
    n: usize,
) -> Arc<Vec<(domain::NewKey, domain::KeyEvent)>> {
    Arc::new(
        (0..n)
            .map(|_| {
                let key = f.key(tenant);
                let event = f.created_event(&key.key, T0);
                (key, event)
            })
            .collect(),
    )
}
