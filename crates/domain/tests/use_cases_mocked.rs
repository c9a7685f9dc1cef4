//! The use cases against mockall mocks of the repository ports: what reaches
//! the ports, with which arguments, and how their answers are mapped.

#![expect(
    clippy::expect_used,
    reason = "test helpers: a failed set-up step is a failed test"
)]

mod common;

use std::sync::{Arc, Mutex};

use common::{hash_key, Recorder, T0};
use domain::mocks::{
    MockApiKeyRepository, MockEventRepository, MockIdempotencyRepository, MockTenantRepository,
};
use domain::testing::{SeqSecretSource, TestClock};
use domain::{
    AccessError, Actor, ActorRefusal, ApiKey, ApiKeys, AuthError, Authenticator, Change,
    CreateError, CreateKey, CreateTenantRepoError, Credentials, EventData, EventId, EventPage,
    EventType, FieldChanges, GetError, GracePeriod, InsertError, KeyEvent, KeyId, KeyName,
    KeyStatus, KeyType, KeyUse, KeyView, ListError, ListEvents, ListEventsError, ListKeys, Mode,
    NewKey, Origin, PageLimit, PlainKey, Principal, RepositoryError, RevokeError, RevokeRepoError,
    RotateError, RotateRepoError, Scope, Scopes, TenantId, UpdateError, UpdateRepoError,
};
use mockall::Sequence;
use time::Duration;

/// A repository answer and a check of the use case's error.
type InsertCase = (fn() -> InsertError, fn(&CreateError) -> bool);
/// A stored key's state and a check of the rotation's error.
type RotateCase = (fn(ApiKey) -> ApiKey, fn(&RotateError) -> bool);

/// The request id the tests' HTTP requests carry.
const REQUEST_ID: &str = "req_mocked";

fn service(keys: MockApiKeyRepository) -> ApiKeys {
    service_with(keys, MockTenantRepository::new())
}

fn service_with(keys: MockApiKeyRepository, tenants: MockTenantRepository) -> ApiKeys {
    ApiKeys::new(
        keys,
        tenants,
        no_events(),
        MockIdempotencyRepository::new(),
        TestClock::at(T0),
        SeqSecretSource::new(17),
        hash_key(),
    )
}

/// [`service`] on a clock the test moves.
fn service_on(keys: MockApiKeyRepository, clock: &TestClock) -> ApiKeys {
    ApiKeys::new(
        keys,
        MockTenantRepository::new(),
        no_events(),
        MockIdempotencyRepository::new(),
        clock.clone(),
        SeqSecretSource::new(17),
        hash_key(),
    )
}

/// `service` telling a new [`Recorder`] of every key change it commits.
fn listened(service: ApiKeys) -> (ApiKeys, Arc<Recorder>) {
    let recorder = Recorder::new();
    (service.with_change_listener(recorder.clone()), recorder)
}

/// `heard` and `expected` hold the same keys (the order of the reports of one
/// use case is not part of the contract).
fn assert_same_keys(mut heard: Vec<KeyId>, mut expected: Vec<KeyId>) {
    heard.sort_unstable();
    expected.sort_unstable();
    assert_eq!(heard, expected);
}

fn service_over_events(events: MockEventRepository) -> ApiKeys {
    ApiKeys::new(
        untouchable(),
        MockTenantRepository::new(),
        events,
        MockIdempotencyRepository::new(),
        TestClock::at(T0),
        SeqSecretSource::new(17),
        hash_key(),
    )
}

/// An event repository that fails the test if it is read.
fn no_events() -> MockEventRepository {
    let mut events = MockEventRepository::new();
    events.expect_list_events().never();
    events
}

fn request_id() -> Option<String> {
    Some(REQUEST_ID.to_owned())
}

/// A repository that fails the test if any method is called.
fn untouchable() -> MockApiKeyRepository {
    let mut keys = MockApiKeyRepository::new();
    keys.expect_insert().never();
    keys.expect_find_by_hash().never();
    keys.expect_find().never();
    keys.expect_list().never();
    keys.expect_update().never();
    keys.expect_revoke().never();
    keys.expect_rotate().never();
    keys.expect_record_uses().never();
    keys
}

fn tenant_id() -> TenantId {
    TenantId::generate(T0 - Duration::days(30), &SeqSecretSource::new(100))
}

fn key_id(seed: u64) -> KeyId {
    KeyId::generate(T0 - Duration::days(1), &SeqSecretSource::new(seed))
}

fn principal(key_type: KeyType, mode: Mode) -> Principal {
    Principal {
        tenant_id: tenant_id(),
        key_id: key_id(200),
        key_type,
        mode,
        scopes: Scopes::full(),
    }
}

/// Whether `event` is about `key` (of [`tenant_id`], in `mode`), made at T0
/// by the [`principal`]'s key in the request [`REQUEST_ID`].
fn made_now_by_the_caller(event: &KeyEvent, key: &KeyId, mode: Mode) -> bool {
    event.created_at == T0
        && event.tenant_id == tenant_id()
        && event.key_id == Some(*key)
        && event.mode == Some(mode)
        && event.actor == Actor::ApiKey(key_id(200))
        && event.request_id.as_deref() == Some(REQUEST_ID)
}

