//! Leaked-key reports over the in-memory store (docs/api.md,
//! "POST /v1/leaked-keys"): which strings revoke a key, the event each
//! revocation writes (or that none is written), repetitions, the change
//! listener, and storage failures (with mocks).

#![expect(
    clippy::expect_used,
    reason = "test helpers: a failed set-up step is a failed test"
)]

mod common;

use common::{hash_key, request, Harness, Recorder, T0};
use domain::mocks::{
    MockApiKeyRepository, MockEventRepository, MockIdempotencyRepository, MockTenantRepository,
};
use domain::testing::{SeqSecretSource, TestClock};
use domain::{
    Actor, ActorRefusal, ApiKey, ApiKeys, AuthError, CreatedKey, EventData, GracePeriod, KeyEvent,
    KeyName, KeyType, LeakReport, Mode, PlainKey, RepositoryError, RevokeRepoError, Scope, Scopes,
    TenantId,
};
use time::{Duration, OffsetDateTime};

const REQUEST_ID: &str = "req_leak_report";

fn report(h: &Harness, strings: &[&str]) -> Result<LeakReport, RepositoryError> {
    let strings: Vec<String> = strings.iter().map(|s| (*s).to_owned()).collect();
    h.service
        .revoke_leaked(Some(REQUEST_ID.to_owned()), &strings)
}

fn secret(key: &CreatedKey) -> &str {
    key.secret.expose_secret()
}

/// `key` with its last character changed: the checksum no longer matches.
fn bad_checksum(key: &str) -> String {
    let mut bytes = key.as_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ascii")
}

/// The `api_key.revoked` event a leak report writes for `key` at `now`.
fn leak_event(event: &KeyEvent, key: &ApiKey, now: OffsetDateTime) -> KeyEvent {
    KeyEvent {
        id: event.id,
        created_at: now,
        tenant_id: key.tenant_id,
        key_id: Some(key.id),
        mode: Some(key.mode),
        actor: Actor::LeakReport,
        request_id: Some(REQUEST_ID.to_owned()),
        data: EventData::KeyRevoked,
    }
}

/// The events stored after the first `before` ones.
fn new_events(h: &Harness, before: usize) -> Vec<KeyEvent> {
    h.events().split_off(before)
}

#[test]
fn every_working_secret_key_is_revoked_and_everything_else_ignored() {
    // Given a tenant with a live secret key, its test secret key, a rotated
    // key in its grace period, a publishable key, a revoked key and an
    // expired key, and another tenant's live secret key,
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let scoped = Scopes::new([Scope::UsersRead]).expect("scopes");
    let live = h.create(
        &admin,
        request(KeyType::Secret, Some(Mode::Live), scoped, None),
    );
    let grace = h.create_kind(&admin, KeyType::Secret, Mode::Live);
    h.service
        .rotate(
            &admin,
            None,
            &grace.key.id,
            GracePeriod::parse("1h").expect("grace"),
        )
        .expect("rotate");
    let publishable = h.create_kind(&admin, KeyType::Publishable, Mode::Live);
    let revoked = h.create_kind(&admin, KeyType::Secret, Mode::Live);
    h.service
        .revoke(&admin, None, &revoked.key.id)
        .expect("revoke");
    let expiring = h.create_expiring(&admin, "1m");
    let globex = h
        .service
        .create_tenant(&domain::Origin::cli(), "Globex")
        .expect("tenant");
    h.clock.advance(Duration::minutes(5));
    let now = T0 + Duration::minutes(5);
    let untouched = [&publishable, &revoked, &expiring]
        .map(|k| h.stored(&k.key))
        .to_vec();
    let (grace_before, before) = (h.stored(&grace.key), h.events().len());
    let unknown = PlainKey::generate(KeyType::Secret, Mode::Live, &SeqSecretSource::new(99));

    // when all of them are reported among junk and a mistyped key,
    let outcome = report(
        &h,
        &[
            "hello",
            secret(&live),
            secret(&acme.test),
            "",
            secret(&grace),
            secret(&publishable),
            &bad_checksum(secret(&globex.live)),
            secret(&revoked),
            unknown.expose_secret(),
            secret(&expiring),
            "sk_live_not-a-key",
            secret(&globex.live),
        ],
    )
    .expect("report");

    // then exactly the working secret keys are revoked now (in no
    // particular order: they are looked up together), each with its event
    // by the leak report,
    assert_eq!(
        outcome,
        LeakReport {
            revoked: 4,
            ignored: 8
        }
    );
    let mut expected_revoked = [&live.key, &acme.test.key, &grace_before, &globex.live.key];
    expected_revoked.sort_by_key(|k| k.id.to_string());
    let mut events = new_events(&h, before);
    events.sort_by_key(|e| e.key_id.map(|id| id.to_string()));
    assert_eq!(events.len(), expected_revoked.len(), "{events:#?}");
    for (event, key) in events.iter().zip(expected_revoked) {
        assert_eq!(*event, leak_event(event, key, now));
        let stored = h.stored(key);
        assert_eq!(stored.revokes_at, Some(now));
        assert_eq!(
            stored,
            ApiKey {
                revokes_at: Some(now),
                ..(*key).clone()
            }
        );
        assert!(stored.is_revoked(now));
    }
    // the rotated key keeps its successor,
    assert!(h.stored(&grace.key).replaced_by.is_some());
    // and the publishable, revoked and expired keys are as they were.
    for key in &untouched {
        assert_eq!(h.stored(key), *key);
    }
    assert!(matches!(
        h.authenticate(&live.secret, &acme.tenant.id),
        Err(AuthError::Revoked)
    ));
    assert!(h.authenticate(&publishable.secret, &acme.tenant.id).is_ok());
}

