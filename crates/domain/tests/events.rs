//! Key events over the in-memory store: every change the service makes is
//! recorded once, with its actor and request id; refused and no-op changes
//! record nothing; a caller whose key was revoked cannot write; and the audit
//! log is read back through `list_events`.

#![expect(
    clippy::expect_used,
    reason = "test helpers: a failed set-up step is a failed test"
)]

mod common;

use common::{request, Harness, T0};
use domain::{
    AccessError, Actor, Change, CreateError, CreatedKey, EventData, EventType, FieldChanges,
    GracePeriod, KeyEvent, KeyName, KeyType, ListEvents, ListEventsError, Mode, Origin, PageLimit,
    Principal, RevokeError, RotateError, Scope, Scopes, UpdateError,
};
use time::Duration;

const REQUEST_ID: &str = "req_01HQ3Y5R0000000000000000";

fn request_id() -> Option<String> {
    Some(REQUEST_ID.to_owned())
}

fn name(text: &str) -> KeyName {
    KeyName::parse(text).expect("name")
}

fn scopes(list: &[Scope]) -> Scopes {
    Scopes::new(list.iter().copied()).expect("scopes")
}

/// What an event about `key`, made at `at` by `caller` in [`REQUEST_ID`],
/// must be, given its id.
fn expected_event(
    event: &KeyEvent,
    caller: &Principal,
    key: &domain::ApiKey,
    at: time::OffsetDateTime,
    data: EventData,
) -> KeyEvent {
    KeyEvent {
        id: event.id,
        created_at: at,
        tenant_id: key.tenant_id,
        key_id: Some(key.id),
        mode: Some(key.mode),
        actor: Actor::ApiKey(caller.key_id),
        request_id: Some(REQUEST_ID.to_owned()),
        data,
    }
}

/// Events stored after the first `before`.
fn new_events(h: &Harness, before: usize) -> Vec<KeyEvent> {
    h.events().split_off(before)
}

fn principal_of(h: &Harness, key: &domain::ApiKey, secret: &domain::PlainKey) -> Principal {
    h.principal(&CreatedKey {
        key: key.clone(),
        secret: secret.clone(),
    })
}

// ---- what each use case records ----

#[test]
fn create_tenant_records_the_tenant_then_each_key_by_the_cli() {
    let h = Harness::new();

    let acme = h.tenant();

    let events = h.events();
    assert_eq!(
        events,
        vec![
            KeyEvent {
                id: events[0].id,
                created_at: T0,
                tenant_id: acme.tenant.id,
                key_id: None,
                mode: None,
                actor: Actor::Cli,
                request_id: None,
                data: EventData::TenantCreated {
                    name: "Acme".to_owned()
                },
            },
            KeyEvent {
                id: events[1].id,
                created_at: T0,
                tenant_id: acme.tenant.id,
                key_id: Some(acme.live.key.id),
                mode: Some(Mode::Live),
                actor: Actor::Cli,
                request_id: None,
                data: EventData::KeyCreated { rotated_from: None },
            },
            KeyEvent {
                id: events[2].id,
                created_at: T0,
                tenant_id: acme.tenant.id,
                key_id: Some(acme.test.key.id),
                mode: Some(Mode::Test),
                actor: Actor::Cli,
                request_id: None,
                data: EventData::KeyCreated { rotated_from: None },
            },
        ]
    );
    let seqs: Vec<i64> = h.store.stored_events().iter().map(|s| s.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
}

#[test]
fn create_records_the_new_key_by_its_caller_and_request() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    h.clock.advance(Duration::minutes(1));
    let before = h.events().len();

    let created = h
        .service
        .create(
            &admin,
            request_id(),
            request(KeyType::Publishable, Some(Mode::Test), Scopes::full(), None),
        )
        .expect("create");

    let events = new_events(&h, before);
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0],
        expected_event(
            &events[0],
            &admin,
            &created.key,
            T0 + Duration::minutes(1),
            EventData::KeyCreated { rotated_from: None }
        )
    );
}

