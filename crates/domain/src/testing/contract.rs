//! The repository contract suite: what every [`ApiKeyRepository`],
//! [`TenantRepository`], [`EventRepository`] and [`IdempotencyRepository`]
//! adapter must do, as checks
//! any adapter's tests can run.
//!
//! Use [`repository_contract_tests!`](crate::repository_contract_tests) with an
//! expression that makes a fresh, empty store, or a value that dereferences to
//! one (a `Box`, a guard that owns a test database); it expands to one
//! `#[test]` per check. Concurrency guarantees need real threads against the
//! real adapter and are tested there; these checks cover everything one thread
//! can observe. Events are observed only through
//! [`EventRepository::list_events`], as the service reads them. A failed check
//! panics with the step that failed, as a test should.

#![expect(
    clippy::expect_used,
    reason = "test support: a failed step is a failed test"
)]

use std::cell::Cell;

use time::{Duration, OffsetDateTime};

use crate::api_key::{ApiKey, NewKey, Tenant};
use crate::events::{
    Actor, Change, EventData, EventQuery, EventType, FieldChanges, KeyEvent, Origin,
};
use crate::hashing::HashKey;
use crate::ids::{EventId, KeyId, TenantId};
use crate::key_kind::{KeyType, Mode};
use crate::key_string::PlainKey;
use crate::metadata::Metadata;
use crate::name::KeyName;
use crate::ports::{
    ActorRefusal, ApiKeyRepository, CreateTenantRepoError, EventRepository, IdempotencyRepository,
    InsertError, KeyUse, ListQuery, RevokeRepoError, RotateRepoError, TenantRepository,
    UpdateRepoError, UsageBudget,
};
use crate::random::SecretSource;
use crate::restrictions::{AllowedIps, AllowedOrigins, KeyRestrictions};
use crate::scope::{Scope, Scopes};
use crate::service::DEFAULT_MAX_ACTIVE_KEYS;
use crate::testing::SeqSecretSource;

/// What the suite needs: the four repositories in one store.
pub trait Store:
    ApiKeyRepository + TenantRepository + EventRepository + IdempotencyRepository + UsageBudget
{
}
impl<
        S: ApiKeyRepository + TenantRepository + EventRepository + IdempotencyRepository + UsageBudget,
    > Store for S
{
}

/// The instant the suite's data is created at (whole seconds, as the service
/// stores them).
pub const T0: OffsetDateTime = time::macros::datetime!(2024-01-10 09:00:00 UTC);

/// The request id of the suite's changes made "over HTTP" ([`by_key`]).
pub const REQUEST_ID: &str = "req_contract_0001";

/// Builds tenants, keys and events with distinct ids and hashes. Every id it
/// makes (tenant, key or event) is larger than the ones it made before, so
/// creation order is id order.
#[derive(Debug)]
pub struct Fixture {
    secrets: SeqSecretSource,
    hash_key: HashKey,
    clock_ms: Cell<i64>,
    key_limit: Cell<u32>,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    /// A fixture with a fixed seed.
    pub fn new() -> Self {
        Fixture {
            secrets: SeqSecretSource::new(42),
            // 32 bytes of a fixed test key; the suite never checks hashing itself.
            hash_key: HashKey::from_bytes(&[7u8; 32]).unwrap_or_else(|_| unreachable!()),
            clock_ms: Cell::new(0),
            key_limit: Cell::new(DEFAULT_MAX_ACTIVE_KEYS),
        }
    }

    /// A tenant created at [`T0`].
    pub fn tenant(&self, name: &str) -> Tenant {
        Tenant {
            id: TenantId::generate(self.tick(), &self.secrets),
            name: name.to_owned(),
            created_at: T0,
        }
    }

    /// A stored tenant with no keys, created by the command line with its
    /// `tenant.created` event.
    ///
    /// # Panics
    /// If the store refuses it.
    pub fn stored_tenant(&self, store: &impl Store, name: &str) -> Tenant {
        let tenant = self.tenant(name);
        store
            .create(&tenant, &[], &[self.tenant_created_event(&tenant)])
            .expect("create tenant");
        tenant
    }

    /// A full-access live secret key of `tenant`, created at [`T0`].
    pub fn key(&self, tenant: &Tenant) -> NewKey {
        self.key_with(tenant, KeyType::Secret, Mode::Live, Scopes::full())
    }

    /// A key of `tenant` with the given type, mode and scopes.
    pub fn key_with(
        &self,
        tenant: &Tenant,
        key_type: KeyType,
        mode: Mode,
        scopes: Scopes,
    ) -> NewKey {
        let secret = PlainKey::generate(key_type, mode, &self.secrets);
        let key = ApiKey {
            id: KeyId::generate(self.tick(), &self.secrets),
            tenant_id: tenant.id,
            name: KeyName::parse("Contract key").unwrap_or_else(|_| unreachable!()),
            key_type,
            mode,
            prefix: secret.prefix().to_owned(),
            last_four: secret.last_four().to_owned(),
            scopes,
            created_at: T0,
            last_used_at: None,
            expires_at: None,
            revokes_at: None,
            replaced_by: None,
            limits: Default::default(),
            restrictions: Default::default(),
            metadata: Default::default(),
        };
        NewKey {
            hash: self.hash_key.hash(&secret),
            key,
        }
    }

    /// Inserts `key` at [`T0`] by the command line, with a generous limit.
    ///
    /// # Panics
    /// If the store refuses it.
    pub fn insert(&self, store: &impl Store, key: &NewKey) {
        store
            .insert(key, 10_000, &self.created_event(&key.key, T0))
            .expect("insert key");
    }

    /// Applies `changes` to `key` at `at`, by the command line.
    ///
    /// # Errors
    /// The store's refusal.
    pub fn update(
        &self,
        store: &impl Store,
        key: &ApiKey,
        changes: &FieldChanges,
        at: OffsetDateTime,
    ) -> Result<ApiKey, UpdateRepoError> {
        let event = self.updated_event(key, changes, at);
        store.update(&key.tenant_id, &key.id, changes, &event)
    }

    /// Revokes `key` at `at`, by the command line.
    ///
    /// # Errors
    /// The store's refusal.
    pub fn revoke(
        &self,
        store: &impl Store,
        key: &ApiKey,
        at: OffsetDateTime,
    ) -> Result<ApiKey, RevokeRepoError> {
        store.revoke(&key.tenant_id, &key.id, &self.revoked_event(key, at))
    }

    /// Rotates `old` into `successor` at `at` with a grace period of `grace`,
    /// by the command line.
    ///
    /// # Errors
    /// The store's refusal.
    pub fn rotate(
        &self,
        store: &impl Store,
        old: &ApiKey,
        successor: &NewKey,
        grace: Duration,
        at: OffsetDateTime,
    ) -> Result<(), RotateRepoError> {
        let (rotated, created) = self.rotated_events(old, &successor.key, grace, at);
        let limit = self.key_limit.get();
        store.rotate(&old.id, successor, at + grace, limit, &rotated, &created)
    }

    /// The key limit [`rotate`](Self::rotate) passes from now on
    /// ([`DEFAULT_MAX_ACTIVE_KEYS`] at first).
    pub fn set_key_limit(&self, max_active: u32) {
        self.key_limit.set(max_active);
    }

    /// A new event id.
    pub fn event_id(&self) -> EventId {
        EventId::generate(self.tick(), &self.secrets)
    }

    /// An event about `key` at `at`, by the command line.
    pub fn event(&self, key: &ApiKey, at: OffsetDateTime, data: EventData) -> KeyEvent {
        KeyEvent::for_key(self.event_id(), at, key, &Origin::cli(), data)
    }

    /// `api_key.created` for a new key (not a rotation's successor).
    pub fn created_event(&self, key: &ApiKey, at: OffsetDateTime) -> KeyEvent {
        self.event(key, at, EventData::KeyCreated { rotated_from: None })
    }

    /// `api_key.updated` with `changes`.
    pub fn updated_event(
        &self,
        key: &ApiKey,
        changes: &FieldChanges,
        at: OffsetDateTime,
    ) -> KeyEvent {
        self.event(
            key,
            at,
            EventData::KeyUpdated {
                changes: changes.clone(),
            },
        )
    }

    /// `api_key.revoked`.
    pub fn revoked_event(&self, key: &ApiKey, at: OffsetDateTime) -> KeyEvent {
        self.event(key, at, EventData::KeyRevoked)
    }

    /// The two events of a rotation at `at`: `api_key.rotated` on `old`
    /// (revoked at `at + grace`) and `api_key.created` on `successor`, in
    /// that order (so the successor's event has the larger id).
    pub fn rotated_events(
        &self,
        old: &ApiKey,
        successor: &ApiKey,
        grace: Duration,
        at: OffsetDateTime,
    ) -> (KeyEvent, KeyEvent) {
        let rotated = self.event(
            old,
            at,
            EventData::KeyRotated {
                replaced_by: successor.id,
                grace_period: grace,
                revokes_at: at + grace,
            },
        );
        let created = self.event(
            successor,
            at,
            EventData::KeyCreated {
                rotated_from: Some(old.id),
            },
        );
        (rotated, created)
    }

    /// `tenant.created` at the tenant's creation time, by the command line.
    pub fn tenant_created_event(&self, tenant: &Tenant) -> KeyEvent {
        KeyEvent {
            id: self.event_id(),
            created_at: tenant.created_at,
            tenant_id: tenant.id,
            key_id: None,
            mode: None,
            actor: Actor::Cli,
            request_id: None,
            data: EventData::TenantCreated {
                name: tenant.name.clone(),
            },
        }
    }

    // Ids are ULIDs whose time part grows by one millisecond per call, so
    // creation order is id order regardless of the random part.
    fn tick(&self) -> OffsetDateTime {
        let ms = self.clock_ms.get() + 1;
        self.clock_ms.set(ms);
        T0 + Duration::milliseconds(ms)
    }

    /// Random bytes from the fixture's deterministic source.
    pub fn random(&self, buf: &mut [u8]) {
        self.secrets.fill(buf);
    }
}

/// `event` as made by `actor` in the request `request_id`.
pub fn made_by(actor: Actor, request_id: Option<&str>, event: KeyEvent) -> KeyEvent {
    KeyEvent {
        actor,
        request_id: request_id.map(str::to_owned),
        ..event
    }
}

/// `event` as made over HTTP, in the request [`REQUEST_ID`], by a caller
/// authenticated with `caller`.
pub fn by_key(caller: &ApiKey, event: KeyEvent) -> KeyEvent {
    made_by(Actor::ApiKey(caller.id), Some(REQUEST_ID), event)
}

/// The changes that rename `key` (to a name it does not have yet).
///
/// # Panics
/// If `name` is not a valid key name.
pub fn rename(key: &ApiKey, name: &str) -> FieldChanges {
    let name = KeyName::parse(name).expect("name");
    FieldChanges::between(key, Some(&name), None)
}

/// The changes that give `key` other scopes.
pub fn rescope(key: &ApiKey, scopes: Scopes) -> FieldChanges {
    FieldChanges::between(key, None, Some(&scopes))
}

/// Every event of `tenant`, newest first.
///
/// # Panics
/// If the store fails, or the tenant has more than 100 events.
pub fn events_of(store: &impl Store, tenant: &TenantId) -> Vec<KeyEvent> {
    let page = store
        .list_events(tenant, &event_query())
        .expect("list events");
    assert!(!page.has_more, "the suite never makes more than 100 events");
    page.events
}

/// `event` as if the caller's tenant were `tenant` (a request naming a key of
/// another tenant).
fn in_tenant(event: KeyEvent, tenant: &Tenant) -> KeyEvent {
    KeyEvent {
        tenant_id: tenant.id,
        ..event
    }
}

