//! The key change listener over the in-memory store: the service reports
//! exactly the keys each committed write changed, once the write has
//! committed and before it returns, and nothing for a refused write, a
//! no-op, a read or a use.

#![expect(
    clippy::expect_used,
    reason = "test helpers: a failed set-up step is a failed test"
)]

mod common;

use std::sync::{Arc, Mutex};

use common::{request, Harness, Recorder, T0};
use domain::testing::InMemoryStore;
use domain::{
    CreateError, CreateTenantError, GracePeriod, KeyChangeListener, KeyId, KeyName, KeyType,
    ListEvents, ListKeys, Mode, Origin, RevokeError, RotateError, Scope, Scopes, UpdateError,
};
use time::Duration;

/// A listener that notes, for each key it hears of, the type of the latest
/// stored event about that key at that moment: an event is stored with its
/// change, so seeing it shows the change had committed.
struct Witness {
    store: InMemoryStore,
    heard: Mutex<Vec<(KeyId, Option<&'static str>)>>,
}

impl Witness {
    fn new(store: &InMemoryStore) -> Arc<Self> {
        Arc::new(Witness {
            store: store.clone(),
            heard: Mutex::default(),
        })
    }

    /// What it heard since the last call, sorted by key (the order of one
    /// use case's reports is not part of the contract).
    fn take(&self) -> Vec<(KeyId, Option<&'static str>)> {
        let mut heard = std::mem::take(&mut *self.heard.lock().expect("lock"));
        heard.sort_unstable();
        heard
    }
}

impl KeyChangeListener for Witness {
    fn key_changed(&self, id: &KeyId) {
        let latest = self
            .store
            .stored_events()
            .into_iter()
            .rev()
            .find(|stored| stored.event.key_id == Some(*id))
            .map(|stored| stored.event.event_type().as_str());
        self.heard.lock().expect("lock").push((*id, latest));
    }
}

fn sorted<const N: usize>(
    mut heard: [(KeyId, Option<&'static str>); N],
) -> Vec<(KeyId, Option<&'static str>)> {
    heard.sort_unstable();
    heard.to_vec()
}

fn narrow() -> Scopes {
    Scopes::new([Scope::UsersRead]).expect("scopes")
}

#[test]
fn each_committed_write_reports_exactly_its_keys_once_committed() {
    let h = Harness::new();
    let witness = Witness::new(&h.store);
    let h = h.with_listener(witness.clone());
    const CREATED: Option<&str> = Some("api_key.created");

    // create_tenant: both keys.
    let acme = h.tenant();
    assert_eq!(
        witness.take(),
        sorted([(acme.live.key.id, CREATED), (acme.test.key.id, CREATED)])
    );
    let admin = h.principal(&acme.live);

    // create: the new key.
    let key = h.create_kind(&admin, KeyType::Secret, Mode::Live);
    assert_eq!(witness.take(), [(key.key.id, CREATED)]);

    // update: the key.
    h.service
        .update(
            &admin,
            None,
            &key.key.id,
            Some(KeyName::parse("Renamed").expect("name")),
            Some(narrow()),
        )
        .expect("update");
    assert_eq!(witness.take(), [(key.key.id, Some("api_key.updated"))]);

    // rotate: the old key and its successor.
    let rotated = h
        .service
        .rotate(&admin, None, &key.key.id, GracePeriod::default())
        .expect("rotate");
    assert_eq!(
        witness.take(),
        sorted([
            (key.key.id, Some("api_key.rotated")),
            (rotated.key.id, CREATED)
        ])
    );

    // revoke: the key.
    h.service
        .revoke(&admin, None, &rotated.key.id)
        .expect("revoke");
    assert_eq!(witness.take(), [(rotated.key.id, Some("api_key.revoked"))]);
}

#[test]
fn every_listener_hears_every_change() {
    let (first, second) = (Recorder::new(), Recorder::new());
    let h = Harness::new()
        .with_listener(first.clone())
        .with_listener(second.clone());

    let acme = h.tenant();

    for recorder in [&first, &second] {
        let mut heard = recorder.take();
        heard.sort_unstable();
        let mut expected = vec![acme.live.key.id, acme.test.key.id];
        expected.sort_unstable();
        assert_eq!(heard, expected);
        assert_eq!(recorder.caught_up_calls(), 0);
    }
}

#[test]
fn refused_writes_report_nothing() {
    // Given a tenant whose live key is its last full-access live secret key,
    // with room for one more live key,
    let recorder = Recorder::new();
    let h = Harness::with_max_active_keys(2).with_listener(recorder.clone());
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let tester = h.principal(&acme.test);
    let publishable = h.create_kind(&admin, KeyType::Publishable, Mode::Live);
    let publishable = h.principal(&publishable);
    let ghost = h
        .service
        .create_tenant(&Origin::cli(), "Ghost")
        .expect("tenant")
        .live
        .key
        .id;
    recorder.take();

    // when writes are refused, by access, by the rules or by the store,
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
        h.service.create(
            &publishable,
            None,
            request(KeyType::Secret, None, Scopes::full(), None)
        ),
        Err(CreateError::Access(_))
    ));
    assert!(matches!(
        h.service
            .update(&admin, None, &acme.live.key.id, None, Some(narrow())),
        Err(UpdateError::LastFullAccessKey)
    ));
    assert!(matches!(
        h.service.update(&admin, None, &ghost, None, Some(narrow())),
        Err(UpdateError::NotFound)
    ));
    assert!(matches!(
        h.service.revoke(&admin, None, &acme.live.key.id),
        Err(RevokeError::LastFullAccessKey)
    ));
    assert!(matches!(
        h.service.revoke(&tester, None, &acme.live.key.id),
        Err(RevokeError::NotFound)
    ));
    assert!(matches!(
        h.service
            .rotate(&tester, None, &acme.live.key.id, GracePeriod::default()),
        Err(RotateError::NotFound)
    ));
    assert!(matches!(
        h.service.create_tenant(&Origin::cli(), "   "),
        Err(CreateTenantError::InvalidName(_))
    ));
    h.store.set_unavailable(true);
    assert!(h.service.revoke(&admin, None, &acme.test.key.id).is_err());
    h.store.set_unavailable(false);

    // then the listener hears nothing.
    assert_eq!(recorder.take(), Vec::<KeyId>::new());
}

#[test]
fn writes_that_change_nothing_report_nothing() {
    // Given a key rotated once and a revoked key,
    let recorder = Recorder::new();
    let h = Harness::new().with_listener(recorder.clone());
    let acme = h.tenant();
    let admin = h.principal(&acme.live);
    let key = h.create_kind(&admin, KeyType::Secret, Mode::Live);
    h.service
        .rotate(&admin, None, &key.key.id, GracePeriod::default())
        .expect("rotate");
    let revoked = h.create_kind(&admin, KeyType::Secret, Mode::Test);
    h.service
        .revoke(&admin, None, &revoked.key.id)
        .expect("revoke");
    recorder.take();

    // when an update asks for what the key already has, the revoked key is
    // revoked again, and the rotated or revoked keys are rotated or updated,
    for (name, scopes) in [
        (None, None),
        (Some(acme.live.key.name.clone()), Some(Scopes::full())),
    ] {
        h.service
            .update(&admin, None, &acme.live.key.id, name, scopes)
            .expect("no-op update");
    }
    h.service
        .revoke(&admin, None, &revoked.key.id)
        .expect("revoking again");
    assert!(matches!(
        h.service
            .rotate(&admin, None, &key.key.id, GracePeriod::default()),
        Err(RotateError::AlreadyRotated)
    ));
    assert!(matches!(
        h.service
            .rotate(&admin, None, &revoked.key.id, GracePeriod::default()),
        Err(RotateError::Revoked)
    ));
    assert!(matches!(
        h.service
            .update(&admin, None, &revoked.key.id, None, Some(narrow())),
        Err(UpdateError::Revoked)
    ));

    // then the listener hears nothing.
    assert_eq!(recorder.take(), Vec::<KeyId>::new());
}

#[test]
fn reads_and_uses_report_nothing() {
    let recorder = Recorder::new();
    let h = Harness::new().with_listener(recorder.clone());
    let acme = h.tenant();
    recorder.take();

    // A use is recorded (`last_used_at`), but it is not a change of the key.
    let admin = h.principal(&acme.live);
    assert_eq!(h.stored(&acme.live.key).last_used_at, Some(T0));
    h.clock.advance(Duration::minutes(5));
    h.authenticate(&acme.live.secret, &acme.tenant.id)
        .expect("authenticates");
    h.service.get(&admin, &acme.test.key.id).expect("get");
    h.service.list(&admin, ListKeys::default()).expect("list");
    h.service
        .list_events(&admin, ListEvents::default())
        .expect("events");

    assert_eq!(recorder.take(), Vec::<KeyId>::new());
    assert_eq!(recorder.caught_up_calls(), 0);
}
