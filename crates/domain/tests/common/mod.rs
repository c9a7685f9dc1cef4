//! Shared set-up for the integration tests: the service over the in-memory
//! store, a test clock and a deterministic secret source.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the helpers"
)]
#![expect(
    clippy::expect_used,
    reason = "test helpers: a failed set-up step is a failed test"
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use domain::testing::{InMemoryStore, SeqSecretSource, TestClock};
use domain::{
    ApiKey, ApiKeys, AuthError, Authenticator, CreateKey, CreatedKey, CreatedTenant, Credentials,
    ExpiresIn, HashKey, KeyChangeListener, KeyEvent, KeyId, KeyName, KeyType, Mode, Origin,
    PlainKey, Principal, Scopes, TenantId,
};
use time::OffsetDateTime;

/// Where every test's clock starts.
pub const T0: OffsetDateTime = time::macros::datetime!(2024-01-10 09:00:00 UTC);

/// A fixed 32-byte hash key.
pub fn hash_key() -> HashKey {
    HashKey::from_bytes(&[0x42; 32]).expect("a 32-byte hash key")
}

/// A service over a fresh in-memory store, with a clock at [`T0`] that the
/// test keeps a handle on.
pub struct Harness {
    pub store: InMemoryStore,
    pub clock: TestClock,
    pub service: ApiKeys,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_max_active_keys(domain::DEFAULT_MAX_ACTIVE_KEYS)
    }

    pub fn with_max_active_keys(max: u32) -> Self {
        let store = InMemoryStore::new();
        let clock = TestClock::at(T0);
        let service = ApiKeys::new(
            store.clone(),
            store.clone(),
            store.clone(),
            store.clone(),
            clock.clone(),
            SeqSecretSource::new(7),
            hash_key(),
        )
        .with_max_active_keys(max);
        Harness {
            store,
            clock,
            service,
        }
    }

    /// A new tenant "Acme" with its live and test full-access secret keys.
    pub fn tenant(&self) -> CreatedTenant {
        self.service
            .create_tenant(&Origin::cli(), "Acme")
            .expect("create tenant")
    }

    /// The same harness, its service telling `listener` of every key change
    /// it commits.
    pub fn with_listener(self, listener: Arc<dyn KeyChangeListener>) -> Self {
        Harness {
            service: self.service.with_change_listener(listener),
            ..self
        }
    }

    /// Authenticates `key` for `tenant`, as a request would after parsing
    /// (which records the key's use when it is due).
    pub fn authenticate(
        &self,
        key: &PlainKey,
        tenant: &TenantId,
    ) -> Result<Arc<ApiKey>, AuthError> {
        self.service
            .authenticate(&Credentials::new(key.clone(), *tenant))
    }

    /// The principal of a key that authenticates.
    pub fn principal(&self, key: &CreatedKey) -> Principal {
        let key = self
            .authenticate(&key.secret, &key.key.tenant_id)
            .expect("the key authenticates");
        Principal::of(&key)
    }

    /// Creates a key through the service.
    pub fn create(&self, caller: &Principal, request: CreateKey) -> CreatedKey {
        self.service
            .create(caller, None, request)
            .expect("create key")
    }

    /// Creates a full-access live secret key that expires after `lifetime`
    /// (such as `90d`).
    pub fn create_expiring(&self, caller: &Principal, lifetime: &str) -> CreatedKey {
        let expires_in = ExpiresIn::parse(lifetime).expect("duration");
        self.create(
            caller,
            request(KeyType::Secret, None, Scopes::full(), Some(expires_in)),
        )
    }

    /// Creates a full-access key of the given type and mode.
    pub fn create_kind(&self, caller: &Principal, key_type: KeyType, mode: Mode) -> CreatedKey {
        self.create(caller, request(key_type, Some(mode), Scopes::full(), None))
    }

    /// The key as stored now.
    pub fn stored(&self, key: &ApiKey) -> ApiKey {
        use domain::ApiKeyRepository;
        self.store
            .find(&key.tenant_id, &key.id)
            .expect("find")
            .expect("the key is stored")
    }

    /// Every stored event, oldest first.
    pub fn events(&self) -> Vec<KeyEvent> {
        self.store
            .stored_events()
            .into_iter()
            .map(|stored| stored.event)
            .collect()
    }
}

/// `key` as stored once a use at `at` was recorded.
pub fn used_at(key: &ApiKey, at: OffsetDateTime) -> ApiKey {
    ApiKey {
        last_used_at: Some(at),
        ..key.clone()
    }
}

/// A creation request named "Backend".
pub fn request(
    key_type: KeyType,
    mode: Option<Mode>,
    scopes: Scopes,
    expires_in: Option<ExpiresIn>,
) -> CreateKey {
    CreateKey {
        name: KeyName::parse("Backend").expect("name"),
        key_type,
        mode,
        scopes,
        expires_in,
        restrictions: Default::default(),
        metadata: Default::default(),
    }
}

/// A [`KeyChangeListener`] that records what it hears, in order.
#[derive(Debug, Default)]
pub struct Recorder {
    changed: Mutex<Vec<KeyId>>,
    caught_up: AtomicUsize,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// The keys reported changed since the last call, in order.
    pub fn take(&self) -> Vec<KeyId> {
        std::mem::take(&mut *self.changed.lock().expect("lock"))
    }

    /// How many times it heard `caught_up`.
    pub fn caught_up_calls(&self) -> usize {
        self.caught_up.load(Ordering::SeqCst)
    }
}

impl KeyChangeListener for Recorder {
    fn key_changed(&self, id: &KeyId) {
        self.changed.lock().expect("lock").push(*id);
    }

    fn caught_up(&self, _as_of: Instant) {
        self.caught_up.fetch_add(1, Ordering::SeqCst);
    }
}