fn event_query() -> EventQuery {
    EventQuery {
        key_id: None,
        event_type: None,
        mode: None,
        starting_after: None,
        limit: 100,
    }
}

fn query(now: OffsetDateTime) -> ListQuery {
    ListQuery {
        key_type: None,
        mode: None,
        include_revoked: false,
        starting_after: None,
        limit: 100,
        now,
    }
}

fn ids(keys: &[ApiKey]) -> Vec<KeyId> {
    keys.iter().map(|k| k.id).collect()
}

fn event_ids(events: &[KeyEvent]) -> Vec<EventId> {
    events.iter().map(|e| e.id).collect()
}

fn scopes(list: &[Scope]) -> Scopes {
    Scopes::new(list.iter().copied()).expect("scopes")
}

fn name(text: &str) -> KeyName {
    KeyName::parse(text).expect("name")
}

// ---- keys ----

/// Every field survives an insert and comes back by id and by hash.
pub fn insert_then_find_round_trips_every_field(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let mut new = f.key_with(
        &tenant,
        KeyType::Publishable,
        Mode::Test,
        scopes(&[Scope::UsersRead, Scope::AuditLogsRead]),
    );
    new.key.name = name("Ünïcødé – analytics ✓");
    new.key.expires_at = Some(T0 + Duration::days(90));
    f.insert(store, &new);

    assert_eq!(
        store.find(&tenant.id, &new.key.id).expect("find"),
        Some(new.key.clone())
    );
    assert_eq!(
        store.find_by_hash(&new.hash).expect("find by hash"),
        Some(new.key)
    );
}

/// A key is invisible through another tenant, and unknown ids and hashes are `None`.
pub fn find_is_scoped_to_the_tenant(store: &impl Store) {
    let f = Fixture::new();
    let acme = f.stored_tenant(store, "Acme");
    let other = f.stored_tenant(store, "Other");
    let key = f.key(&acme);
    f.insert(store, &key);
    let unknown = f.key(&acme);

    assert_eq!(store.find(&other.id, &key.key.id).expect("find"), None);
    assert_eq!(store.find(&acme.id, &unknown.key.id).expect("find"), None);
    assert_eq!(
        store.find_by_hash(&unknown.hash).expect("find by hash"),
        None
    );
}

/// A second key with a taken id or hash is refused, and nothing changes.
pub fn insert_refuses_duplicate_id_or_hash(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let first = f.key(&tenant);
    f.insert(store, &first);

    let mut same_hash = f.key(&tenant);
    same_hash.hash = first.hash;
    let mut same_id = f.key(&tenant);
    same_id.key.id = first.key.id;

    assert!(matches!(
        store.insert(&same_hash, 100, &f.created_event(&same_hash.key, T0)),
        Err(InsertError::Duplicate)
    ));
    assert!(matches!(
        store.insert(&same_id, 100, &f.created_event(&same_id.key, T0)),
        Err(InsertError::Duplicate)
    ));
    assert_eq!(
        store.find(&tenant.id, &same_hash.key.id).expect("find"),
        None
    );
    assert_eq!(
        store.find(&tenant.id, &first.key.id).expect("find"),
        Some(first.key)
    );
}

/// A key for a tenant that does not exist is refused.
pub fn insert_refuses_unknown_tenant(store: &impl Store) {
    let f = Fixture::new();
    let ghost = f.tenant("Ghost");
    let key = f.key(&ghost);

    assert!(matches!(
        store.insert(&key, 100, &f.created_event(&key.key, T0)),
        Err(InsertError::UnknownTenant)
    ));
    assert_eq!(store.find_by_hash(&key.hash).expect("find"), None);
}

/// The limit counts active keys (also those in a grace period), not revoked or
/// expired ones, and only the tenant's own.
pub fn insert_respects_the_active_key_limit(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let other = f.stored_tenant(store, "Other");
    let now = T0 + Duration::hours(1);

    let mut expired = f.key(&tenant);
    expired.key.expires_at = Some(T0 + Duration::minutes(1));
    f.insert(store, &expired);
    let revoked = f.key(&tenant);
    f.insert(store, &revoked);
    let guard = f.key(&tenant);
    f.insert(store, &guard);
    f.revoke(store, &revoked.key, T0).expect("revoke");
    f.insert(store, &f.key(&other));
    f.insert(store, &f.key(&other));

    let second = f.key(&tenant);
    store
        .insert(&second, 2, &f.created_event(&second.key, now))
        .expect("second active key fits under a limit of 2");
    let third = f.key(&tenant);
    assert!(matches!(
        store.insert(&third, 2, &f.created_event(&third.key, now)),
        Err(InsertError::LimitReached)
    ));
    assert_eq!(store.find(&tenant.id, &third.key.id).expect("find"), None);
}

/// The limit counts per mode: test keys at the limit do not stop a live key,
/// and live keys at the limit do not stop a test key.
pub fn the_active_key_limit_counts_per_mode(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let now = T0 + Duration::hours(1);
    let test_key = || f.key_with(&tenant, KeyType::Secret, Mode::Test, Scopes::full());
    for _ in 0..2 {
        let key = test_key();
        store
            .insert(&key, 2, &f.created_event(&key.key, now))
            .expect("a test key under the limit");
    }
    let third = test_key();
    assert!(matches!(
        store.insert(&third, 2, &f.created_event(&third.key, now)),
        Err(InsertError::LimitReached)
    ));
    for _ in 0..2 {
        let live = f.key(&tenant);
        store
            .insert(&live, 2, &f.created_event(&live.key, now))
            .expect("live keys count apart from test keys");
    }
    let live = f.key(&tenant);
    assert!(matches!(
        store.insert(&live, 2, &f.created_event(&live.key, now)),
        Err(InsertError::LimitReached)
    ));
    assert_eq!(store.find(&tenant.id, &live.key.id).expect("find"), None);
    assert_eq!(store.find(&tenant.id, &third.key.id).expect("find"), None);
}

/// Newest first; `limit`, `has_more` and `starting_after` page through all keys.
pub fn list_pages_newest_first(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let keys: Vec<NewKey> = (0..5).map(|_| f.key(&tenant)).collect();
    for key in &keys {
        f.insert(store, key);
    }
    let other = f.stored_tenant(store, "Other");
    f.insert(store, &f.key(&other));
    let newest_first: Vec<KeyId> = keys.iter().rev().map(|k| k.key.id).collect();
    let page = |limit: u32, starting_after: Option<KeyId>| {
        let page = store
            .list(
                &tenant.id,
                &ListQuery {
                    limit,
                    starting_after,
                    ..query(T0)
                },
            )
            .expect("list");
        (ids(&page.keys), page.has_more)
    };

    assert_eq!(page(2, None), (newest_first[..2].to_vec(), true));
    assert_eq!(
        page(2, Some(newest_first[1])),
        (newest_first[2..4].to_vec(), true)
    );
    assert_eq!(
        page(2, Some(newest_first[3])),
        (newest_first[4..].to_vec(), false)
    );
    assert_eq!(page(5, None), (newest_first, false));
}

/// Type and mode filters; revoked keys only when asked, judged at `now`.
pub fn list_filters_by_type_mode_and_revocation(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let live_sk = f.key(&tenant);
    let test_sk = f.key_with(&tenant, KeyType::Secret, Mode::Test, Scopes::full());
    let live_pk = f.key_with(&tenant, KeyType::Publishable, Mode::Live, Scopes::full());
    let revoked = f.key(&tenant);
    let in_grace = f.key(&tenant);
    for key in [&live_sk, &test_sk, &live_pk, &revoked, &in_grace] {
        f.insert(store, key);
    }
    f.revoke(store, &revoked.key, T0).expect("revoke");
    let successor = f.key(&tenant);
    f.rotate(store, &in_grace.key, &successor, Duration::hours(1), T0)
        .expect("rotate");
    let list = |q: ListQuery| ids(&store.list(&tenant.id, &q).expect("list").keys);

    assert_eq!(
        list(query(T0)),
        vec![
            successor.key.id,
            in_grace.key.id,
            live_pk.key.id,
            test_sk.key.id,
            live_sk.key.id
        ]
    );
    assert_eq!(
        list(ListQuery {
            key_type: Some(KeyType::Publishable),
            ..query(T0)
        }),
        vec![live_pk.key.id]
    );
    assert_eq!(
        list(ListQuery {
            mode: Some(Mode::Test),
            ..query(T0)
        }),
        vec![test_sk.key.id]
    );
    assert_eq!(
        list(ListQuery {
            include_revoked: true,
            ..query(T0)
        }),
        vec![
            successor.key.id,
            in_grace.key.id,
            revoked.key.id,
            live_pk.key.id,
            test_sk.key.id,
            live_sk.key.id
        ]
    );
    // Once the grace period is over the rotated key counts as revoked.
    assert_eq!(
        list(query(T0 + Duration::hours(1))),
        vec![
            successor.key.id,
            live_pk.key.id,
            test_sk.key.id,
            live_sk.key.id
        ]
    );
}

/// Name and scopes change; other fields stay; unknown and revoked keys are refused.
pub fn update_changes_name_and_scopes(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let guard = f.key(&tenant);
    let key = f.key(&tenant);
    f.insert(store, &guard);
    f.insert(store, &key);
    let changes = FieldChanges::between(
        &key.key,
        Some(&name("Renamed")),
        Some(&scopes(&[Scope::WebhooksRead])),
    );

    let updated = f.update(store, &key.key, &changes, T0).expect("update");

    let expected = ApiKey {
        name: name("Renamed"),
        scopes: scopes(&[Scope::WebhooksRead]),
        ..key.key.clone()
    };
    assert_eq!(updated, expected);
    assert_eq!(
        store.find(&tenant.id, &key.key.id).expect("find"),
        Some(expected.clone())
    );

    let only_name = rename(&expected, "Again");
    let renamed = f.update(store, &key.key, &only_name, T0).expect("update");
    assert_eq!(
        renamed,
        ApiKey {
            name: name("Again"),
            ..expected
        }
    );

    let unknown = f.key(&tenant);
    assert!(matches!(
        f.update(store, &unknown.key, &rename(&unknown.key, "Renamed"), T0),
        Err(UpdateRepoError::NotFound)
    ));
    let other = f.stored_tenant(store, "Other");
    let elsewhere = rename(&renamed, "Elsewhere");
    assert!(matches!(
        store.update(
            &other.id,
            &key.key.id,
            &elsewhere,
            &in_tenant(f.updated_event(&key.key, &elsewhere, T0), &other)
        ),
        Err(UpdateRepoError::NotFound)
    ));
    f.revoke(store, &key.key, T0).expect("revoke");
    assert!(matches!(
        f.update(store, &key.key, &rename(&renamed, "Too late"), T0),
        Err(UpdateRepoError::Revoked)
    ));
}

/// Narrowing the scopes of the tenant's last guard key is refused; renaming it
/// is not; with a second guard key narrowing is allowed.
pub fn update_keeps_a_full_access_key(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let only = f.key(&tenant);
    f.insert(store, &only);
    // Keys that do not count for the guard.
    f.insert(
        store,
        &f.key_with(&tenant, KeyType::Secret, Mode::Test, Scopes::full()),
    );
    f.insert(
        store,
        &f.key_with(&tenant, KeyType::Publishable, Mode::Live, Scopes::full()),
    );
    let narrow = rescope(&only.key, scopes(&[Scope::UsersRead]));

    assert!(matches!(
        f.update(store, &only.key, &narrow, T0),
        Err(UpdateRepoError::LastFullAccessKey)
    ));
    assert_eq!(
        store.find(&tenant.id, &only.key.id).expect("find"),
        Some(only.key.clone())
    );
    // Scopes that stay `*` are no change at all: only the name changes.
    let rename = FieldChanges::between(&only.key, Some(&name("Still full")), Some(&Scopes::full()));
    assert_eq!(rename.scopes, None);
    f.update(store, &only.key, &rename, T0).expect("rename");

    let second = f.key(&tenant);
    f.insert(store, &second);
    let narrowed = f.update(store, &only.key, &narrow, T0).expect("update");
    assert_eq!(narrowed.scopes, scopes(&[Scope::UsersRead]));
    assert!(matches!(
        f.update(
            store,
            &second.key,
            &rescope(&second.key, scopes(&[Scope::UsersRead])),
            T0
        ),
        Err(UpdateRepoError::LastFullAccessKey)
    ));
}

