//! The repository contract suite: what every [`ApiKeyRepository`] and
//! [`TenantRepository`] adapter must do, as checks any adapter's tests can run.
//!
//! Use [`repository_contract_tests!`](crate::repository_contract_tests) with an
//! expression that makes a fresh, empty store; it expands to one `#[test]` per
//! check. Concurrency guarantees need real threads against the real adapter and
//! are tested there; these checks cover everything one thread can observe.
//! A failed check panics with the step that failed, as a test should.

#![expect(
    clippy::expect_used,
    reason = "test support: a failed step is a failed test"
)]

use time::{Duration, OffsetDateTime};

use crate::api_key::{ApiKey, NewKey, Tenant};
use crate::hashing::HashKey;
use crate::ids::{KeyId, TenantId};
use crate::key_string::PlainKey;
use crate::kinds::{KeyType, Mode};
use crate::name::KeyName;
use crate::ports::{
    ApiKeyRepository, CreateTenantRepoError, InsertError, KeyChanges, ListQuery, RevokeRepoError,
    RotateRepoError, SecretSource, TenantRepository, UpdateRepoError,
};
use crate::scope::{Scope, Scopes};
use crate::testing::SeqSecretSource;

/// What the suite needs: both repositories in one store.
pub trait Store: ApiKeyRepository + TenantRepository {}
impl<S: ApiKeyRepository + TenantRepository> Store for S {}

/// The instant the suite's data is created at (whole seconds, as the service
/// stores them).
pub const T0: OffsetDateTime = time::macros::datetime!(2024-01-10 09:00:00 UTC);

/// Builds tenants and keys with distinct ids and hashes.
#[derive(Debug)]
pub struct Fixture {
    secrets: SeqSecretSource,
    hash_key: HashKey,
    clock_ms: std::cell::Cell<i64>,
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
            clock_ms: std::cell::Cell::new(0),
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

    /// A stored tenant with no keys.
    ///
    /// # Panics
    /// If the store refuses it.
    pub fn stored_tenant(&self, store: &impl Store, name: &str) -> Tenant {
        let tenant = self.tenant(name);
        store.create(&tenant, &[]).expect("create tenant");
        tenant
    }

