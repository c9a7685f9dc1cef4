//! The use cases against mockall mocks of the repository ports: what reaches
//! the ports, with which arguments, and how their answers are mapped.

#![expect(
    clippy::expect_used,
    reason = "test helpers: a failed set-up step is a failed test"
)]

mod common;

use std::sync::{Arc, Mutex};

use common::{hash_key, T0};
use domain::testing::{MockApiKeyRepository, MockTenantRepository, SeqSecretSource, TestClock};
use domain::{
    AccessError, ApiKey, ApiKeys, AuthError, Authentication, Authenticator, CreateError, CreateKey,
    CreateTenantRepoError, Credentials, GetError, GracePeriod, InsertError, KeyChanges, KeyId,
    KeyName, KeyType, ListError, ListKeys, Mode, NewKey, PlainKey, Principal, RepositoryError,
    RevokeError, RevokeRepoError, RotateError, RotateRepoError, Scopes, TenantId, UpdateError,
    UpdateRepoError,
};
use mockall::Sequence;
use time::{Duration, OffsetDateTime};

/// A repository answer and a check of the use case's error.
type InsertCase = (fn() -> InsertError, fn(&CreateError) -> bool);
/// A stored key's state and a check of the rotation's error.
type RotateCase = (fn(ApiKey) -> ApiKey, fn(&RotateError) -> bool);

type MockService = ApiKeys<MockApiKeyRepository, MockTenantRepository, TestClock, SeqSecretSource>;

fn service(keys: MockApiKeyRepository) -> MockService {
    service_with(keys, MockTenantRepository::new())
}

