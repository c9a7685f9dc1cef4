//! The use cases end to end over the in-memory store, a test clock and a
//! deterministic secret source.

#![expect(
    clippy::expect_used,
    reason = "test helpers: a failed set-up step is a failed test"
)]

mod common;

use common::{request, used_at, Harness, T0};
use domain::{
    AccessError, ApiKey, CreateError, CreateTenantError, ExpiresIn, GetError, KeyId, KeyName,
    KeyNameError, KeyStatus, KeyType, KeyView, ListError, ListKeys, Mode, Origin, PageLimit,
    RepositoryError, RevokeError, Scope, Scopes, UpdateError,
};
use time::Duration;

fn ids(keys: &[KeyView]) -> Vec<KeyId> {
    keys.iter().map(|k| k.key.id).collect()
}

fn narrow() -> Scopes {
    Scopes::new([Scope::UsersRead]).expect("scopes")
}

// ---- tenants ----

#[test]
fn create_tenant_returns_live_and_test_full_access_secret_keys_that_authenticate() {
    let h = Harness::new();

    let created = h
        .service
        .create_tenant(&Origin::cli(), "  Acme Corp ")
        .expect("tenant");

    assert_eq!(created.tenant.name, "Acme Corp");
    assert_eq!(created.tenant.created_at, T0);
    for (key, mode, tag) in [
        (&created.live, Mode::Live, "sk_live_"),
        (&created.test, Mode::Test, "sk_test_"),
    ] {
        assert_eq!(key.key.tenant_id, created.tenant.id);
        assert_eq!(key.key.key_type, KeyType::Secret);
        assert_eq!(key.key.mode, mode);
        assert_eq!(key.key.scopes, Scopes::full());
        assert_eq!(key.key.expires_at, None);
        assert_eq!(key.key.revokes_at, None);
        assert!(key.secret.expose_secret().starts_with(tag));
        assert_eq!(key.key.prefix, key.secret.prefix());
        assert_eq!(key.key.last_four, key.secret.last_four());
        let principal = h.principal(key);
        assert_eq!(principal.mode, mode);
        assert_eq!(principal.key_id, key.key.id);
        assert_eq!(principal.require_key_management(), Ok(()));
    }
    assert_eq!(
        h.service.find_tenant_by_name("Acme Corp").expect("find"),
        Some(created.tenant)
    );
}

#[test]
fn create_tenant_refuses_a_name_that_breaks_the_key_name_rules() {
    let h = Harness::new();
    assert!(matches!(
        h.service.create_tenant(&Origin::cli(), "   "),
        Err(CreateTenantError::InvalidName(KeyNameError::Empty))
    ));
    assert!(matches!(
        h.service.create_tenant(&Origin::cli(), &"x".repeat(101)),
        Err(CreateTenantError::InvalidName(KeyNameError::TooLong))
    ));
    assert_eq!(h.store.stored_hashes(), vec![]);
}

// ---- create ----

#[test]
fn create_stores_the_requested_key_and_returns_its_secret() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    h.clock.advance(Duration::minutes(5));
    let now = T0 + Duration::minutes(5);

    let created = h
        .service
        .create(
            &admin,
            None,
            request(
                KeyType::Publishable,
                None,
                narrow(),
                Some(ExpiresIn::parse("90d").expect("duration")),
            ),
        )
        .expect("create");

    let expected = ApiKey {
        id: created.key.id,
        tenant_id: acme.tenant.id,
        name: KeyName::parse("Backend").expect("name"),
        key_type: KeyType::Publishable,
        mode: Mode::Live,
        prefix: created.secret.prefix().to_owned(),
        last_four: created.secret.last_four().to_owned(),
        scopes: narrow(),
        created_at: now,
        last_used_at: None,
        expires_at: Some(now + Duration::days(90)),
        revokes_at: None,
        replaced_by: None,
        restrictions: Default::default(),
        metadata: Default::default(),
    };
    assert_eq!(created.key, expected);
    assert!(created.secret.expose_secret().starts_with("pk_live_"));
    assert_eq!(
        h.service.get(&admin, &created.key.id).expect("get").key,
        expected
    );
    assert!(h.authenticate(&created.secret, &acme.tenant.id).is_ok());
}

