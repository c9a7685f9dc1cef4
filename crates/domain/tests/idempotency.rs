//! The idempotent use cases over the in-memory store: replay, reuse with
//! another request, expiry after 24 hours, and errors that are not kept.

#![allow(clippy::expect_used, reason = "tests")]

mod common;

use common::{request, Harness, T0};
use domain::{
    ApiKeyRepository, CreateError, CreatedKey, GracePeriod, IdempotencyKey, KeyType, Mode,
    Replayable, RotateError, RotatedKey, Scopes, IDEMPOTENCY_WINDOW,
};
use time::Duration;

fn key(raw: &str) -> IdempotencyKey {
    IdempotencyKey::parse(raw).expect("idempotency key")
}

/// What an adapter would render (the domain keeps it as bytes): here the
/// new key's id and full value.
fn render_created(created: CreatedKey) -> Vec<u8> {
    format!("201 {} {}", created.key.id, created.secret.expose_secret()).into_bytes()
}

fn render_rotated(rotated: RotatedKey) -> Vec<u8> {
    format!("200 {} {}", rotated.key.id, rotated.secret.expose_secret()).into_bytes()
}

/// An adapter's response that no stored bytes turn back into.
#[derive(Debug)]
struct Unreadable;

impl Replayable for Unreadable {
    fn to_bytes(&self) -> Vec<u8> {
        b"unreadable".to_vec()
    }

    fn from_bytes(_: &[u8]) -> Option<Self> {
        None
    }
}

fn secret_request() -> domain::CreateKey {
    request(KeyType::Secret, None, Scopes::full(), None)
}

fn keys_of(h: &Harness, tenant: &domain::TenantId) -> usize {
    h.store
        .list(
            tenant,
            &domain::ListQuery {
                key_type: None,
                mode: None,
                include_revoked: true,
                starting_after: None,
                limit: 100,
                now: h.service.now(),
            },
        )
        .expect("list")
        .keys
        .len()
}

#[test]
fn a_repeated_create_gets_the_first_response_and_makes_no_second_key() {
    let h = Harness::new();
    let tenant = h.tenant();
    let caller = h.principal(&tenant.live);
    let before = (keys_of(&h, &caller.tenant_id), h.events().len());

    let first = h
        .service
        .create_idempotent(&caller, None, secret_request(), &key("k1"), render_created)
        .expect("first");
    h.clock.advance(Duration::hours(23));
    let again = h
        .service
        .create_idempotent(&caller, None, secret_request(), &key("k1"), render_created)
        .expect("repeat");

    assert!(!first.replayed);
    assert!(again.replayed);
    assert_eq!(again.response, first.response);
    assert_eq!(
        (keys_of(&h, &caller.tenant_id), h.events().len()),
        (before.0 + 1, before.1 + 1)
    );
}

#[test]
fn the_same_key_with_another_request_is_refused_and_changes_nothing() {
    let h = Harness::new();
    let tenant = h.tenant();
    let caller = h.principal(&tenant.live);
    h.service
        .create_idempotent(&caller, None, secret_request(), &key("k1"), render_created)
        .expect("first");
    let before = (keys_of(&h, &caller.tenant_id), h.events().len());

    let other = request(KeyType::Publishable, None, Scopes::full(), None);
    let refused = h
        .service
        .create_idempotent(&caller, None, other, &key("k1"), render_created);
    assert!(
        matches!(refused, Err(CreateError::IdempotencyKeyReused)),
        "{refused:?}"
    );
    // A rotation under the key of a creation is another request too.
    let rotation = h.service.rotate_idempotent(
        &caller,
        None,
        &tenant.test.key.id,
        GracePeriod::default(),
        &key("k1"),
        render_rotated,
    );
    assert!(
        matches!(rotation, Err(RotateError::IdempotencyKeyReused)),
        "{rotation:?}"
    );
    assert_eq!((keys_of(&h, &caller.tenant_id), h.events().len()), before);
}

#[test]
fn one_request_spelled_two_ways_is_the_same_request() {
    let h = Harness::new();
    let tenant = h.tenant();
    let caller = h.principal(&tenant.live);
    let in_days = request(
        KeyType::Secret,
        None,
        Scopes::full(),
        Some(domain::ExpiresIn::parse("1d").expect("duration")),
    );
    let in_hours = request(
        KeyType::Secret,
        None,
        Scopes::full(),
        Some(domain::ExpiresIn::parse("24h").expect("duration")),
    );
    let first = h
        .service
        .create_idempotent(&caller, None, in_days, &key("k1"), render_created)
        .expect("first");
    let again = h
        .service
        .create_idempotent(&caller, None, in_hours, &key("k1"), render_created)
        .expect("repeat");
    assert!(again.replayed);
    assert_eq!(again.response, first.response);
}

