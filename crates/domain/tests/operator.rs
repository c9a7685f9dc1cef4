//! The operator's use cases (`operator.rs`) over the in-memory store: no
//! calling key, every change by actor `cli`.

#![expect(
    clippy::expect_used,
    reason = "test helpers: a failed set-up step is a failed test"
)]

mod common;

use common::{request, Harness, Recorder, T0};
use domain::{
    Actor, AuthError, CreateKeyForError, CreatedTenant, EventData, ExpiresIn, KeyEvent, KeyId,
    KeyName, KeyStatus, KeyType, ListKeys, ListKeysForError, Mode, Origin, RevokeKeyForError,
    Scope, Scopes, TenantId,
};
use time::Duration;

/// A tenant id no tenant has.
fn ghost() -> TenantId {
    TenantId::parse("tnt_01HQ2ZJ8N00000000000000000").expect("tenant id")
}

/// A key id no key has.
fn no_key() -> KeyId {
    KeyId::parse("key_01HQ2ZJ8N00000000000000000").expect("key id")
}

/// Asserts that `event` is the CLI's (actor `cli`, no request id) `data`
/// about `key_id` of `tenant`.
fn assert_cli_event(
    event: &KeyEvent,
    tenant: TenantId,
    key_id: KeyId,
    mode: Mode,
    data: EventData,
) {
    assert_eq!(event.tenant_id, tenant);
    assert_eq!(event.key_id, Some(key_id));
    assert_eq!(event.mode, Some(mode));
    assert_eq!(event.actor, Actor::Cli);
    assert_eq!(event.request_id, None);
    assert_eq!(event.data, data);
}

fn all_keys(include_revoked: bool) -> ListKeys {
    ListKeys {
        include_revoked,
        ..ListKeys::default()
    }
}

fn recovery() -> domain::CreateKey {
    domain::CreateKey {
        name: KeyName::parse("Recovery").expect("name"),
        ..request(KeyType::Secret, None, Scopes::full(), None)
    }
}

/// Revokes the tenant's live secret key with `force`, leaving it locked out.
fn lock_out(h: &Harness, tenant: &CreatedTenant) {
    h.service
        .revoke_key_for(&Origin::cli(), &tenant.tenant.id, &tenant.live.key.id, true)
        .expect("forced revocation");
}

// ---- tenant list ----

#[test]
fn list_tenants_returns_every_tenant_oldest_first() {
    let h = Harness::new();
    assert_eq!(h.service.list_tenants().expect("list"), []);
    let first = h.tenant().tenant;
    h.clock.advance(Duration::minutes(1));
    let second = h
        .service
        .create_tenant(&Origin::cli(), "Initech")
        .expect("tenant")
        .tenant;
    // Created in the same second: the id breaks the tie.
    let third = h
        .service
        .create_tenant(&Origin::cli(), "Globex")
        .expect("tenant")
        .tenant;

    let tenants = h.service.list_tenants().expect("list");

    let mut same_second = [second, third];
    same_second.sort_by_key(|t| t.id);
    assert_eq!(tenants, [&[first][..], &same_second[..]].concat());
}

// ---- key create ----

#[test]
fn create_key_for_makes_a_live_full_access_secret_key_by_default_with_a_cli_event() {
    let h = Harness::new();
    let tenant = h.tenant();
    let before = h.events().len();

    let created = h
        .service
        .create_key_for(&Origin::cli(), &tenant.tenant.id, recovery())
        .expect("create");

    let key = &created.key;
    assert_eq!(key.tenant_id, tenant.tenant.id);
    assert_eq!(key.name.as_str(), "Recovery");
    assert_eq!(
        (key.key_type, key.mode, key.scopes),
        (KeyType::Secret, Mode::Live, Scopes::full())
    );
    assert_eq!((key.created_at, key.expires_at), (T0, None));
    assert!(created.secret.expose_secret().starts_with("sk_live_"));
    assert_eq!(h.stored(key), *key);
    // It works, and manages the tenant's keys.
    assert_eq!(h.principal(&created).require_key_management(), Ok(()));
    let events = h.events();
    assert_eq!(events.len(), before + 1);
    let event = events.last().expect("event");
    assert_cli_event(
        event,
        tenant.tenant.id,
        key.id,
        Mode::Live,
        EventData::KeyCreated { rotated_from: None },
    );
    assert_eq!(event.created_at, T0);
}

#[test]
fn create_key_for_takes_any_type_mode_scopes_and_lifetime() {
    let h = Harness::new();
    let tenant = h.tenant();
    let scopes = Scopes::new([Scope::UsersRead, Scope::SessionsRead]).expect("scopes");
    let expires_in = ExpiresIn::parse("90d").expect("duration");

    let created = h
        .service
        .create_key_for(
            &Origin::cli(),
            &tenant.tenant.id,
            request(
                KeyType::Publishable,
                Some(Mode::Test),
                scopes,
                Some(expires_in),
            ),
        )
        .expect("create");

    assert_eq!(created.key.key_type, KeyType::Publishable);
    assert_eq!(created.key.mode, Mode::Test);
    assert_eq!(created.key.scopes, scopes);
    assert_eq!(created.key.expires_at, Some(T0 + Duration::days(90)));
    assert!(created.secret.expose_secret().starts_with("pk_test_"));
    h.authenticate(&created.secret, &tenant.tenant.id)
        .expect("authenticates");
}