#[test]
fn created_keys_take_the_callers_mode_by_default() {
    let h = Harness::new();
    let acme = h.tenant();
    let live = h.principal(&acme.live);
    let test = h.principal(&acme.test);

    let from_live = h.create(&live, request(KeyType::Secret, None, Scopes::full(), None));
    let from_test = h.create(&test, request(KeyType::Secret, None, Scopes::full(), None));

    assert_eq!(from_live.key.mode, Mode::Live);
    assert_eq!(from_test.key.mode, Mode::Test);
    assert!(from_test.secret.expose_secret().starts_with("sk_test_"));
}

#[test]
fn a_live_key_may_create_test_keys() {
    let h = Harness::new();
    let acme = h.tenant();
    let live = h.principal(&acme.live);

    let key = h.create_kind(&live, KeyType::Secret, Mode::Test);

    assert_eq!(key.key.mode, Mode::Test);
}

#[test]
fn a_test_key_cannot_create_live_keys() {
    let h = Harness::new();
    let acme = h.tenant();
    let test = h.principal(&acme.test);
    let before = h.store.stored_hashes().len();

    let outcome = h.service.create(
        &test,
        None,
        request(KeyType::Secret, Some(Mode::Live), Scopes::full(), None),
    );

    assert!(matches!(outcome, Err(CreateError::LiveModeRequired)));
    assert_eq!(h.store.stored_hashes().len(), before);
}

#[test]
fn create_stops_at_the_active_key_limit_and_revoked_keys_free_room() {
    // Given a tenant with two live keys and a limit of two per mode,
    let h = Harness::with_max_active_keys(2);
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let req = || request(KeyType::Secret, None, Scopes::full(), None);
    let second = h.service.create(&admin, None, req()).expect("second");

    // then no third live key fits (the test key counts apart),
    assert!(matches!(
        h.service.create(&admin, None, req()),
        Err(CreateError::LimitReached)
    ));
    // until one is revoked,
    h.service
        .revoke(&admin, None, &second.key.id)
        .expect("revoke");
    let third = h.service.create(&admin, None, req()).expect("room again");
    assert!(h.authenticate(&third.secret, &acme.tenant.id).is_ok());
    // and then the limit holds again.
    assert!(matches!(
        h.service.create(&admin, None, req()),
        Err(CreateError::LimitReached)
    ));
}

#[test]
fn an_unreachable_store_fails_creation_as_unavailable() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    h.store.set_unavailable(true);

    let outcome = h.service.create(
        &admin,
        None,
        request(KeyType::Secret, None, Scopes::full(), None),
    );

    assert!(matches!(
        outcome,
        Err(CreateError::Repository(RepositoryError::Unavailable { .. }))
    ));
}

// ---- access ----

#[test]
fn a_secret_key_without_wildcard_cannot_manage_keys() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let limited = h.create(&admin, request(KeyType::Secret, None, narrow(), None));
    let caller = h.principal(&limited);
    let denied = AccessError::InsufficientScope {
        required: Scope::All,
    };
    let id = acme.live.key.id;

    assert!(matches!(
        h.service.create(&caller, None, request(KeyType::Secret, None, narrow(), None)),
        Err(CreateError::Access(e)) if e == denied
    ));
    assert!(matches!(
        h.service.list(&caller, ListKeys::default()),
        Err(ListError::Access(e)) if e == denied
    ));
    assert!(matches!(
        h.service.get(&caller, &id),
        Err(GetError::Access(e)) if e == denied
    ));
    assert!(matches!(
        h.service.update(&caller, None, &id, None, None),
        Err(UpdateError::Access(e)) if e == denied
    ));
    assert!(matches!(
        h.service.revoke(&caller, None, &id),
        Err(RevokeError::Access(e)) if e == denied
    ));
}

// ---- list ----

