//! The contract of [`IdempotencyRepository`]: what one thread can observe.
//! (That a twin in progress gets `InUse` needs two connections; the
//! PostgreSQL adapter's tests check it.) Part of the repository contract
//! suite: [`repository_contract_tests!`](crate::repository_contract_tests)
//! runs these with the others.

#![expect(
    clippy::expect_used,
    reason = "test support: a failed step is a failed test"
)]

use time::{Duration, OffsetDateTime};

use crate::api_key::{NewKey, Tenant};
use crate::idempotency::{
    IdempotencyKey, IdempotencyRecord, IdempotencyScope, RequestFingerprint, SealedResponse,
    IDEMPOTENCY_WINDOW,
};
use crate::ports::{InsertError, RecordedWriteError, RotateRepoError};
use crate::service::DEFAULT_MAX_ACTIVE_KEYS;
use crate::testing::contract::{by_key, events_of, Fixture, Store, T0};

/// A record of `caller`'s request under `key` made at `at`, whose fingerprint
/// and response are made of `seed`.
fn record(
    tenant: &Tenant,
    caller: &NewKey,
    key: &str,
    seed: u8,
    at: OffsetDateTime,
) -> IdempotencyRecord {
    IdempotencyRecord {
        scope: IdempotencyScope {
            tenant_id: tenant.id,
            caller: caller.key.id,
        },
        key: IdempotencyKey::parse(key).expect("idempotency key"),
        fingerprint: RequestFingerprint::from_bytes([seed; 32]),
        response: SealedResponse::from_bytes(vec![seed; 48]),
        created_at: at,
        expires_at: at + IDEMPOTENCY_WINDOW,
    }
}

/// A tenant and a calling key in it.
fn tenant_and_caller(f: &Fixture, store: &impl Store) -> (Tenant, NewKey) {
    let tenant = f.stored_tenant(store, "Acme");
    let caller = f.key(&tenant);
    f.insert(store, &caller);
    (tenant, caller)
}

/// Inserts `new` by `caller` at `at` with `record`.
fn insert_recorded(
    f: &Fixture,
    store: &impl Store,
    caller: &NewKey,
    new: &NewKey,
    record: &IdempotencyRecord,
) -> Result<(), RecordedWriteError<InsertError>> {
    let event = by_key(&caller.key, f.created_event(&new.key, record.created_at));
    store.insert_recorded(new, 10_000, &event, record)
}

fn created_events(store: &impl Store, tenant: &Tenant) -> usize {
    events_of(store, &tenant.id).len()
}

/// A recorded insert stores the key, its event and the record; the record
/// is found, field for field, until it expires.
pub fn recorded_insert_stores_the_key_its_event_and_its_record(store: &impl Store) {
    let f = Fixture::new();
    let (tenant, caller) = tenant_and_caller(&f, store);
    let first = record(&tenant, &caller, "retry-1", 1, T0);
    assert_eq!(
        store
            .find_record(&first.scope, &first.key, T0)
            .expect("find"),
        None
    );
    let events_before = created_events(store, &tenant);

    let new = f.key(&tenant);
    insert_recorded(&f, store, &caller, &new, &first).expect("insert recorded");

    assert_eq!(
        store.find_by_hash(&new.hash).expect("find"),
        Some(new.key.clone())
    );
    assert_eq!(created_events(store, &tenant), events_before + 1);
    let almost = T0 + IDEMPOTENCY_WINDOW - Duration::seconds(1);
    assert_eq!(
        store
            .find_record(&first.scope, &first.key, almost)
            .expect("find"),
        Some(first.clone())
    );
    assert_eq!(
        store
            .find_record(&first.scope, &first.key, T0 + IDEMPOTENCY_WINDOW)
            .expect("find"),
        None,
        "a record is absent once it expires"
    );
}

/// A second write under a live record writes nothing and gets the record:
/// an insert as well as a rotation.
pub fn a_live_record_answers_instead_of_a_second_write(store: &impl Store) {
    let f = Fixture::new();
    let (tenant, caller) = tenant_and_caller(&f, store);
    let first = record(&tenant, &caller, "retry-1", 1, T0);
    insert_recorded(&f, store, &caller, &f.key(&tenant), &first).expect("first");
    let events_after_first = created_events(store, &tenant);

    let twin = f.key(&tenant);
    let later = T0 + Duration::hours(1);
    match insert_recorded(
        &f,
        store,
        &caller,
        &twin,
        &record(&tenant, &caller, "retry-1", 2, later),
    ) {
        Err(RecordedWriteError::Completed(found)) => assert_eq!(*found, first),
        other => panic!("expected the first record, got {other:?}"),
    }
    assert_eq!(store.find_by_hash(&twin.hash).expect("find"), None);

    let successor = f.key(&tenant);
    let (rotated, created) = f.rotated_events(&caller.key, &successor.key, Duration::ZERO, later);
    match store.rotate_recorded(
        &caller.key.id,
        &successor,
        later,
        DEFAULT_MAX_ACTIVE_KEYS,
        &rotated,
        &created,
        &record(&tenant, &caller, "retry-1", 3, later),
    ) {
        Err(RecordedWriteError::Completed(found)) => assert_eq!(*found, first),
        other => panic!("expected the first record, got {other:?}"),
    }
    assert_eq!(store.find_by_hash(&successor.hash).expect("find"), None);
    assert_eq!(
        store
            .find(&tenant.id, &caller.key.id)
            .expect("find")
            .expect("caller")
            .revokes_at,
        None,
        "the rotation did not happen"
    );
    assert_eq!(created_events(store, &tenant), events_after_first);
}

