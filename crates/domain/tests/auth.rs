//! Authentication (docs/api.md, "Conventions", authentication): the order of the checks
//! ([`check_key`] and the service that uses it), the principal, and the
//! once-a-minute `last_used_at` write the service makes itself.

#![expect(
    clippy::expect_used,
    reason = "test helpers: a failed set-up step is a failed test"
)]

mod common;

use common::{request, used_at, Harness, T0};
use domain::testing::SeqSecretSource;
use domain::{
    check_key, ApiKey, AuthError, Authenticator, Credentials, KeyId, KeyName, KeyType, Mode,
    Origin, PlainKey, Principal, RepositoryError, Scope, Scopes, TenantId,
};
use time::{Duration, OffsetDateTime};

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
    assert_eq!(credentials.tenant().map(ToString::to_string), Some(tenant));
}

// ---- steps 3 and 4: `check_key`, without I/O ----

fn acme_id() -> TenantId {
    TenantId::generate(T0 - Duration::days(30), &SeqSecretSource::new(500))
}

/// A key of [`acme_id`], created a day before T0: active, never used, no
/// expiry.
fn key_of_acme() -> ApiKey {
    ApiKey {
        id: KeyId::generate(T0 - Duration::days(1), &SeqSecretSource::new(501)),
        tenant_id: acme_id(),
        name: KeyName::parse("Key").expect("name"),
        key_type: KeyType::Secret,
        mode: Mode::Live,
        prefix: "sk_live_abc1".to_owned(),
        last_four: "x123".to_owned(),
        scopes: Scopes::full(),
        created_at: T0 - Duration::days(1),
        last_used_at: None,
        expires_at: None,
        revokes_at: None,
        replaced_by: None,
        limits: Default::default(),
        restrictions: Default::default(),
        metadata: Default::default(),
    }
}

fn revoked_at(at: OffsetDateTime, key: ApiKey) -> ApiKey {
    ApiKey {
        revokes_at: Some(at),
        ..key
    }
}

fn expiring_at(at: OffsetDateTime, key: ApiKey) -> ApiKey {
    ApiKey {
        expires_at: Some(at),
        ..key
    }
}

/// [`check_key`]'s verdict, by the error code it answers with.
fn verdict(key: Option<&ApiKey>, tenant: &TenantId, now: OffsetDateTime) -> &'static str {
    match check_key(key, Some(tenant), now) {
        Ok(()) => "ok",
        Err(AuthError::InvalidKey) => "invalid_api_key",
        Err(AuthError::Revoked) => "api_key_revoked",
        Err(AuthError::Expired) => "api_key_expired",
        Err(AuthError::TenantMismatch) => "tenant_mismatch",
        Err(other) => panic!("check_key does no I/O, yet answered {other:?}"),
    }
}

#[test]
fn check_key_passes_an_active_key_of_the_named_tenant() {
    assert_eq!(verdict(Some(&key_of_acme()), &acme_id(), T0), "ok");
}

#[test]
fn check_key_refuses_no_key_as_invalid() {
    assert_eq!(verdict(None, &acme_id(), T0), "invalid_api_key");
}

#[test]
fn check_key_refuses_a_revoked_key_from_revokes_at_on() {
    let key = revoked_at(T0, key_of_acme());
    assert_eq!(
        verdict(Some(&key), &acme_id(), T0 - Duration::seconds(1)),
        "ok",
        "a scheduled revocation still authenticates"
    );
    assert_eq!(verdict(Some(&key), &acme_id(), T0), "api_key_revoked");
    assert_eq!(
        verdict(Some(&key), &acme_id(), T0 + Duration::days(1)),
        "api_key_revoked"
    );
}

#[test]
fn check_key_refuses_an_expired_key_from_expires_at_on() {
    let key = expiring_at(T0, key_of_acme());
    assert_eq!(
        verdict(Some(&key), &acme_id(), T0 - Duration::seconds(1)),
        "ok"
    );
    assert_eq!(verdict(Some(&key), &acme_id(), T0), "api_key_expired");
}

#[test]
fn check_key_refuses_a_key_of_another_tenant() {
    let other = TenantId::generate(T0, &SeqSecretSource::new(502));
    assert_eq!(verdict(Some(&key_of_acme()), &other, T0), "tenant_mismatch");
}