/// A stored key of [`tenant_id`], created a day before T0, with no expiry.
fn stored_key(id: KeyId, mode: Mode) -> ApiKey {
    ApiKey {
        id,
        tenant_id: tenant_id(),
        name: KeyName::parse("Stored").expect("name"),
        key_type: KeyType::Secret,
        mode,
        prefix: "sk_live_abc1".to_owned(),
        last_four: "x123".to_owned(),
        scopes: Scopes::full(),
        created_at: T0 - Duration::days(1),
        last_used_at: None,
        expires_at: None,
        revokes_at: None,
        replaced_by: None,
    }
}

fn create_request(mode: Option<Mode>) -> CreateKey {
    CreateKey {
        name: KeyName::parse("Backend").expect("name"),
        key_type: KeyType::Secret,
        mode,
        scopes: Scopes::full(),
        expires_in: None,
    }
}

/// What a request goes through: the checks without I/O, then the lookup.
fn authenticate_request(
    service: &ApiKeys,
    bearer: Option<&str>,
    tenant: Option<&str>,
) -> Result<Arc<ApiKey>, AuthError> {
    let credentials = Credentials::parse(bearer, tenant)?;
    service.authenticate(&credentials)
}

// ---- authentication ----

#[test]
fn a_malformed_or_mistyped_key_never_reaches_the_repository() {
    let service = service(untouchable());
    let key =
        PlainKey::generate(KeyType::Secret, Mode::Live, &SeqSecretSource::new(5)).into_secret();
    let tenant = tenant_id().to_string();
    let mut typo = key.clone().into_bytes();
    typo[30] = if typo[30] == b'q' { b'r' } else { b'q' };
    let typo = String::from_utf8(typo).expect("ascii");
    let bad_body = format!("{}_{}", &key[..20], &key[21..]);

    for bad in [
        typo.as_str(),
        bad_body.as_str(),
        &key[..45],
        "sk_live_abc123",
        "",
    ] {
        assert!(
            matches!(
                authenticate_request(&service, Some(bad), Some(&tenant)),
                Err(AuthError::InvalidKey)
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        authenticate_request(&service, None, Some(&tenant)),
        Err(AuthError::MissingKey)
    ));
    assert!(matches!(
        authenticate_request(&service, Some(&key), Some("tnt_nope")),
        Err(AuthError::InvalidTenantId)
    ));
}

#[test]
fn a_valid_key_is_looked_up_once_by_its_hmac_and_nothing_is_written() {
    let secret = PlainKey::generate(KeyType::Secret, Mode::Live, &SeqSecretSource::new(6));
    let expected_hash = hash_key().hash(&secret);
    let mut stored = stored_key(key_id(1), Mode::Live);
    stored.last_used_at = Some(T0 - Duration::seconds(30));
    let mut keys = untouchable();
    keys.checkpoint();
    let found = stored.clone();
    keys.expect_find_by_hash()
        .withf(move |hash| *hash == expected_hash)
        .times(1)
        .return_once(move |_| Ok(Some(found)));
    keys.expect_record_uses().never();
    let service = service(keys);

    let key = service
        .authenticate(&Credentials::new(secret, tenant_id()))
        .expect("authenticates");

    assert_eq!(key.id, key_id(1));
    assert_eq!(*key, stored);
    assert!(!key.last_used_due(T0));
}

#[test]
fn an_unknown_key_is_invalid_after_one_lookup() {
    let mut keys = MockApiKeyRepository::new();
    keys.expect_find_by_hash().times(1).returning(|_| Ok(None));
    let service = service(keys);
    let secret = PlainKey::generate(KeyType::Secret, Mode::Live, &SeqSecretSource::new(6));

    assert!(matches!(
        service.authenticate(&Credentials::new(secret, tenant_id())),
        Err(AuthError::InvalidKey)
    ));
}

#[test]
fn authenticate_records_a_due_use_once_with_its_exact_key_use() {
    // Given a key never used, in a repository whose `record_uses` writes
    // `last_used_at` as storage would, and expects exactly the uses at T0
    // and at T0 + 60 s, in that order,
    let secret = PlainKey::generate(KeyType::Secret, Mode::Live, &SeqSecretSource::new(6));
    let stored = Arc::new(Mutex::new(stored_key(key_id(1), Mode::Live)));
    let mut keys = untouchable();
    keys.checkpoint();
    let found = Arc::clone(&stored);
    keys.expect_find_by_hash()
        .times(4)
        .returning(move |_| Ok(Some(found.lock().expect("lock").clone())));
    let mut seq = Sequence::new();
    for at in [T0, T0 + Duration::seconds(60)] {
        let expected = KeyUse {
            tenant_id: tenant_id(),
            key_id: key_id(1),
            at,
            due_before: at - Duration::seconds(60),
        };
        let written = Arc::clone(&stored);
        keys.expect_record_uses()
            .withf(move |uses| uses == [expected])
            .times(1)
            .in_sequence(&mut seq)
            .returning(move |uses| {
                written.lock().expect("lock").last_used_at = Some(uses[0].at);
                Ok(1)
            });
    }
    let clock = TestClock::at(T0);
    let service = service_on(keys, &clock);
    let credentials = Credentials::new(secret, tenant_id());

    // when it authenticates at T0, 1 s, 59 s and 60 s later, then its use is
    // recorded at T0 and at 60 s only.
    for seconds in [0, 1, 59, 60] {
        clock.set(T0 + Duration::seconds(seconds));
        let key = service.authenticate(&credentials).expect("authenticates");
        assert_eq!(key.id, key_id(1));
    }
    assert_eq!(
        stored.lock().expect("lock").last_used_at,
        Some(T0 + Duration::seconds(60))
    );
}

#[test]
fn a_use_is_recorded_with_the_key_uses_rule() {
    let key = stored_key(key_id(1), Mode::Live);
    assert_eq!(
        KeyUse::of(&key, T0),
        KeyUse {
            tenant_id: tenant_id(),
            key_id: key_id(1),
            at: T0,
            due_before: T0 - domain::LAST_USED_RESOLUTION,
        }
    );
    assert_eq!(domain::LAST_USED_RESOLUTION, Duration::seconds(60));
}

#[test]
fn a_failed_or_lost_use_record_never_fails_authentication() {
    let answers: [fn() -> Result<usize, RepositoryError>; 3] = [
        || Err(RepositoryError::unavailable("record uses", "down")),
        || Err(RepositoryError::failure("record uses", "deadlock detected")),
        // Another node recorded a use first.
        || Ok(0),
    ];
    for answer in answers {
        let secret = PlainKey::generate(KeyType::Secret, Mode::Live, &SeqSecretSource::new(6));
        let mut keys = untouchable();
        keys.checkpoint();
        let stored = stored_key(key_id(1), Mode::Live);
        keys.expect_find_by_hash()
            .times(1)
            .return_once(move |_| Ok(Some(stored)));
        keys.expect_record_uses()
            .times(1)
            .returning(move |_| answer());
        let service = service(keys);

        let key = service
            .authenticate(&Credentials::new(secret, tenant_id()))
            .expect("authenticates despite the failed write");

        assert_eq!(key.id, key_id(1));
    }
}

#[test]
fn a_refused_key_is_never_recorded_as_used() {
    let cases: [fn(ApiKey) -> ApiKey; 3] = [
        |k| ApiKey {
            revokes_at: Some(T0),
            ..k
        },
        |k| ApiKey {
            expires_at: Some(T0),
            ..k
        },
        |k| ApiKey {
            tenant_id: TenantId::generate(T0, &SeqSecretSource::new(101)),
            ..k
        },
    ];
    for shape in cases {
        let secret = PlainKey::generate(KeyType::Secret, Mode::Live, &SeqSecretSource::new(6));
        let mut keys = untouchable();
        keys.checkpoint();
        let stored = shape(stored_key(key_id(1), Mode::Live));
        keys.expect_find_by_hash()
            .times(1)
            .return_once(move |_| Ok(Some(stored)));
        keys.expect_record_uses().never();
        let service = service(keys);

        assert!(service
            .authenticate(&Credentials::new(secret, tenant_id()))
            .is_err());
    }
}

// ---- access ----

#[test]
fn a_publishable_key_never_reaches_a_management_use_case() {
    // Given a publishable key, even one with `*`,
    let (service, heard) = listened(service(untouchable()));
    let caller = principal(KeyType::Publishable, Mode::Live);
    let id = key_id(1);
    let denied = AccessError::SecretKeyRequired;

    // then every management use case refuses it before any port is called.
    assert!(matches!(
        service.create(&caller, None, create_request(None)),
        Err(CreateError::Access(e)) if e == denied
    ));
    assert!(matches!(
        service.list(&caller, ListKeys::default()),
        Err(ListError::Access(e)) if e == denied
    ));
    assert!(matches!(
        service.get(&caller, &id),
        Err(GetError::Access(e)) if e == denied
    ));
    assert!(matches!(
        service.update(&caller, None, &id, None, None),
        Err(UpdateError::Access(e)) if e == denied
    ));
    assert!(matches!(
        service.revoke(&caller, None, &id),
        Err(RevokeError::Access(e)) if e == denied
    ));
    assert!(matches!(
        service.rotate(&caller, None, &id, GracePeriod::default()),
        Err(RotateError::Access(e)) if e == denied
    ));
    assert_eq!(heard.take(), []);
}

#[test]
fn a_test_key_asking_for_a_live_key_never_reaches_insert() {
    let service = service(untouchable());
    let caller = principal(KeyType::Secret, Mode::Test);

    assert!(matches!(
        service.create(&caller, None, create_request(Some(Mode::Live))),
        Err(CreateError::LiveModeRequired)
    ));
}

#[test]
fn a_test_key_never_changes_a_live_key() {
    // Given a repository holding a live key and refusing any write,
    let live = stored_key(key_id(1), Mode::Live);
    let mut keys = untouchable();
    keys.checkpoint();
    keys.expect_find()
        .times(4)
        .returning(move |_, _| Ok(Some(live.clone())));
    keys.expect_update().never();
    keys.expect_revoke().never();
    keys.expect_rotate().never();
    let (service, heard) = listened(service(keys));
    let caller = principal(KeyType::Secret, Mode::Test);
    let id = key_id(1);

    // then to a test key it does not exist.
    assert!(matches!(service.get(&caller, &id), Err(GetError::NotFound)));
    assert!(matches!(
        service.update(&caller, None, &id, None, None),
        Err(UpdateError::NotFound)
    ));
    assert!(matches!(
        service.revoke(&caller, None, &id),
        Err(RevokeError::NotFound)
    ));
    assert!(matches!(
        service.rotate(&caller, None, &id, GracePeriod::default()),
        Err(RotateError::NotFound)
    ));
    assert_eq!(heard.take(), []);
}

#[test]
fn a_test_key_lists_with_the_test_mode_forced() {
    let mut keys = MockApiKeyRepository::new();
    let tenant = tenant_id();
    keys.expect_list()
        .withf(move |t, q| {
            *t == tenant && q.mode == Some(Mode::Test) && q.limit == 100 && q.now == T0
        })
        .times(1)
        .returning(|_, _| {
            Ok(domain::KeyPage {
                keys: vec![],
                has_more: false,
            })
        });
    let service = service(keys);

    service
        .list(&principal(KeyType::Secret, Mode::Test), ListKeys::default())
        .expect("list");
}

// ---- create ----

#[test]
fn create_inserts_the_returned_key_with_its_hmac_the_limit_and_its_event_at_now() {
    let inserted: Arc<Mutex<Vec<(NewKey, KeyEvent)>>> = Arc::default();
    let sink = Arc::clone(&inserted);
    let tenant = tenant_id();
    let mut keys = MockApiKeyRepository::new();
    keys.expect_insert()
        .withf(move |new, max, event| {
            new.key.tenant_id == tenant
                && *max == 2
                && event.created_at == T0
                && new.key.created_at == T0
        })
        .times(1)
        .returning(move |new, _, event| {
            sink.lock()
                .expect("lock")
                .push((new.clone(), event.clone()));
            Ok(())
        });
    let (service, heard) = listened(service(keys).with_max_active_keys(2));

    let created = service
        .create(
            &principal(KeyType::Secret, Mode::Live),
            request_id(),
            create_request(None),
        )
        .expect("create");

    let inserted = inserted.lock().expect("lock");
    assert_eq!(inserted.len(), 1);
    let (new, event) = &inserted[0];
    assert_eq!(new.key, created.key);
    assert_eq!(new.hash, hash_key().hash(&created.secret));
    assert_eq!(created.key.mode, Mode::Live);
    assert!(made_now_by_the_caller(event, &created.key.id, Mode::Live));
    assert_eq!(event.data, EventData::KeyCreated { rotated_from: None });
    assert_eq!(heard.take(), [created.key.id]);
}

#[test]
fn insert_outcomes_map_to_create_errors() {
    let cases: [InsertCase; 5] = [
        (
            || InsertError::LimitReached,
            |e| matches!(e, CreateError::LimitReached),
        ),
        (
            || InsertError::ActorRefused(ActorRefusal::Revoked),
            |e| matches!(e, CreateError::CallerRevoked),
        ),
        (
            || InsertError::Duplicate,
            |e| matches!(e, CreateError::Repository(RepositoryError::Failure { .. })),
        ),
        (
            || InsertError::UnknownTenant,
            |e| matches!(e, CreateError::Repository(RepositoryError::Failure { .. })),
        ),
        (
            || InsertError::Repository(RepositoryError::unavailable("insert", "down")),
            |e| {
                matches!(
                    e,
                    CreateError::Repository(RepositoryError::Unavailable { .. })
                )
            },
        ),
    ];
    for (answer, expected) in cases {
        let mut keys = MockApiKeyRepository::new();
        keys.expect_insert()
            .times(1)
            .returning(move |_, _, _| Err(answer()));
        let (service, heard) = listened(service(keys));

        let outcome = service.create(
            &principal(KeyType::Secret, Mode::Live),
            None,
            create_request(None),
        );

        let error = outcome.expect_err("an error");
        assert!(expected(&error), "{error:?}");
        assert_eq!(heard.take(), [], "{error:?}");
    }
}

// ---- update and revoke ----

fn users_read() -> Scopes {
    Scopes::parse(["users:read"]).expect("scopes")
}

#[test]
fn repository_refusals_of_update_and_revoke_map_to_their_errors() {
    let id = key_id(1);
    let live = stored_key(id, Mode::Live);
    let mut keys = MockApiKeyRepository::new();
    keys.expect_find()
        .returning(move |_, _| Ok(Some(live.clone())));
    let mut seq = Sequence::new();
    keys.expect_update()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _, _| Err(UpdateRepoError::Revoked));
    keys.expect_update()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _, _| Err(UpdateRepoError::LastFullAccessKey));
    keys.expect_update()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _, _| Err(UpdateRepoError::NotFound));
    keys.expect_update()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _, _| Err(UpdateRepoError::ActorRefused(ActorRefusal::Revoked)));
    keys.expect_revoke()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _| Err(RevokeRepoError::LastFullAccessKey));
    keys.expect_revoke()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _| Err(RevokeRepoError::NotFound));
    keys.expect_revoke()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _| Err(RevokeRepoError::ActorRefused(ActorRefusal::Revoked)));
    let (service, heard) = listened(service(keys));
    let caller = principal(KeyType::Secret, Mode::Live);
    let update = || service.update(&caller, None, &id, None, Some(users_read()));

    assert!(matches!(update(), Err(UpdateError::Revoked)));
    assert!(matches!(update(), Err(UpdateError::LastFullAccessKey)));
    assert!(matches!(update(), Err(UpdateError::NotFound)));
    assert!(matches!(update(), Err(UpdateError::CallerRevoked)));
    assert!(matches!(
        service.revoke(&caller, None, &id),
        Err(RevokeError::LastFullAccessKey)
    ));
    assert!(matches!(
        service.revoke(&caller, None, &id),
        Err(RevokeError::NotFound)
    ));
    assert!(matches!(
        service.revoke(&caller, None, &id),
        Err(RevokeError::CallerRevoked)
    ));
    assert_eq!(heard.take(), []);
}

