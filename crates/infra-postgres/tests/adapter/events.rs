//! Key events on PostgreSQL beyond the contract suite: the actor check
//! against revocations that commit while a write waits, the order of events
//! under concurrency, `NOTIFY` and the append-only table.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_query;
use domain::testing::contract::{by_key, rename, Fixture, T0};
use domain::{
    ActorRefusal, ApiKey, ApiKeyRepository, EventRepository, EventType, InsertError, KeyEvent,
    RevokeRepoError, RotateRepoError, StoredEvent, UpdateRepoError,
};
use infra_postgres::testing::TestDatabase;
use infra_postgres::{PgStore, PoolConfig};

use crate::connect;

fn pool_for(db: &TestDatabase, size: u32) -> PgStore {
    PgStore::connect(
        db.url(),
        &PoolConfig {
            max_size: size,
            ..PoolConfig::default()
        },
    )
    .expect("pool")
}

/// Every event of the database, in sequence order.
fn all_events(store: &PgStore) -> Vec<StoredEvent> {
    store.events_after(0, 10_000).expect("events")
}

/// A tenant with a guard key (so the actor may be revoked) and the actor key
/// `K`, plus a third key to change.
struct Scene {
    actor: ApiKey,
    target: ApiKey,
}

fn scene(f: &Fixture, store: &PgStore) -> Scene {
    let tenant = f.stored_tenant(store, "Acme");
    let guard = f.key(&tenant);
    let actor = f.key(&tenant);
    let target = f.key(&tenant);
    for key in [&guard, &actor, &target] {
        f.insert(store, key);
    }
    Scene {
        actor: actor.key,
        target: target.key,
    }
}

/// Revokes `actor` in a transaction of its own that stays open while `write`
/// runs on another thread (and has time to reach the actor's row lock), then
/// commits; returns what `write` returned.
fn with_revocation_committing_meanwhile<T: Send + 'static>(
    db: &TestDatabase,
    actor: &ApiKey,
    write: impl FnOnce() -> T + Send + 'static,
) -> T {
    let mut revoker = connect(db);
    revoker.batch_execute("BEGIN").expect("begin");
    sql_query("UPDATE api_keys SET revokes_at = $1 WHERE id = $2")
        .bind::<diesel::sql_types::Timestamptz, _>(T0)
        .bind::<diesel::sql_types::Text, _>(actor.id.to_string())
        .execute(&mut revoker)
        .expect("revoke in an open transaction");
    let writer = thread::spawn(write);
    // Give the write time to block on the actor's row; if it has not got
    // there yet, it reads the committed revocation instead: the outcome
    // asserted below is the same either way.
    thread::sleep(Duration::from_millis(300));
    revoker.batch_execute("COMMIT").expect("commit");
    writer.join().expect("writer thread")
}

#[test]
fn an_insert_waiting_on_its_actors_revocation_is_refused_and_writes_nothing() {
    let db = TestDatabase::new();
    let store = pool_for(&db, 4);
    let f = Fixture::new();
    let s = scene(&f, &store);
    let tenant = domain::Tenant {
        id: s.actor.tenant_id,
        name: "Acme".to_owned(),
        created_at: T0,
    };
    let new = f.key(&tenant);
    let event = by_key(&s.actor, f.created_event(&new.key, T0));
    let before = all_events(&store).len();

    let result = {
        let (store, new, event) = (store.clone(), new.clone(), event.clone());
        with_revocation_committing_meanwhile(&db, &s.actor, move || store.insert(&new, 100, &event))
    };

    assert!(
        matches!(
            result,
            Err(InsertError::ActorRefused(ActorRefusal::Revoked))
        ),
        "{result:?}"
    );
    assert_eq!(store.find_by_hash(&new.hash).expect("find"), None);
    assert_eq!(all_events(&store).len(), before);
}