#[test]
fn check_key_without_a_tenant_passes_any_tenant_but_not_the_other_checks() {
    assert_eq!(check_key(Some(&key_of_acme()), None, T0).ok(), Some(()));
    let revoked = revoked_at(T0, key_of_acme());
    assert!(matches!(
        check_key(Some(&revoked), None, T0),
        Err(AuthError::Revoked)
    ));
    assert!(matches!(
        check_key(None, None, T0),
        Err(AuthError::InvalidKey)
    ));
    let key = PlainKey::parse(&valid_key_text()).expect("key");
    assert_eq!(Credentials::for_any_tenant(key).tenant(), None);
}

#[test]
fn check_key_answers_unknown_then_revoked_then_expired_then_tenant() {
    let other = TenantId::generate(T0, &SeqSecretSource::new(502));
    let expired = expiring_at(T0 - Duration::minutes(1), key_of_acme());
    let revoked_and_expired = revoked_at(T0 - Duration::minutes(1), expired.clone());

    // No key is invalid whatever the tenant; revoked comes before expired,
    // both before the tenant.
    assert_eq!(verdict(None, &other, T0), "invalid_api_key");
    assert_eq!(
        verdict(Some(&revoked_and_expired), &other, T0),
        "api_key_revoked"
    );
    assert_eq!(
        verdict(Some(&revoked_and_expired), &acme_id(), T0),
        "api_key_revoked"
    );
    assert_eq!(verdict(Some(&expired), &other, T0), "api_key_expired");
    // A scheduled revocation is no refusal: the tenant still decides.
    let scheduled = revoked_at(T0 + Duration::hours(1), key_of_acme());
    assert_eq!(verdict(Some(&scheduled), &other, T0), "tenant_mismatch");
    assert_eq!(verdict(Some(&scheduled), &acme_id(), T0), "ok");
}