/// One idempotency key of two callers (or two tenants) is two records.
pub fn records_are_scoped_to_the_tenant_and_the_caller(store: &impl Store) {
    let f = Fixture::new();
    let (tenant, caller) = tenant_and_caller(&f, store);
    let other_caller = f.key(&tenant);
    f.insert(store, &other_caller);
    let (other_tenant, stranger) = tenant_and_caller(&f, store);

    let mine = record(&tenant, &caller, "same", 1, T0);
    let theirs = record(&tenant, &other_caller, "same", 2, T0);
    let strangers = record(&other_tenant, &stranger, "same", 3, T0);
    insert_recorded(&f, store, &caller, &f.key(&tenant), &mine).expect("mine");
    insert_recorded(&f, store, &other_caller, &f.key(&tenant), &theirs).expect("theirs");
    insert_recorded(&f, store, &stranger, &f.key(&other_tenant), &strangers).expect("stranger");

    for r in [&mine, &theirs, &strangers] {
        assert_eq!(
            store.find_record(&r.scope, &r.key, T0).expect("find"),
            Some(r.clone())
        );
    }
}

/// A refused write stores no record: the retry runs again.
pub fn a_refused_write_stores_no_record(store: &impl Store) {
    let f = Fixture::new();
    let (tenant, caller) = tenant_and_caller(&f, store);

    let at_limit = record(&tenant, &caller, "create", 1, T0);
    let new = f.key(&tenant);
    let event = by_key(&caller.key, f.created_event(&new.key, T0));
    assert!(matches!(
        store.insert_recorded(&new, 1, &event, &at_limit),
        Err(RecordedWriteError::Write(InsertError::LimitReached))
    ));

    let rotation = record(&tenant, &caller, "rotate", 2, T0);
    let unknown = f.key(&tenant);
    let successor = f.key(&tenant);
    let (rotated, created) = f.rotated_events(&unknown.key, &successor.key, Duration::ZERO, T0);
    assert!(matches!(
        store.rotate_recorded(
            &unknown.key.id,
            &successor,
            T0,
            DEFAULT_MAX_ACTIVE_KEYS,
            &rotated,
            &created,
            &rotation
        ),
        Err(RecordedWriteError::Write(RotateRepoError::NotFound))
    ));

    for r in [&at_limit, &rotation] {
        assert_eq!(store.find_record(&r.scope, &r.key, T0).expect("find"), None);
    }
    assert_eq!(store.find_by_hash(&new.hash).expect("find"), None);
    assert_eq!(store.find_by_hash(&successor.hash).expect("find"), None);
}

/// A recorded rotation rotates and stores the record.
pub fn recorded_rotation_rotates_and_stores_its_record(store: &impl Store) {
    let f = Fixture::new();
    let (tenant, caller) = tenant_and_caller(&f, store);
    let old = f.key(&tenant);
    f.insert(store, &old);
    let successor = f.key(&tenant);
    let grace = Duration::hours(1);
    let (rotated, created) = f.rotated_events(&old.key, &successor.key, grace, T0);
    let rotation = record(&tenant, &caller, "rotate", 1, T0);

    store
        .rotate_recorded(
            &old.key.id,
            &successor,
            T0 + grace,
            DEFAULT_MAX_ACTIVE_KEYS,
            &by_key(&caller.key, rotated),
            &by_key(&caller.key, created),
            &rotation,
        )
        .expect("rotate recorded");

    assert_eq!(
        store
            .find(&tenant.id, &old.key.id)
            .expect("find")
            .expect("old")
            .replaced_by,
        Some(successor.key.id)
    );
    assert_eq!(
        store.find_by_hash(&successor.hash).expect("find"),
        Some(successor.key.clone())
    );
    assert_eq!(
        store
            .find_record(&rotation.scope, &rotation.key, T0)
            .expect("find"),
        Some(rotation)
    );
}

/// An expired record is replaced by the next request of its key, and
/// deleted by `delete_expired_records`, which leaves live ones.
pub fn expired_records_are_replaced_and_deleted(store: &impl Store) {
    let f = Fixture::new();
    let (tenant, caller) = tenant_and_caller(&f, store);
    let old = record(&tenant, &caller, "old", 1, T0);
    let later = T0 + Duration::hours(1);
    let young = record(&tenant, &caller, "young", 2, later);
    insert_recorded(&f, store, &caller, &f.key(&tenant), &old).expect("old");
    insert_recorded(&f, store, &caller, &f.key(&tenant), &young).expect("young");

    let expired_at = T0 + IDEMPOTENCY_WINDOW;
    assert_eq!(store.delete_expired_records(expired_at).expect("delete"), 1);
    assert_eq!(
        store.find_record(&old.scope, &old.key, T0).expect("find"),
        None,
        "deleted, not merely expired"
    );
    assert_eq!(
        store
            .find_record(&young.scope, &young.key, expired_at)
            .expect("find"),
        Some(young.clone())
    );

    let again = record(&tenant, &caller, "young", 3, later + IDEMPOTENCY_WINDOW);
    let new = f.key(&tenant);
    insert_recorded(&f, store, &caller, &new, &again).expect("replaces the expired record");
    assert_eq!(
        store
            .find_record(&again.scope, &again.key, again.created_at)
            .expect("find"),
        Some(again)
    );
    assert_eq!(
        store.find_by_hash(&new.hash).expect("find"),
        Some(new.key.clone())
    );
}