/// Revocation sets `revokes_at` to now, is idempotent, keeps the guard, and
/// also ends a grace period early.
pub fn revoke_is_immediate_idempotent_and_guarded(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let guard = f.key(&tenant);
    let key = f.key(&tenant);
    f.insert(store, &guard);
    f.insert(store, &key);
    let later = T0 + Duration::minutes(5);

    let revoked = f.revoke(store, &key.key, later).expect("revoke");
    assert_eq!(revoked.revokes_at, Some(later));
    let again = f
        .revoke(store, &key.key, later + Duration::minutes(1))
        .expect("revoke again");
    assert_eq!(again.revokes_at, Some(later));

    assert!(matches!(
        f.revoke(store, &guard.key, later),
        Err(RevokeRepoError::LastFullAccessKey)
    ));
    assert_eq!(
        store
            .find(&tenant.id, &guard.key.id)
            .expect("find")
            .map(|k| k.revokes_at),
        Some(None)
    );
    let other = f.stored_tenant(store, "Other");
    assert!(matches!(
        store.revoke(
            &other.id,
            &guard.key.id,
            &in_tenant(f.revoked_event(&guard.key, later), &other)
        ),
        Err(RevokeRepoError::NotFound)
    ));

    let successor = f.key(&tenant);
    f.rotate(store, &guard.key, &successor, Duration::hours(1), later)
        .expect("rotate");
    let cut_short = f.revoke(store, &guard.key, later).expect("revoke in grace");
    assert_eq!(cut_short.revokes_at, Some(later));
}

/// Rotation stores the successor and schedules the old key's revocation; a key
/// that is no longer active cannot be rotated and nothing is written.
pub fn rotate_is_one_unit_and_only_for_active_keys(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let old = f.key(&tenant);
    f.insert(store, &old);
    let successor = f.key(&tenant);
    let grace = Duration::hours(24);

    f.rotate(store, &old.key, &successor, grace, T0)
        .expect("rotate");

    let stored_old = store
        .find(&tenant.id, &old.key.id)
        .expect("find")
        .expect("old key");
    assert_eq!(stored_old.revokes_at, Some(T0 + grace));
    assert_eq!(stored_old.replaced_by, Some(successor.key.id));
    assert_eq!(
        store.find_by_hash(&successor.hash).expect("find"),
        Some(successor.key.clone())
    );

    let loser = f.key(&tenant);
    assert!(matches!(
        f.rotate(store, &old.key, &loser, grace, T0),
        Err(RotateRepoError::NotActive)
    ));
    assert_eq!(store.find_by_hash(&loser.hash).expect("find"), None);

    let mut expiring = f.key(&tenant);
    expiring.key.expires_at = Some(T0 + Duration::minutes(1));
    f.insert(store, &expiring);
    let late = T0 + Duration::minutes(1);
    let unused = f.key(&tenant);
    assert!(matches!(
        f.rotate(store, &expiring.key, &unused, Duration::ZERO, late),
        Err(RotateRepoError::NotActive)
    ));
    assert!(matches!(
        f.rotate(store, &f.key(&tenant).key, &unused, Duration::ZERO, late),
        Err(RotateRepoError::NotFound)
    ));
    assert_eq!(store.find_by_hash(&unused.hash).expect("find"), None);
}

/// `revoke_unguarded` revokes even the tenant's last full-access key, with
/// its event, and leaves a revoked key (and its events) as it is.
pub fn revoke_unguarded_takes_even_the_last_full_access_key(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let guard = f.key(&tenant);
    f.insert(store, &guard);
    let later = T0 + Duration::minutes(5);
    assert!(matches!(
        f.revoke(store, &guard.key, later),
        Err(RevokeRepoError::LastFullAccessKey)
    ));
    let before = events_of(store, &tenant.id);

    let event = made_by(Actor::LeakReport, None, f.revoked_event(&guard.key, later));
    let revoked = store
        .revoke_unguarded(&tenant.id, &guard.key.id, &event)
        .expect("revoke unguarded");
    assert_eq!(revoked.revokes_at, Some(later));
    let after = events_of(store, &tenant.id);
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(after[0], event);

    let again = made_by(
        Actor::LeakReport,
        None,
        f.revoked_event(&guard.key, later + Duration::minutes(1)),
    );
    let unchanged = store
        .revoke_unguarded(&tenant.id, &guard.key.id, &again)
        .expect("already revoked");
    assert_eq!(unchanged.revokes_at, Some(later));
    assert_eq!(events_of(store, &tenant.id), after);
}

/// A revocation on a secret scanner's report stores its event with who
/// found the key and where, and reads it back the same
/// (docs/secret-scanning.md).
pub fn a_found_revocation_keeps_its_source_and_url(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let guard = f.key(&tenant);
    let found = f.key(&tenant);
    f.insert(store, &guard);
    f.insert(store, &found);
    let later = T0 + Duration::minutes(5);
    let event = KeyEvent {
        data: EventData::KeyRevokedFound {
            source: crate::LeakSource::GitHub,
            url: "https://github.com/octo/hello/blob/0123abc/config.env".to_owned(),
        },
        ..made_by(Actor::LeakReport, None, f.revoked_event(&found.key, later))
    };
    store
        .revoke_unguarded(&tenant.id, &found.key.id, &event)
        .expect("revoke unguarded");
    let stored = events_of(store, &tenant.id);
    assert_eq!(stored[0], event);
    assert_eq!(stored[0].event_type(), EventType::KeyRevoked);
}

/// `last_used_at` is written at most once per 60 s, and writes no event.
pub fn record_uses_writes_at_most_once_a_minute(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let key = f.key(&tenant);
    f.insert(store, &key);
    let events = events_of(store, &tenant.id);
    let touch = |tenant: &TenantId, now: OffsetDateTime| {
        let one = KeyUse {
            tenant_id: *tenant,
            ..KeyUse::of(&key.key, now)
        };
        store.record_uses(&[one]).expect("record") == 1
    };
    let last_used = || {
        store
            .find(&tenant.id, &key.key.id)
            .expect("find")
            .and_then(|k| k.last_used_at)
    };

    assert!(touch(&tenant.id, T0));
    assert_eq!(last_used(), Some(T0));
    assert!(!touch(&tenant.id, T0 + Duration::seconds(59)));
    assert_eq!(last_used(), Some(T0));
    assert!(touch(&tenant.id, T0 + Duration::seconds(60)));
    assert_eq!(last_used(), Some(T0 + Duration::seconds(60)));

    let other = f.stored_tenant(store, "Other");
    assert!(!touch(&other.id, T0 + Duration::hours(1)));
    assert_eq!(last_used(), Some(T0 + Duration::seconds(60)));
    assert_eq!(events_of(store, &tenant.id), events);
}

/// Many uses are recorded in one call: each key by its own rule, unknown
/// keys ignored, and the count says how many keys were written.
pub fn record_uses_takes_a_batch(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let (a, b) = (f.key(&tenant), f.key(&tenant));
    f.insert(store, &a);
    f.insert(store, &b);
    let unknown = f.key(&tenant);
    let t1 = T0 + Duration::seconds(30);
    assert_eq!(
        store
            .record_uses(&[KeyUse::of(&a.key, T0)])
            .expect("record"),
        1
    );
    let batch = [
        KeyUse::of(&a.key, t1),
        KeyUse::of(&b.key, t1),
        KeyUse::of(&unknown.key, t1),
    ];
    assert_eq!(store.record_uses(&batch).expect("record"), 1);
    let last_used = |k: &NewKey| {
        store
            .find(&tenant.id, &k.key.id)
            .expect("find")
            .and_then(|k| k.last_used_at)
    };
    assert_eq!(last_used(&a), Some(T0));
    assert_eq!(last_used(&b), Some(t1));
    assert_eq!(store.record_uses(&[]).expect("empty"), 0);
}

/// A tenant and its keys are stored together or not at all.
pub fn tenant_create_is_all_or_nothing(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.tenant("Acme");
    let live = f.key(&tenant);
    let test = f.key_with(&tenant, KeyType::Secret, Mode::Test, Scopes::full());
    let events = [
        f.tenant_created_event(&tenant),
        f.created_event(&live.key, T0),
        f.created_event(&test.key, T0),
    ];
    store
        .create(&tenant, &[live.clone(), test.clone()], &events)
        .expect("create");
    assert_eq!(
        store.find_tenant_by_name("Acme").expect("find"),
        Some(tenant.clone())
    );
    assert_eq!(
        store.find_by_hash(&test.hash).expect("find"),
        Some(test.key)
    );

    let second = f.tenant("Second");
    let fresh = f.key(&second);
    let mut clash = f.key(&second);
    clash.hash = live.hash;
    let events = [
        f.tenant_created_event(&second),
        f.created_event(&fresh.key, T0),
        f.created_event(&clash.key, T0),
    ];
    assert!(matches!(
        store.create(&second, &[fresh.clone(), clash], &events),
        Err(CreateTenantRepoError::Duplicate)
    ));
    assert_eq!(store.find_tenant_by_name("Second").expect("find"), None);
    assert_eq!(store.find_by_hash(&fresh.hash).expect("find"), None);
    // The tenant was not stored: a key for it is refused.
    let late = f.key(&second);
    assert!(matches!(
        store.insert(&late, 100, &f.created_event(&late.key, T0)),
        Err(InsertError::UnknownTenant)
    ));
}

/// Tenants are found by name (the oldest of that name).
pub fn tenants_are_found_by_name_oldest_first(store: &impl Store) {
    let f = Fixture::new();
    let first = f.stored_tenant(store, "Development");
    let mut younger = f.tenant("Development");
    younger.created_at = T0 + Duration::days(1);
    store
        .create(&younger, &[], &[f.tenant_created_event(&younger)])
        .expect("create");

    assert_eq!(
        store.find_tenant_by_name("Development").expect("find"),
        Some(first)
    );
    assert_eq!(store.find_tenant_by_name("Nobody").expect("find"), None);
}

/// `find_by_hash` returns revoked, expired and rotated keys too (so that
/// authentication can answer "revoked" or "expired" rather than "invalid"), and
/// keys of any tenant.
pub fn find_by_hash_returns_keys_in_any_state(store: &impl Store) {
    let f = Fixture::new();
    let acme = f.stored_tenant(store, "Acme");
    let other = f.stored_tenant(store, "Other");
    let guard = f.key(&acme);
    let revoked = f.key(&acme);
    let rotated = f.key(&acme);
    let mut expired = f.key(&acme);
    expired.key.expires_at = Some(T0 + Duration::minutes(1));
    let foreign = f.key(&other);
    for key in [&guard, &revoked, &rotated, &expired, &foreign] {
        f.insert(store, key);
    }
    f.revoke(store, &revoked.key, T0).expect("revoke");
    f.rotate(store, &rotated.key, &f.key(&acme), Duration::ZERO, T0)
        .expect("rotate with no grace");
    let later = T0 + Duration::days(1);

    let found = |key: &NewKey| store.find_by_hash(&key.hash).expect("find by hash");
    assert_eq!(found(&revoked).map(|k| k.is_revoked(later)), Some(true));
    assert_eq!(
        found(&rotated).map(|k| (k.is_revoked(later), k.replaced_by.is_some())),
        Some((true, true))
    );
    assert_eq!(found(&expired), Some(expired.key.clone()));
    assert_eq!(found(&foreign), Some(foreign.key.clone()));
}