    /// A full-access live secret key of `tenant`, created at [`T0`]. Each call
    /// gets a larger id than the previous one (ids sort by creation).
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
        };
        NewKey {
            hash: self.hash_key.hash(&secret),
            key,
        }
    }

    /// Inserts `key` with a generous limit.
    ///
    /// # Panics
    /// If the store refuses it.
    pub fn insert(&self, store: &impl Store, key: &NewKey) {
        store.insert(key, 10_000, T0).expect("insert key");
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

/// Every field survives an insert and comes back by id and by hash.
pub fn insert_then_find_round_trips_every_field(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let mut new = f.key_with(
        &tenant,
        KeyType::Publishable,
        Mode::Test,
        Scopes::new([Scope::UsersRead, Scope::AuditLogsRead]).expect("scopes"),
    );
    new.key.name = KeyName::parse("Ünïcødé – analytics ✓").expect("name");
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
        store.insert(&same_hash, 100, T0),
        Err(InsertError::Duplicate)
    ));
    assert!(matches!(
        store.insert(&same_id, 100, T0),
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
        store.insert(&key, 100, T0),
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
    store
        .revoke(&tenant.id, &revoked.key.id, T0)
        .expect("revoke");
    f.insert(store, &f.key(&other));
    f.insert(store, &f.key(&other));

    let second = f.key(&tenant);
    store
        .insert(&second, 2, now)
        .expect("second active key fits under a limit of 2");
    let third = f.key(&tenant);
    assert!(matches!(
        store.insert(&third, 2, now),
        Err(InsertError::LimitReached)
    ));
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

    let first = store
        .list(
            &tenant.id,
            &ListQuery {
                limit: 2,
                ..query(T0)
            },
        )
        .expect("list");
    assert_eq!(ids(&first.keys), newest_first[..2]);
    assert!(first.has_more);

    let second = store
        .list(
            &tenant.id,
            &ListQuery {
                limit: 2,
                starting_after: Some(newest_first[1]),
                ..query(T0)
            },
        )
        .expect("list");
    assert_eq!(ids(&second.keys), newest_first[2..4]);
    assert!(second.has_more);

    let last = store
        .list(
            &tenant.id,
            &ListQuery {
                limit: 2,
                starting_after: Some(newest_first[3]),
                ..query(T0)
            },
        )
        .expect("list");
    assert_eq!(ids(&last.keys), newest_first[4..]);
    assert!(!last.has_more);

    let exact = store
        .list(
            &tenant.id,
            &ListQuery {
                limit: 5,
                ..query(T0)
            },
        )
        .expect("list");
    assert_eq!(ids(&exact.keys), newest_first);
    assert!(!exact.has_more);
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
    store
        .revoke(&tenant.id, &revoked.key.id, T0)
        .expect("revoke");
    let successor = f.key(&tenant);
    store
        .rotate(
            &tenant.id,
            &in_grace.key.id,
            &successor,
            T0 + Duration::hours(1),
            T0,
        )
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
    let changes = KeyChanges {
        name: Some(KeyName::parse("Renamed").expect("name")),
        scopes: Some(Scopes::new([Scope::WebhooksRead]).expect("scopes")),
    };

    let updated = store
        .update(&tenant.id, &key.key.id, &changes, T0)
        .expect("update");

    let expected = ApiKey {
        name: KeyName::parse("Renamed").expect("name"),
        scopes: Scopes::new([Scope::WebhooksRead]).expect("scopes"),
        ..key.key.clone()
    };
    assert_eq!(updated, expected);
    assert_eq!(
        store.find(&tenant.id, &key.key.id).expect("find"),
        Some(expected)
    );

    let only_name = KeyChanges {
        name: Some(KeyName::parse("Again").expect("name")),
        scopes: None,
    };
    let renamed = store
        .update(&tenant.id, &key.key.id, &only_name, T0)
        .expect("update");
    assert_eq!(
        renamed.scopes,
        Scopes::new([Scope::WebhooksRead]).expect("scopes")
    );

    let unknown = f.key(&tenant);
    assert!(matches!(
        store.update(&tenant.id, &unknown.key.id, &changes, T0),
        Err(UpdateRepoError::NotFound)
    ));
    let other = f.stored_tenant(store, "Other");
    assert!(matches!(
        store.update(&other.id, &key.key.id, &changes, T0),
        Err(UpdateRepoError::NotFound)
    ));
    store.revoke(&tenant.id, &key.key.id, T0).expect("revoke");
    assert!(matches!(
        store.update(&tenant.id, &key.key.id, &only_name, T0),
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
    let narrow = KeyChanges {
        name: None,
        scopes: Some(Scopes::new([Scope::UsersRead]).expect("scopes")),
    };

    assert!(matches!(
        store.update(&tenant.id, &only.key.id, &narrow, T0),
        Err(UpdateRepoError::LastFullAccessKey)
    ));
    assert_eq!(
        store.find(&tenant.id, &only.key.id).expect("find"),
        Some(only.key.clone())
    );
    let rename = KeyChanges {
        name: Some(KeyName::parse("Still full").expect("name")),
        scopes: Some(Scopes::full()),
    };
    store
        .update(&tenant.id, &only.key.id, &rename, T0)
        .expect("rename");

    let second = f.key(&tenant);
    f.insert(store, &second);
    let narrowed = store
        .update(&tenant.id, &only.key.id, &narrow, T0)
        .expect("update");
    assert_eq!(
        narrowed.scopes,
        Scopes::new([Scope::UsersRead]).expect("scopes")
    );
    assert!(matches!(
        store.update(&tenant.id, &second.key.id, &narrow, T0),
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

    let revoked = store
        .revoke(&tenant.id, &key.key.id, later)
        .expect("revoke");
    assert_eq!(revoked.revokes_at, Some(later));
    let again = store
        .revoke(&tenant.id, &key.key.id, later + Duration::minutes(1))
        .expect("revoke again");
    assert_eq!(again.revokes_at, Some(later));

    assert!(matches!(
        store.revoke(&tenant.id, &guard.key.id, later),
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
        store.revoke(&other.id, &guard.key.id, later),
        Err(RevokeRepoError::NotFound)
    ));

    let successor = f.key(&tenant);
    store
        .rotate(
            &tenant.id,
            &guard.key.id,
            &successor,
            later + Duration::hours(1),
            later,
        )
        .expect("rotate");
    let cut_short = store
        .revoke(&tenant.id, &guard.key.id, later)
        .expect("revoke in grace");
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
    let revokes_at = T0 + Duration::hours(24);

    store
        .rotate(&tenant.id, &old.key.id, &successor, revokes_at, T0)
        .expect("rotate");

    let stored_old = store
        .find(&tenant.id, &old.key.id)
        .expect("find")
        .expect("old key");
    assert_eq!(stored_old.revokes_at, Some(revokes_at));
    assert_eq!(stored_old.replaced_by, Some(successor.key.id));
    assert_eq!(
        store.find_by_hash(&successor.hash).expect("find"),
        Some(successor.key.clone())
    );

    let loser = f.key(&tenant);
    assert!(matches!(
        store.rotate(&tenant.id, &old.key.id, &loser, revokes_at, T0),
        Err(RotateRepoError::NotActive)
    ));
    assert_eq!(store.find_by_hash(&loser.hash).expect("find"), None);

    let mut expiring = f.key(&tenant);
    expiring.key.expires_at = Some(T0 + Duration::minutes(1));
    f.insert(store, &expiring);
    let late = T0 + Duration::minutes(1);
    let unused = f.key(&tenant);
    assert!(matches!(
        store.rotate(&tenant.id, &expiring.key.id, &unused, late, late),
        Err(RotateRepoError::NotActive)
    ));
    assert!(matches!(
        store.rotate(&tenant.id, &f.key(&tenant).key.id, &unused, late, late),
        Err(RotateRepoError::NotFound)
    ));
    assert_eq!(store.find_by_hash(&unused.hash).expect("find"), None);
}

/// `last_used_at` is written at most once per 60 s.
pub fn touch_last_used_writes_at_most_once_a_minute(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let key = f.key(&tenant);
    f.insert(store, &key);
    let last_used = |store: &dyn ApiKeyRepository| {
        store
            .find(&tenant.id, &key.key.id)
            .expect("find")
            .and_then(|k| k.last_used_at)
    };

    assert!(store
        .touch_last_used(&tenant.id, &key.key.id, T0)
        .expect("touch"));
    assert_eq!(last_used(store), Some(T0));
    assert!(!store
        .touch_last_used(&tenant.id, &key.key.id, T0 + Duration::seconds(59))
        .expect("touch"));
    assert_eq!(last_used(store), Some(T0));
    assert!(store
        .touch_last_used(&tenant.id, &key.key.id, T0 + Duration::seconds(60))
        .expect("touch"));
    assert_eq!(last_used(store), Some(T0 + Duration::seconds(60)));

    let other = f.stored_tenant(store, "Other");
    assert!(!store
        .touch_last_used(&other.id, &key.key.id, T0 + Duration::hours(1))
        .expect("touch"));
}

/// A tenant and its keys are stored together or not at all.
pub fn tenant_create_is_all_or_nothing(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.tenant("Acme");
    let live = f.key(&tenant);
    let test = f.key_with(&tenant, KeyType::Secret, Mode::Test, Scopes::full());
    store
        .create(&tenant, &[live.clone(), test.clone()])
        .expect("create");
    assert_eq!(
        store.find_tenant(&tenant.id).expect("find"),
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
    assert!(matches!(
        store.create(&second, &[fresh.clone(), clash]),
        Err(CreateTenantRepoError::Duplicate)
    ));
    assert_eq!(store.find_tenant(&second.id).expect("find"), None);
    assert_eq!(store.find_by_hash(&fresh.hash).expect("find"), None);
}

/// Tenants are found by id and by name (the oldest of that name).
pub fn tenants_are_found_by_id_and_name(store: &impl Store) {
    let f = Fixture::new();
    let first = f.stored_tenant(store, "Development");
    let mut younger = f.tenant("Development");
    younger.created_at = T0 + Duration::days(1);
    store.create(&younger, &[]).expect("create");

    assert_eq!(
        store.find_tenant_by_name("Development").expect("find"),
        Some(first)
    );
    assert_eq!(store.find_tenant_by_name("Nobody").expect("find"), None);
    assert_eq!(
        store.find_tenant(&f.tenant("Ghost").id).expect("find"),
        None
    );
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
    store.revoke(&acme.id, &revoked.key.id, T0).expect("revoke");
    store
        .rotate(&acme.id, &rotated.key.id, &f.key(&acme), T0, T0)
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
        store
            .revoke(&tenant.id, &keys[i].key.id, T0)
            .expect("revoke");
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
    store
        .rotate(
            &tenant.id,
            &in_grace.key.id,
            &successor,
            T0 + Duration::hours(1),
            T0,
        )
        .expect("rotate");
    let rename = KeyChanges {
        name: Some(KeyName::parse("Renamed").expect("name")),
        scopes: None,
    };
    let now = T0 + Duration::minutes(30);

    for key in [&in_grace, &expired] {
        let updated = store
            .update(&tenant.id, &key.key.id, &rename, now)
            .expect("update");
        assert_eq!(updated.name.as_str(), "Renamed");
    }
    assert!(matches!(
        store.update(
            &tenant.id,
            &in_grace.key.id,
            &rename,
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
            Scopes::new([Scope::UsersRead]).expect("scopes"),
        ),
    );
    store
        .revoke(&tenant.id, &revoked.key.id, T0)
        .expect("revoke");

    assert!(matches!(
        store.revoke(&tenant.id, &guard.key.id, now),
        Err(RevokeRepoError::LastFullAccessKey)
    ));
    let narrow = KeyChanges {
        name: None,
        scopes: Some(Scopes::new([Scope::UsersRead]).expect("scopes")),
    };
    assert!(matches!(
        store.update(&tenant.id, &guard.key.id, &narrow, now),
        Err(UpdateRepoError::LastFullAccessKey)
    ));
    // Keys that do not count may go freely.
    let expired_gone = store
        .revoke(&tenant.id, &expired.key.id, now)
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

    store
        .rotate(
            &tenant.id,
            &old.key.id,
            &successor,
            T0 + Duration::hours(1),
            T0,
        )
        .expect("rotate");
    assert!(matches!(
        store.insert(&f.key(&tenant), 2, T0),
        Err(InsertError::LimitReached)
    ));

    assert!(matches!(
        store.revoke(&tenant.id, &successor.key.id, T0),
        Err(RevokeRepoError::LastFullAccessKey)
    ));
    let cut_short = store
        .revoke(&tenant.id, &old.key.id, T0)
        .expect("revoke the old key in its grace period");
    assert_eq!(cut_short.revokes_at, Some(T0));
    store
        .insert(&f.key(&tenant), 2, T0)
        .expect("room once the old key is revoked");
}

/// Expands to one `#[test]` per contract check, each on a fresh store made by
/// `$factory` (an expression evaluated once per test).
///
/// ```text
/// domain::repository_contract_tests!(domain::testing::InMemoryStore::new());
/// ```
#[macro_export]
macro_rules! repository_contract_tests {
    ($factory:expr) => {
        $crate::repository_contract_tests!(@tests $factory;
            insert_then_find_round_trips_every_field,
            find_is_scoped_to_the_tenant,
            insert_refuses_duplicate_id_or_hash,
            insert_refuses_unknown_tenant,
            insert_respects_the_active_key_limit,
            list_pages_newest_first,
            list_filters_by_type_mode_and_revocation,
            update_changes_name_and_scopes,
            update_keeps_a_full_access_key,
            revoke_is_immediate_idempotent_and_guarded,
            rotate_is_one_unit_and_only_for_active_keys,
            touch_last_used_writes_at_most_once_a_minute,
            tenant_create_is_all_or_nothing,
            tenants_are_found_by_id_and_name,
            find_by_hash_returns_keys_in_any_state,
            list_cursor_works_across_revoked_keys,
            update_applies_to_keys_that_are_not_revoked,
            guard_counts_only_active_live_full_access_secret_keys,
            rotated_keys_count_for_the_limit_and_the_successor_guards,
        );
    };
    (@tests $factory:expr; $($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                let store = $factory;
                $crate::testing::contract::$name(&store);
            }
        )*
    };
}
