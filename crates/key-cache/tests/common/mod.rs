//! Shared set-up for the cache's isolation tests: a real service over an
//! in-memory store, a test clock, and a counting repository in front of the
//! store for the cache.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the helpers"
)]
#![expect(
    clippy::expect_used,
    reason = "test helpers: a failed set-up step is a failed test"
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use domain::testing::{InMemoryStore, SeqSecretSource, TestClock};
use domain::{
    ApiKey, ApiKeyRepository, ApiKeys, AuthError, Authenticator, CreateKey, CreatedKey,
    CreatedTenant, Credentials, ExpiresIn, HashKey, KeyHash, KeyLookup, KeyName, KeyType, KeyUse,
    Mode, Origin, PlainKey, Principal, RepositoryError, Scopes, TenantId,
};
use key_cache::{CacheConfig, Freshness, KeyCache, UseBuffer};
use time::OffsetDateTime;

/// Where every test's clock starts.
pub const T0: OffsetDateTime = time::macros::datetime!(2024-01-10 09:00:00 UTC);

/// A freshness window no test outlives: the cache is fresh from its
/// confirmation to the end of the test.
pub const LONG: Duration = Duration::from_secs(3600);

/// A fixed 32-byte hash key, shared by the service and the cache.
pub fn hash_key() -> HashKey {
    HashKey::from_bytes(&[0x42; 32]).expect("a 32-byte hash key")
}

/// Called inside [`CountingRepo::find_by_hash`] after the store answered and
/// before the answer is returned.
pub type Hook = Box<dyn Fn() + Send + Sync>;

/// A [`KeyLookup`] that delegates to an [`InMemoryStore`], counting
/// `find_by_hash` calls and recording every `record_uses` batch.
pub struct CountingRepo {
    pub store: InMemoryStore,
    finds: AtomicUsize,
    batches: Mutex<Vec<Vec<KeyUse>>>,
    after_find: Mutex<Option<Arc<Hook>>>,
}

impl CountingRepo {
    pub fn new(store: InMemoryStore) -> Arc<Self> {
        Arc::new(CountingRepo {
            store,
            finds: AtomicUsize::new(0),
            batches: Mutex::new(Vec::new()),
            after_find: Mutex::new(None),
        })
    }

    /// How many `find_by_hash` calls reached the repository.
    pub fn finds(&self) -> usize {
        self.finds.load(Ordering::SeqCst)
    }

    /// Every `record_uses` batch so far, in order (failed ones included).
    pub fn batches(&self) -> Vec<Vec<KeyUse>> {
        self.batches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs `hook` in every later `find_by_hash`, after the store answered.
    pub fn set_after_find(&self, hook: impl Fn() + Send + Sync + 'static) {
        *self
            .after_find
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(Box::new(hook)));
    }
}

/// Only what the cache uses: the rest of the store is reached through
/// `store`.
impl KeyLookup for CountingRepo {
    fn find_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKey>, RepositoryError> {
        self.finds.fetch_add(1, Ordering::SeqCst);
        let found = ApiKeyRepository::find_by_hash(&self.store, hash);
        let hook = self
            .after_find
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(hook) = hook {
            hook();
        }
        found
    }

    fn record_uses(&self, uses: &[KeyUse]) -> Result<usize, RepositoryError> {
        self.batches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(uses.to_vec());
        ApiKeyRepository::record_uses(&self.store, uses)
    }
}

/// A cache over a counting repository, and the service of this node telling
/// it of every change (`node`), plus a service of "another node" over the
/// same store that tells it nothing (`other_node`).
pub struct Harness {
    pub store: InMemoryStore,
    pub repo: Arc<CountingRepo>,
    pub clock: TestClock,
    pub freshness: Arc<Freshness>,
    pub uses: Arc<UseBuffer>,
    pub cache: Arc<KeyCache>,
    pub node: ApiKeys,
    pub other_node: ApiKeys,
}

impl Harness {
    /// Default settings, and a cache confirmed fresh for the whole test.
    pub fn new() -> Self {
        Self::confirmed(CacheConfig::default())
    }