#[test]
fn a_create_waiting_on_the_tenant_lock_while_its_actor_is_narrowed_is_refused() {
    // An admin narrows key K from `*` (holding the tenant lock, as a
    // narrowing update does) while K's create waits on that lock: the create
    // is judged on K as it is when it commits, and writes nothing.
    let db = TestDatabase::new();
    let store = pool_for(&db, 4);
    let f = Fixture::new();
    let s = scene(&f, &store);
    let tenant = domain::Tenant {
        id: s.actor.tenant_id,
        name: "Acme".to_owned(),
        created_at: T0,
    };
    let new = f.key(&tenant);
    let event = by_key(&s.actor, f.created_event(&new.key, T0));
    let before = all_events(&store).len();

    let mut admin = connect(&db);
    admin.batch_execute("BEGIN").expect("begin");
    sql_query("SELECT id FROM tenants WHERE id = $1 FOR NO KEY UPDATE")
        .bind::<diesel::sql_types::Text, _>(tenant.id.to_string())
        .execute(&mut admin)
        .expect("the tenant lock");
    sql_query("UPDATE api_keys SET scopes = ARRAY['users:read'] WHERE id = $1")
        .bind::<diesel::sql_types::Text, _>(s.actor.id.to_string())
        .execute(&mut admin)
        .expect("narrow the actor");
    let writer = {
        let (store, new, event) = (store.clone(), new.clone(), event.clone());
        thread::spawn(move || store.insert(&new, 100, &event))
    };
    thread::sleep(Duration::from_millis(300));
    admin.batch_execute("COMMIT").expect("commit");
    let result = writer.join().expect("writer thread");

    assert!(
        matches!(
            result,
            Err(InsertError::ActorRefused(ActorRefusal::NotFullAccess))
        ),
        "{result:?}"
    );
    assert_eq!(store.find_by_hash(&new.hash).expect("find"), None);
    assert_eq!(all_events(&store).len(), before);
}

#[test]
fn an_update_revoke_or_rotation_waiting_on_its_actors_revocation_is_refused() {
    let db = TestDatabase::new();
    let store = pool_for(&db, 4);
    let f = Fixture::new();

    // Update
    let s = scene(&f, &store);
    let changes = rename(&s.target, "Renamed");
    let event = by_key(&s.actor, f.updated_event(&s.target, &changes, T0));
    let result = {
        let (store, target) = (store.clone(), s.target.clone());
        with_revocation_committing_meanwhile(&db, &s.actor, move || {
            store.update(&target.tenant_id, &target.id, &changes, &event)
        })
    };
    assert!(
        matches!(
            result,
            Err(UpdateRepoError::ActorRefused(ActorRefusal::Revoked))
        ),
        "{result:?}"
    );

    // Revoke
    let s2 = scene(&f, &store);
    let event = by_key(&s2.actor, f.revoked_event(&s2.target, T0));
    let result = {
        let (store, target) = (store.clone(), s2.target.clone());
        with_revocation_committing_meanwhile(&db, &s2.actor, move || {
            store.revoke(&target.tenant_id, &target.id, &event)
        })
    };
    assert!(
        matches!(
            result,
            Err(RevokeRepoError::ActorRefused(ActorRefusal::Revoked))
        ),
        "{result:?}"
    );

    // Rotate
    let s3 = scene(&f, &store);
    let tenant = domain::Tenant {
        id: s3.target.tenant_id,
        name: "Acme".to_owned(),
        created_at: T0,
    };
    let successor = f.key(&tenant);
    let grace = time::Duration::hours(1);
    let (rotated, created) = f.rotated_events(&s3.target, &successor.key, grace, T0);
    let (rotated, created) = (by_key(&s3.actor, rotated), by_key(&s3.actor, created));
    let rotation = rotation_of(
        &store,
        &s3.target,
        &successor,
        T0 + grace,
        [rotated, created],
    );
    let result = with_revocation_committing_meanwhile(&db, &s3.actor, rotation);
    assert!(
        matches!(
            result,
            Err(RotateRepoError::ActorRefused(ActorRefusal::Revoked))
        ),
        "{result:?}"
    );

    // Nothing of the three was written: the targets are as they were, and
    // the only events are the scenes' creations (4 keys + a tenant, 3 times,
    // none from the raw revocations).
    for target in [&s.target, &s2.target, &s3.target] {
        let stored = store
            .find(&target.tenant_id, &target.id)
            .expect("find")
            .expect("target");
        assert_eq!(&stored, target);
    }
    assert_eq!(store.find_by_hash(&successor.hash).expect("find"), None);
    let types: Vec<EventType> = all_events(&store)
        .iter()
        .map(|e| e.event.event_type())
        .collect();
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == EventType::KeyCreated)
            .count(),
        9
    );
    assert_eq!(types.len(), 9 + 3);
}