/// `find_by_hashes` finds every stored key among the hashes in one call, of
/// any tenant and state, each once, and leaves out hashes of no key.
pub fn find_by_hashes_finds_each_stored_key_once(store: &impl Store) {
    let f = Fixture::new();
    let acme = f.stored_tenant(store, "Acme");
    let other = f.stored_tenant(store, "Other");
    let guard = f.key(&acme);
    let revoked = f.key(&acme);
    let foreign = f.key(&other);
    let unknown = f.key(&acme);
    for key in [&guard, &revoked, &foreign] {
        f.insert(store, key);
    }
    f.revoke(store, &revoked.key, T0).expect("revoke");

    let mut found = store
        .find_by_hashes(&[revoked.hash, unknown.hash, foreign.hash, revoked.hash])
        .expect("find by hashes");
    found.sort_by_key(|(_, k)| k.id.to_string());
    let mut expected = vec![
        (
            revoked.hash,
            store
                .find_by_hash(&revoked.hash)
                .expect("find")
                .expect("stored"),
        ),
        (foreign.hash, foreign.key.clone()),
    ];
    expected.sort_by_key(|(_, k)| k.id.to_string());
    assert_eq!(found, expected);
    assert_eq!(store.find_by_hashes(&[unknown.hash]).expect("find"), vec![]);
    assert_eq!(store.find_by_hashes(&[]).expect("find"), vec![]);
}

/// A cursor is an id, not a position: it works whether or not the key it names
/// is still listed, with and without revoked keys.
pub fn list_cursor_works_across_revoked_keys(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let keys: Vec<NewKey> = (0..5).map(|_| f.key(&tenant)).collect();
    for key in &keys {
        f.insert(store, key);
    }
    // Oldest to newest: k0 .. k4; k1 and k3 are revoked.
    for i in [1, 3] {
        f.revoke(store, &keys[i].key, T0).expect("revoke");
    }
    let page = |include_revoked: bool, after: KeyId| {
        let page = store
            .list(
                &tenant.id,
                &ListQuery {
                    include_revoked,
                    starting_after: Some(after),
                    limit: 2,
                    ..query(T0)
                },
            )
            .expect("list");
        (ids(&page.keys), page.has_more)
    };
    let id = |i: usize| keys[i].key.id;

    assert_eq!(page(true, id(4)), (vec![id(3), id(2)], true));
    assert_eq!(page(true, id(2)), (vec![id(1), id(0)], false));
    // The cursor names a revoked key that the page itself leaves out.
    assert_eq!(page(false, id(3)), (vec![id(2), id(0)], false));
    assert_eq!(page(false, id(4)), (vec![id(2), id(0)], false));
    assert_eq!(page(false, id(0)), (vec![], false));
}

/// Updates apply to any key not revoked at `now`: also one in its grace period
/// or past its expiry.
pub fn update_applies_to_keys_that_are_not_revoked(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let in_grace = f.key(&tenant);
    let mut expired = f.key(&tenant);
    expired.key.expires_at = Some(T0 + Duration::minutes(1));
    f.insert(store, &in_grace);
    f.insert(store, &expired);
    let successor = f.key(&tenant);
    f.rotate(store, &in_grace.key, &successor, Duration::hours(1), T0)
        .expect("rotate");
    let now = T0 + Duration::minutes(30);

    for key in [&in_grace, &expired] {
        let updated = f
            .update(store, &key.key, &rename(&key.key, "Renamed"), now)
            .expect("update");
        assert_eq!(updated.name.as_str(), "Renamed");
    }
    let renamed = ApiKey {
        name: name("Renamed"),
        ..in_grace.key.clone()
    };
    assert!(matches!(
        f.update(
            store,
            &in_grace.key,
            &rename(&renamed, "Too late"),
            T0 + Duration::hours(1)
        ),
        Err(UpdateRepoError::Revoked)
    ));
}

/// Only an active, full-access, live secret key counts as "another" guard key:
/// revoked, expired, test, publishable and narrow keys do not (for a key in its
/// grace period see [`rotated_keys_count_for_the_limit_and_the_successor_guards`]).
pub fn guard_counts_only_active_live_full_access_secret_keys(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let guard = f.key(&tenant);
    f.insert(store, &guard);
    let now = T0 + Duration::minutes(10);

    let revoked = f.key(&tenant);
    f.insert(store, &revoked);
    let mut expired = f.key(&tenant);
    expired.key.expires_at = Some(T0 + Duration::minutes(5));
    f.insert(store, &expired);
    f.insert(
        store,
        &f.key_with(&tenant, KeyType::Secret, Mode::Test, Scopes::full()),
    );
    f.insert(
        store,
        &f.key_with(&tenant, KeyType::Publishable, Mode::Live, Scopes::full()),
    );
    f.insert(
        store,
        &f.key_with(
            &tenant,
            KeyType::Secret,
            Mode::Live,
            scopes(&[Scope::UsersRead]),
        ),
    );
    f.revoke(store, &revoked.key, T0).expect("revoke");

    assert!(matches!(
        f.revoke(store, &guard.key, now),
        Err(RevokeRepoError::LastFullAccessKey)
    ));
    let narrow = rescope(&guard.key, scopes(&[Scope::UsersRead]));
    assert!(matches!(
        f.update(store, &guard.key, &narrow, now),
        Err(UpdateRepoError::LastFullAccessKey)
    ));
    // Keys that do not count may go freely.
    let expired_gone = f
        .revoke(store, &expired.key, now)
        .expect("revoke an expired key");
    assert_eq!(expired_gone.revokes_at, Some(now));
    assert_eq!(
        store
            .find(&tenant.id, &guard.key.id)
            .expect("find")
            .map(|k| (k.revokes_at, k.scopes)),
        Some((None, Scopes::full()))
    );
}

/// The successor of the last guard key is the new guard key: the old one, in
/// its grace period, no longer counts and may be revoked early; the successor
/// may not. Until then the old key still counts toward the key limit.
pub fn rotated_keys_count_for_the_limit_and_the_successor_guards(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let old = f.key(&tenant);
    f.insert(store, &old);
    let successor = f.key(&tenant);

    f.rotate(store, &old.key, &successor, Duration::hours(1), T0)
        .expect("rotate");
    let extra = f.key(&tenant);
    assert!(matches!(
        store.insert(&extra, 2, &f.created_event(&extra.key, T0)),
        Err(InsertError::LimitReached)
    ));

    assert!(matches!(
        f.revoke(store, &successor.key, T0),
        Err(RevokeRepoError::LastFullAccessKey)
    ));
    let cut_short = f
        .revoke(store, &old.key, T0)
        .expect("revoke the old key in its grace period");
    assert_eq!(cut_short.revokes_at, Some(T0));
    store
        .insert(&extra, 2, &f.created_event(&extra.key, T0))
        .expect("room once the old key is revoked");
}

/// A rotation with a grace period needs room under the key limit (the old
/// key keeps counting and the successor adds one), so rotating each
/// successor at once cannot grow a chain past the limit; one that revokes
/// the old key at once changes no count and passes at the limit. Test keys
/// at the limit do not stop a live rotation. A refusal writes nothing.
pub fn a_rotation_in_grace_needs_room_under_the_key_limit(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let first = f.key(&tenant);
    f.insert(store, &first);
    for _ in 0..3 {
        f.insert(
            store,
            &f.key_with(&tenant, KeyType::Secret, Mode::Test, Scopes::full()),
        );
    }
    f.set_key_limit(3);
    let second = f.key(&tenant);
    f.rotate(store, &first.key, &second, Duration::hours(1), T0)
        .expect("2 live keys count after the rotation, under a limit of 3");
    let third = f.key(&tenant);
    f.rotate(store, &second.key, &third, Duration::hours(1), T0)
        .expect("3 live keys count after the rotation");

    let before = events_of(store, &tenant.id);
    let fourth = f.key(&tenant);
    assert!(matches!(
        f.rotate(store, &third.key, &fourth, Duration::hours(1), T0),
        Err(RotateRepoError::LimitReached)
    ));
    assert_eq!(store.find(&tenant.id, &fourth.key.id).expect("find"), None);
    let third_now = store
        .find(&tenant.id, &third.key.id)
        .expect("find")
        .expect("third");
    assert_eq!((third_now.revokes_at, third_now.replaced_by), (None, None));
    assert_eq!(events_of(store, &tenant.id), before);

    f.rotate(store, &third.key, &fourth, Duration::ZERO, T0)
        .expect("a rotation that revokes the old key at once passes at the limit");
    let third_now = store
        .find(&tenant.id, &third.key.id)
        .expect("find")
        .expect("third");
    assert_eq!(third_now.revokes_at, Some(T0));
    assert_eq!(third_now.replaced_by, Some(fourth.key.id));
}

// ---- events written with each change ----

/// An insert stores exactly its `api_key.created` event, with every field as
/// given: type, key, mode, actor, request id and time.
pub fn insert_stores_its_created_event(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.tenant("Acme");
    let tenant_created = f.tenant_created_event(&tenant);
    store
        .create(&tenant, &[], std::slice::from_ref(&tenant_created))
        .expect("create tenant");
    let admin = f.key(&tenant);
    let by_cli = f.created_event(&admin.key, T0);
    store.insert(&admin, 100, &by_cli).expect("insert");
    let test_pk = f.key_with(&tenant, KeyType::Publishable, Mode::Test, Scopes::full());
    let at = T0 + Duration::minutes(1);
    let by_admin = by_key(&admin.key, f.created_event(&test_pk.key, at));
    store.insert(&test_pk, 100, &by_admin).expect("insert");

    let events = events_of(store, &tenant.id);
    assert_eq!(
        events,
        vec![by_admin.clone(), by_cli.clone(), tenant_created]
    );
    assert_eq!(
        events[0],
        KeyEvent {
            id: by_admin.id,
            created_at: at,
            tenant_id: tenant.id,
            key_id: Some(test_pk.key.id),
            mode: Some(Mode::Test),
            actor: Actor::ApiKey(admin.key.id),
            request_id: Some(REQUEST_ID.to_owned()),
            data: EventData::KeyCreated { rotated_from: None },
        }
    );
    assert_eq!(
        (events[1].actor, events[1].request_id.as_deref()),
        (Actor::Cli, None)
    );
}

