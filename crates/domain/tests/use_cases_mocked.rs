//! The use cases against mockall mocks of the repository ports, for what a
//! fake cannot show: that a call is not made, how many calls are made, and
//! answers that only a race between two requests gives (a stale update, a
//! lost rotation). Behaviour is tested on the in-memory store (`use_cases.rs`
//! and the other files); each store refusal or failure in `store_faults.rs`.

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
    AccessError, ApiKey, ApiKeys, AuthError, Authenticator, Change, CreateError, CreateKey,
    Credentials, EventData, FieldChanges, GetError, GracePeriod, KeyId, KeyName, KeyType, KeyUse,
    KeyView, ListError, ListKeys, Mode, PlainKey, Principal, RepositoryError, RevokeError,
    RotateError, RotateRepoError, Scopes, TenantId, UpdateError, UpdateRepoError,
};
use mockall::Sequence;
use time::Duration;

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
        restrictions: Default::default(),
        metadata: Default::default(),
    }
}

fn create_request(mode: Option<Mode>) -> CreateKey {
    CreateKey {
        name: KeyName::parse("Backend").expect("name"),
        key_type: KeyType::Secret,
        mode,
        scopes: Scopes::full(),
        expires_in: None,
        restrictions: Default::default(),
        metadata: Default::default(),
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

/// A write that another node won between this node's read and its write
/// (the fake cannot interleave them; failures are in `store_faults.rs`).
#[test]
fn a_use_record_lost_to_another_node_never_fails_authentication() {
    let secret = PlainKey::generate(KeyType::Secret, Mode::Live, &SeqSecretSource::new(6));
    let mut keys = untouchable();
    keys.checkpoint();
    let stored = stored_key(key_id(1), Mode::Live);
    keys.expect_find_by_hash()
        .times(1)
        .return_once(move |_| Ok(Some(stored)));
    // Another node recorded a use first: nothing written here.
    keys.expect_record_uses().times(1).returning(|_| Ok(0));
    let service = service(keys);

    let key = service
        .authenticate(&Credentials::new(secret, tenant_id()))
        .expect("authenticates though nothing was written");

    assert_eq!(key.id, key_id(1));
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

// ---- update and revoke ----

fn users_read() -> Scopes {
    Scopes::parse(["users:read"]).expect("scopes")
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