#[test]
fn a_rotation_waiting_on_a_rename_and_rescope_copies_them() {
    // An admin renames and narrows key J (holding J's row, as a PATCH does)
    // while a rotation of J, prepared from J as it was, waits for that row:
    // the successor gets J's name and scopes as they are when the rotation
    // commits, so the PATCH is not undone.
    let db = TestDatabase::new();
    let store = pool_for(&db, 4);
    let f = Fixture::new();
    let s = scene(&f, &store);
    let tenant = domain::Tenant {
        id: s.target.tenant_id,
        name: "Acme".to_owned(),
        created_at: T0,
    };
    let successor = f.key(&tenant);
    let grace = time::Duration::hours(1);
    let (rotated, created) = f.rotated_events(&s.target, &successor.key, grace, T0);
    let (rotated, created) = (by_key(&s.actor, rotated), by_key(&s.actor, created));

    let mut admin = connect(&db);
    admin.batch_execute("BEGIN").expect("begin");
    sql_query("UPDATE api_keys SET name = 'Renamed', scopes = ARRAY['users:read'] WHERE id = $1")
        .bind::<diesel::sql_types::Text, _>(s.target.id.to_string())
        .execute(&mut admin)
        .expect("rename and narrow the target");
    let rotation = thread::spawn(rotation_of(
        &store,
        &s.target,
        &successor,
        T0 + grace,
        [rotated, created],
    ));
    thread::sleep(Duration::from_millis(300));
    admin.batch_execute("COMMIT").expect("commit");
    let result = rotation.join().expect("rotation thread");

    assert!(result.is_ok(), "{result:?}");
    let stored = store
        .find(&tenant.id, &successor.key.id)
        .expect("find")
        .expect("the successor");
    assert_eq!(stored.name.as_str(), "Renamed");
    assert_eq!(
        stored.scopes,
        domain::Scopes::parse(["users:read"]).expect("scopes")
    );
}

/// What a round of the race below has key K do while K is revoked.
#[derive(Debug, Clone, Copy)]
enum Write {
    Create,
    Rename,
    Rotate,
}