/// An update stores exactly its `api_key.updated` event, with the old and new
/// value of each changed field and nothing for the others.
pub fn update_stores_its_updated_event(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let admin = f.key(&tenant);
    let key = f.key_with(&tenant, KeyType::Secret, Mode::Test, Scopes::full());
    f.insert(store, &admin);
    f.insert(store, &key);
    let before = events_of(store, &tenant.id);
    let (t1, t2, t3) = (
        T0 + Duration::minutes(1),
        T0 + Duration::minutes(2),
        T0 + Duration::minutes(3),
    );

    let only_name = rename(&key.key, "Renamed");
    let renamed_event = f.updated_event(&key.key, &only_name, t1);
    let renamed = store
        .update(&tenant.id, &key.key.id, &only_name, &renamed_event)
        .expect("rename");
    let only_scopes = rescope(&renamed, scopes(&[Scope::UsersRead]));
    let rescoped_event = by_key(&admin.key, f.updated_event(&key.key, &only_scopes, t2));
    let rescoped = store
        .update(&tenant.id, &key.key.id, &only_scopes, &rescoped_event)
        .expect("rescope");
    let both = FieldChanges::between(
        &rescoped,
        Some(&name("Both")),
        Some(&scopes(&[Scope::UsersRead, Scope::UsersWrite])),
    );
    let both_event = by_key(&admin.key, f.updated_event(&key.key, &both, t3));
    store
        .update(&tenant.id, &key.key.id, &both, &both_event)
        .expect("update both");

    let mut expected = vec![
        both_event.clone(),
        rescoped_event.clone(),
        renamed_event.clone(),
    ];
    expected.extend(before);
    assert_eq!(events_of(store, &tenant.id), expected);
    assert_eq!(
        rescoped_event,
        KeyEvent {
            id: rescoped_event.id,
            created_at: t2,
            tenant_id: tenant.id,
            key_id: Some(key.key.id),
            mode: Some(Mode::Test),
            actor: Actor::ApiKey(admin.key.id),
            request_id: Some(REQUEST_ID.to_owned()),
            data: EventData::KeyUpdated {
                changes: FieldChanges {
                    rate_limit: None,
                    credits: None,
                    name: None,
                    scopes: Some(Change {
                        old: Scopes::full(),
                        new: scopes(&[Scope::UsersRead]),
                    }),
                    ..FieldChanges::default()
                },
            },
        }
    );
    assert_eq!(
        both_event.data,
        EventData::KeyUpdated {
            changes: FieldChanges {
                rate_limit: None,
                credits: None,
                name: Some(Change {
                    old: name("Renamed"),
                    new: name("Both"),
                }),
                scopes: Some(Change {
                    old: scopes(&[Scope::UsersRead]),
                    new: scopes(&[Scope::UsersRead, Scope::UsersWrite]),
                }),
                ..FieldChanges::default()
            },
        }
    );
}

/// A revocation stores exactly its `api_key.revoked` event; revoking a key
/// that is already revoked returns it unchanged and stores none; cutting a
/// grace period short stores one.
pub fn revoke_stores_one_revoked_event(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let admin = f.key(&tenant);
    let key = f.key_with(&tenant, KeyType::Publishable, Mode::Live, Scopes::full());
    let rotated = f.key_with(&tenant, KeyType::Publishable, Mode::Test, Scopes::full());
    for k in [&admin, &key, &rotated] {
        f.insert(store, k);
    }
    let before = events_of(store, &tenant.id);
    let at = T0 + Duration::minutes(5);

    let revoked_event = by_key(&admin.key, f.revoked_event(&key.key, at));
    let revoked = store
        .revoke(&tenant.id, &key.key.id, &revoked_event)
        .expect("revoke");
    assert_eq!(revoked.revokes_at, Some(at));
    let again = store
        .revoke(
            &tenant.id,
            &key.key.id,
            &by_key(
                &admin.key,
                f.revoked_event(&key.key, at + Duration::minutes(1)),
            ),
        )
        .expect("revoke again");
    assert_eq!(again, revoked);

    let mut expected = vec![revoked_event.clone()];
    expected.extend(before);
    assert_eq!(events_of(store, &tenant.id), expected);
    assert_eq!(
        revoked_event,
        KeyEvent {
            id: revoked_event.id,
            created_at: at,
            tenant_id: tenant.id,
            key_id: Some(key.key.id),
            mode: Some(Mode::Live),
            actor: Actor::ApiKey(admin.key.id),
            request_id: Some(REQUEST_ID.to_owned()),
            data: EventData::KeyRevoked,
        }
    );

    let successor = f.key_with(&tenant, KeyType::Publishable, Mode::Test, Scopes::full());
    f.rotate(store, &rotated.key, &successor, Duration::hours(1), at)
        .expect("rotate");
    let cut_short = f.revoked_event(&rotated.key, at + Duration::minutes(10));
    store
        .revoke(&tenant.id, &rotated.key.id, &cut_short)
        .expect("revoke in grace");
    let newest = store
        .list_events(
            &tenant.id,
            &EventQuery {
                limit: 1,
                ..event_query()
            },
        )
        .expect("list events");
    assert_eq!(newest.events, vec![cut_short]);
    assert!(newest.has_more);
}

/// A rotation stores exactly two events: `api_key.rotated` on the old key,
/// with the successor, the grace period and the revocation time, and
/// `api_key.created` on the successor, with the key it replaces.
pub fn rotate_stores_rotated_and_created_events(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let admin = f.key(&tenant);
    let old = f.key_with(&tenant, KeyType::Secret, Mode::Test, Scopes::full());
    let other = f.key_with(&tenant, KeyType::Publishable, Mode::Live, Scopes::full());
    for k in [&admin, &old, &other] {
        f.insert(store, k);
    }
    let before = events_of(store, &tenant.id);
    let at = T0 + Duration::hours(1);
    let grace = Duration::hours(24);

    let successor = f.key_with(&tenant, KeyType::Secret, Mode::Test, Scopes::full());
    let (rotated, created) = f.rotated_events(&old.key, &successor.key, grace, at);
    let (rotated, created) = (by_key(&admin.key, rotated), by_key(&admin.key, created));
    store
        .rotate(
            &old.key.id,
            &successor,
            at + grace,
            DEFAULT_MAX_ACTIVE_KEYS,
            &rotated,
            &created,
        )
        .expect("rotate");
    // A zero grace period is stored as such.
    let other_successor = f.key_with(&tenant, KeyType::Publishable, Mode::Live, Scopes::full());
    let (zero_rotated, zero_created) =
        f.rotated_events(&other.key, &other_successor.key, Duration::ZERO, at);
    store
        .rotate(
            &other.key.id,
            &other_successor,
            at,
            DEFAULT_MAX_ACTIVE_KEYS,
            &zero_rotated,
            &zero_created,
        )
        .expect("rotate with no grace");

    let mut expected = vec![
        zero_created.clone(),
        zero_rotated.clone(),
        created.clone(),
        rotated.clone(),
    ];
    expected.extend(before);
    assert_eq!(events_of(store, &tenant.id), expected);
    assert_eq!(
        rotated,
        KeyEvent {
            id: rotated.id,
            created_at: at,
            tenant_id: tenant.id,
            key_id: Some(old.key.id),
            mode: Some(Mode::Test),
            actor: Actor::ApiKey(admin.key.id),
            request_id: Some(REQUEST_ID.to_owned()),
            data: EventData::KeyRotated {
                replaced_by: successor.key.id,
                grace_period: Duration::hours(24),
                revokes_at: T0 + Duration::hours(25),
            },
        }
    );
    assert_eq!(
        created,
        KeyEvent {
            id: created.id,
            created_at: at,
            tenant_id: tenant.id,
            key_id: Some(successor.key.id),
            mode: Some(Mode::Test),
            actor: Actor::ApiKey(admin.key.id),
            request_id: Some(REQUEST_ID.to_owned()),
            data: EventData::KeyCreated {
                rotated_from: Some(old.key.id),
            },
        }
    );
}

/// Creating a tenant stores its `tenant.created` event (no key, no mode) and
/// the `api_key.created` event of each of its keys.
pub fn tenant_create_stores_its_events(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.tenant("Acme");
    let live = f.key(&tenant);
    let test = f.key_with(&tenant, KeyType::Secret, Mode::Test, Scopes::full());
    let events = [
        f.tenant_created_event(&tenant),
        f.created_event(&live.key, T0),
        f.created_event(&test.key, T0),
    ];
    store
        .create(&tenant, &[live.clone(), test.clone()], &events)
        .expect("create");

    let [tenant_created, live_created, test_created] = events;
    assert_eq!(
        events_of(store, &tenant.id),
        vec![test_created, live_created, tenant_created.clone()]
    );
    assert_eq!(
        tenant_created,
        KeyEvent {
            id: tenant_created.id,
            created_at: T0,
            tenant_id: tenant.id,
            key_id: None,
            mode: None,
            actor: Actor::Cli,
            request_id: None,
            data: EventData::TenantCreated {
                name: "Acme".to_owned(),
            },
        }
    );
}

// ---- no event without its change ----

/// A refused insert (limit reached, duplicate, unknown tenant) stores no event.
pub fn refused_inserts_store_no_event(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let guard = f.key(&tenant);
    f.insert(store, &guard);
    let before = events_of(store, &tenant.id);

    let over = f.key(&tenant);
    assert!(matches!(
        store.insert(&over, 1, &f.created_event(&over.key, T0)),
        Err(InsertError::LimitReached)
    ));
    let mut duplicate = f.key(&tenant);
    duplicate.hash = guard.hash;
    assert!(matches!(
        store.insert(&duplicate, 100, &f.created_event(&duplicate.key, T0)),
        Err(InsertError::Duplicate)
    ));
    let ghost = f.tenant("Ghost");
    let stray = f.key(&ghost);
    assert!(matches!(
        store.insert(&stray, 100, &f.created_event(&stray.key, T0)),
        Err(InsertError::UnknownTenant)
    ));

    assert_eq!(events_of(store, &tenant.id), before);
    assert_eq!(events_of(store, &ghost.id), vec![]);
}

/// A refused update (not found, other tenant, revoked, last full-access key,
/// stale) stores no event.
pub fn refused_updates_store_no_event(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let other = f.stored_tenant(store, "Other");
    let guard = f.key(&tenant);
    let revoked = f.key_with(&tenant, KeyType::Publishable, Mode::Live, Scopes::full());
    f.insert(store, &guard);
    f.insert(store, &revoked);
    f.revoke(store, &revoked.key, T0).expect("revoke");
    let before = (events_of(store, &tenant.id), events_of(store, &other.id));

    let unknown = f.key(&tenant);
    assert!(matches!(
        f.update(store, &unknown.key, &rename(&unknown.key, "Renamed"), T0),
        Err(UpdateRepoError::NotFound)
    ));
    let elsewhere = rename(&guard.key, "Renamed");
    assert!(matches!(
        store.update(
            &other.id,
            &guard.key.id,
            &elsewhere,
            &in_tenant(f.updated_event(&guard.key, &elsewhere, T0), &other)
        ),
        Err(UpdateRepoError::NotFound)
    ));
    assert!(matches!(
        f.update(store, &revoked.key, &rename(&revoked.key, "Renamed"), T0),
        Err(UpdateRepoError::Revoked)
    ));
    assert!(matches!(
        f.update(
            store,
            &guard.key,
            &rescope(&guard.key, scopes(&[Scope::UsersRead])),
            T0
        ),
        Err(UpdateRepoError::LastFullAccessKey)
    ));
    let stale = FieldChanges {
        rate_limit: None,
        credits: None,
        name: Some(Change {
            old: name("Not its name"),
            new: name("Renamed"),
        }),
        scopes: None,
        ..FieldChanges::default()
    };
    assert!(matches!(
        f.update(store, &guard.key, &stale, T0),
        Err(UpdateRepoError::Stale)
    ));

    assert_eq!(
        (events_of(store, &tenant.id), events_of(store, &other.id)),
        before
    );
    assert_eq!(
        store.find(&tenant.id, &guard.key.id).expect("find"),
        Some(guard.key)
    );
}

