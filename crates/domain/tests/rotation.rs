//! Rotation over the in-memory store with a `TestClock`: the grace period,
//! the successor's lifetime, and the keys that cannot be rotated.

#![expect(
    clippy::expect_used,
    reason = "test helpers: a failed set-up step is a failed test"
)]

mod common;

use common::{request, Harness, T0};
use domain::{
    ApiKey, AuthError, GracePeriod, KeyId, KeyType, Mode, RevokeError, RotateError, Scope, Scopes,
};
use time::Duration;

fn grace(text: &str) -> GracePeriod {
    GracePeriod::parse(text).expect("grace period")
}

#[test]
fn the_successor_copies_the_old_keys_attributes() {
    // Given a narrow publishable test key created at T0,
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let scopes = Scopes::new([Scope::UsersRead, Scope::SessionsRead]).expect("scopes");
    let old = h.create(
        &admin,
        request(KeyType::Publishable, Some(Mode::Test), scopes, None),
    );
    h.clock.advance(Duration::hours(2));
    let now = T0 + Duration::hours(2);

    // when it is rotated with a day's grace,
    let rotated = h
        .service
        .rotate(&admin, None, &old.key.id, grace("24h"))
        .expect("rotate");

    // then the successor is a new key with the same tenant, name, type, mode and scopes,
    let expected = ApiKey {
        id: rotated.key.id,
        prefix: rotated.secret.prefix().to_owned(),
        last_four: rotated.secret.last_four().to_owned(),
        created_at: now,
        ..old.key.clone()
    };
    assert_eq!(rotated.key, expected);
    assert_ne!(rotated.key.id, old.key.id);
    assert!(rotated.key.id > old.key.id);
    assert_ne!(rotated.secret, old.secret);
    assert!(rotated.secret.expose_secret().starts_with("pk_test_"));
    assert_eq!(rotated.old_key_id, old.key.id);
    assert_eq!(rotated.old_key_revokes_at, now + Duration::hours(24));
    // and the old key points at it and has its revocation scheduled.
    let stored_old = h.stored(&old.key);
    assert_eq!(stored_old.replaced_by, Some(rotated.key.id));
    assert_eq!(stored_old.revokes_at, Some(now + Duration::hours(24)));
    assert_eq!(h.stored(&rotated.key), expected);
}

#[test]
fn the_old_key_works_until_one_second_before_revokes_at_and_is_revoked_at_it() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let old = h.create_kind(&admin, KeyType::Secret, Mode::Live);

    let rotated = h
        .service
        .rotate(&admin, None, &old.key.id, grace("1h"))
        .expect("rotate");
    assert_eq!(rotated.old_key_revokes_at, T0 + Duration::hours(1));

    h.clock
        .set(rotated.old_key_revokes_at - Duration::seconds(1));
    assert!(h.authenticate(&old.secret, &acme.tenant.id).is_ok());
    assert!(h.authenticate(&rotated.secret, &acme.tenant.id).is_ok());

    h.clock.set(rotated.old_key_revokes_at);
    assert!(matches!(
        h.authenticate(&old.secret, &acme.tenant.id),
        Err(AuthError::Revoked)
    ));
    assert!(h.authenticate(&rotated.secret, &acme.tenant.id).is_ok());
}

#[test]
fn the_default_grace_period_is_one_hour() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let old = h.create_kind(&admin, KeyType::Secret, Mode::Live);

    let rotated = h
        .service
        .rotate(&admin, None, &old.key.id, GracePeriod::default())
        .expect("rotate");

    assert_eq!(rotated.old_key_revokes_at, T0 + Duration::hours(1));
}

#[test]
fn a_zero_grace_period_revokes_the_old_key_at_once() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let old = h.create_kind(&admin, KeyType::Secret, Mode::Live);

    let rotated = h
        .service
        .rotate(&admin, None, &old.key.id, grace("0s"))
        .expect("rotate");

    assert_eq!(rotated.old_key_revokes_at, T0);
    assert!(matches!(
        h.authenticate(&old.secret, &acme.tenant.id),
        Err(AuthError::Revoked)
    ));
    assert!(h.authenticate(&rotated.secret, &acme.tenant.id).is_ok());
    assert!(h.stored(&old.key).is_revoked(T0));
}