#[test]
fn a_write_by_a_key_being_revoked_never_commits_after_the_revocation() {
    // Over many rounds, a key K is revoked while K creates a key, renames
    // one or rotates one (the last two take no tenant lock). Either the write
    // is refused and leaves nothing, or it committed before the revocation
    // could: the revocation waits for K's row, which the write holds until
    // it commits, so the write's events took their sequence numbers first.
    let db = TestDatabase::new();
    let store = pool_for(&db, 4);
    let f = Fixture::new();
    let rounds = 60;
    let mut refused = 0;
    for round in 0..rounds {
        let s = scene(&f, &store);
        let tenant = domain::Tenant {
            id: s.actor.tenant_id,
            name: "Acme".to_owned(),
            created_at: T0,
        };
        let write = [Write::Create, Write::Rename, Write::Rotate][round % 3];
        let new = f.key(&tenant);
        let changes = rename(&s.target, "Renamed");
        let grace = time::Duration::hours(1);
        let events: Vec<KeyEvent> = match write {
            Write::Create => vec![f.created_event(&new.key, T0)],
            Write::Rename => vec![f.updated_event(&s.target, &changes, T0)],
            Write::Rotate => {
                let (rotated, created) = f.rotated_events(&s.target, &new.key, grace, T0);
                vec![rotated, created]
            }
        };
        let events: Vec<KeyEvent> = events.into_iter().map(|e| by_key(&s.actor, e)).collect();
        let revoke_event = f.revoked_event(&s.actor, T0);
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let writer = {
            let (store, new, target, events, barrier) = (
                store.clone(),
                new.clone(),
                s.target.clone(),
                events.clone(),
                barrier.clone(),
            );
            thread::spawn(move || {
                barrier.wait();
                let refused = match write {
                    Write::Create => match store.insert(&new, 100, &events[0]) {
                        Ok(()) => false,
                        Err(InsertError::ActorRefused(ActorRefusal::Revoked)) => true,
                        Err(other) => panic!("create: {other:?}"),
                    },
                    Write::Rename => {
                        match store.update(&target.tenant_id, &target.id, &changes, &events[0]) {
                            Ok(_) => false,
                            Err(UpdateRepoError::ActorRefused(ActorRefusal::Revoked)) => true,
                            Err(other) => panic!("rename: {other:?}"),
                        }
                    }
                    Write::Rotate => {
                        match store.rotate(
                            &target.id,
                            &new,
                            T0 + grace,
                            domain::DEFAULT_MAX_ACTIVE_KEYS,
                            &events[0],
                            &events[1],
                        ) {
                            Ok(()) => false,
                            Err(RotateRepoError::ActorRefused(ActorRefusal::Revoked)) => true,
                            Err(other) => panic!("rotate: {other:?}"),
                        }
                    }
                };
                refused
            })
        };
        let revoker = {
            let (store, actor, event, barrier) = (
                store.clone(),
                s.actor.clone(),
                revoke_event.clone(),
                barrier.clone(),
            );
            thread::spawn(move || {
                barrier.wait();
                store.revoke(&actor.tenant_id, &actor.id, &event)
            })
        };
        let was_refused = writer.join().expect("writer");
        revoker.join().expect("revoker").expect("revoke");
        let stored = all_events(&store);
        let seq_of = |event: &KeyEvent| {
            stored
                .iter()
                .find(|e| e.event.id == event.id)
                .map(|e| e.seq)
        };
        let revoked_seq = seq_of(&revoke_event).expect("the revocation's event");
        if was_refused {
            refused += 1;
            assert!(
                events.iter().all(|e| seq_of(e).is_none()),
                "round {round}: {write:?}"
            );
            let target = store.find(&s.target.tenant_id, &s.target.id).expect("find");
            assert_eq!(target.as_ref(), Some(&s.target), "round {round}: {write:?}");
            assert_eq!(store.find_by_hash(&new.hash).expect("find"), None);
        } else {
            for event in &events {
                let seq = seq_of(event).expect("the write's event");
                assert!(
                    seq < revoked_seq,
                    "round {round}: {write:?}: {seq} !< {revoked_seq}"
                );
            }
        }
    }
    // Both outcomes are legal; the count is printed for whoever tunes this.
    println!("{refused} of {rounds} writes were refused");
}