/// A refused revocation (not found, other tenant, last full-access key)
/// stores no event, and neither does revoking a revoked key.
pub fn refused_revocations_store_no_event(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let other = f.stored_tenant(store, "Other");
    let guard = f.key(&tenant);
    let revoked = f.key_with(&tenant, KeyType::Publishable, Mode::Live, Scopes::full());
    f.insert(store, &guard);
    f.insert(store, &revoked);
    f.revoke(store, &revoked.key, T0).expect("revoke");
    let before = (events_of(store, &tenant.id), events_of(store, &other.id));
    let later = T0 + Duration::minutes(1);

    assert!(matches!(
        f.revoke(store, &f.key(&tenant).key, later),
        Err(RevokeRepoError::NotFound)
    ));
    assert!(matches!(
        store.revoke(
            &other.id,
            &revoked.key.id,
            &in_tenant(f.revoked_event(&revoked.key, later), &other)
        ),
        Err(RevokeRepoError::NotFound)
    ));
    assert!(matches!(
        f.revoke(store, &guard.key, later),
        Err(RevokeRepoError::LastFullAccessKey)
    ));
    let again = f.revoke(store, &revoked.key, later).expect("revoke again");
    assert_eq!(again.revokes_at, Some(T0));

    assert_eq!(
        (events_of(store, &tenant.id), events_of(store, &other.id)),
        before
    );
}

/// A refused rotation (not found, already rotated, revoked, expired, taken
/// successor id or hash) stores no event and no successor.
pub fn refused_rotations_store_no_event(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let guard = f.key(&tenant);
    let rotated = f.key(&tenant);
    let revoked = f.key(&tenant);
    let mut expired = f.key(&tenant);
    expired.key.expires_at = Some(T0 + Duration::minutes(1));
    for k in [&guard, &rotated, &revoked, &expired] {
        f.insert(store, k);
    }
    f.rotate(store, &rotated.key, &f.key(&tenant), Duration::hours(1), T0)
        .expect("rotate");
    f.revoke(store, &revoked.key, T0).expect("revoke");
    let before = events_of(store, &tenant.id);
    let later = T0 + Duration::minutes(2);
    let hour = Duration::hours(1);
    let successor = f.key(&tenant);

    assert!(matches!(
        f.rotate(store, &f.key(&tenant).key, &successor, hour, later),
        Err(RotateRepoError::NotFound)
    ));
    for old in [&rotated, &revoked, &expired] {
        assert!(matches!(
            f.rotate(store, &old.key, &successor, hour, later),
            Err(RotateRepoError::NotActive)
        ));
    }
    let mut same_hash = f.key(&tenant);
    same_hash.hash = guard.hash;
    let mut same_id = f.key(&tenant);
    same_id.key.id = rotated.key.id;
    for taken in [&same_hash, &same_id] {
        assert!(matches!(
            f.rotate(store, &guard.key, taken, hour, later),
            Err(RotateRepoError::Duplicate)
        ));
    }

    assert_eq!(events_of(store, &tenant.id), before);
    assert_eq!(store.find_by_hash(&successor.hash).expect("find"), None);
    assert_eq!(store.find_by_hash(&same_id.hash).expect("find"), None);
    assert_eq!(
        store.find(&tenant.id, &guard.key.id).expect("find"),
        Some(guard.key)
    );
}

/// A refused tenant creation (taken tenant id, taken key hash) stores no
/// event.
pub fn refused_tenant_creation_stores_no_event(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.tenant("Acme");
    let live = f.key(&tenant);
    store
        .create(
            &tenant,
            std::slice::from_ref(&live),
            &[
                f.tenant_created_event(&tenant),
                f.created_event(&live.key, T0),
            ],
        )
        .expect("create");
    let before = events_of(store, &tenant.id);

    let again = f.key(&tenant);
    assert!(matches!(
        store.create(
            &tenant,
            std::slice::from_ref(&again),
            &[
                f.tenant_created_event(&tenant),
                f.created_event(&again.key, T0),
            ],
        ),
        Err(CreateTenantRepoError::Duplicate)
    ));
    let second = f.tenant("Second");
    let mut clash = f.key(&second);
    clash.hash = live.hash;
    assert!(matches!(
        store.create(
            &second,
            std::slice::from_ref(&clash),
            &[
                f.tenant_created_event(&second),
                f.created_event(&clash.key, T0),
            ],
        ),
        Err(CreateTenantRepoError::Duplicate)
    ));

    assert_eq!(events_of(store, &tenant.id), before);
    assert_eq!(events_of(store, &second.id), vec![]);
    assert_eq!(store.find(&tenant.id, &again.key.id).expect("find"), None);
}

// ---- the actor ----

/// A write whose actor key is revoked at the event's time (revoked earlier
/// through the port, or exactly then) is refused with `ActorRefused(Revoked)`: no
/// key change, no new key, no event. The same write by the command line
/// succeeds.
pub fn a_revoked_actor_writes_nothing(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let guard = f.key(&tenant);
    let actor = f.key(&tenant);
    let target = f.key_with(&tenant, KeyType::Publishable, Mode::Live, Scopes::full());
    for k in [&guard, &actor, &target] {
        f.insert(store, k);
    }
    let revoked_at = T0 + Duration::minutes(1);
    f.revoke(store, &actor.key, revoked_at)
        .expect("revoke the actor");
    let before = events_of(store, &tenant.id);
    let now = T0 + Duration::minutes(2);

    let fresh = f.key(&tenant);
    for at in [revoked_at, now] {
        assert!(matches!(
            store.insert(
                &fresh,
                100,
                &by_key(&actor.key, f.created_event(&fresh.key, at))
            ),
            Err(InsertError::ActorRefused(ActorRefusal::Revoked))
        ));
    }
    let changes = rename(&target.key, "Renamed");
    assert!(matches!(
        store.update(
            &tenant.id,
            &target.key.id,
            &changes,
            &by_key(&actor.key, f.updated_event(&target.key, &changes, now))
        ),
        Err(UpdateRepoError::ActorRefused(ActorRefusal::Revoked))
    ));
    assert!(matches!(
        store.revoke(
            &tenant.id,
            &target.key.id,
            &by_key(&actor.key, f.revoked_event(&target.key, now))
        ),
        Err(RevokeRepoError::ActorRefused(ActorRefusal::Revoked))
    ));
    let successor = f.key_with(&tenant, KeyType::Publishable, Mode::Live, Scopes::full());
    let hour = Duration::hours(1);
    let (rotated, created) = f.rotated_events(&target.key, &successor.key, hour, now);
    assert!(matches!(
        store.rotate(
            &target.key.id,
            &successor,
            now + hour,
            DEFAULT_MAX_ACTIVE_KEYS,
            &by_key(&actor.key, rotated),
            &by_key(&actor.key, created)
        ),
        Err(RotateRepoError::ActorRefused(ActorRefusal::Revoked))
    ));

    assert_eq!(events_of(store, &tenant.id), before);
    assert_eq!(store.find(&tenant.id, &fresh.key.id).expect("find"), None);
    assert_eq!(store.find_by_hash(&successor.hash).expect("find"), None);
    assert_eq!(
        store.find(&tenant.id, &target.key.id).expect("find"),
        Some(target.key.clone())
    );
    // The actor was the only reason: the command line may do the same.
    let renamed = f
        .update(store, &target.key, &changes, now)
        .expect("update by the command line");
    assert_eq!(renamed.name.as_str(), "Renamed");
}

/// A write is judged on its actor key as it is when the write commits: an
/// actor that expired, is publishable, or was narrowed from `*` (through
/// the port, as an admin's PATCH does) is refused with the matching
/// `ActorRefused` reason, and nothing is written: no key change, no new key,
/// no event.
pub fn an_actor_without_the_rights_to_write_writes_nothing(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let guard = f.key(&tenant);
    let target = f.key_with(&tenant, KeyType::Publishable, Mode::Live, Scopes::full());
    let mut expiring = f.key(&tenant);
    expiring.key.expires_at = Some(T0 + Duration::minutes(1));
    let publishable = f.key_with(&tenant, KeyType::Publishable, Mode::Live, Scopes::full());
    let narrowed = f.key(&tenant);
    for k in [&guard, &target, &expiring, &publishable, &narrowed] {
        f.insert(store, k);
    }
    let read_only = Scopes::parse(["users:read"]).expect("scopes");
    let narrowed = f
        .update(store, &narrowed.key, &rescope(&narrowed.key, read_only), T0)
        .expect("narrow the actor");
    let before = events_of(store, &tenant.id);
    let now = T0 + Duration::minutes(2);

    for (actor, reason) in [
        (&expiring.key, ActorRefusal::Expired),
        (&publishable.key, ActorRefusal::NotSecret),
        (&narrowed, ActorRefusal::NotFullAccess),
    ] {
        let fresh = f.key(&tenant);
        let created = by_key(actor, f.created_event(&fresh.key, now));
        assert!(
            matches!(store.insert(&fresh, 100, &created), Err(InsertError::ActorRefused(r)) if r == reason),
            "{reason:?}"
        );
        let changes = rename(&target.key, "Renamed");
        let updated = by_key(actor, f.updated_event(&target.key, &changes, now));
        assert!(
            matches!(
                store.update(&tenant.id, &target.key.id, &changes, &updated),
                Err(UpdateRepoError::ActorRefused(r)) if r == reason
            ),
            "{reason:?}"
        );
        let revoked = by_key(actor, f.revoked_event(&target.key, now));
        assert!(
            matches!(
                store.revoke(&tenant.id, &target.key.id, &revoked),
                Err(RevokeRepoError::ActorRefused(r)) if r == reason
            ),
            "{reason:?}"
        );
        let successor = f.key_with(&tenant, KeyType::Publishable, Mode::Live, Scopes::full());
        let hour = Duration::hours(1);
        let (rotated, created) = f.rotated_events(&target.key, &successor.key, hour, now);
        assert!(
            matches!(
                store.rotate(
                    &target.key.id,
                    &successor,
                    now + hour, DEFAULT_MAX_ACTIVE_KEYS,
                    &by_key(actor, rotated),
                    &by_key(actor, created)
                ),
                Err(RotateRepoError::ActorRefused(r)) if r == reason
            ),
            "{reason:?}"
        );
        assert_eq!(store.find(&tenant.id, &fresh.key.id).expect("find"), None);
        assert_eq!(store.find_by_hash(&successor.hash).expect("find"), None);
    }
    assert_eq!(events_of(store, &tenant.id), before);
    assert_eq!(
        store.find(&tenant.id, &target.key.id).expect("find"),
        Some(target.key.clone())
    );
}

/// An actor key whose revocation is only scheduled (a rotated key in its
/// grace period) may still write, until the grace period ends.
pub fn an_actor_in_its_grace_period_may_write_until_it_ends(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let actor = f.key(&tenant);
    let renamed = f.key_with(&tenant, KeyType::Publishable, Mode::Live, Scopes::full());
    let revoked = f.key_with(&tenant, KeyType::Publishable, Mode::Live, Scopes::full());
    for k in [&actor, &renamed, &revoked] {
        f.insert(store, k);
    }
    f.rotate(store, &actor.key, &f.key(&tenant), Duration::hours(1), T0)
        .expect("rotate the actor");
    let before = events_of(store, &tenant.id);
    let now = T0 + Duration::minutes(59);

    let fresh = f.key(&tenant);
    let created = by_key(&actor.key, f.created_event(&fresh.key, now));
    store.insert(&fresh, 100, &created).expect("insert");
    let changes = rename(&renamed.key, "Renamed");
    let updated = by_key(&actor.key, f.updated_event(&renamed.key, &changes, now));
    store
        .update(&tenant.id, &renamed.key.id, &changes, &updated)
        .expect("update");
    let revocation = by_key(&actor.key, f.revoked_event(&revoked.key, now));
    store
        .revoke(&tenant.id, &revoked.key.id, &revocation)
        .expect("revoke");
    let successor = f.key_with(&tenant, KeyType::Publishable, Mode::Live, Scopes::full());
    let (rotated, successor_created) =
        f.rotated_events(&renamed.key, &successor.key, Duration::ZERO, now);
    let (rotated, successor_created) = (
        by_key(&actor.key, rotated),
        by_key(&actor.key, successor_created),
    );
    store
        .rotate(
            &renamed.key.id,
            &successor,
            now,
            DEFAULT_MAX_ACTIVE_KEYS,
            &rotated,
            &successor_created,
        )
        .expect("rotate");

    let mut expected = vec![successor_created, rotated, revocation, updated, created];
    expected.extend(before);
    assert_eq!(events_of(store, &tenant.id), expected);

    // At the end of the grace period the actor is revoked.
    let end = T0 + Duration::hours(1);
    let late = f.key(&tenant);
    assert!(matches!(
        store.insert(
            &late,
            100,
            &by_key(&actor.key, f.created_event(&late.key, end))
        ),
        Err(InsertError::ActorRefused(ActorRefusal::Revoked))
    ));
    assert_eq!(store.find(&tenant.id, &late.key.id).expect("find"), None);
    assert_eq!(events_of(store, &tenant.id), expected);
}