#[test]
fn update_hands_the_changes_with_their_old_values_and_its_event_to_the_repository() {
    let id = key_id(1);
    let live = stored_key(id, Mode::Live);
    let tenant = tenant_id();
    let expected = FieldChanges {
        name: Some(Change {
            old: KeyName::parse("Stored").expect("name"),
            new: KeyName::parse("Renamed").expect("name"),
        }),
        scopes: Some(Change {
            old: Scopes::full(),
            new: users_read(),
        }),
    };
    let updated = expected.apply(&live);
    let mut keys = MockApiKeyRepository::new();
    let found = live.clone();
    keys.expect_find()
        .times(1)
        .return_once(move |_, _| Ok(Some(found)));
    let (wanted, answer) = (expected.clone(), updated.clone());
    keys.expect_update()
        .withf(move |t, k, changes, event| {
            *t == tenant
                && *k == id
                && *changes == wanted
                && made_now_by_the_caller(event, &id, Mode::Live)
                && event.data
                    == EventData::KeyUpdated {
                        changes: wanted.clone(),
                    }
        })
        .times(1)
        .return_once(move |_, _, _, _| Ok(answer));
    let (service, heard) = listened(service(keys));

    let outcome = service
        .update(
            &principal(KeyType::Secret, Mode::Live),
            request_id(),
            &id,
            Some(KeyName::parse("Renamed").expect("name")),
            Some(users_read()),
        )
        .expect("update");

    assert_eq!(outcome, KeyView::at(updated, T0));
    assert_eq!(heard.take(), [id]);
}