#[test]
fn of_sixteen_concurrent_rotations_one_writes_its_two_events() {
    let db = TestDatabase::new();
    let store = pool_for(&db, 16);
    let f = Fixture::new();
    let tenant = f.stored_tenant(&store, "Acme");
    let old = f.key(&tenant);
    f.insert(&store, &old);
    let grace = time::Duration::hours(1);
    let attempts: Vec<_> = (0..16)
        .map(|_| {
            let successor = f.key(&tenant);
            let (rotated, created) = f.rotated_events(&old.key, &successor.key, grace, T0);
            (successor, rotated, created)
        })
        .collect();
    let attempts = Arc::new(attempts);
    let barrier = Arc::new(std::sync::Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let (store, attempts, barrier, old) =
                (store.clone(), attempts.clone(), barrier.clone(), old.key.id);
            thread::spawn(move || {
                barrier.wait();
                let (successor, rotated, created) = &attempts[i];
                store.rotate(
                    &old,
                    successor,
                    T0 + grace,
                    domain::DEFAULT_MAX_ACTIVE_KEYS,
                    rotated,
                    created,
                )
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();

    let winners: Vec<usize> = (0..16).filter(|&i| results[i].is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let (successor, rotated, created) = &attempts[winners[0]];
    let events: Vec<KeyEvent> = all_events(&store).into_iter().map(|e| e.event).collect();
    let rotations: Vec<&KeyEvent> = events
        .iter()
        .filter(|e| e.event_type() == EventType::KeyRotated)
        .collect();
    assert_eq!(rotations, [rotated]);
    let successors: Vec<&KeyEvent> = events
        .iter()
        .filter(|e| e.key_id == Some(successor.key.id))
        .collect();
    assert_eq!(successors, [created]);
    // The tenant's event and the old key's creation, plus the two above.
    assert_eq!(events.len(), 4);
}

#[test]
fn every_event_notifies_its_sequence_number_on_commit() {
    let db = TestDatabase::new();
    let store = pool_for(&db, 2);
    let f = Fixture::new();
    let mut listener = connect(&db);
    sql_query("LISTEN apikeys_key_events")
        .execute(&mut listener)
        .expect("listen");

    let tenant = f.stored_tenant(&store, "Acme");
    let (guard, key) = (f.key(&tenant), f.key(&tenant));
    f.insert(&store, &guard);
    f.insert(&store, &key);
    f.revoke(&store, &key.key, T0).expect("revoke");

    // Any statement reads the notifications that arrived meanwhile.
    sql_query("SELECT 1").execute(&mut listener).expect("poll");
    let notified: Vec<(String, String)> = listener
        .notifications_iter()
        .map(|n| n.expect("notification"))
        .map(|n| (n.channel, n.payload))
        .collect();
    let expected: Vec<(String, String)> = all_events(&store)
        .iter()
        .map(|e| ("apikeys_key_events".to_owned(), e.seq.to_string()))
        .collect();
    assert_eq!(expected.len(), 4, "tenant, two created, revoked");
    assert_eq!(notified, expected);
}

#[test]
fn events_cannot_be_changed_or_deleted() {
    let db = TestDatabase::new();
    let f = Fixture::new();
    let store = db.store();
    f.stored_tenant(&store, "Acme");
    let mut conn = connect(&db);
    for statement in [
        "UPDATE key_events SET request_id = 'forged'",
        "DELETE FROM key_events",
    ] {
        let error = conn
            .batch_execute(statement)
            .expect_err("the table is append-only");
        assert!(
            error.to_string().contains("key_events is append-only"),
            "{error}"
        );
    }
    assert_eq!(all_events(&store).len(), 1);
}

#[test]
fn two_keys_rotating_each_other_at_once_never_deadlock() {
    // K rotates J while J rotates K: each write locks both rows. Taken in id
    // order they cannot deadlock; both rotations succeed (each actor is still
    // in its grace period when the other's write commits).
    let db = TestDatabase::new();
    let store = pool_for(&db, 4);
    let f = Fixture::new();
    let grace = time::Duration::hours(1);
    for round in 0..20 {
        let tenant = f.stored_tenant(&store, "Acme");
        let (k, j) = (f.key(&tenant), f.key(&tenant));
        f.insert(&store, &k);
        f.insert(&store, &j);
        let mut attempts = Vec::new();
        for (actor, old) in [(&k.key, &j.key), (&j.key, &k.key)] {
            let successor = f.key(&tenant);
            let (rotated, created) = f.rotated_events(old, &successor.key, grace, T0);
            attempts.push((
                old.id,
                successor,
                by_key(actor, rotated),
                by_key(actor, created),
            ));
        }
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let handles: Vec<_> = attempts
            .into_iter()
            .map(|(old, successor, rotated, created)| {
                let (store, barrier) = (store.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    store.rotate(
                        &old,
                        &successor,
                        T0 + grace,
                        domain::DEFAULT_MAX_ACTIVE_KEYS,
                        &rotated,
                        &created,
                    )
                })
            })
            .collect();
        for handle in handles {
            let result = handle.join().expect("thread");
            assert!(result.is_ok(), "round {round}: {result:?}");
        }
    }
}

/// A rotation of `old` into `successor`, to run on another thread, under
/// the service's default key limit (which these tests never reach).
fn rotation_of<S: domain::ApiKeyRepository + Clone + Send + 'static>(
    store: &S,
    old: &domain::ApiKey,
    successor: &domain::NewKey,
    revokes_at: time::OffsetDateTime,
    [rotated, created]: [domain::KeyEvent; 2],
) -> impl FnOnce() -> Result<(), RotateRepoError> + Send + 'static {
    let (store, old, successor) = (store.clone(), old.id, successor.clone());
    let limit = domain::DEFAULT_MAX_ACTIVE_KEYS;
    move || store.rotate(&old, &successor, revokes_at, limit, &rotated, &created)
}