#[test]
fn list_is_newest_first_and_leaves_out_revoked_keys_unless_asked() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    h.clock.advance(Duration::seconds(1));
    let a = h.create_kind(&admin, KeyType::Publishable, Mode::Live);
    h.clock.advance(Duration::seconds(1));
    let b = h.create_kind(&admin, KeyType::Secret, Mode::Live);
    h.clock.advance(Duration::seconds(1));
    let c = h.create_kind(&admin, KeyType::Secret, Mode::Test);
    h.service.revoke(&admin, None, &b.key.id).expect("revoke");
    let tenant_keys = {
        let mut first = vec![acme.live.key.id, acme.test.key.id];
        first.sort_by(|x, y| y.cmp(x));
        first
    };

    let default = h.service.list(&admin, ListKeys::default()).expect("list");
    let mut expected = vec![c.key.id, a.key.id];
    expected.extend(&tenant_keys);
    assert_eq!(ids(&default.keys), expected);
    assert!(!default.has_more);

    let all = h
        .service
        .list(
            &admin,
            ListKeys {
                include_revoked: true,
                ..ListKeys::default()
            },
        )
        .expect("list");
    let mut expected = vec![c.key.id, b.key.id, a.key.id];
    expected.extend(&tenant_keys);
    assert_eq!(ids(&all.keys), expected);
    assert!(all.keys[1].is_revoked());
    assert_eq!(all.keys[1].status, KeyStatus::Revoked);
    assert_eq!(all.keys[0].status, KeyStatus::Active);

    let publishable = h
        .service
        .list(
            &admin,
            ListKeys {
                key_type: Some(KeyType::Publishable),
                ..ListKeys::default()
            },
        )
        .expect("list");
    assert_eq!(ids(&publishable.keys), vec![a.key.id]);
}

#[test]
fn list_pages_with_limit_and_cursor() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let mut created = Vec::new();
    for _ in 0..3 {
        h.clock.advance(Duration::seconds(1));
        created.push(h.create_kind(&admin, KeyType::Secret, Mode::Live).key.id);
    }
    let page = |after: Option<KeyId>| {
        h.service
            .list(
                &admin,
                ListKeys {
                    starting_after: after,
                    limit: PageLimit::new(2).expect("limit"),
                    ..ListKeys::default()
                },
            )
            .expect("list")
    };

    let first = page(None);
    assert_eq!(ids(&first.keys), vec![created[2], created[1]]);
    assert!(first.has_more);
    let second = page(Some(created[1]));
    assert_eq!(second.keys.len(), 2);
    assert_eq!(second.keys[0].key.id, created[0]);
    assert!(second.has_more);
    let last = page(second.keys.last().map(|k| k.key.id));
    assert_eq!(last.keys.len(), 1);
    assert!(!last.has_more);
}

#[test]
fn keys_created_within_one_second_still_list_newest_first() {
    // Stored timestamps are whole seconds, but ids must keep the clock's
    // milliseconds: otherwise keys of the same second list in random order.
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    h.clock.advance(Duration::seconds(1));
    let mut created = Vec::new();
    for _ in 0..20 {
        h.clock.advance(Duration::milliseconds(10));
        let key = h.create_kind(&admin, KeyType::Publishable, Mode::Live).key;
        assert_eq!(key.created_at, T0 + Duration::seconds(1));
        created.push(key.id);
    }
    created.reverse();

    let listed = h
        .service
        .list(
            &admin,
            ListKeys {
                key_type: Some(KeyType::Publishable),
                ..ListKeys::default()
            },
        )
        .expect("list");
    assert_eq!(ids(&listed.keys), created);
}