#[test]
fn an_update_that_changes_nothing_writes_nothing() {
    // Given a stored key and a repository that refuses any write,
    let id = key_id(1);
    let live = stored_key(id, Mode::Live);
    let mut keys = untouchable();
    keys.checkpoint();
    let found = live.clone();
    keys.expect_find()
        .times(4)
        .returning(move |_, _| Ok(Some(found.clone())));
    keys.expect_update().never();
    let (service, heard) = listened(service(keys));
    let caller = principal(KeyType::Secret, Mode::Live);
    let same_name = || Some(KeyName::parse("Stored").expect("name"));

    // then asking for nothing, or for the values it has, is answered with the
    // key as it is.
    for (name, scopes) in [
        (None, None),
        (same_name(), None),
        (None, Some(Scopes::full())),
        (same_name(), Some(Scopes::full())),
    ] {
        assert_eq!(
            service
                .update(&caller, request_id(), &id, name, scopes)
                .expect("no-op update"),
            KeyView::at(live.clone(), T0)
        );
    }
    assert_eq!(heard.take(), []);
}

#[test]
fn update_retries_from_a_fresh_read_when_the_key_changed_concurrently() {
    // Given a key renamed by someone else between the first read and the write,
    let id = key_id(1);
    let before = stored_key(id, Mode::Live);
    let theirs = ApiKey {
        name: KeyName::parse("Theirs").expect("name"),
        ..before.clone()
    };
    let mine = ApiKey {
        name: KeyName::parse("Mine").expect("name"),
        ..before.clone()
    };
    let changed_from = |old: &'static str| {
        move |changes: &FieldChanges| {
            changes.scopes.is_none()
                && changes.name
                    == Some(Change {
                        old: KeyName::parse(old).expect("name"),
                        new: KeyName::parse("Mine").expect("name"),
                    })
        }
    };
    let (first, second) = (changed_from("Stored"), changed_from("Theirs"));
    let mut keys = MockApiKeyRepository::new();
    let mut seq = Sequence::new();
    keys.expect_find()
        .times(1)
        .in_sequence(&mut seq)
        .return_once(move |_, _| Ok(Some(before)));
    keys.expect_update()
        .withf(move |_, _, changes, event| {
            first(changes)
                && event.data
                    == EventData::KeyUpdated {
                        changes: changes.clone(),
                    }
        })
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _, _| Err(UpdateRepoError::Stale));
    keys.expect_find()
        .times(1)
        .in_sequence(&mut seq)
        .return_once(move |_, _| Ok(Some(theirs)));
    let answer = mine.clone();
    keys.expect_update()
        .withf(move |_, _, changes, event| {
            second(changes)
                && event.data
                    == EventData::KeyUpdated {
                        changes: changes.clone(),
                    }
        })
        .times(1)
        .in_sequence(&mut seq)
        .return_once(move |_, _, _, _| Ok(answer));
    let (service, heard) = listened(service(keys));

    // when the update is made, then it is redone from the fresh read, and
    // the one write that committed is reported once.
    let outcome = service
        .update(
            &principal(KeyType::Secret, Mode::Live),
            request_id(),
            &id,
            Some(KeyName::parse("Mine").expect("name")),
            None,
        )
        .expect("update");

    assert_eq!(outcome, KeyView::at(mine, T0));
    assert_eq!(heard.take(), [id]);
}