#[test]
fn the_successor_gets_the_old_keys_lifetime_counted_from_now() {
    // Given a key created at T0 to live 90 days,
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let old = h.create_expiring(&admin, "90d");
    assert_eq!(old.key.expires_at, Some(T0 + Duration::days(90)));

    // when it is rotated ten days later,
    h.clock.advance(Duration::days(10));
    let rotated = h
        .service
        .rotate(&admin, None, &old.key.id, grace("1h"))
        .expect("rotate");

    // then the successor lives 90 days from then,
    assert_eq!(
        rotated.key.expires_at,
        Some(T0 + Duration::days(10) + Duration::days(90))
    );
    // and the old key keeps its own expiry.
    assert_eq!(h.stored(&old.key).expires_at, Some(T0 + Duration::days(90)));
}

#[test]
fn a_key_without_expiry_has_a_successor_without_expiry() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);

    let rotated = h
        .service
        .rotate(&admin, None, &acme.live.key.id, grace("1h"))
        .expect("rotate");

    assert_eq!(rotated.key.expires_at, None);
}

#[test]
fn rotate_twice_is_rejected() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let old = h.create_kind(&admin, KeyType::Secret, Mode::Live);
    let first = h
        .service
        .rotate(&admin, None, &old.key.id, grace("1h"))
        .expect("rotate");
    let hashes_after_first = h.store.stored_hashes().len();

    h.clock.advance(Duration::minutes(30));
    assert!(matches!(
        h.service.rotate(&admin, None, &old.key.id, grace("1h")),
        Err(RotateError::AlreadyRotated)
    ));
    // Nothing was written, and the old key's schedule is unchanged.
    assert_eq!(h.store.stored_hashes().len(), hashes_after_first);
    assert_eq!(
        h.stored(&old.key).revokes_at,
        Some(first.old_key_revokes_at)
    );
    // Once the grace period is over it is simply revoked.
    h.clock.advance(Duration::minutes(30));
    assert!(matches!(
        h.service.rotate(&admin, None, &old.key.id, grace("1h")),
        Err(RotateError::Revoked)
    ));
}

#[test]
fn the_successor_can_itself_be_rotated() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let first = h
        .service
        .rotate(&admin, None, &acme.test.key.id, grace("1h"))
        .expect("rotate");

    let second = h
        .service
        .rotate(&admin, None, &first.key.id, grace("1h"))
        .expect("rotate the successor");

    assert_eq!(second.old_key_id, first.key.id);
    assert_eq!(h.stored(&first.key).replaced_by, Some(second.key.id));
}

#[test]
fn a_revoked_key_cannot_be_rotated() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let key = h.create_kind(&admin, KeyType::Secret, Mode::Live);
    h.service.revoke(&admin, None, &key.key.id).expect("revoke");

    assert!(matches!(
        h.service.rotate(&admin, None, &key.key.id, grace("1h")),
        Err(RotateError::Revoked)
    ));
}

#[test]
fn an_expired_key_cannot_be_rotated() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let key = h.create_expiring(&admin, "1d");
    h.clock.advance(Duration::days(1) - Duration::seconds(1));
    let hashes = h.store.stored_hashes().len();

    h.clock.advance(Duration::seconds(1));
    assert!(matches!(
        h.service.rotate(&admin, None, &key.key.id, grace("1h")),
        Err(RotateError::Expired)
    ));
    assert_eq!(h.store.stored_hashes().len(), hashes);
}

#[test]
fn an_unknown_or_hidden_key_is_not_found() {
    let h = Harness::new();
    let acme = h.tenant();
    let tester = h.principal(&acme.test);
    let unknown = KeyId::parse("key_01HABCDEF6665550000000000A").expect("id");

    assert!(matches!(
        h.service.rotate(&tester, None, &unknown, grace("1h")),
        Err(RotateError::NotFound)
    ));
    assert!(matches!(
        h.service
            .rotate(&tester, None, &acme.live.key.id, grace("1h")),
        Err(RotateError::NotFound)
    ));
    assert_eq!(h.stored(&acme.live.key).revokes_at, None);
    // A test key may rotate a test key.
    let rotated = h
        .service
        .rotate(&tester, None, &acme.test.key.id, grace("1h"))
        .expect("rotate");
    assert_eq!(rotated.key.mode, Mode::Test);
}