/// Writes by the command line or a leak report need no key at all: they
/// succeed in a tenant that has no key to act with, and record their actor.
pub fn writes_by_the_cli_or_a_leak_report_need_no_key(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let before = events_of(store, &tenant.id);
    let key = f.key_with(&tenant, KeyType::Publishable, Mode::Live, Scopes::full());
    let successor = f.key_with(&tenant, KeyType::Publishable, Mode::Live, Scopes::full());

    let created = f.created_event(&key.key, T0);
    store.insert(&key, 100, &created).expect("insert");
    let changes = rename(&key.key, "Renamed");
    let updated = f.updated_event(&key.key, &changes, T0);
    store
        .update(&tenant.id, &key.key.id, &changes, &updated)
        .expect("update");
    let (rotated, successor_created) =
        f.rotated_events(&key.key, &successor.key, Duration::hours(1), T0);
    store
        .rotate(
            &key.key.id,
            &successor,
            T0 + Duration::hours(1),
            DEFAULT_MAX_ACTIVE_KEYS,
            &rotated,
            &successor_created,
        )
        .expect("rotate");
    let leaked = made_by(
        Actor::LeakReport,
        None,
        f.revoked_event(&successor.key, T0 + Duration::minutes(1)),
    );
    store
        .revoke(&tenant.id, &successor.key.id, &leaked)
        .expect("revoke");

    let mut expected = vec![leaked, successor_created, rotated, updated, created];
    expected.extend(before);
    let events = events_of(store, &tenant.id);
    assert_eq!(events, expected);
    assert_eq!(
        events[..5]
            .iter()
            .map(|e| (e.actor, e.request_id.clone()))
            .collect::<Vec<_>>(),
        vec![
            (Actor::LeakReport, None),
            (Actor::Cli, None),
            (Actor::Cli, None),
            (Actor::Cli, None),
            (Actor::Cli, None),
        ]
    );
}

// ---- stale updates ----

/// An update applies only while each changed field still holds its `old`
/// value; otherwise `Stale`, and nothing is written (not even the fields that
/// were not stale).
pub fn update_refuses_stale_changes(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let guard = f.key(&tenant);
    let key = f.key(&tenant);
    f.insert(store, &guard);
    f.insert(store, &key);
    // A concurrent update renamed the key after "we" read it.
    let theirs = f
        .update(store, &key.key, &rename(&key.key, "Theirs"), T0)
        .expect("rename");
    let before = events_of(store, &tenant.id);
    let now = T0 + Duration::minutes(1);
    let narrow = scopes(&[Scope::UsersRead]);

    let stale_name = rename(&key.key, "Mine");
    let stale_name_valid_scopes =
        FieldChanges::between(&key.key, Some(&name("Mine")), Some(&narrow));
    let stale_scopes = FieldChanges {
        rate_limit: None,
        credits: None,
        name: None,
        scopes: Some(Change {
            old: scopes(&[Scope::WebhooksRead]),
            new: narrow,
        }),
        ..FieldChanges::default()
    };
    for changes in [&stale_name, &stale_name_valid_scopes, &stale_scopes] {
        assert!(
            matches!(
                f.update(store, &key.key, changes, now),
                Err(UpdateRepoError::Stale)
            ),
            "{changes:?}"
        );
    }
    assert_eq!(
        store.find(&tenant.id, &key.key.id).expect("find"),
        Some(theirs.clone())
    );
    assert_eq!(events_of(store, &tenant.id), before);

    // Fields that are not changed are not compared: the stale name does not
    // matter to a change of the scopes alone.
    let rescoped = f
        .update(store, &key.key, &rescope(&key.key, narrow), now)
        .expect("rescope");
    assert_eq!(
        rescoped,
        ApiKey {
            scopes: narrow,
            ..theirs
        }
    );
}

// ---- restrictions and metadata ----

/// `allowed_ips` of IPv4 and IPv6 blocks.
fn some_ips(entries: &[&str]) -> Option<AllowedIps> {
    Some(AllowedIps::parse(entries.iter().copied()).expect("allowed_ips"))
}

/// `allowed_origins`.
fn some_origins(entries: &[&str]) -> Option<AllowedOrigins> {
    Some(AllowedOrigins::parse(entries.iter().copied()).expect("allowed_origins"))
}

/// Metadata of the given entries.
fn metadata(entries: &[(&str, &str)]) -> Metadata {
    Metadata::new(
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    )
    .expect("metadata")
}

/// A publishable key restricted in every way, with metadata.
fn restricted_key(f: &Fixture, tenant: &Tenant) -> NewKey {
    let mut new = f.key_with(tenant, KeyType::Publishable, Mode::Live, Scopes::full());
    new.key.restrictions = KeyRestrictions {
        allowed_ips: some_ips(&["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"]),
        allowed_origins: some_origins(&["https://*.example.com", "http://localhost:3000"]),
    };
    new.key.metadata = metadata(&[("customer_id", "cus_42"), ("plan", "Ünïcødé pro")]);
    new
}

/// `allowed_ips`, `allowed_origins` and `metadata` survive an insert and come
/// back by id, by hash and in a listing, as normalized.
pub fn restrictions_and_metadata_round_trip(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let new = restricted_key(&f, &tenant);
    f.insert(store, &new);

    assert_eq!(
        store.find(&tenant.id, &new.key.id).expect("find"),
        Some(new.key.clone())
    );
    assert_eq!(
        store.find_by_hash(&new.hash).expect("find by hash"),
        Some(new.key.clone())
    );
    let page = store.list(&tenant.id, &query(T0)).expect("list");
    assert_eq!(page.keys, std::slice::from_ref(&new.key));
    let blocks: Vec<String> = new
        .key
        .restrictions
        .allowed_ips
        .as_ref()
        .expect("ips")
        .blocks()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        blocks,
        ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"]
    );
}

/// An update sets, replaces and clears each restriction and the metadata,
/// records old and new in its event, and is stale when a field no longer
/// holds its old value.
pub fn update_sets_and_clears_restrictions_and_metadata(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let plain = f.key_with(&tenant, KeyType::Publishable, Mode::Live, Scopes::full());
    f.insert(store, &plain);
    let target = restricted_key(&f, &tenant).key;

    let set = FieldChanges::default().with_restrictions(
        &plain.key,
        Some(&target.restrictions.allowed_ips),
        Some(&target.restrictions.allowed_origins),
        Some(&target.metadata),
    );
    let updated = f.update(store, &plain.key, &set, T0).expect("set");
    let expected = ApiKey {
        restrictions: target.restrictions.clone(),
        metadata: target.metadata.clone(),
        ..plain.key.clone()
    };
    assert_eq!(updated, expected);
    assert_eq!(
        store.find(&tenant.id, &plain.key.id).expect("find"),
        Some(expected.clone())
    );
    let recorded = events_of(store, &tenant.id);
    assert_eq!(
        recorded[0].data,
        EventData::KeyUpdated {
            changes: set.clone()
        }
    );

    // Clearing: null again, metadata empty; old values as they are now.
    let clear = FieldChanges::default().with_restrictions(
        &expected,
        Some(&None),
        Some(&None),
        Some(&Metadata::default()),
    );
    let cleared = f.update(store, &plain.key, &clear, T0).expect("clear");
    assert_eq!(cleared, plain.key);
    assert_eq!(
        events_of(store, &tenant.id)[0].data,
        EventData::KeyUpdated { changes: clear }
    );

    // The first change again, now stale: the key no longer holds its old
    // values.
    let before = events_of(store, &tenant.id);
    let stale = FieldChanges::default().with_restrictions(
        &expected,
        Some(&some_ips(&["10.0.0.0/8"])),
        None,
        None,
    );
    assert!(matches!(
        f.update(store, &plain.key, &stale, T0),
        Err(UpdateRepoError::Stale)
    ));
    assert_eq!(events_of(store, &tenant.id), before);
}

/// The successor of a rotation has the old key's restrictions and metadata
/// as they are when the rotation commits.
pub fn rotation_copies_restrictions_and_metadata(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let old = restricted_key(&f, &tenant);
    f.insert(store, &old);
    let successor = f.key_with(&tenant, KeyType::Publishable, Mode::Live, Scopes::full());

    f.rotate(store, &old.key, &successor, Duration::hours(1), T0)
        .expect("rotate");

    let stored = store
        .find_by_hash(&successor.hash)
        .expect("find")
        .expect("successor");
    assert_eq!(stored.restrictions, old.key.restrictions);
    assert_eq!(stored.metadata, old.key.metadata);
}

// ---- reading events ----

/// Newest (largest id) first whatever the order they were stored in;
/// `limit`, `has_more` and `starting_after` page through them, and a cursor
/// is an id, not a position.
pub fn list_events_is_newest_first_and_pages_with_a_cursor(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.tenant("Acme");
    let tenant_created = f.tenant_created_event(&tenant);
    store
        .create(&tenant, &[], std::slice::from_ref(&tenant_created))
        .expect("create tenant");
    let keys: Vec<NewKey> = (0..4).map(|_| f.key(&tenant)).collect();
    let e0 = f.created_event(&keys[0].key, T0);
    let e1 = f.created_event(&keys[1].key, T0);
    let gap = f.event_id();
    let e2 = f.created_event(&keys[2].key, T0);
    let e3 = f.created_event(&keys[3].key, T0);
    // Stored out of id order, as concurrent requests may commit.
    for (key, event) in [
        (&keys[1], &e1),
        (&keys[0], &e0),
        (&keys[3], &e3),
        (&keys[2], &e2),
    ] {
        store.insert(key, 100, event).expect("insert");
    }
    let page = |limit: u32, starting_after: Option<EventId>| {
        let page = store
            .list_events(
                &tenant.id,
                &EventQuery {
                    limit,
                    starting_after,
                    ..event_query()
                },
            )
            .expect("list events");
        (event_ids(&page.events), page.has_more)
    };

    assert_eq!(
        events_of(store, &tenant.id),
        vec![
            e3.clone(),
            e2.clone(),
            e1.clone(),
            e0.clone(),
            tenant_created.clone()
        ]
    );
    assert_eq!(page(2, None), (vec![e3.id, e2.id], true));
    assert_eq!(page(2, Some(e2.id)), (vec![e1.id, e0.id], true));
    assert_eq!(page(2, Some(e0.id)), (vec![tenant_created.id], false));
    assert_eq!(page(1, Some(tenant_created.id)), (vec![], false));
    assert_eq!(
        page(5, None),
        (vec![e3.id, e2.id, e1.id, e0.id, tenant_created.id], false)
    );
    // A cursor that names no event.
    assert_eq!(page(1, Some(gap)), (vec![e1.id], true));
}