#[test]
fn a_test_key_lists_only_test_keys() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let tester = h.principal(&acme.test);
    h.clock.advance(Duration::seconds(1));
    let live_pk = h.create_kind(&admin, KeyType::Publishable, Mode::Live);
    let test_pk = h.create_kind(&admin, KeyType::Publishable, Mode::Test);

    let page = h.service.list(&tester, ListKeys::default()).expect("list");
    assert_eq!(ids(&page.keys), vec![test_pk.key.id, acme.test.key.id]);
    assert!(page.keys.iter().all(|k| k.key.mode == Mode::Test));

    let asking_for_live = h
        .service
        .list(
            &tester,
            ListKeys {
                mode: Some(Mode::Live),
                ..ListKeys::default()
            },
        )
        .expect("list");
    assert_eq!(asking_for_live.keys, vec![]);
    assert!(!asking_for_live.has_more);

    let live_view = h
        .service
        .list(
            &admin,
            ListKeys {
                mode: Some(Mode::Live),
                ..ListKeys::default()
            },
        )
        .expect("list");
    assert_eq!(ids(&live_view.keys), vec![live_pk.key.id, acme.live.key.id]);
}

// ---- get ----

#[test]
fn a_live_key_gets_any_key_of_its_tenant() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);

    assert_eq!(
        h.service.get(&admin, &acme.test.key.id).expect("get").key,
        acme.test.key
    );
    // The caller's own key, as stored: its authentication recorded its use.
    assert_eq!(
        h.service.get(&admin, &acme.live.key.id).expect("get").key,
        used_at(&acme.live.key, T0)
    );
}

#[test]
fn a_test_key_gets_not_found_for_a_live_key() {
    let h = Harness::new();
    let acme = h.tenant();
    let tester = h.principal(&acme.test);

    assert!(matches!(
        h.service.get(&tester, &acme.live.key.id),
        Err(GetError::NotFound)
    ));
    assert_eq!(
        h.service.get(&tester, &acme.test.key.id).expect("get").key,
        used_at(&acme.test.key, T0)
    );
}

#[test]
fn keys_of_other_tenants_and_unknown_ids_are_not_found() {
    let h = Harness::new();
    let acme = h.tenant();
    let other = h
        .service
        .create_tenant(&Origin::cli(), "Other")
        .expect("tenant");
    let admin = h.principal(&acme.live);

    assert!(matches!(
        h.service.get(&admin, &other.live.key.id),
        Err(GetError::NotFound)
    ));
    let unknown = KeyId::parse("key_01HABCDEF6665550000000000A").expect("id");
    assert!(matches!(
        h.service.get(&admin, &unknown),
        Err(GetError::NotFound)
    ));
}

// ---- update ----

#[test]
fn update_renames_and_rescopes_a_key() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let key = h.create_kind(&admin, KeyType::Secret, Mode::Live);

    let updated = h
        .service
        .update(
            &admin,
            None,
            &key.key.id,
            Some(KeyName::parse("Analytics").expect("name")),
            Some(narrow()),
        )
        .expect("update");

    let expected = ApiKey {
        name: KeyName::parse("Analytics").expect("name"),
        scopes: narrow(),
        ..key.key.clone()
    };
    assert_eq!(updated, KeyView::at(expected.clone(), T0));
    assert_eq!(
        h.service.get(&admin, &expected.id).expect("get").key,
        expected
    );
    // The new scopes take effect on the next request.
    assert_eq!(h.principal(&key).scopes, narrow());
}

#[test]
fn updating_a_revoked_key_is_refused() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let key = h.create_kind(&admin, KeyType::Secret, Mode::Live);
    h.service.revoke(&admin, None, &key.key.id).expect("revoke");

    let outcome = h.service.update(
        &admin,
        None,
        &key.key.id,
        Some(KeyName::parse("Too late").expect("name")),
        None,
    );

    assert!(matches!(outcome, Err(UpdateError::Revoked)));
}

#[test]
fn a_test_key_cannot_update_a_live_key() {
    let h = Harness::new();
    let acme = h.tenant();
    let tester = h.principal(&acme.test);

    let outcome = h.service.update(
        &tester,
        None,
        &acme.live.key.id,
        Some(KeyName::parse("Hijacked").expect("name")),
        None,
    );

    assert!(matches!(outcome, Err(UpdateError::NotFound)));
    assert_eq!(h.stored(&acme.live.key), acme.live.key);
}