fn service_with(keys: MockApiKeyRepository, tenants: MockTenantRepository) -> MockService {
    ApiKeys::new(
        keys,
        tenants,
        TestClock::at(T0),
        SeqSecretSource::new(17),
        hash_key(),
    )
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
    keys.expect_touch_last_used().never();
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
    service: &MockService,
    bearer: Option<&str>,
    tenant: Option<&str>,
) -> Result<Authentication, AuthError> {
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
    keys.expect_find_by_hash()
        .withf(move |hash| *hash == expected_hash)
        .times(1)
        .return_once(move |_| Ok(Some(stored)));
    let service = service(keys);

    let auth = service
        .authenticate(&Credentials::new(secret, tenant_id()))
        .expect("authenticates");

    assert_eq!(auth.principal.key_id, key_id(1));
    assert!(!auth.last_used_due);
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
fn record_use_touches_the_principals_key_at_now() {
    let caller = principal(KeyType::Secret, Mode::Live);
    let (tenant, id) = (caller.tenant_id, caller.key_id);
    let mut keys = MockApiKeyRepository::new();
    keys.expect_touch_last_used()
        .withf(move |t, k, now| *t == tenant && *k == id && *now == T0)
        .times(1)
        .returning(|_, _, _| Ok(false));
    let service = service(keys);

    assert_eq!(service.record_use(&caller).ok(), Some(()));
}

// ---- access ----

#[test]
fn a_publishable_key_never_reaches_a_management_use_case() {
    // Given a publishable key, even one with `*`,
    let service = service(untouchable());
    let caller = principal(KeyType::Publishable, Mode::Live);
    let id = key_id(1);
    let denied = AccessError::SecretKeyRequired;

    // then every management use case refuses it before any port is called.
    assert!(matches!(
        service.create(&caller, create_request(None)),
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
        service.update(&caller, &id, KeyChanges::default()),
        Err(UpdateError::Access(e)) if e == denied
    ));
    assert!(matches!(
        service.revoke(&caller, &id),
        Err(RevokeError::Access(e)) if e == denied
    ));
    assert!(matches!(
        service.rotate(&caller, &id, GracePeriod::default()),
        Err(RotateError::Access(e)) if e == denied
    ));
}

#[test]
fn a_test_key_asking_for_a_live_key_never_reaches_insert() {
    let service = service(untouchable());
    let caller = principal(KeyType::Secret, Mode::Test);

    assert!(matches!(
        service.create(&caller, create_request(Some(Mode::Live))),
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
    let service = service(keys);
    let caller = principal(KeyType::Secret, Mode::Test);
    let id = key_id(1);

    // then to a test key it does not exist.
    assert!(matches!(service.get(&caller, &id), Err(GetError::NotFound)));
    assert!(matches!(
        service.update(&caller, &id, KeyChanges::default()),
        Err(UpdateError::NotFound)
    ));
    assert!(matches!(
        service.revoke(&caller, &id),
        Err(RevokeError::NotFound)
    ));
    assert!(matches!(
        service.rotate(&caller, &id, GracePeriod::default()),
        Err(RotateError::NotFound)
    ));
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
fn create_inserts_the_returned_key_with_its_hmac_the_limit_and_now() {
    let inserted: Arc<Mutex<Vec<NewKey>>> = Arc::default();
    let sink = Arc::clone(&inserted);
    let tenant = tenant_id();
    let mut keys = MockApiKeyRepository::new();
    keys.expect_insert()
        .withf(move |new, max, now| {
            new.key.tenant_id == tenant && *max == 2 && *now == T0 && new.key.created_at == T0
        })
        .times(1)
        .returning(move |new, _, _| {
            sink.lock().expect("lock").push(new.clone());
            Ok(())
        });
    let service = service(keys).with_max_active_keys(2);

    let created = service
        .create(
            &principal(KeyType::Secret, Mode::Live),
            create_request(None),
        )
        .expect("create");

    let inserted = inserted.lock().expect("lock");
    assert_eq!(inserted.len(), 1);
    assert_eq!(inserted[0].key, created.key);
    assert_eq!(inserted[0].hash, hash_key().hash(&created.secret));
    assert_eq!(created.key.mode, Mode::Live);
}

#[test]
fn insert_outcomes_map_to_create_errors() {
    let cases: [InsertCase; 4] = [
        (
            || InsertError::LimitReached,
            |e| matches!(e, CreateError::LimitReached),
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
        let service = service(keys);

        let outcome = service.create(
            &principal(KeyType::Secret, Mode::Live),
            create_request(None),
        );

        let error = outcome.expect_err("an error");
        assert!(expected(&error), "{error:?}");
    }
}

// ---- update and revoke ----

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
    keys.expect_revoke()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _| Err(RevokeRepoError::LastFullAccessKey));
    keys.expect_revoke()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _| Err(RevokeRepoError::NotFound));
    let service = service(keys);
    let caller = principal(KeyType::Secret, Mode::Live);
    let change = || KeyChanges {
        name: None,
        scopes: Some(Scopes::parse(["users:read"]).expect("scopes")),
    };

    assert!(matches!(
        service.update(&caller, &id, change()),
        Err(UpdateError::Revoked)
    ));
    assert!(matches!(
        service.update(&caller, &id, change()),
        Err(UpdateError::LastFullAccessKey)
    ));
    assert!(matches!(
        service.update(&caller, &id, change()),
        Err(UpdateError::NotFound)
    ));
    assert!(matches!(
        service.revoke(&caller, &id),
        Err(RevokeError::LastFullAccessKey)
    ));
    assert!(matches!(
        service.revoke(&caller, &id),
        Err(RevokeError::NotFound)
    ));
}

#[test]
fn revoke_passes_the_tenant_key_and_now() {
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
        .withf(move |t, k, now| *t == tenant && *k == id && *now == T0)
        .times(1)
        .return_once(move |_, _, _| Ok(answer));
    let service = service(keys);

    let outcome = service
        .revoke(&principal(KeyType::Secret, Mode::Live), &id)
        .expect("revoke");

    assert_eq!(outcome, revoked);
}

// ---- rotation ----

#[test]
fn rotate_hands_the_successor_and_revocation_time_to_the_repository_in_one_call() {
    let id = key_id(1);
    let old = stored_key(id, Mode::Live);
    let tenant = tenant_id();
    let mut keys = MockApiKeyRepository::new();
    keys.expect_find()
        .times(1)
        .return_once(move |_, _| Ok(Some(old)));
    keys.expect_rotate()
        .withf(move |t, old_id, successor, revokes_at, now| {
            *t == tenant
                && *old_id == id
                && successor.key.tenant_id == tenant
                && successor.key.id != id
                && successor.key.created_at == T0
                && *revokes_at == T0 + Duration::hours(24)
                && *now == T0
        })
        .times(1)
        .returning(|_, _, _, _, _| Ok(()));
    let service = service(keys);

    let rotated = service
        .rotate(
            &principal(KeyType::Secret, Mode::Live),
            &id,
            GracePeriod::parse("24h").expect("grace"),
        )
        .expect("rotate");

    assert_eq!(rotated.old_key_revokes_at, T0 + Duration::hours(24));
    assert_eq!(rotated.old_key_id, id);
}

/// Rotation loses a race: the first read shows an active key, the repository
/// answers `NotActive`, and the second read shows `after`.
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
    let service = service(keys);

    service
        .rotate(
            &principal(KeyType::Secret, Mode::Live),
            &id,
            GracePeriod::default(),
        )
        .map(|_| ())
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
        let service = service(keys);

        let error = service
            .rotate(
                &principal(KeyType::Secret, Mode::Live),
                &key_id(1),
                GracePeriod::default(),
            )
            .expect_err("an error");

        assert!(expected(&error), "{error:?}");
    }
}