#[test]
fn create_key_for_lets_a_locked_out_tenant_back_in() {
    let h = Harness::new();
    let tenant = h.tenant();
    lock_out(&h, &tenant);
    assert!(matches!(
        h.authenticate(&tenant.live.secret, &tenant.tenant.id),
        Err(AuthError::Revoked)
    ));

    let created = h
        .service
        .create_key_for(&Origin::cli(), &tenant.tenant.id, recovery())
        .expect("create");

    let principal = h.principal(&created);
    assert_eq!(principal.mode, Mode::Live);
    // The new key is the tenant's full-access guard now.
    let keys = h
        .service
        .list(&principal, ListKeys::default())
        .expect("list");
    assert_eq!(keys.keys.len(), 2, "the recovery key and the test key");
}

#[test]
fn create_key_for_an_unknown_tenant_fails_and_writes_nothing() {
    let h = Harness::new();
    h.tenant();
    let before = h.events();

    let result = h
        .service
        .create_key_for(&Origin::cli(), &ghost(), recovery());

    assert!(
        matches!(result, Err(CreateKeyForError::UnknownTenant(t)) if t == ghost()),
        "{result:?}"
    );
    assert_eq!(h.events(), before);
    assert_eq!(h.store.stored_hashes().len(), 2);
}

#[test]
fn create_key_for_keeps_the_active_key_limit() {
    // The tenant has one live key (and one test key: they count apart).
    let h = Harness::with_max_active_keys(1);
    let tenant = h.tenant();

    let result = h
        .service
        .create_key_for(&Origin::cli(), &tenant.tenant.id, recovery());

    assert!(
        matches!(result, Err(CreateKeyForError::LimitReached)),
        "{result:?}"
    );
}

#[test]
fn create_key_for_past_the_limit_passes_it() {
    let h = Harness::with_max_active_keys(1);
    let tenant = h.tenant();

    let created = h
        .service
        .create_key_for_past_the_limit(&Origin::cli(), &tenant.tenant.id, recovery())
        .expect("created past the limit");

    assert_eq!(
        h.service
            .list_keys_for(&tenant.tenant.id, all_keys(false))
            .expect("list")
            .keys
            .iter()
            .filter(|k| k.key.id == created.key.id)
            .count(),
        1
    );
}

// ---- key list ----

#[test]
fn list_keys_for_lists_every_mode_newest_first_and_revoked_keys_on_request() {
    let h = Harness::new();
    let tenant = h.tenant();
    let other = h
        .service
        .create_tenant(&Origin::cli(), "Other")
        .expect("tenant");
    h.clock.advance(Duration::seconds(1));
    let extra = h
        .service
        .create_key_for(&Origin::cli(), &tenant.tenant.id, recovery())
        .expect("create");
    h.service
        .revoke_key_for(
            &Origin::cli(),
            &tenant.tenant.id,
            &tenant.test.key.id,
            false,
        )
        .expect("revoke");

    let active = h
        .service
        .list_keys_for(&tenant.tenant.id, all_keys(false))
        .expect("list");
    let every = h
        .service
        .list_keys_for(&tenant.tenant.id, all_keys(true))
        .expect("list");

    let ids = |page: &domain::KeyViewPage| page.keys.iter().map(|k| k.key.id).collect::<Vec<_>>();
    assert_eq!(ids(&active), [extra.key.id, tenant.live.key.id]);
    // The tenant's first two keys were made in the same millisecond: their
    // ids, not their creation, order them.
    let mut first_two = [tenant.live.key.id, tenant.test.key.id];
    first_two.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids(&every), [&[extra.key.id][..], &first_two[..]].concat());
    assert!(!every.has_more);
    let test = every
        .keys
        .iter()
        .find(|k| k.key.id == tenant.test.key.id)
        .expect("the revoked key is listed");
    assert_eq!(test.status, KeyStatus::Revoked);
    assert!(test.is_revoked());
    assert!(every
        .keys
        .iter()
        .all(|k| k.key.tenant_id == tenant.tenant.id && k.key.tenant_id != other.tenant.id));
}

#[test]
fn list_keys_for_an_unknown_tenant_is_an_error_but_a_tenant_without_active_keys_is_not() {
    let h = Harness::new();
    let tenant = h.tenant();
    lock_out(&h, &tenant);
    h.service
        .revoke_key_for(
            &Origin::cli(),
            &tenant.tenant.id,
            &tenant.test.key.id,
            false,
        )
        .expect("revoke");

    let unknown = h.service.list_keys_for(&ghost(), all_keys(true));
    let empty = h
        .service
        .list_keys_for(&tenant.tenant.id, all_keys(false))
        .expect("list");

    assert!(
        matches!(unknown, Err(ListKeysForError::UnknownTenant(t)) if t == ghost()),
        "{unknown:?}"
    );
    assert!(empty.keys.is_empty() && !empty.has_more);
}