#[test]
fn even_the_tenants_last_full_access_key_is_revoked() {
    // Given a tenant whose live key is its only full-access live secret key
    // (a DELETE of it would be refused),
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    assert!(h.service.revoke(&admin, None, &acme.live.key.id).is_err());
    let before = h.events().len();

    // when it is reported,
    let outcome = report(&h, &[secret(&acme.live)]).expect("report");

    // then it is revoked anyway: a leak outweighs the lockout.
    assert_eq!(
        outcome,
        LeakReport {
            revoked: 1,
            ignored: 0
        }
    );
    let events = new_events(&h, before);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0], leak_event(&events[0], &acme.live.key, T0));
    assert_eq!(h.stored(&acme.live.key).revokes_at, Some(T0));
    assert!(matches!(
        h.authenticate(&acme.live.secret, &acme.tenant.id),
        Err(AuthError::Revoked)
    ));
}

#[test]
fn a_key_reported_twice_is_revoked_once() {
    let h = Harness::new();
    let acme = h.tenant();
    let key = secret(&acme.test);
    let before = h.events().len();

    let outcome = report(&h, &[key, "junk", key, key]).expect("report");

    assert_eq!(
        outcome,
        LeakReport {
            revoked: 1,
            ignored: 3
        }
    );
    let events = new_events(&h, before);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0], leak_event(&events[0], &acme.test.key, T0));

    // Reporting it again later changes nothing and writes nothing.
    h.clock.advance(Duration::seconds(30));
    let again = report(&h, &[key]).expect("report");
    assert_eq!(
        again,
        LeakReport {
            revoked: 0,
            ignored: 1
        }
    );
    assert_eq!(h.events().len(), before + 1);
    assert_eq!(h.stored(&acme.test.key).revokes_at, Some(T0));
}

#[test]
fn a_report_of_nothing_real_writes_nothing() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let publishable = h.create_kind(&admin, KeyType::Publishable, Mode::Test);
    let (live_before, before) = (h.stored(&acme.live.key), h.events().len());

    let outcome = report(
        &h,
        &[
            secret(&publishable),
            &bad_checksum(secret(&acme.live)),
            &secret(&acme.live).to_lowercase(),
            &format!(" {}", secret(&acme.live)),
        ],
    )
    .expect("report");

    assert_eq!(
        outcome,
        LeakReport {
            revoked: 0,
            ignored: 4
        }
    );
    assert_eq!(h.events().len(), before);
    assert_eq!(h.stored(&acme.live.key), live_before);
    assert_eq!(h.stored(&publishable.key), publishable.key);
}

#[test]
fn the_change_listener_hears_the_revoked_keys() {
    let recorder = Recorder::new();
    let h = Harness::new().with_listener(recorder.clone());
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let publishable = h.create_kind(&admin, KeyType::Publishable, Mode::Live);
    let other = h.create_kind(&admin, KeyType::Secret, Mode::Test);
    recorder.take();

    report(
        &h,
        &[
            secret(&acme.live),
            secret(&publishable),
            "junk",
            secret(&other),
            secret(&acme.live),
        ],
    )
    .expect("report");

    let mut heard = recorder.take();
    heard.sort_by_key(ToString::to_string);
    let mut expected = vec![acme.live.key.id, other.key.id];
    expected.sort_by_key(ToString::to_string);
    assert_eq!(heard, expected);

    // A report that revokes nothing tells the listener nothing.
    report(&h, &[secret(&publishable), secret(&other)]).expect("report");
    assert_eq!(recorder.take(), vec![]);
}

#[test]
fn without_a_request_id_the_event_has_none() {
    let h = Harness::new();
    let acme = h.tenant();
    let before = h.events().len();

    h.service
        .revoke_leaked(None, &[secret(&acme.test).to_owned()])
        .expect("report");

    let events = new_events(&h, before);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor, Actor::LeakReport);
    assert_eq!(events[0].request_id, None);
}

#[test]
fn unreachable_storage_is_an_error_and_changes_nothing() {
    let recorder = Recorder::new();
    let h = Harness::new().with_listener(recorder.clone());
    let acme = h.tenant();
    recorder.take();
    let before = h.events().len();

    h.store.set_unavailable(true);
    let outcome = report(&h, &[secret(&acme.live), secret(&acme.test)]);
    h.store.set_unavailable(false);

    assert!(outcome.is_err_and(|e| e.is_unavailable()));
    assert_eq!(h.events().len(), before);
    assert_eq!(h.stored(&acme.live.key), acme.live.key);
    assert_eq!(recorder.take(), vec![]);
}