#[test]
fn rotating_the_last_full_access_key_is_allowed_and_its_successor_takes_over() {
    // Given a tenant whose live key is its only guard key,
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);

    // when that key is rotated,
    let rotated = h
        .service
        .rotate(&admin, None, &acme.live.key.id, grace("1h"))
        .expect("rotation never trips the guard");

    // then the old key may be revoked early, but the successor may not.
    let successor = h.principal(&domain::CreatedKey {
        key: rotated.key.clone(),
        secret: rotated.secret.clone(),
    });
    h.service
        .revoke(&successor, None, &acme.live.key.id)
        .expect("revoke the old key in its grace period");
    assert!(matches!(
        h.authenticate(&acme.live.secret, &acme.tenant.id),
        Err(AuthError::Revoked)
    ));
    assert!(matches!(
        h.service.revoke(&successor, None, &rotated.key.id),
        Err(RevokeError::LastFullAccessKey)
    ));
}

#[test]
fn rotation_is_not_stopped_by_the_active_key_limit() {
    let h = Harness::with_max_active_keys(2);
    let acme = h.tenant();
    let admin = h.principal(&acme.live);

    let rotated = h
        .service
        .rotate(&admin, None, &acme.test.key.id, grace("1h"))
        .expect("rotate at the limit");

    assert!(h.authenticate(&rotated.secret, &acme.tenant.id).is_ok());
}

#[test]
fn an_old_key_past_its_expiry_stops_even_within_the_grace_period() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let old = h.create_expiring(&admin, "30m");

    h.clock.advance(Duration::minutes(10));
    let rotated = h
        .service
        .rotate(&admin, None, &old.key.id, grace("7d"))
        .expect("rotate");
    h.clock.advance(Duration::minutes(20));

    assert!(matches!(
        h.authenticate(&old.secret, &acme.tenant.id),
        Err(AuthError::Expired)
    ));
    assert_eq!(rotated.key.expires_at, Some(T0 + Duration::minutes(40)));
    assert!(h.authenticate(&rotated.secret, &acme.tenant.id).is_ok());
}

#[test]
fn a_rotation_chain_cannot_grow_past_the_key_limit() {
    // Given a tenant at its limit of two live keys (the tenant's admin key
    // and a second one),
    let h = Harness::with_max_active_keys(2);
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let second = h.create(&admin, request(KeyType::Secret, None, Scopes::full(), None));

    // a rotation with a grace period is refused: the old key would keep
    // counting while its successor adds one,
    let events_before = h.store.stored_events().len();
    assert!(matches!(
        h.service.rotate(&admin, None, &second.key.id, grace("1h")),
        Err(RotateError::LimitReached)
    ));
    assert_eq!(h.stored(&second.key).replaced_by, None);
    assert_eq!(h.store.stored_events().len(), events_before);

    // and one that revokes the old key at once passes: it changes no count.
    let rotated = h
        .service
        .rotate(&admin, None, &second.key.id, grace("0s"))
        .expect("a 0s rotation at the limit");
    assert_eq!(h.stored(&second.key).replaced_by, Some(rotated.key.id));
    assert!(h.authenticate(&rotated.secret, &acme.tenant.id).is_ok());
}

#[test]
fn the_successor_copies_the_limits_its_credits_counted_from_the_rotation() {
    // Given a key limited to 100 uses a minute with 50 credits refilled
    // daily,
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let limits = domain::UsageLimits {
        rate_limit: Some(domain::RateLimit::parse(100, "1m").expect("rate")),
        credits: Some(
            domain::Credits::new(
                50,
                Some(domain::Refill::new(1000, domain::RefillInterval::Daily).expect("refill")),
            )
            .expect("credits"),
        ),
        credits_since: None,
    };
    let old = h.create(
        &admin,
        domain::CreateKey {
            limits,
            ..request(KeyType::Secret, None, Scopes::full(), None)
        },
    );
    h.clock.advance(Duration::hours(2));

    // when it is rotated,
    let rotated = h
        .service
        .rotate(&admin, None, &old.key.id, grace("1h"))
        .expect("rotate");

    // then the successor has the same limits, its credits' period starting
    // now, and so has it in the store.
    let expected = domain::UsageLimits {
        credits_since: Some(T0 + Duration::hours(2)),
        ..limits
    };
    assert_eq!(rotated.key.limits, expected);
    assert_eq!(h.stored(&rotated.key).limits, expected);
    assert_eq!(h.stored(&old.key).limits.rate_limit, limits.rate_limit);
}