// ---- key revoke ----

#[test]
fn revoke_key_for_revokes_now_with_a_cli_event() {
    let h = Harness::new();
    let tenant = h.tenant();
    h.clock.advance(Duration::minutes(5));
    let before = h.events().len();

    let revoked = h
        .service
        .revoke_key_for(
            &Origin::cli(),
            &tenant.tenant.id,
            &tenant.test.key.id,
            false,
        )
        .expect("revoke");

    assert!(revoked.changed);
    assert_eq!(revoked.key.status, KeyStatus::Revoked);
    let now = T0 + Duration::minutes(5);
    assert_eq!(revoked.key.key.revokes_at, Some(now));
    assert!(matches!(
        h.authenticate(&tenant.test.secret, &tenant.tenant.id),
        Err(AuthError::Revoked)
    ));
    let events = h.events();
    assert_eq!(events.len(), before + 1);
    let event = events.last().expect("event");
    assert_cli_event(
        event,
        tenant.tenant.id,
        tenant.test.key.id,
        Mode::Test,
        EventData::KeyRevoked,
    );
    assert_eq!(event.created_at, now);
}

#[test]
fn revoke_key_for_refuses_the_last_full_access_live_secret_key_without_force() {
    let h = Harness::new();
    let tenant = h.tenant();
    let before = h.events();

    let result = h.service.revoke_key_for(
        &Origin::cli(),
        &tenant.tenant.id,
        &tenant.live.key.id,
        false,
    );

    assert!(
        matches!(result, Err(RevokeKeyForError::LastFullAccessKey(id)) if id == tenant.live.key.id),
        "{result:?}"
    );
    assert_eq!(h.events(), before);
    h.authenticate(&tenant.live.secret, &tenant.tenant.id)
        .expect("the key still works");
}

#[test]
fn revoke_key_for_with_force_revokes_the_last_full_access_key() {
    let h = Harness::new();
    let tenant = h.tenant();
    let recorder = Recorder::new();
    let h = h.with_listener(recorder.clone());

    let revoked = h
        .service
        .revoke_key_for(&Origin::cli(), &tenant.tenant.id, &tenant.live.key.id, true)
        .expect("forced revocation");

    assert!(revoked.changed && revoked.key.is_revoked());
    assert!(matches!(
        h.authenticate(&tenant.live.secret, &tenant.tenant.id),
        Err(AuthError::Revoked)
    ));
    assert_cli_event(
        h.events().last().expect("event"),
        tenant.tenant.id,
        tenant.live.key.id,
        Mode::Live,
        EventData::KeyRevoked,
    );
    assert_eq!(recorder.take(), [tenant.live.key.id]);
}

#[test]
fn revoke_key_for_a_revoked_key_succeeds_and_changes_nothing() {
    let h = Harness::new();
    let tenant = h.tenant();
    let first = h
        .service
        .revoke_key_for(
            &Origin::cli(),
            &tenant.tenant.id,
            &tenant.test.key.id,
            false,
        )
        .expect("revoke");
    h.clock.advance(Duration::hours(1));
    let before = h.events();

    for force in [false, true] {
        let again = h
            .service
            .revoke_key_for(
                &Origin::cli(),
                &tenant.tenant.id,
                &tenant.test.key.id,
                force,
            )
            .expect("revoke again");

        assert!(!again.changed);
        assert_eq!(again.key.key, first.key.key, "revokes_at is kept");
    }
    assert_eq!(h.events(), before);
}

#[test]
fn revoke_key_for_an_unknown_key_or_tenant_or_another_tenants_key_fails() {
    let h = Harness::new();
    let tenant = h.tenant();
    let other = h
        .service
        .create_tenant(&Origin::cli(), "Other")
        .expect("tenant");
    let before = h.events();

    let unknown_key = h
        .service
        .revoke_key_for(&Origin::cli(), &tenant.tenant.id, &no_key(), true);
    let foreign_key =
        h.service
            .revoke_key_for(&Origin::cli(), &tenant.tenant.id, &other.test.key.id, true);
    let unknown_tenant =
        h.service
            .revoke_key_for(&Origin::cli(), &ghost(), &tenant.test.key.id, true);

    assert!(
        matches!(unknown_key, Err(RevokeKeyForError::KeyNotFound { tenant: t, key })
            if t == tenant.tenant.id && key == no_key()),
        "{unknown_key:?}"
    );
    assert!(
        matches!(foreign_key, Err(RevokeKeyForError::KeyNotFound { .. })),
        "{foreign_key:?}"
    );
    assert!(
        matches!(unknown_tenant, Err(RevokeKeyForError::UnknownTenant(t)) if t == ghost()),
        "{unknown_tenant:?}"
    );
    assert_eq!(h.events(), before);
    h.authenticate(&other.test.secret, &other.tenant.id)
        .expect("the other tenant's key still works");
}