#[test]
fn check_key_ignores_what_does_not_decide_authentication() {
    // Type, mode, scopes and last use never refuse a key.
    let key = ApiKey {
        key_type: KeyType::Publishable,
        mode: Mode::Test,
        scopes: Scopes::new([Scope::UsersRead]).expect("scopes"),
        last_used_at: Some(T0 - Duration::seconds(1)),
        ..key_of_acme()
    };
    assert_eq!(verdict(Some(&key), &acme_id(), T0), "ok");
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

    let key = h
        .authenticate(&narrow.secret, &acme.tenant.id)
        .expect("authenticates");

    assert_eq!(
        Principal::of(&key),
        Principal {
            tenant_id: acme.tenant.id,
            key_id: narrow.key.id,
            key_type: KeyType::Publishable,
            mode: Mode::Test,
            scopes: Scopes::new([Scope::UsersRead]).expect("scopes"),
        }
    );
    // It is the key as stored when it was found: never used, so its use was
    // due.
    assert_eq!(*key, narrow.key);
    assert!(key.last_used_due(T0));
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
fn authenticating_writes_only_last_used_at_and_no_event() {
    // Given a key never used,
    let h = Harness::new();
    let acme = h.tenant();
    let events = h.events();

    // when it authenticates, then its use is its only change, with no event,
    h.authenticate(&acme.live.secret, &acme.tenant.id)
        .expect("authenticates");
    let used = used_at(&acme.live.key, T0);
    assert_eq!(h.stored(&acme.live.key), used);
    assert_eq!(h.events(), events);

    // and within the minute it writes nothing at all.
    h.clock.set(T0 + Duration::seconds(30));
    h.authenticate(&acme.live.secret, &acme.tenant.id)
        .expect("authenticates");
    assert_eq!(h.stored(&acme.live.key), used);
    assert_eq!(h.events(), events);
}

#[test]
fn last_used_is_due_first_then_not_within_60_seconds_then_again() {
    // Given a key that was never used,
    let h = Harness::new();
    let acme = h.tenant();

    // when it first authenticates, it is found due, and its use is recorded;
    let first = h
        .authenticate(&acme.live.secret, &acme.tenant.id)
        .expect("authenticates");
    assert!(first.last_used_due(T0));
    assert_eq!(h.stored(&acme.live.key).last_used_at, Some(T0));

    // then it is not due again for 60 seconds, and nothing is written,
    for after in [0, 1, 59] {
        let now = T0 + Duration::seconds(after);
        h.clock.set(now);
        let key = h
            .authenticate(&acme.live.secret, &acme.tenant.id)
            .expect("authenticates");
        assert!(!key.last_used_due(now), "{after} s after");
        assert_eq!(
            h.stored(&acme.live.key).last_used_at,
            Some(T0),
            "{after} s after"
        );
    }
    // and due again from 60 seconds on.
    let later = T0 + Duration::seconds(60);
    h.clock.set(later);
    let again = h
        .authenticate(&acme.live.secret, &acme.tenant.id)
        .expect("authenticates");
    assert!(again.last_used_due(later));
    assert_eq!(h.stored(&acme.live.key).last_used_at, Some(later));
}

#[test]
fn authenticate_records_the_use_at_now_at_most_once_a_minute() {
    let h = Harness::new();
    let acme = h.tenant();
    let use_at = |seconds: i64| {
        h.clock.set(T0 + Duration::seconds(seconds));
        h.authenticate(&acme.live.secret, &acme.tenant.id)
            .expect("authenticates");
        h.stored(&acme.live.key).last_used_at
    };

    assert_eq!(use_at(10), Some(T0 + Duration::seconds(10)));
    assert_eq!(use_at(69), Some(T0 + Duration::seconds(10)));
    assert_eq!(use_at(70), Some(T0 + Duration::seconds(70)));
}

#[test]
fn a_refused_key_is_not_recorded_as_used() {
    // Given a revoked key, an expired key and a key presented for another
    // tenant,
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
    let mismatched = h.create_kind(&admin, KeyType::Secret, Mode::Test);
    h.clock.advance(Duration::minutes(1));

    // when they are presented, then none of them counts as used.
    assert!(h.authenticate(&revoked.secret, &acme.tenant.id).is_err());
    assert!(h.authenticate(&expiring.secret, &acme.tenant.id).is_err());
    assert!(h
        .authenticate(&mismatched.secret, &other.tenant.id)
        .is_err());
    for key in [&revoked.key, &expiring.key, &mismatched.key] {
        assert_eq!(h.stored(key).last_used_at, None, "{}", key.id);
    }
}

#[test]
fn stored_times_are_whole_seconds_even_when_the_clock_is_not() {
    let h = Harness::new();
    let acme = h.tenant();

    h.clock.set(T0 + Duration::milliseconds(1_999));
    h.authenticate(&acme.live.secret, &acme.tenant.id)
        .expect("authenticates");

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

// ---- restrictions: judged with the key, before its use is recorded ----

#[test]
fn a_key_refused_for_where_it_is_used_from_is_not_recorded_as_used() {
    // Given a publishable key pinned to a block and an origin,
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let mut pinned = request(KeyType::Publishable, None, Scopes::full(), None);
    pinned.restrictions = domain::KeyRestrictions {
        allowed_ips: Some(domain::AllowedIps::parse(["203.0.113.0/24"]).expect("ips")),
        allowed_origins: Some(
            domain::AllowedOrigins::parse(["https://*.example.com"]).expect("origins"),
        ),
    };
    let key = h.create(&admin, pinned);
    let events = h.events();
    let from = |ip: Option<&str>, origin: Option<&str>| {
        let client = domain::EndClient {
            ip: ip.map(|ip| ip.parse().expect("address")),
            origin: origin.map(str::to_owned),
        };
        h.service
            .authenticate(&Credentials::new(key.secret.clone(), acme.tenant.id).from_client(client))
    };

    // when it is presented from elsewhere, or from nowhere known, it is
    // refused, the address first, and nothing is written;
    let app = Some("https://app.example.com");
    for (ip, origin, refusal) in [
        (None, None, "ip"),
        (None, app, "ip"),
        (Some("198.51.100.7"), app, "ip"),
        (Some("203.0.113.7"), None, "origin"),
        (Some("203.0.113.7"), Some("https://example.com"), "origin"),
    ] {
        let refused = match from(ip, origin) {
            Err(AuthError::IpNotAllowed) => "ip",
            Err(AuthError::OriginNotAllowed) => "origin",
            other => panic!("{ip:?} {origin:?}: {other:?}"),
        };
        assert_eq!(refused, refusal, "{ip:?} {origin:?}");
    }
    assert_eq!(h.stored(&key.key).last_used_at, None);
    assert_eq!(h.events(), events);

    // then from inside both, it is used, and that use is recorded.
    from(Some("203.0.113.7"), app).expect("allowed");
    assert_eq!(h.stored(&key.key).last_used_at, Some(T0));
    // The checks that come first still come first.
    h.service.revoke(&admin, None, &key.key.id).expect("revoke");
    assert!(matches!(from(None, None), Err(AuthError::Revoked)));
}
