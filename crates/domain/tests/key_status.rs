//! A key's status over time, and which keys count for the full-access guard
//! and the active key limit.

#![expect(
    clippy::expect_used,
    reason = "test helpers: a failed set-up step is a failed test"
)]

use domain::testing::SeqSecretSource;
use domain::{ApiKey, KeyId, KeyName, KeyStatus, KeyType, Mode, Scope, Scopes, TenantId};
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = time::macros::datetime!(2024-01-10 09:00:00 UTC);

fn key() -> ApiKey {
    let secrets = SeqSecretSource::new(1);
    ApiKey {
        id: KeyId::generate(T0, &secrets),
        tenant_id: TenantId::generate(T0, &secrets),
        name: KeyName::parse("Key").expect("name"),
        key_type: KeyType::Secret,
        mode: Mode::Live,
        prefix: "sk_live_abc1".to_owned(),
        last_four: "x123".to_owned(),
        scopes: Scopes::full(),
        created_at: T0,
        last_used_at: None,
        expires_at: None,
        revokes_at: None,
        replaced_by: None,
        restrictions: Default::default(),
        metadata: Default::default(),
    }
}

#[test]
fn a_key_without_dates_is_active_forever() {
    let key = key();
    assert_eq!(key.status(T0), KeyStatus::Active);
    assert_eq!(key.status(T0 + Duration::days(36_500)), KeyStatus::Active);
    assert!(!key.is_revoked(T0));
}

#[test]
fn a_scheduled_revocation_takes_effect_at_revokes_at() {
    let key = ApiKey {
        revokes_at: Some(T0 + Duration::hours(1)),
        ..key()
    };
    let at = T0 + Duration::hours(1);
    assert_eq!(
        key.status(at - Duration::seconds(1)),
        KeyStatus::RevocationScheduled
    );
    assert!(!key.is_revoked(at - Duration::seconds(1)));
    assert_eq!(key.status(at), KeyStatus::Revoked);
    assert!(key.is_revoked(at));
}

#[test]
fn a_key_expires_at_expires_at() {
    let key = ApiKey {
        expires_at: Some(T0 + Duration::days(1)),
        ..key()
    };
    let at = T0 + Duration::days(1);
    assert_eq!(key.status(at - Duration::seconds(1)), KeyStatus::Active);
    assert_eq!(key.status(at), KeyStatus::Expired);
    assert!(!key.is_revoked(at));
}

#[test]
fn revocation_wins_over_expiry() {
    let key = ApiKey {
        expires_at: Some(T0 + Duration::minutes(1)),
        revokes_at: Some(T0 + Duration::minutes(2)),
        ..key()
    };
    assert_eq!(key.status(T0 + Duration::minutes(1)), KeyStatus::Expired);
    assert_eq!(key.status(T0 + Duration::minutes(2)), KeyStatus::Revoked);
}

#[test]
fn only_an_active_live_full_access_secret_key_counts_for_the_guard() {
    let now = T0 + Duration::minutes(1);
    assert!(key().counts_for_full_access_guard(now));
    for other in [
        ApiKey {
            key_type: KeyType::Publishable,
            ..key()
        },
        ApiKey {
            mode: Mode::Test,
            ..key()
        },
        ApiKey {
            scopes: Scopes::new([Scope::UsersRead]).expect("scopes"),
            ..key()
        },
        ApiKey {
            revokes_at: Some(now + Duration::hours(1)),
            ..key()
        },
        ApiKey {
            revokes_at: Some(now),
            ..key()
        },
        ApiKey {
            expires_at: Some(now),
            ..key()
        },
    ] {
        assert!(!other.counts_for_full_access_guard(now), "{other:?}");
    }
}

#[test]
fn active_and_scheduled_keys_count_for_the_limit_but_not_revoked_or_expired_ones() {
    let now = T0 + Duration::minutes(1);
    let scheduled = ApiKey {
        revokes_at: Some(now + Duration::seconds(1)),
        ..key()
    };
    let revoked = ApiKey {
        revokes_at: Some(now),
        ..key()
    };
    let expired = ApiKey {
        expires_at: Some(now),
        ..key()
    };
    assert!(key().counts_for_key_limit(now));
    assert!(scheduled.counts_for_key_limit(now));
    assert!(!revoked.counts_for_key_limit(now));
    assert!(!expired.counts_for_key_limit(now));
}
