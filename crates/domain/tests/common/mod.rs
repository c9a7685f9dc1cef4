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

use domain::testing::{InMemoryStore, SeqSecretSource, TestClock};
use domain::{
    ApiKey, ApiKeys, AuthError, Authentication, Authenticator, CreateKey, CreatedKey,
    CreatedTenant, Credentials, ExpiresIn, HashKey, KeyEvent, KeyName, KeyType, Mode, Origin,
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

    /// Authenticates `key` for `tenant`, as a request would after parsing.
    pub fn authenticate(
        &self,
        key: &PlainKey,
        tenant: &TenantId,
    ) -> Result<Authentication, AuthError> {
        self.service
            .authenticate(&Credentials::new(key.clone(), *tenant))
    }

    /// The principal of a key that authenticates.
    pub fn principal(&self, key: &CreatedKey) -> Principal {
        self.authenticate(&key.secret, &key.key.tenant_id)
            .expect("the key authenticates")
            .principal
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
    }
}