#[test]
fn a_retry_that_finds_the_change_already_made_writes_nothing() {
    let id = key_id(1);
    let before = stored_key(id, Mode::Live);
    let already = ApiKey {
        scopes: users_read(),
        ..before.clone()
    };
    let mut keys = MockApiKeyRepository::new();
    let mut seq = Sequence::new();
    keys.expect_find()
        .times(1)
        .in_sequence(&mut seq)
        .return_once(move |_, _| Ok(Some(before)));
    keys.expect_update()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _, _| Err(UpdateRepoError::Stale));
    let found = already.clone();
    keys.expect_find()
        .times(1)
        .in_sequence(&mut seq)
        .return_once(move |_, _| Ok(Some(found)));
    let (service, heard) = listened(service(keys));

    let outcome = service
        .update(
            &principal(KeyType::Secret, Mode::Live),
            None,
            &id,
            None,
            Some(users_read()),
        )
        .expect("update");

    assert_eq!(outcome, KeyView::at(already, T0));
    assert_eq!(heard.take(), []);
}

#[test]
fn update_gives_up_after_five_stale_attempts() {
    let id = key_id(1);
    let live = stored_key(id, Mode::Live);
    let mut keys = MockApiKeyRepository::new();
    keys.expect_find()
        .times(5)
        .returning(move |_, _| Ok(Some(live.clone())));
    keys.expect_update()
        .times(5)
        .returning(|_, _, _, _| Err(UpdateRepoError::Stale));
    let (service, heard) = listened(service(keys));

    let outcome = service.update(
        &principal(KeyType::Secret, Mode::Live),
        None,
        &id,
        None,
        Some(users_read()),
    );

    assert!(matches!(
        outcome,
        Err(UpdateError::Repository(RepositoryError::Failure { .. }))
    ));
    assert_eq!(heard.take(), []);
}