/// Filters by key, by type and by mode (events with no mode, such as
/// `tenant.created`, are left out by a mode filter), alone and together, and
/// with a cursor.
pub fn list_events_filters_by_key_type_and_mode(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.tenant("Acme");
    let live = f.key(&tenant);
    let test = f.key_with(&tenant, KeyType::Secret, Mode::Test, Scopes::full());
    let tenant_created = f.tenant_created_event(&tenant);
    let live_created = f.created_event(&live.key, T0);
    let test_created = f.created_event(&test.key, T0);
    store
        .create(
            &tenant,
            &[live.clone(), test.clone()],
            &[
                tenant_created.clone(),
                live_created.clone(),
                test_created.clone(),
            ],
        )
        .expect("create tenant");
    let changes = rename(&live.key, "Renamed");
    let live_updated = f.updated_event(&live.key, &changes, T0);
    store
        .update(&tenant.id, &live.key.id, &changes, &live_updated)
        .expect("update");
    let test_revoked = f.revoked_event(&test.key, T0);
    store
        .revoke(&tenant.id, &test.key.id, &test_revoked)
        .expect("revoke");
    let successor = f.key(&tenant);
    let (live_rotated, successor_created) =
        f.rotated_events(&live.key, &successor.key, Duration::hours(1), T0);
    store
        .rotate(
            &live.key.id,
            &successor,
            T0 + Duration::hours(1),
            DEFAULT_MAX_ACTIVE_KEYS,
            &live_rotated,
            &successor_created,
        )
        .expect("rotate");
    let list = |query: EventQuery| {
        let page = store.list_events(&tenant.id, &query).expect("list events");
        (event_ids(&page.events), page.has_more)
    };
    let ids = |events: &[&KeyEvent]| events.iter().map(|e| e.id).collect::<Vec<_>>();

    assert_eq!(
        list(EventQuery {
            key_id: Some(live.key.id),
            ..event_query()
        }),
        (ids(&[&live_rotated, &live_updated, &live_created]), false)
    );
    assert_eq!(
        list(EventQuery {
            key_id: Some(successor.key.id),
            ..event_query()
        }),
        (ids(&[&successor_created]), false)
    );
    assert_eq!(
        list(EventQuery {
            event_type: Some(EventType::KeyCreated),
            ..event_query()
        }),
        (
            ids(&[&successor_created, &test_created, &live_created]),
            false
        )
    );
    assert_eq!(
        list(EventQuery {
            event_type: Some(EventType::TenantCreated),
            ..event_query()
        }),
        (ids(&[&tenant_created]), false)
    );
    assert_eq!(
        list(EventQuery {
            mode: Some(Mode::Test),
            ..event_query()
        }),
        (ids(&[&test_revoked, &test_created]), false)
    );
    assert_eq!(
        list(EventQuery {
            mode: Some(Mode::Live),
            ..event_query()
        }),
        (
            ids(&[
                &successor_created,
                &live_rotated,
                &live_updated,
                &live_created
            ]),
            false
        )
    );
    assert_eq!(
        list(EventQuery {
            key_id: Some(live.key.id),
            event_type: Some(EventType::KeyUpdated),
            mode: Some(Mode::Live),
            ..event_query()
        }),
        (ids(&[&live_updated]), false)
    );
    assert_eq!(
        list(EventQuery {
            key_id: Some(live.key.id),
            mode: Some(Mode::Test),
            ..event_query()
        }),
        (vec![], false)
    );
    // Filters and the cursor together.
    assert_eq!(
        list(EventQuery {
            event_type: Some(EventType::KeyCreated),
            limit: 1,
            ..event_query()
        }),
        (ids(&[&successor_created]), true)
    );
    assert_eq!(
        list(EventQuery {
            event_type: Some(EventType::KeyCreated),
            starting_after: Some(successor_created.id),
            limit: 1,
            ..event_query()
        }),
        (ids(&[&test_created]), true)
    );
    assert_eq!(
        list(EventQuery {
            event_type: Some(EventType::KeyCreated),
            starting_after: Some(test_created.id),
            limit: 1,
            ..event_query()
        }),
        (ids(&[&live_created]), false)
    );
}

/// A tenant sees only its own events, also when it filters by another
/// tenant's key; an unknown tenant has none.
pub fn list_events_is_scoped_to_the_tenant(store: &impl Store) {
    let f = Fixture::new();
    let acme = f.stored_tenant(store, "Acme");
    let other = f.stored_tenant(store, "Other");
    let acme_key = f.key(&acme);
    let other_key = f.key(&other);
    let acme_created = f.created_event(&acme_key.key, T0);
    let other_created = f.created_event(&other_key.key, T0);
    store.insert(&acme_key, 100, &acme_created).expect("insert");
    store
        .insert(&other_key, 100, &other_created)
        .expect("insert");

    let acme_events = events_of(store, &acme.id);
    assert_eq!(acme_events.len(), 2);
    assert_eq!(acme_events[0], acme_created);
    assert!(acme_events.iter().all(|e| e.tenant_id == acme.id));
    let other_events = events_of(store, &other.id);
    assert_eq!(other_events.len(), 2);
    assert_eq!(other_events[0], other_created);
    assert!(other_events.iter().all(|e| e.tenant_id == other.id));

    let by_foreign_key = store
        .list_events(
            &acme.id,
            &EventQuery {
                key_id: Some(other_key.key.id),
                ..event_query()
            },
        )
        .expect("list events");
    assert_eq!(by_foreign_key.events, vec![]);
    assert!(!by_foreign_key.has_more);
    assert_eq!(events_of(store, &f.tenant("Ghost").id), vec![]);
}

/// `events_after` follows every tenant's events in storage order: a
/// sequence number that grows with each stored event (a rotation's
/// `rotated` before its `created`, a tenant's events in the order given),
/// strictly after the given number and at most `limit` of them.
pub fn events_after_follows_every_tenant_in_storage_order(store: &impl Store) {
    let f = Fixture::new();
    let acme = f.tenant("Acme");
    let live = f.key(&acme);
    let acme_events = [
        f.tenant_created_event(&acme),
        f.created_event(&live.key, T0),
    ];
    store
        .create(&acme, std::slice::from_ref(&live), &acme_events)
        .expect("create tenant");
    let other = f.tenant("Other");
    let other_created = f.tenant_created_event(&other);
    store
        .create(&other, &[], std::slice::from_ref(&other_created))
        .expect("create tenant");
    let key = f.key_with(&acme, KeyType::Publishable, Mode::Test, Scopes::full());
    // Created before the key's own event, stored after it: storage order,
    // not id order.
    let other_key = f.key(&other);
    let other_key_created = f.created_event(&other_key.key, T0);
    let key_created = f.created_event(&key.key, T0);
    store.insert(&key, 100, &key_created).expect("insert");
    store
        .insert(&other_key, 100, &other_key_created)
        .expect("insert");
    let successor = f.key_with(&acme, KeyType::Publishable, Mode::Test, Scopes::full());
    let (rotated, successor_created) =
        f.rotated_events(&key.key, &successor.key, Duration::hours(1), T0);
    store
        .rotate(
            &key.key.id,
            &successor,
            T0 + Duration::hours(1),
            DEFAULT_MAX_ACTIVE_KEYS,
            &rotated,
            &successor_created,
        )
        .expect("rotate");
    let [acme_created, live_created] = acme_events;
    let expected = vec![
        acme_created,
        live_created,
        other_created,
        key_created,
        other_key_created,
        rotated,
        successor_created,
    ];

    let all = store.events_after(0, 1000).expect("events after");
    assert_eq!(
        all.iter().map(|s| s.event.clone()).collect::<Vec<_>>(),
        expected
    );
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "{all:?}");
    let seqs: Vec<i64> = all.iter().map(|s| s.seq).collect();
    assert_eq!(
        store.events_after(seqs[1], 3).expect("events after"),
        all[2..5].to_vec()
    );
    assert_eq!(
        store.events_after(seqs[5], 3).expect("events after"),
        all[6..].to_vec()
    );
    assert_eq!(
        store.events_after(seqs[6], 3).expect("events after"),
        vec![]
    );
}

/// Expands to one `#[test]` per contract check, each on a fresh store made by
/// `$factory` (an expression evaluated once per test). The factory may return
/// the store itself in anything that dereferences to it (a `Box`, a guard that
/// owns a test database); each check gets `&*store`.
///
/// ```text
/// domain::repository_contract_tests!(Box::new(domain::testing::InMemoryStore::new()));
/// ```
#[macro_export]
macro_rules! repository_contract_tests {
    ($factory:expr) => {
        $crate::repository_contract_tests!(@tests $factory; contract;
            insert_then_find_round_trips_every_field,
            find_is_scoped_to_the_tenant,
            insert_refuses_duplicate_id_or_hash,
            insert_refuses_unknown_tenant,
            insert_respects_the_active_key_limit,
            the_active_key_limit_counts_per_mode,
            a_rotation_in_grace_needs_room_under_the_key_limit,
            list_pages_newest_first,
            list_filters_by_type_mode_and_revocation,
            update_changes_name_and_scopes,
            update_keeps_a_full_access_key,
            revoke_is_immediate_idempotent_and_guarded,
            revoke_unguarded_takes_even_the_last_full_access_key,
            a_found_revocation_keeps_its_source_and_url,
            rotate_is_one_unit_and_only_for_active_keys,
            record_uses_writes_at_most_once_a_minute,
            record_uses_takes_a_batch,
            tenant_create_is_all_or_nothing,
            tenants_are_found_by_name_oldest_first,
            find_by_hash_returns_keys_in_any_state,
            find_by_hashes_finds_each_stored_key_once,
            list_cursor_works_across_revoked_keys,
            update_applies_to_keys_that_are_not_revoked,
            guard_counts_only_active_live_full_access_secret_keys,
            rotated_keys_count_for_the_limit_and_the_successor_guards,
            insert_stores_its_created_event,
            update_stores_its_updated_event,
            revoke_stores_one_revoked_event,
            rotate_stores_rotated_and_created_events,
            tenant_create_stores_its_events,
            refused_inserts_store_no_event,
            refused_updates_store_no_event,
            refused_revocations_store_no_event,
            refused_rotations_store_no_event,
            refused_tenant_creation_stores_no_event,
            a_revoked_actor_writes_nothing,
            an_actor_without_the_rights_to_write_writes_nothing,
            an_actor_in_its_grace_period_may_write_until_it_ends,
            writes_by_the_cli_or_a_leak_report_need_no_key,
            update_refuses_stale_changes,
            restrictions_and_metadata_round_trip,
            update_sets_and_clears_restrictions_and_metadata,
            rotation_copies_restrictions_and_metadata,
            list_events_is_newest_first_and_pages_with_a_cursor,
            list_events_filters_by_key_type_and_mode,
            list_events_is_scoped_to_the_tenant,
            events_after_follows_every_tenant_in_storage_order,
        );
        $crate::repository_contract_tests!(@tests $factory; idempotency_contract;
            recorded_insert_stores_the_key_its_event_and_its_record,
            a_live_record_answers_instead_of_a_second_write,
            records_are_scoped_to_the_tenant_and_the_caller,
            a_refused_write_stores_no_record,
            recorded_rotation_rotates_and_stores_its_record,
            expired_records_are_replaced_and_deleted,
        );
        $crate::repository_contract_tests!(@tests $factory; usage_contract;
            limits_round_trip_and_update_with_their_event,
            window_shares_never_exceed_the_limit,
            credit_shares_never_exceed_the_credits,
            ended_windows_are_deleted_and_current_ones_kept,
            rotation_stores_the_successors_limits,
        );
    };
    (@tests $factory:expr; $module:ident; $($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                let store = $factory;
                $crate::testing::$module::$name(&*store);
            }
        )*
    };
}