// ---- tenants ----

#[test]
fn create_tenant_stores_the_tenant_and_both_keys_in_one_call() {
    let stored: Arc<Mutex<Vec<NewKey>>> = Arc::default();
    let sink = Arc::clone(&stored);
    let mut tenants = MockTenantRepository::new();
    tenants
        .expect_create()
        .withf(|tenant, keys| {
            tenant.name == "Acme"
                && tenant.created_at == T0
                && keys.len() == 2
                && keys.iter().all(|k| k.key.tenant_id == tenant.id)
        })
        .times(1)
        .returning(move |_, keys| {
            sink.lock().expect("lock").extend_from_slice(keys);
            Ok(())
        });
    let service = service_with(untouchable(), tenants);

    let created = service.create_tenant("Acme").expect("tenant");

    let stored = stored.lock().expect("lock");
    assert_eq!(stored[0].key, created.live.key);
    assert_eq!(stored[1].key, created.test.key);
    assert_eq!(stored[0].hash, hash_key().hash(&created.live.secret));
    assert_eq!(stored[1].hash, hash_key().hash(&created.test.secret));
}

#[test]
fn create_tenant_reports_a_collision_as_a_repository_failure() {
    let mut tenants = MockTenantRepository::new();
    tenants
        .expect_create()
        .times(1)
        .returning(|_, _| Err(CreateTenantRepoError::Duplicate));
    let service = service_with(untouchable(), tenants);

    assert!(matches!(
        service.create_tenant("Acme"),
        Err(domain::CreateTenantError::Repository(
            RepositoryError::Failure { .. }
        ))
    ));
}

#[test]
fn the_clock_is_the_only_source_of_time() {
    // Given a clock that is 750 ms past a second,
    let mut clock = domain::testing::MockClock::new();
    clock
        .expect_now()
        .returning(|| T0 + Duration::milliseconds(750));
    let mut keys = MockApiKeyRepository::new();
    keys.expect_insert()
        .withf(|new, _, now: &OffsetDateTime| *now == T0 && new.key.created_at == T0)
        .times(1)
        .returning(|_, _, _| Ok(()));
    let service = ApiKeys::new(
        keys,
        MockTenantRepository::new(),
        clock,
        SeqSecretSource::new(1),
        hash_key(),
    );

    // then what is stored is that time, to the second.
    let created = service
        .create(
            &principal(KeyType::Secret, Mode::Live),
            create_request(None),
        )
        .expect("create");
    assert_eq!(created.key.created_at, T0);
}