#[test]
fn update_records_only_the_fields_that_changed_with_their_old_values() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let key = h.create_kind(&admin, KeyType::Secret, Mode::Live);
    let before = h.events().len();

    // The scopes asked for are the ones the key has: only the name changes.
    h.service
        .update(
            &admin,
            request_id(),
            &key.key.id,
            Some(name("Analytics")),
            Some(Scopes::full()),
        )
        .expect("rename");
    h.service
        .update(
            &admin,
            request_id(),
            &key.key.id,
            Some(name("Analytics")),
            Some(scopes(&[Scope::UsersRead])),
        )
        .expect("rescope");

    let events = new_events(&h, before);
    assert_eq!(
        events,
        vec![
            expected_event(
                &events[0],
                &admin,
                &key.key,
                T0,
                EventData::KeyUpdated {
                    changes: FieldChanges {
                        name: Some(Change {
                            old: name("Backend"),
                            new: name("Analytics"),
                        }),
                        scopes: None,
                        ..FieldChanges::default()
                    },
                },
            ),
            expected_event(
                &events[1],
                &admin,
                &key.key,
                T0,
                EventData::KeyUpdated {
                    changes: FieldChanges {
                        name: None,
                        scopes: Some(Change {
                            old: Scopes::full(),
                            new: scopes(&[Scope::UsersRead]),
                        }),
                        ..FieldChanges::default()
                    },
                },
            ),
        ]
    );
}

#[test]
fn an_update_that_changes_nothing_records_nothing() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let key = h.create_kind(&admin, KeyType::Secret, Mode::Live);
    let before = h.events();

    for (new_name, new_scopes) in [
        (None, None),
        (Some(name("Backend")), None),
        (None, Some(Scopes::full())),
        (Some(name("Backend")), Some(Scopes::full())),
    ] {
        let view = h
            .service
            .update(&admin, request_id(), &key.key.id, new_name, new_scopes)
            .expect("no-op update");
        assert_eq!(view.key, key.key);
    }

    assert_eq!(h.events(), before);
    assert_eq!(h.stored(&key.key), key.key);
}

#[test]
fn revoke_records_once_and_revoking_again_records_nothing() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let key = h.create_kind(&admin, KeyType::Publishable, Mode::Live);
    h.clock.advance(Duration::minutes(3));
    let before = h.events().len();

    h.service
        .revoke(&admin, request_id(), &key.key.id)
        .expect("revoke");
    h.clock.advance(Duration::minutes(3));
    h.service
        .revoke(&admin, request_id(), &key.key.id)
        .expect("revoke again");

    let events = new_events(&h, before);
    assert_eq!(
        events,
        vec![expected_event(
            &events[0],
            &admin,
            &key.key,
            T0 + Duration::minutes(3),
            EventData::KeyRevoked
        )]
    );
}

#[test]
fn rotate_records_the_rotation_on_the_old_key_and_the_creation_of_its_successor() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let old = h.create_kind(&admin, KeyType::Secret, Mode::Test);
    h.clock.advance(Duration::hours(2));
    let now = T0 + Duration::hours(2);
    let before = h.events().len();

    let rotated = h
        .service
        .rotate(
            &admin,
            request_id(),
            &old.key.id,
            GracePeriod::parse("24h").expect("grace"),
        )
        .expect("rotate");

    let events = new_events(&h, before);
    assert_eq!(
        events,
        vec![
            expected_event(
                &events[0],
                &admin,
                &old.key,
                now,
                EventData::KeyRotated {
                    replaced_by: rotated.key.id,
                    grace_period: Duration::hours(24),
                    revokes_at: now + Duration::hours(24),
                }
            ),
            expected_event(
                &events[1],
                &admin,
                &rotated.key,
                now,
                EventData::KeyCreated {
                    rotated_from: Some(old.key.id)
                }
            ),
        ]
    );
}

#[test]
fn refused_changes_record_nothing() {
    let h = Harness::with_max_active_keys(3);
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let tester = h.principal(&acme.test);
    let old = h.create_kind(&admin, KeyType::Publishable, Mode::Live);
    h.service
        .rotate(&admin, None, &old.key.id, GracePeriod::default())
        .expect("rotate");
    let before = h.events();

    assert!(matches!(
        h.service.create(
            &admin,
            None,
            request(KeyType::Secret, None, Scopes::full(), None)
        ),
        Err(CreateError::LimitReached)
    ));
    assert!(matches!(
        h.service.create(
            &tester,
            None,
            request(KeyType::Secret, Some(Mode::Live), Scopes::full(), None)
        ),
        Err(CreateError::LiveModeRequired)
    ));
    assert!(matches!(
        h.service.update(
            &admin,
            None,
            &acme.live.key.id,
            None,
            Some(scopes(&[Scope::UsersRead]))
        ),
        Err(UpdateError::LastFullAccessKey)
    ));
    assert!(matches!(
        h.service
            .update(&tester, None, &acme.live.key.id, Some(name("X")), None),
        Err(UpdateError::NotFound)
    ));
    assert!(matches!(
        h.service.revoke(&admin, None, &acme.live.key.id),
        Err(RevokeError::LastFullAccessKey)
    ));
    assert!(matches!(
        h.service
            .rotate(&admin, None, &old.key.id, GracePeriod::default()),
        Err(RotateError::AlreadyRotated)
    ));

    assert_eq!(h.events(), before);
}