#[test]
fn revoke_passes_the_tenant_the_key_and_its_event_at_now() {
    let id = key_id(1);
    let live = stored_key(id, Mode::Live);
    let revoked = ApiKey {
        revokes_at: Some(T0),
        ..live.clone()
    };
    let tenant = tenant_id();
    let mut keys = MockApiKeyRepository::new();
    keys.expect_find()
        .times(1)
        .return_once(move |_, _| Ok(Some(live)));
    let answer = revoked.clone();
    keys.expect_revoke()
        .withf(move |t, k, event| {
            *t == tenant
                && *k == id
                && made_now_by_the_caller(event, &id, Mode::Live)
                && event.data == EventData::KeyRevoked
        })
        .times(1)
        .return_once(move |_, _, _| Ok(answer));
    let (service, heard) = listened(service(keys));

    let outcome = service
        .revoke(&principal(KeyType::Secret, Mode::Live), request_id(), &id)
        .expect("revoke");

    assert_eq!(outcome, KeyView::at(revoked, T0));
    assert_eq!(outcome.status, KeyStatus::Revoked);
    assert_eq!(heard.take(), [id]);
}

#[test]
fn revoking_a_key_read_as_revoked_writes_nothing() {
    let id = key_id(1);
    let revoked = ApiKey {
        revokes_at: Some(T0 - Duration::minutes(5)),
        ..stored_key(id, Mode::Live)
    };
    let mut keys = untouchable();
    keys.checkpoint();
    let found = revoked.clone();
    keys.expect_find()
        .times(1)
        .return_once(move |_, _| Ok(Some(found)));
    keys.expect_revoke().never();
    let (service, heard) = listened(service(keys));

    let outcome = service
        .revoke(&principal(KeyType::Secret, Mode::Live), None, &id)
        .expect("revoke");

    assert_eq!(outcome, KeyView::at(revoked, T0));
    assert_eq!(heard.take(), []);
}

// ---- rotation ----

#[test]
fn rotate_hands_the_successor_revocation_time_and_both_events_to_the_repository_in_one_call() {
    let id = key_id(1);
    let old = stored_key(id, Mode::Live);
    let tenant = tenant_id();
    let mut keys = MockApiKeyRepository::new();
    keys.expect_find()
        .times(1)
        .return_once(move |_, _| Ok(Some(old)));
    keys.expect_rotate()
        .withf(move |old_id, successor, revokes_at, rotated, created| {
            *old_id == id
                && successor.key.tenant_id == tenant
                && successor.key.id != id
                && successor.key.created_at == T0
                && *revokes_at == T0 + Duration::hours(24)
                && made_now_by_the_caller(rotated, &id, Mode::Live)
                && rotated.data
                    == EventData::KeyRotated {
                        replaced_by: successor.key.id,
                        grace_period: Duration::hours(24),
                        revokes_at: T0 + Duration::hours(24),
                    }
                && made_now_by_the_caller(created, &successor.key.id, Mode::Live)
                && created.data
                    == EventData::KeyCreated {
                        rotated_from: Some(id),
                    }
                && rotated.id != created.id
        })
        .times(1)
        .returning(|_, _, _, _, _| Ok(()));
    let (service, heard) = listened(service(keys));

    let rotated = service
        .rotate(
            &principal(KeyType::Secret, Mode::Live),
            request_id(),
            &id,
            GracePeriod::parse("24h").expect("grace"),
        )
        .expect("rotate");

    assert_eq!(rotated.old_key_revokes_at, T0 + Duration::hours(24));
    assert_eq!(rotated.old_key_id, id);
    assert_same_keys(heard.take(), vec![id, rotated.key.id]);
}

#[test]
fn rotate_maps_a_revoked_actor_to_caller_revoked() {
    let id = key_id(1);
    let old = stored_key(id, Mode::Live);
    let mut keys = MockApiKeyRepository::new();
    keys.expect_find()
        .times(1)
        .return_once(move |_, _| Ok(Some(old)));
    keys.expect_rotate()
        .times(1)
        .returning(|_, _, _, _, _| Err(RotateRepoError::ActorRefused(ActorRefusal::Revoked)));
    let (service, heard) = listened(service(keys));

    assert!(matches!(
        service.rotate(
            &principal(KeyType::Secret, Mode::Live),
            None,
            &id,
            GracePeriod::default()
        ),
        Err(RotateError::CallerRevoked)
    ));
    assert_eq!(heard.take(), []);
}