#[test]
fn narrowing_the_last_full_access_key_is_refused_but_renaming_it_is_not() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);

    let narrowed = h
        .service
        .update(&admin, None, &acme.live.key.id, None, Some(narrow()));
    assert!(matches!(narrowed, Err(UpdateError::LastFullAccessKey)));
    assert_eq!(h.stored(&acme.live.key).scopes, Scopes::full());

    let renamed = h
        .service
        .update(
            &admin,
            None,
            &acme.live.key.id,
            Some(KeyName::parse("Root").expect("name")),
            Some(Scopes::full()),
        )
        .expect("rename");
    assert_eq!(renamed.key.name.as_str(), "Root");
}

#[test]
fn with_a_second_full_access_key_the_first_may_be_narrowed() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let second = h.create_kind(&admin, KeyType::Secret, Mode::Live);

    let narrowed = h
        .service
        .update(&admin, None, &acme.live.key.id, None, Some(narrow()))
        .expect("update");

    assert_eq!(narrowed.key.scopes, narrow());
    let last = h.principal(&second);
    assert!(matches!(
        h.service
            .update(&last, None, &second.key.id, None, Some(narrow())),
        Err(UpdateError::LastFullAccessKey)
    ));
}

// ---- revoke ----

#[test]
fn revoke_takes_effect_now_and_again_changes_nothing() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let key = h.create_kind(&admin, KeyType::Publishable, Mode::Live);
    h.clock.advance(Duration::minutes(3));

    let revoked = h.service.revoke(&admin, None, &key.key.id).expect("revoke");
    assert_eq!(revoked.key.revokes_at, Some(T0 + Duration::minutes(3)));
    assert!(revoked.is_revoked());

    h.clock.advance(Duration::minutes(3));
    let again = h
        .service
        .revoke(&admin, None, &key.key.id)
        .expect("revoke again");
    assert_eq!(again.key.revokes_at, Some(T0 + Duration::minutes(3)));
}

#[test]
fn revoking_the_last_full_access_live_secret_key_is_refused() {
    // Given a tenant whose only guard key is its live key (the test key does not count),
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    h.create_kind(&admin, KeyType::Publishable, Mode::Live);
    h.create(&admin, request(KeyType::Secret, None, narrow(), None));

    // when it is revoked, then that is refused and it keeps working.
    assert!(matches!(
        h.service.revoke(&admin, None, &acme.live.key.id),
        Err(RevokeError::LastFullAccessKey)
    ));
    assert!(h.authenticate(&acme.live.secret, &acme.tenant.id).is_ok());

    // With a second one, either may go, but not both.
    let second = h.create_kind(&admin, KeyType::Secret, Mode::Live);
    h.service
        .revoke(&admin, None, &acme.live.key.id)
        .expect("revoke first");
    let last = h.principal(&second);
    assert!(matches!(
        h.service.revoke(&last, None, &second.key.id),
        Err(RevokeError::LastFullAccessKey)
    ));
}

#[test]
fn a_test_key_cannot_revoke_a_live_key_but_may_revoke_a_test_key() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let tester = h.principal(&acme.test);
    let test_pk = h.create_kind(&admin, KeyType::Publishable, Mode::Test);
    let live_pk = h.create_kind(&admin, KeyType::Publishable, Mode::Live);

    assert!(matches!(
        h.service.revoke(&tester, None, &live_pk.key.id),
        Err(RevokeError::NotFound)
    ));
    assert_eq!(h.stored(&live_pk.key).revokes_at, None);
    let revoked = h
        .service
        .revoke(&tester, None, &test_pk.key.id)
        .expect("revoke");
    assert_eq!(revoked.key.revokes_at, Some(T0));
}

#[test]
fn a_key_of_another_tenant_cannot_be_revoked() {
    let h = Harness::new();
    let acme = h.tenant();
    let other = h
        .service
        .create_tenant(&Origin::cli(), "Other")
        .expect("tenant");
    let admin = h.principal(&acme.live);

    assert!(matches!(
        h.service.revoke(&admin, None, &other.test.key.id),
        Err(RevokeError::NotFound)
    ));
    assert_eq!(h.stored(&other.test.key).revokes_at, None);
}