// ---- with mocks: answers of the repository that cannot happen ----

fn tenant_id() -> TenantId {
    TenantId::generate(T0 - Duration::days(30), &SeqSecretSource::new(100))
}

/// A stored live secret key whose value is `secret`.
fn stored_key(secret: &PlainKey) -> ApiKey {
    ApiKey {
        id: domain::KeyId::generate(T0 - Duration::days(1), &SeqSecretSource::new(5)),
        tenant_id: tenant_id(),
        name: KeyName::parse("Stored").expect("name"),
        key_type: KeyType::Secret,
        mode: Mode::Live,
        prefix: secret.prefix().to_owned(),
        last_four: secret.last_four().to_owned(),
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

/// A service whose key repository finds `key` by its hash and answers its
/// revocation with `answer`.
fn mocked(key: ApiKey, answer: fn() -> RevokeRepoError) -> (ApiKeys, std::sync::Arc<Recorder>) {
    let mut keys = MockApiKeyRepository::new();
    keys.expect_find_by_hash().never();
    keys.expect_find_by_hashes()
        .times(1)
        .returning(move |_| Ok(vec![key.clone()]));
    keys.expect_revoke().never();
    keys.expect_revoke_unguarded()
        .times(1)
        .withf(|_, _, event| {
            event.actor == Actor::LeakReport
                && event.request_id.as_deref() == Some(REQUEST_ID)
                && event.data == EventData::KeyRevoked
        })
        .returning(move |_, _, _| Err(answer()));
    let recorder = Recorder::new();
    let service = ApiKeys::new(
        keys,
        MockTenantRepository::new(),
        MockEventRepository::new(),
        MockIdempotencyRepository::new(),
        TestClock::at(T0),
        SeqSecretSource::new(17),
        hash_key(),
    )
    .with_change_listener(recorder.clone());
    (service, recorder)
}

#[test]
fn impossible_answers_of_the_repository_are_failures() {
    let secret = PlainKey::generate(KeyType::Secret, Mode::Live, &SeqSecretSource::new(3));
    let cases: [fn() -> RevokeRepoError; 3] = [
        || RevokeRepoError::NotFound,
        || RevokeRepoError::LastFullAccessKey,
        || RevokeRepoError::ActorRefused(ActorRefusal::Revoked),
    ];
    for answer in cases {
        let (service, recorder) = mocked(stored_key(&secret), answer);
        let outcome = service.revoke_leaked(
            Some(REQUEST_ID.to_owned()),
            &[secret.expose_secret().to_owned()],
        );
        assert!(
            matches!(outcome, Err(RepositoryError::Failure { .. })),
            "{outcome:?}"
        );
        assert_eq!(recorder.take(), vec![]);
    }
}

#[test]
fn a_failure_on_one_key_does_not_spare_the_others() {
    // Given two keys, the first of which fails to revoke (not as
    // unreachable storage),
    let first = PlainKey::generate(KeyType::Secret, Mode::Live, &SeqSecretSource::new(3));
    let second = PlainKey::generate(KeyType::Secret, Mode::Live, &SeqSecretSource::new(4));
    let hashes = [hash_key().hash(&first), hash_key().hash(&second)];
    let first_key = stored_key(&first);
    let second_key = ApiKey {
        id: domain::KeyId::generate(T0 - Duration::days(1), &SeqSecretSource::new(6)),
        ..stored_key(&second)
    };
    let (first_id, second_id) = (first_key.id, second_key.id);
    let revoked_second = second_key.clone();
    let mut keys = MockApiKeyRepository::new();
    // One lookup for both.
    keys.expect_find_by_hash().never();
    keys.expect_find_by_hashes()
        .times(1)
        .withf(move |asked| asked == hashes)
        .returning(move |_| Ok(vec![first_key.clone(), second_key.clone()]));
    keys.expect_revoke_unguarded()
        .times(2)
        .returning(move |_, id, event| {
            if *id == first_id {
                Err(RevokeRepoError::Repository(RepositoryError::failure(
                    "test",
                    "broken row",
                )))
            } else {
                Ok(ApiKey {
                    revokes_at: Some(event.created_at),
                    ..revoked_second.clone()
                })
            }
        });
    let recorder = Recorder::new();
    let service = ApiKeys::new(
        keys,
        MockTenantRepository::new(),
        MockEventRepository::new(),
        MockIdempotencyRepository::new(),
        TestClock::at(T0),
        SeqSecretSource::new(17),
        hash_key(),
    )
    .with_change_listener(recorder.clone());

    // when both are reported,
    let outcome = service.revoke_leaked(
        None,
        &[
            first.expose_secret().to_owned(),
            second.expose_secret().to_owned(),
        ],
    );

    // then the second is revoked all the same (and the cache hears of it),
    // and the first failure is the answer.
    assert!(
        matches!(outcome, Err(RepositoryError::Failure { .. })),
        "{outcome:?}"
    );
    assert_eq!(recorder.take(), vec![second_id]);
}