// ---- the caller's own key ----

#[test]
fn a_caller_whose_key_was_revoked_after_authenticating_cannot_write() {
    // Given a caller that authenticated, and whose key another admin then revoked,
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let other_admin_key = h.create_kind(&admin, KeyType::Secret, Mode::Live);
    let other_admin = h.principal(&other_admin_key);
    let target = h.create_kind(&admin, KeyType::Publishable, Mode::Live);
    h.clock.advance(Duration::seconds(1));
    h.service
        .revoke(&other_admin, None, &acme.live.key.id)
        .expect("revoke the caller's key");
    h.clock.advance(Duration::seconds(1));
    let events = h.events();
    let hashes = h.store.stored_hashes().len();

    // then every write it attempts is refused, and nothing is written.
    assert!(matches!(
        h.service.create(
            &admin,
            request_id(),
            request(KeyType::Secret, None, Scopes::full(), None)
        ),
        Err(CreateError::CallerRevoked)
    ));
    assert!(matches!(
        h.service.update(
            &admin,
            request_id(),
            &target.key.id,
            Some(name("Renamed")),
            None
        ),
        Err(UpdateError::CallerRevoked)
    ));
    assert!(matches!(
        h.service.revoke(&admin, request_id(), &target.key.id),
        Err(RevokeError::CallerRevoked)
    ));
    assert!(matches!(
        h.service
            .rotate(&admin, request_id(), &target.key.id, GracePeriod::default()),
        Err(RotateError::CallerRevoked)
    ));
    assert_eq!(h.events(), events);
    assert_eq!(h.store.stored_hashes().len(), hashes);
    assert_eq!(h.stored(&target.key), target.key);
}

#[test]
fn a_caller_whose_key_is_in_its_grace_period_may_still_write() {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let rotated = h
        .service
        .rotate(&admin, None, &acme.live.key.id, GracePeriod::default())
        .expect("rotate the caller's key");
    h.clock.advance(Duration::minutes(59));

    let created = h
        .service
        .create(
            &admin,
            request_id(),
            request(KeyType::Publishable, None, Scopes::full(), None),
        )
        .expect("create in the grace period");
    let last = h.events().pop().expect("an event");
    assert_eq!(last.key_id, Some(created.key.id));
    assert_eq!(last.actor, Actor::ApiKey(acme.live.key.id));

    // Once the grace period is over the key no longer authenticates; a
    // request that authenticated before then cannot write either.
    h.clock.advance(Duration::minutes(1));
    assert!(matches!(
        h.service.revoke(&admin, request_id(), &created.key.id),
        Err(RevokeError::CallerRevoked)
    ));
    let successor = principal_of(&h, &rotated.key, &rotated.secret);
    h.service
        .revoke(&successor, request_id(), &created.key.id)
        .expect("the successor may");
}

// ---- reading the audit log ----

/// A tenant with some history, each change a millisecond after the last so
/// that ids sort in the order of the changes.
struct History {
    h: Harness,
    acme: domain::CreatedTenant,
    live_pk: CreatedKey,
    test_pk: CreatedKey,
}

fn history() -> History {
    let h = Harness::new();
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let tick = || h.clock.advance(Duration::milliseconds(1));
    tick();
    let live_pk = h.create_kind(&admin, KeyType::Publishable, Mode::Live);
    tick();
    let test_pk = h.create_kind(&admin, KeyType::Publishable, Mode::Test);
    tick();
    h.service
        .update(&admin, None, &live_pk.key.id, Some(name("Renamed")), None)
        .expect("update");
    tick();
    h.service
        .revoke(&admin, None, &test_pk.key.id)
        .expect("revoke");
    tick();
    // Another tenant's history stays out of Acme's log.
    h.service
        .create_tenant(&Origin::cli(), "Other")
        .expect("tenant");
    History {
        h,
        acme,
        live_pk,
        test_pk,
    }
}

fn types(events: &[KeyEvent]) -> Vec<(EventType, Option<Mode>)> {
    events.iter().map(|e| (e.event_type(), e.mode)).collect()
}

