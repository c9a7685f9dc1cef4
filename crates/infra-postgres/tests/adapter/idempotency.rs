//! Idempotent writes beyond what one thread can observe: a twin in progress,
//! and twins racing.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use diesel::sql_types::Text;
use diesel::{sql_query, RunQueryDsl};
use domain::testing::contract::{Fixture, T0};
use domain::{
    ApiKeyRepository, IdempotencyKey, IdempotencyRecord, IdempotencyRepository, IdempotencyScope,
    RecordedWriteError, RequestFingerprint, SealedResponse, IDEMPOTENCY_WINDOW,
};
use infra_postgres::testing::TestDatabase;
use infra_postgres::{PgStore, PoolConfig};

use crate::connect;

fn record(scope: IdempotencyScope, seed: u8) -> IdempotencyRecord {
    IdempotencyRecord {
        scope,
        key: IdempotencyKey::parse("order 42").expect("key"),
        fingerprint: RequestFingerprint::from_bytes([seed; 32]),
        response: SealedResponse::from_bytes(vec![seed; 40]),
        created_at: T0,
        expires_at: T0 + IDEMPOTENCY_WINDOW,
    }
}

/// The idempotency lock of the lock name `$1`: class `idem`, in the
/// two-key space, apart from the one-key space of the migration lock.
const TWIN_LOCK: &str = "1768187245, ('x' || encode(substring(sha256(convert_to($1, 'UTF8')) FROM 1 FOR 4), 'hex'))::bit(32)::int4";

#[test]
fn the_record_lock_is_not_in_the_one_key_space() {
    // Given a session holding the one-key advisory lock that a 64-bit hash
    // of the lock name would give (the space the migration lock is in)
    let db = TestDatabase::new();
    let store = PgStore::connect(db.url(), &PoolConfig::default()).expect("pool");
    let f = Fixture::new();
    let tenant = f.stored_tenant(&store, "Acme");
    let caller = f.key(&tenant);
    f.insert(&store, &caller);
    let scope = IdempotencyScope {
        tenant_id: tenant.id,
        caller: caller.key.id,
    };
    let mut other = connect(&db);
    let lock_name = format!("{} {} order 42", tenant.id, caller.key.id);
    sql_query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
        .bind::<Text, _>(&lock_name)
        .execute(&mut other)
        .expect("lock");

    // When the request writes, then it goes through: that lock is not its
    let new = f.key(&tenant);
    store
        .insert_recorded(&new, 100, &f.created_event(&new.key, T0), &record(scope, 1))
        .expect("not blocked by a one-key lock");
}

#[test]
fn a_twin_that_holds_the_record_lock_makes_the_write_in_use_and_write_nothing() {
    // Given a request whose twin holds the lock of its scope and key (taken
    // as the store takes it: the two-key advisory lock of the idempotency
    // class and the first 32 bits of the SHA-256 of "<tenant> <caller> <key>")
    let db = TestDatabase::new();
    let store = PgStore::connect(db.url(), &PoolConfig::default()).expect("pool");
    let f = Fixture::new();
    let tenant = f.stored_tenant(&store, "Acme");
    let caller = f.key(&tenant);
    f.insert(&store, &caller);
    let scope = IdempotencyScope {
        tenant_id: tenant.id,
        caller: caller.key.id,
    };
    let mut twin = connect(&db);
    let lock_name = format!("{} {} order 42", tenant.id, caller.key.id);
    sql_query(format!("SELECT pg_advisory_lock({TWIN_LOCK})"))
        .bind::<Text, _>(&lock_name)
        .execute(&mut twin)
        .expect("lock");

    // When the request writes
    let new = f.key(&tenant);
    let first = store.insert_recorded(&new, 100, &f.created_event(&new.key, T0), &record(scope, 1));

    // Then it is in use, at once, and nothing is written
    assert!(matches!(first, Err(RecordedWriteError::InUse)), "{first:?}");
    assert_eq!(store.find_by_hash(&new.hash).expect("find"), None);
    assert_eq!(
        store
            .find_record(&scope, &record(scope, 1).key, T0)
            .expect("find"),
        None
    );

    // And once the twin lets go, the request goes through
    sql_query(format!("SELECT pg_advisory_unlock({TWIN_LOCK})"))
        .bind::<Text, _>(&lock_name)
        .execute(&mut twin)
        .expect("unlock");
    store
        .insert_recorded(&new, 100, &f.created_event(&new.key, T0), &record(scope, 1))
        .expect("insert once the lock is free");
    assert_eq!(
        store.find_by_hash(&new.hash).expect("find"),
        Some(new.key.clone())
    );
}

#[test]
fn of_sixteen_racing_twins_one_writes_and_the_others_are_in_use_or_get_its_record() {
    // Given 16 twins of one request, each with a key of its own to insert
    let db = TestDatabase::new();
    let store = PgStore::connect(
        db.url(),
        &PoolConfig {
            max_size: 16,
            connection_timeout: Duration::from_secs(5),
            ..PoolConfig::default()
        },
    )
    .expect("pool");
    let f = Fixture::new();
    let tenant = f.stored_tenant(&store, "Acme");
    let caller = f.key(&tenant);
    f.insert(&store, &caller);
    let scope = IdempotencyScope {
        tenant_id: tenant.id,
        caller: caller.key.id,
    };
    let twins: Arc<Vec<_>> = Arc::new(
        (0..16)
            .map(|_| {
                let new = f.key(&tenant);
                let event = f.created_event(&new.key, T0);
                (new, event)
            })
            .collect(),
    );

    // When they write at once
    let barrier = Arc::new(Barrier::new(16));
    let threads: Vec<_> = (0..16u8)
        .map(|i| {
            let (store, twins, barrier) = (store.clone(), twins.clone(), barrier.clone());
            thread::spawn(move || {
                let (new, event) = &twins[usize::from(i)];
                barrier.wait();
                store.insert_recorded(new, 100, event, &record(scope, i + 1))
            })
        })
        .collect();
    let outcomes: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();

    // Then exactly one wrote its key and its record; the others wrote
    // nothing and got InUse or that record
    let written: Vec<usize> = (0..16).filter(|i| outcomes[*i].is_ok()).collect();
    assert_eq!(written.len(), 1, "{outcomes:?}");
    let winner = record(scope, u8::try_from(written[0]).expect("small") + 1);
    for (i, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Ok(()) => {}
            Err(RecordedWriteError::InUse) => {}
            Err(RecordedWriteError::Completed(found)) => assert_eq!(**found, winner),
            Err(e) => panic!("twin {i}: {e:?}"),
        }
        let stored = store
            .find_by_hash(&twins[i].0.hash)
            .expect("find")
            .is_some();
        assert_eq!(stored, i == written[0], "twin {i}");
    }
    assert_eq!(
        store.find_record(&scope, &winner.key, T0).expect("find"),
        Some(winner)
    );
}
