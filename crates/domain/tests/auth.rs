//! Authentication (docs/api.md, "Conventions", authentication): the order of the checks, the principal, and
//! the once-a-minute `last_used_at` write.

#![expect(
    clippy::expect_used,
    reason = "test helpers: a failed set-up step is a failed test"
)]

mod common;

use common::{request, Harness, T0};
use domain::testing::SeqSecretSource;
use domain::{
    AuthError, Authenticator, Credentials, KeyType, Mode, Origin, PlainKey, Principal,
    RepositoryError, Scope, Scopes, TenantId,
};
use time::Duration;

fn valid_key_text() -> String {
    PlainKey::generate(KeyType::Secret, Mode::Live, &SeqSecretSource::new(99)).into_secret()
}

fn valid_tenant_text() -> String {
    TenantId::generate(T0, &SeqSecretSource::new(98)).to_string()
}

fn bad_checksum(key: &str) -> String {
    let mut bytes = key.as_bytes().to_vec();
    bytes[20] = if bytes[20] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ascii")
}

// ---- steps 1 and 2: no I/O ----

#[test]
fn a_missing_key_is_reported_before_anything_else() {
    assert!(matches!(
        Credentials::parse(None, None),
        Err(AuthError::MissingKey)
    ));
    assert!(matches!(
        Credentials::parse(None, Some("not a tenant")),
        Err(AuthError::MissingKey)
    ));
}

#[test]
fn an_invalid_key_is_reported_before_the_tenant_header() {
    let key = valid_key_text();
    for bad in [
        String::new(),
        "sk_live_abc123".to_owned(),
        bad_checksum(&key),
        key.to_uppercase(),
    ] {
        assert!(
            matches!(
                Credentials::parse(Some(&bad), None),
                Err(AuthError::InvalidKey)
            ),
            "{bad:?}"
        );
        assert!(matches!(
            Credentials::parse(Some(&bad), Some("junk")),
            Err(AuthError::InvalidKey)
        ));
    }
}

#[test]
fn a_missing_or_malformed_tenant_header_is_invalid_tenant_id() {
    let key = valid_key_text();
    let tenant = valid_tenant_text();
    for bad in [
        None,
        Some(""),
        Some("tnt_01HABCDEF654321"),
        Some(&tenant[..tenant.len() - 1]),
        Some(&tenant.to_lowercase()),
        Some(&tenant.replacen("tnt_", "key_", 1)),
    ] {
        assert!(
            matches!(
                Credentials::parse(Some(&key), bad),
                Err(AuthError::InvalidTenantId)
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn valid_credentials_keep_the_key_and_tenant() {
    let key = valid_key_text();
    let tenant = valid_tenant_text();
    let credentials = Credentials::parse(Some(&key), Some(&tenant)).expect("valid");
    assert_eq!(credentials.key().expose_secret(), key);
    assert_eq!(credentials.tenant().to_string(), tenant);
}

// ---- steps 3 and 4: through the store ----

#[test]
fn an_unknown_well_formed_key_is_invalid() {
    let h = Harness::new();
    let acme = h.tenant();
    let stranger = PlainKey::generate(KeyType::Secret, Mode::Live, &SeqSecretSource::new(1234));

    assert!(matches!(
        h.authenticate(&stranger, &acme.tenant.id),
        Err(AuthError::InvalidKey)
    ));
}

#[test]
fn an_active_key_authenticates_as_its_principal() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let narrow = h.create(
        &admin,
        request(
            KeyType::Publishable,
            Some(Mode::Test),
            Scopes::new([Scope::UsersRead]).expect("scopes"),
            None,
        ),
    );

    let auth = h
        .authenticate(&narrow.secret, &acme.tenant.id)
        .expect("authenticates");

    assert_eq!(
        auth.principal,
        Principal {
            tenant_id: acme.tenant.id,
            key_id: narrow.key.id,
            key_type: KeyType::Publishable,
            mode: Mode::Test,
            scopes: Scopes::new([Scope::UsersRead]).expect("scopes"),
        }
    );
    assert!(auth.last_used_due);
}

#[test]
fn a_revoked_key_is_revoked() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let key = h.create_kind(&admin, KeyType::Secret, Mode::Live);
    h.service.revoke(&admin, None, &key.key.id).expect("revoke");

    assert!(matches!(
        h.authenticate(&key.secret, &acme.tenant.id),
        Err(AuthError::Revoked)
    ));
}

#[test]
fn a_key_works_until_one_second_before_expiry_and_is_expired_at_it() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let key = h.create_expiring(&admin, "1h");
    assert_eq!(key.key.expires_at, Some(T0 + Duration::hours(1)));

    h.clock.set(T0 + Duration::hours(1) - Duration::seconds(1));
    assert!(h.authenticate(&key.secret, &acme.tenant.id).is_ok());
    h.clock.set(T0 + Duration::hours(1));
    assert!(matches!(
        h.authenticate(&key.secret, &acme.tenant.id),
        Err(AuthError::Expired)
    ));
}

#[test]
fn a_key_of_another_tenant_is_a_tenant_mismatch() {
    let h = Harness::new();
    let acme = h.tenant();
    let other = h
        .service
        .create_tenant(&Origin::cli(), "Other")
        .expect("tenant");

    assert!(matches!(
        h.authenticate(&acme.live.secret, &other.tenant.id),
        Err(AuthError::TenantMismatch)
    ));
    assert!(matches!(
        h.authenticate(
            &acme.live.secret,
            &TenantId::generate(T0, &SeqSecretSource::new(5))
        ),
        Err(AuthError::TenantMismatch)
    ));
}

#[test]
fn revoked_and_expired_come_before_tenant_mismatch() {
    // Given a revoked and an expired key of Acme,
    let h = Harness::new();
    let acme = h.tenant();
    let other = h
        .service
        .create_tenant(&Origin::cli(), "Other")
        .expect("tenant");
    let admin = h.principal(&acme.live);
    let revoked = h.create_kind(&admin, KeyType::Secret, Mode::Live);
    h.service
        .revoke(&admin, None, &revoked.key.id)
        .expect("revoke");
    let expiring = h.create_expiring(&admin, "1m");
    h.clock.advance(Duration::minutes(1));

    // when they are presented for another tenant, then the key's state answers.
    assert!(matches!(
        h.authenticate(&revoked.secret, &other.tenant.id),
        Err(AuthError::Revoked)
    ));
    assert!(matches!(
        h.authenticate(&expiring.secret, &other.tenant.id),
        Err(AuthError::Expired)
    ));
}

#[test]
fn a_key_both_revoked_and_expired_is_revoked() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let key = h.create_expiring(&admin, "1m");
    h.service.revoke(&admin, None, &key.key.id).expect("revoke");
    h.clock.advance(Duration::hours(1));

    assert!(matches!(
        h.authenticate(&key.secret, &acme.tenant.id),
        Err(AuthError::Revoked)
    ));
}