#[test]
fn after_24_hours_the_same_key_runs_again() {
    let h = Harness::new();
    let tenant = h.tenant();
    let caller = h.principal(&tenant.live);
    let first = h
        .service
        .create_idempotent(&caller, None, secret_request(), &key("k1"), render_created)
        .expect("first");

    h.clock.advance(IDEMPOTENCY_WINDOW);
    let later = h
        .service
        .create_idempotent(&caller, None, secret_request(), &key("k1"), render_created)
        .expect("later");

    assert!(!later.replayed);
    assert_ne!(later.response, first.response);
    assert_eq!(
        h.service
            .delete_expired_idempotency_records()
            .expect("delete"),
        0
    );
    h.clock.advance(IDEMPOTENCY_WINDOW);
    assert_eq!(
        h.service
            .delete_expired_idempotency_records()
            .expect("delete"),
        1
    );
}

#[test]
fn keys_are_the_callers_own() {
    let h = Harness::new();
    let tenant = h.tenant();
    let caller = h.principal(&tenant.live);
    let other = h.create_kind(&caller, KeyType::Secret, Mode::Live);
    let other = h.principal(&other);

    let mine = h
        .service
        .create_idempotent(&caller, None, secret_request(), &key("k1"), render_created)
        .expect("mine");
    let theirs = h
        .service
        .create_idempotent(&other, None, secret_request(), &key("k1"), render_created)
        .expect("theirs");
    assert!(!theirs.replayed);
    assert_ne!(theirs.response, mine.response);
}

#[test]
fn a_stored_response_the_adapter_cannot_read_is_a_storage_failure_and_changes_nothing() {
    let h = Harness::new();
    let tenant = h.tenant();
    let caller = h.principal(&tenant.live);
    h.service
        .create_idempotent(&caller, None, secret_request(), &key("k1"), |_| Unreadable)
        .expect("first");
    let before = (keys_of(&h, &caller.tenant_id), h.events().len());

    let again = h
        .service
        .create_idempotent(&caller, None, secret_request(), &key("k1"), |_| Unreadable);

    assert!(
        matches!(&again, Err(CreateError::Repository(e)) if !e.is_unavailable()),
        "{again:?}"
    );
    assert_eq!((keys_of(&h, &caller.tenant_id), h.events().len()), before);
}

#[test]
fn an_error_is_not_kept_and_the_retry_runs_again() {
    // The tenant's live keys (the caller and one more) fill the limit.
    let h = Harness::with_max_active_keys(2);
    let tenant = h.tenant();
    let caller = h.principal(&tenant.live);
    let other = h
        .service
        .create_key_for(&domain::Origin::cli(), &tenant.tenant.id, secret_request())
        .expect("a second live key");

    let full =
        h.service
            .create_idempotent(&caller, None, secret_request(), &key("k1"), render_created);
    assert!(matches!(full, Err(CreateError::LimitReached)), "{full:?}");

    h.store
        .revoke(
            &other.key.tenant_id,
            &other.key.id,
            &domain::KeyEvent::for_key(
                domain::EventId::generate(T0, &domain::OsSecretSource),
                h.service.now(),
                &other.key,
                &domain::Origin::cli(),
                domain::EventData::KeyRevoked,
            ),
        )
        .expect("free a slot");
    let retry = h
        .service
        .create_idempotent(&caller, None, secret_request(), &key("k1"), render_created)
        .expect("the retry runs");
    assert!(!retry.replayed);
}

#[test]
fn a_repeated_rotation_gets_the_first_successor_not_key_already_rotated() {
    let h = Harness::new();
    let tenant = h.tenant();
    let caller = h.principal(&tenant.live);
    let old = h.create_kind(&caller, KeyType::Secret, Mode::Live);
    let grace = GracePeriod::parse("1h").expect("grace");

    let first = h
        .service
        .rotate_idempotent(
            &caller,
            None,
            &old.key.id,
            grace,
            &key("r1"),
            render_rotated,
        )
        .expect("first");
    let events = h.events().len();
    let again = h
        .service
        .rotate_idempotent(
            &caller,
            None,
            &old.key.id,
            grace,
            &key("r1"),
            render_rotated,
        )
        .expect("repeat");

    assert!(again.replayed);
    assert_eq!(again.response, first.response);
    assert_eq!(h.events().len(), events);
    // Without the key, the repeat is what it always was.
    let plain = h.service.rotate(&caller, None, &old.key.id, grace);
    assert!(
        matches!(plain, Err(RotateError::AlreadyRotated)),
        "{plain:?}"
    );
    // Another grace period is another request.
    let other = h.service.rotate_idempotent(
        &caller,
        None,
        &old.key.id,
        GracePeriod::parse("2h").expect("grace"),
        &key("r1"),
        render_rotated,
    );
    assert!(
        matches!(other, Err(RotateError::IdempotencyKeyReused)),
        "{other:?}"
    );
}

#[test]
fn a_caller_that_may_not_manage_keys_is_refused_as_without_a_key() {
    let h = Harness::new();
    let tenant = h.tenant();
    let caller = h.principal(&tenant.live);
    let limited = h.create(
        &caller,
        request(
            KeyType::Secret,
            None,
            Scopes::parse(["users:read"]).expect("scopes"),
            None,
        ),
    );
    let limited = h.principal(&limited);
    let refused =
        h.service
            .create_idempotent(&limited, None, secret_request(), &key("k1"), render_created);
    assert!(
        matches!(refused, Err(CreateError::Access(_))),
        "{refused:?}"
    );
}