/// Rotation loses a race: the first read shows an active key, the repository
/// answers `NotActive`, and the second read shows `after`. Nothing was
/// written, so the change listener hears nothing.
fn lose_rotation_race(after: Option<ApiKey>) -> Result<(), RotateError> {
    let id = key_id(1);
    let before = stored_key(id, Mode::Live);
    let mut keys = MockApiKeyRepository::new();
    let mut seq = Sequence::new();
    keys.expect_find()
        .times(1)
        .in_sequence(&mut seq)
        .return_once(move |_, _| Ok(Some(before)));
    keys.expect_rotate()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _, _, _| Err(RotateRepoError::NotActive));
    keys.expect_find()
        .times(1)
        .in_sequence(&mut seq)
        .return_once(move |_, _| Ok(after));
    let (service, heard) = listened(service(keys));

    let outcome = service
        .rotate(
            &principal(KeyType::Secret, Mode::Live),
            None,
            &id,
            GracePeriod::default(),
        )
        .map(|_| ());
    assert_eq!(heard.take(), []);
    outcome
}

#[test]
fn losing_a_rotation_race_to_another_rotation_is_already_rotated() {
    let rotated = ApiKey {
        revokes_at: Some(T0 + Duration::hours(1)),
        replaced_by: Some(key_id(2)),
        ..stored_key(key_id(1), Mode::Live)
    };
    assert!(matches!(
        lose_rotation_race(Some(rotated)),
        Err(RotateError::AlreadyRotated)
    ));
}

#[test]
fn losing_a_rotation_race_to_a_revocation_is_revoked() {
    let revoked = ApiKey {
        revokes_at: Some(T0),
        ..stored_key(key_id(1), Mode::Live)
    };
    assert!(matches!(
        lose_rotation_race(Some(revoked)),
        Err(RotateError::Revoked)
    ));
}

#[test]
fn losing_a_rotation_race_to_expiry_is_expired() {
    let expired = ApiKey {
        expires_at: Some(T0),
        ..stored_key(key_id(1), Mode::Live)
    };
    assert!(matches!(
        lose_rotation_race(Some(expired)),
        Err(RotateError::Expired)
    ));
}

#[test]
fn losing_a_rotation_race_to_a_key_that_looks_active_is_still_a_conflict() {
    assert!(matches!(
        lose_rotation_race(Some(stored_key(key_id(1), Mode::Live))),
        Err(RotateError::AlreadyRotated)
    ));
    assert!(matches!(
        lose_rotation_race(None),
        Err(RotateError::NotFound)
    ));
}

#[test]
fn a_key_read_as_not_rotatable_never_reaches_repository_rotate() {
    let cases: [RotateCase; 3] = [
        (
            |k| ApiKey {
                revokes_at: Some(T0 + Duration::minutes(5)),
                ..k
            },
            |e| matches!(e, RotateError::AlreadyRotated),
        ),
        (
            |k| ApiKey {
                revokes_at: Some(T0 - Duration::minutes(5)),
                ..k
            },
            |e| matches!(e, RotateError::Revoked),
        ),
        (
            |k| ApiKey {
                expires_at: Some(T0 - Duration::minutes(5)),
                ..k
            },
            |e| matches!(e, RotateError::Expired),
        ),
    ];
    for (shape, expected) in cases {
        let key = shape(stored_key(key_id(1), Mode::Live));
        let mut keys = MockApiKeyRepository::new();
        keys.expect_find()
            .times(1)
            .return_once(move |_, _| Ok(Some(key)));
        keys.expect_rotate().never();
        let (service, heard) = listened(service(keys));

        let error = service
            .rotate(
                &principal(KeyType::Secret, Mode::Live),
                None,
                &key_id(1),
                GracePeriod::default(),
            )
            .expect_err("an error");

        assert!(expected(&error), "{error:?}");
        assert_eq!(heard.take(), [], "{error:?}");
    }
}

// ---- tenants ----

#[test]
fn create_tenant_stores_the_tenant_both_keys_and_their_events_in_one_call() {
    let stored: Arc<Mutex<(Vec<NewKey>, Vec<KeyEvent>)>> = Arc::default();
    let sink = Arc::clone(&stored);
    let mut tenants = MockTenantRepository::new();
    tenants
        .expect_create()
        .withf(|tenant, keys, events| {
            tenant.name == "Acme"
                && tenant.created_at == T0
                && keys.len() == 2
                && keys.iter().all(|k| k.key.tenant_id == tenant.id)
                && events.len() == 3
        })
        .times(1)
        .returning(move |_, keys, events| {
            let mut sink = sink.lock().expect("lock");
            sink.0.extend_from_slice(keys);
            sink.1.extend_from_slice(events);
            Ok(())
        });
    let (service, heard) = listened(service_with(untouchable(), tenants));

    let created = service
        .create_tenant(&Origin::cli(), "Acme")
        .expect("tenant");
    assert_same_keys(heard.take(), vec![created.live.key.id, created.test.key.id]);

    let stored = stored.lock().expect("lock");
    let (keys, events) = &*stored;
    assert_eq!(keys[0].key, created.live.key);
    assert_eq!(keys[1].key, created.test.key);
    assert_eq!(keys[0].hash, hash_key().hash(&created.live.secret));
    assert_eq!(keys[1].hash, hash_key().hash(&created.test.secret));
    // tenant.created, then api_key.created for each key, all by the command line.
    let tenant = created.tenant.id;
    assert_eq!(
        events[0],
        KeyEvent {
            id: events[0].id,
            created_at: T0,
            tenant_id: tenant,
            key_id: None,
            mode: None,
            actor: Actor::Cli,
            request_id: None,
            data: EventData::TenantCreated {
                name: "Acme".to_owned(),
            },
        }
    );
    for (event, key) in events[1..]
        .iter()
        .zip([&created.live.key, &created.test.key])
    {
        assert_eq!(
            *event,
            KeyEvent {
                id: event.id,
                created_at: T0,
                tenant_id: tenant,
                key_id: Some(key.id),
                mode: Some(key.mode),
                actor: Actor::Cli,
                request_id: None,
                data: EventData::KeyCreated { rotated_from: None },
            }
        );
    }
    let mut ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3);
}