#[test]
fn authenticating_writes_nothing() {
    let h = Harness::new();
    let acme = h.tenant();

    h.authenticate(&acme.live.secret, &acme.tenant.id)
        .expect("authenticates");

    assert_eq!(h.stored(&acme.live.key), acme.live.key);
}

#[test]
fn last_used_is_due_first_then_not_within_60_seconds_then_again() {
    // Given a key that was never used,
    let h = Harness::new();
    let acme = h.tenant();
    let first = h
        .authenticate(&acme.live.secret, &acme.tenant.id)
        .expect("authenticates");
    assert!(first.last_used_due);

    // when its use is recorded,
    h.service.record_use(&first.principal).expect("record use");
    assert_eq!(h.stored(&acme.live.key).last_used_at, Some(T0));

    // then it is not due again for 60 seconds,
    for after in [0, 1, 59] {
        h.clock.set(T0 + Duration::seconds(after));
        let auth = h
            .authenticate(&acme.live.secret, &acme.tenant.id)
            .expect("authenticates");
        assert!(!auth.last_used_due, "{after} s after");
    }
    // and due again from 60 seconds on.
    h.clock.set(T0 + Duration::seconds(60));
    let again = h
        .authenticate(&acme.live.secret, &acme.tenant.id)
        .expect("authenticates");
    assert!(again.last_used_due);
}

#[test]
fn record_use_writes_now_at_most_once_a_minute() {
    let h = Harness::new();
    let acme = h.tenant();
    let principal = h.principal(&acme.live);

    h.clock.set(T0 + Duration::seconds(10));
    h.service.record_use(&principal).expect("record use");
    assert_eq!(
        h.stored(&acme.live.key).last_used_at,
        Some(T0 + Duration::seconds(10))
    );

    h.clock.set(T0 + Duration::seconds(69));
    h.service.record_use(&principal).expect("record use");
    assert_eq!(
        h.stored(&acme.live.key).last_used_at,
        Some(T0 + Duration::seconds(10))
    );

    h.clock.set(T0 + Duration::seconds(70));
    h.service.record_use(&principal).expect("record use");
    assert_eq!(
        h.stored(&acme.live.key).last_used_at,
        Some(T0 + Duration::seconds(70))
    );
}

#[test]
fn stored_times_are_whole_seconds_even_when_the_clock_is_not() {
    let h = Harness::new();
    let acme = h.tenant();
    let principal = h.principal(&acme.live);

    h.clock.set(T0 + Duration::milliseconds(1_999));
    h.service.record_use(&principal).expect("record use");

    assert_eq!(
        h.stored(&acme.live.key).last_used_at,
        Some(T0 + Duration::seconds(1))
    );
}

#[test]
fn an_unreachable_store_is_a_repository_error() {
    let h = Harness::new();
    let acme = h.tenant();
    h.store.set_unavailable(true);

    let outcome = h.authenticate(&acme.live.secret, &acme.tenant.id);

    assert!(matches!(
        outcome,
        Err(AuthError::Repository(RepositoryError::Unavailable { .. }))
    ));
}

#[test]
fn only_the_hmac_of_a_key_is_stored() {
    let h = Harness::new();
    let acme = h.tenant();

    let mut stored = h.store.stored_hashes();
    stored.sort_by_key(|hash| *hash.as_bytes());
    let mut expected = vec![
        common::hash_key().hash(&acme.live.secret),
        common::hash_key().hash(&acme.test.secret),
    ];
    expected.sort_by_key(|hash| *hash.as_bytes());
    assert_eq!(stored, expected);
}