#[test]
fn the_audit_log_needs_a_secret_key_with_audit_logs_read() {
    let History { h, acme, .. } = history();
    let admin = h.principal(&acme.live);
    let publishable = h.create_kind(&admin, KeyType::Publishable, Mode::Live);
    let users_only = h.create(
        &admin,
        request(KeyType::Secret, None, scopes(&[Scope::UsersRead]), None),
    );
    let auditor = h.create(
        &admin,
        request(KeyType::Secret, None, scopes(&[Scope::AuditLogsRead]), None),
    );
    let read = |key: &CreatedKey| {
        h.service
            .list_events(&h.principal(key), ListEvents::default())
    };

    assert!(matches!(
        read(&publishable),
        Err(ListEventsError::Access(AccessError::SecretKeyRequired))
    ));
    assert!(matches!(
        read(&users_only),
        Err(ListEventsError::Access(AccessError::InsufficientScope {
            required: Scope::AuditLogsRead
        }))
    ));
    let by_auditor = read(&auditor).expect("audit-logs:read may read");
    let by_admin = read(&acme.live).expect("* may read");
    assert_eq!(by_auditor, by_admin);
    assert_eq!(by_admin.events.len(), h.events().len() - 3);
}

#[test]
fn the_audit_log_is_newest_first_and_a_test_key_sees_only_test_events() {
    let History {
        h,
        acme,
        live_pk,
        test_pk,
    } = history();

    let live = h
        .service
        .list_events(&h.principal(&acme.live), ListEvents::default())
        .expect("list events");
    assert_eq!(
        types(&live.events[..4]),
        vec![
            (EventType::KeyRevoked, Some(Mode::Test)),
            (EventType::KeyUpdated, Some(Mode::Live)),
            (EventType::KeyCreated, Some(Mode::Test)),
            (EventType::KeyCreated, Some(Mode::Live)),
        ]
    );
    // The tenant's own three events share one millisecond, so their ids
    // order them in no particular way.
    let mut oldest = types(&live.events[4..]);
    oldest.sort_by_key(|(t, m)| (t.as_str(), m.map(Mode::as_str)));
    assert_eq!(
        oldest,
        vec![
            (EventType::KeyCreated, Some(Mode::Live)),
            (EventType::KeyCreated, Some(Mode::Test)),
            (EventType::TenantCreated, None),
        ]
    );
    assert_eq!(live.events[0].key_id, Some(test_pk.key.id));
    assert_eq!(live.events[1].key_id, Some(live_pk.key.id));
    assert!(live.events.iter().all(|e| e.tenant_id == acme.tenant.id));
    assert!(!live.has_more);

    let test = h
        .service
        .list_events(&h.principal(&acme.test), ListEvents::default())
        .expect("list events");
    assert!(test.events.iter().all(|e| e.mode == Some(Mode::Test)));
    assert_eq!(test.events.len(), 3);
    assert_eq!(
        test.events[..2]
            .iter()
            .map(|e| e.key_id)
            .collect::<Vec<_>>(),
        vec![Some(test_pk.key.id), Some(test_pk.key.id)]
    );
    assert_eq!(test.events[2].key_id, Some(acme.test.key.id));
}

#[test]
fn the_audit_log_filters_by_key_and_type_and_pages_with_a_cursor() {
    let History {
        h, acme, live_pk, ..
    } = history();
    let admin = h.principal(&acme.live);
    let list = |request: ListEvents| h.service.list_events(&admin, request).expect("list events");

    let of_key = list(ListEvents {
        key_id: Some(live_pk.key.id),
        ..ListEvents::default()
    });
    assert_eq!(
        types(&of_key.events),
        vec![
            (EventType::KeyUpdated, Some(Mode::Live)),
            (EventType::KeyCreated, Some(Mode::Live)),
        ]
    );
    let revocations = list(ListEvents {
        event_type: Some(EventType::KeyRevoked),
        ..ListEvents::default()
    });
    assert_eq!(revocations.events.len(), 1);

    let first = list(ListEvents {
        limit: PageLimit::new(3).expect("limit"),
        ..ListEvents::default()
    });
    assert_eq!(first.events.len(), 3);
    assert!(first.has_more);
    let rest = list(ListEvents {
        starting_after: first.events.last().map(|e| e.id),
        ..ListEvents::default()
    });
    assert_eq!(rest.events.len(), 4);
    assert!(!rest.has_more);
    let all = list(ListEvents::default());
    assert_eq!(
        [first.events, rest.events].concat(),
        all.events,
        "the pages add up to the whole log"
    );
}