#[test]
fn create_tenant_reports_a_collision_as_a_repository_failure() {
    let mut tenants = MockTenantRepository::new();
    tenants
        .expect_create()
        .times(1)
        .returning(|_, _, _| Err(CreateTenantRepoError::Duplicate));
    let (service, heard) = listened(service_with(untouchable(), tenants));

    assert!(matches!(
        service.create_tenant(&Origin::cli(), "Acme"),
        Err(domain::CreateTenantError::Repository(
            RepositoryError::Failure { .. }
        ))
    ));
    assert_eq!(heard.take(), []);
}

#[test]
fn the_clock_is_the_only_source_of_time() {
    // Given a clock that is 750 ms past a second,
    let clock = TestClock::at(T0 + Duration::milliseconds(750));
    let mut keys = MockApiKeyRepository::new();
    keys.expect_insert()
        .withf(|new, _, event| event.created_at == T0 && new.key.created_at == T0)
        .times(1)
        .returning(|_, _, _| Ok(()));
    let service = ApiKeys::new(
        keys,
        MockTenantRepository::new(),
        no_events(),
        MockIdempotencyRepository::new(),
        clock,
        SeqSecretSource::new(1),
        hash_key(),
    );

    // then what is stored is that time, to the second.
    let created = service
        .create(
            &principal(KeyType::Secret, Mode::Live),
            None,
            create_request(None),
        )
        .expect("create");
    assert_eq!(created.key.created_at, T0);
}

// ---- the audit log ----

fn caller_with(key_type: KeyType, mode: Mode, scopes: &[Scope]) -> Principal {
    Principal {
        scopes: Scopes::new(scopes.iter().copied()).expect("scopes"),
        ..principal(key_type, mode)
    }
}

#[test]
fn the_audit_log_needs_a_secret_key_with_audit_logs_read_or_wildcard() {
    let service = service_over_events(no_events());
    let read = |caller: Principal| service.list_events(&caller, ListEvents::default());

    // A publishable key never reads it, whatever its scopes.
    for scopes in [&[Scope::All][..], &[Scope::AuditLogsRead]] {
        assert!(matches!(
            read(caller_with(KeyType::Publishable, Mode::Live, scopes)),
            Err(ListEventsError::Access(AccessError::SecretKeyRequired))
        ));
    }
    // A secret key needs the scope.
    for scopes in [
        &[Scope::UsersRead][..],
        &[Scope::UsersRead, Scope::WebhooksRead],
    ] {
        assert!(matches!(
            read(caller_with(KeyType::Secret, Mode::Live, scopes)),
            Err(ListEventsError::Access(AccessError::InsufficientScope {
                required: Scope::AuditLogsRead
            }))
        ));
    }
}

#[test]
fn the_audit_log_passes_the_filters_and_returns_the_page_as_it_is() {
    let tenant = tenant_id();
    let key = key_id(1);
    let cursor = EventId::generate(T0, &SeqSecretSource::new(300));
    let page = EventPage {
        events: vec![],
        has_more: true,
    };
    let mut events = MockEventRepository::new();
    let answer = page.clone();
    events
        .expect_list_events()
        .withf(move |t, q| {
            *t == tenant
                && q.key_id == Some(key)
                && q.event_type == Some(EventType::KeyRevoked)
                && q.mode.is_none()
                && q.starting_after == Some(cursor)
                && q.limit == 10
        })
        .times(1)
        .return_once(move |_, _| Ok(answer));
    let service = service_over_events(events);

    let listed = service
        .list_events(
            &caller_with(KeyType::Secret, Mode::Live, &[Scope::AuditLogsRead]),
            ListEvents {
                key_id: Some(key),
                event_type: Some(EventType::KeyRevoked),
                starting_after: Some(cursor),
                limit: PageLimit::new(10).expect("limit"),
            },
        )
        .expect("list events");

    assert_eq!(listed, page);
}

#[test]
fn a_test_key_reads_only_events_of_test_keys() {
    let mut events = MockEventRepository::new();
    events
        .expect_list_events()
        .withf(|_, q| q.mode == Some(Mode::Test) && q.limit == 100)
        .times(2)
        .returning(|_, _| {
            Ok(EventPage {
                events: vec![],
                has_more: false,
            })
        });
    let service = service_over_events(events);

    for scopes in [&[Scope::All][..], &[Scope::AuditLogsRead]] {
        service
            .list_events(
                &caller_with(KeyType::Secret, Mode::Test, scopes),
                ListEvents::default(),
            )
            .expect("list events");
    }
}

#[test]
fn an_unreachable_event_store_fails_the_audit_log_as_unavailable() {
    let mut events = MockEventRepository::new();
    events
        .expect_list_events()
        .times(1)
        .returning(|_, _| Err(RepositoryError::unavailable("list events", "down")));
    let service = service_over_events(events);

    assert!(matches!(
        service.list_events(
            &principal(KeyType::Secret, Mode::Live),
            ListEvents::default()
        ),
        Err(ListEventsError::Repository(
            RepositoryError::Unavailable { .. }
        ))
    ));
}