    /// `config`, and a cache confirmed fresh for the whole test.
    pub fn confirmed(config: CacheConfig) -> Self {
        let h = Self::with(config, Freshness::new(LONG));
        h.freshness.confirm(Instant::now());
        h
    }

    /// `config`, trusting `freshness` (as given: confirm it or not).
    pub fn with(config: CacheConfig, freshness: Freshness) -> Self {
        let store = InMemoryStore::new();
        let repo = CountingRepo::new(store.clone());
        let clock = TestClock::at(T0);
        let freshness = Arc::new(freshness);
        let uses = Arc::new(UseBuffer::new());
        let cache = Arc::new(KeyCache::new(
            repo.clone(),
            Arc::new(clock.clone()),
            hash_key(),
            freshness.clone(),
            uses.clone(),
            config,
        ));
        let service = |seed| {
            ApiKeys::new(
                store.clone(),
                store.clone(),
                store.clone(),
                store.clone(),
                clock.clone(),
                SeqSecretSource::new(seed),
                hash_key(),
            )
        };
        let node = service(7).with_change_listener(cache.clone());
        let other_node = service(8);
        Harness {
            store,
            repo,
            clock,
            freshness,
            uses,
            cache,
            node,
            other_node,
        }
    }

    /// A new tenant with its live and test full-access secret keys.
    pub fn tenant(&self) -> Tenant {
        let created = self
            .node
            .create_tenant(&Origin::cli(), "Acme")
            .expect("create tenant");
        Tenant::new(created)
    }

    /// Creates a full-access live secret key, expiring after `expires_in` if
    /// given.
    pub fn create(&self, t: &Tenant, expires_in: Option<time::Duration>) -> CreatedKey {
        self.create_by(&self.node, t, expires_in)
    }

    /// Creates a full-access live secret key through `service` (this node's
    /// or the other node's, which does not tell the cache).
    pub fn create_by(
        &self,
        service: &ApiKeys,
        t: &Tenant,
        expires_in: Option<time::Duration>,
    ) -> CreatedKey {
        let request = CreateKey {
            name: KeyName::parse("Backend").expect("name"),
            key_type: KeyType::Secret,
            mode: Some(Mode::Live),
            scopes: Scopes::full(),
            expires_in: expires_in.map(|d| ExpiresIn::new(d).expect("lifetime")),
            restrictions: Default::default(),
            metadata: Default::default(),
        };
        service.create(&t.admin, None, request).expect("create key")
    }

    /// Through the cache, as a request that may block.
    pub fn auth(&self, key: &CreatedKey) -> Result<Arc<ApiKey>, AuthError> {
        self.cache.authenticate(&credentials(key))
    }

    /// Through the cache, as a request on the executor thread.
    pub fn cached(&self, key: &CreatedKey) -> Option<Result<Arc<ApiKey>, AuthError>> {
        self.cache.authenticate_cached(&credentials(key))
    }

    /// The key as stored now.
    pub fn stored(&self, key: &ApiKey) -> ApiKey {
        self.store
            .find(&key.tenant_id, &key.id)
            .expect("find")
            .expect("the key is stored")
    }
}

/// A tenant, and the principal of its live key to manage keys with.
pub struct Tenant {
    pub id: TenantId,
    pub admin: Principal,
    pub live: CreatedKey,
    pub test: CreatedKey,
}

impl Tenant {
    fn new(created: CreatedTenant) -> Self {
        Tenant {
            id: created.tenant.id,
            admin: Principal::of(&created.live.key),
            live: created.live,
            test: created.test,
        }
    }
}

/// The credentials a request presenting `key` for its own tenant carries.
pub fn credentials(key: &CreatedKey) -> Credentials {
    Credentials::new(key.secret.clone(), key.key.tenant_id)
}

/// A well-formed key that no one created.
pub fn unknown_key(seed: u64) -> PlainKey {
    PlainKey::generate(KeyType::Secret, Mode::Live, &SeqSecretSource::new(seed))
}

/// Whether `result` is a refusal because storage is unreachable.
pub fn is_unavailable<T>(result: &Result<T, AuthError>) -> bool {
    matches!(result, Err(AuthError::Repository(e)) if e.is_unavailable())
}

/// Polls `condition` until it holds or `within` has passed; whether it held.
pub fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
