//! The use cases, on a service generic over its ports.

use thiserror::Error;
use time::{Duration, OffsetDateTime};

use crate::api_key::{ApiKey, KeyStatus, NewKey, Tenant};
use crate::auth::{AuthError, Authentication, Authenticator, Credentials, Principal};
use crate::duration::{ExpiresIn, GracePeriod};
use crate::errors::{
    CreateError, CreateTenantError, GetError, ListError, RevokeError, RotateError, UpdateError,
};
use crate::hashing::HashKey;
use crate::ids::{KeyId, TenantId};
use crate::key_string::PlainKey;
use crate::kinds::{KeyType, Mode};
use crate::name::KeyName;
use crate::ports::{
    ApiKeyRepository, Clock, CreateTenantRepoError, InsertError, KeyChanges, KeyPage, ListQuery,
    RepositoryError, RevokeRepoError, RotateRepoError, SecretSource, TenantRepository,
    UpdateRepoError,
};
use crate::scope::Scopes;

/// Most keys a tenant may have active at once (CONTRACT §7).
pub const DEFAULT_MAX_ACTIVE_KEYS: u32 = 10_000;
/// `last_used_at` is written at most once per key in this interval (CONTRACT §8).
pub const LAST_USED_RESOLUTION: Duration = Duration::seconds(60);

/// A page size of 1 to 100 (default 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u32);

/// A page size outside 1 to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("limit must be between 1 and 100")]
pub struct PageLimitError;

impl PageLimit {
    /// The largest and default page size.
    pub const MAX: u32 = 100;

    /// Checks the bounds.
    ///
    /// # Errors
    /// [`PageLimitError`] outside 1 to 100.
    pub fn new(limit: u32) -> Result<Self, PageLimitError> {
        if (1..=Self::MAX).contains(&limit) {
            Ok(PageLimit(limit))
        } else {
            Err(PageLimitError)
        }
    }

    /// The size.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for PageLimit {
    fn default() -> Self {
        PageLimit(Self::MAX)
    }
}

/// A request to create a key; every field is already valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateKey {
    /// Label.
    pub name: KeyName,
    /// Publishable or secret.
    pub key_type: KeyType,
    /// Live or test; `None` takes the caller's mode.
    pub mode: Option<Mode>,
    /// What the key may do (`["*"]` by default at the edge).
    pub scopes: Scopes,
    /// Lifetime; `None` never expires.
    pub expires_in: Option<ExpiresIn>,
}

/// A listing request; every field is already valid.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListKeys {
    /// Only this type.
    pub key_type: Option<KeyType>,
    /// Only this mode (a test caller sees test keys whatever this says).
    pub mode: Option<Mode>,
    /// Also revoked keys.
    pub include_revoked: bool,
    /// Cursor: keys older than this one.
    pub starting_after: Option<KeyId>,
    /// Page size.
    pub limit: PageLimit,
}

/// A created key with its full value, to be shown once.
#[derive(Debug)]
pub struct CreatedKey {
    /// The stored key.
    pub key: ApiKey,
    /// The full key. Show it once, then drop it.
    pub secret: PlainKey,
}

/// The outcome of a rotation.
#[derive(Debug)]
pub struct RotatedKey {
    /// The successor.
    pub key: ApiKey,
    /// The successor's full value. Show it once, then drop it.
    pub secret: PlainKey,
    /// The rotated key.
    pub old_key_id: KeyId,
    /// When the rotated key stops working.
    pub old_key_revokes_at: OffsetDateTime,
}

/// A new tenant and its two first keys.
#[derive(Debug)]
pub struct CreatedTenant {
    /// The tenant.
    pub tenant: Tenant,
    /// Its live, full-access secret key.
    pub live: CreatedKey,
    /// Its test, full-access secret key.
    pub test: CreatedKey,
}

/// The API-key use cases over their ports: `K` stores keys, `T` tenants, `C`
/// tells the time and `S` supplies randomness.
pub struct ApiKeys<K, T, C, S> {
    keys: K,
    tenants: T,
    clock: C,
    secrets: S,
    hash_key: HashKey,
    max_active_keys: u32,
}

impl<K, T, C, S> std::fmt::Debug for ApiKeys<K, T, C, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("max_active_keys", &self.max_active_keys)
            .finish_non_exhaustive()
    }
}

impl<K, T, C, S> ApiKeys<K, T, C, S>
where
    K: ApiKeyRepository,
    T: TenantRepository,
    C: Clock,
    S: SecretSource,
{
    /// A service over the given ports, with the default key limit.
    pub fn new(keys: K, tenants: T, clock: C, secrets: S, hash_key: HashKey) -> Self {
        ApiKeys {
            keys,
            tenants,
            clock,
            secrets,
            hash_key,
            max_active_keys: DEFAULT_MAX_ACTIVE_KEYS,
        }
    }

    /// Overrides the per-tenant active key limit.
    #[must_use]
    pub fn with_max_active_keys(mut self, max: u32) -> Self {
        self.max_active_keys = max;
        self
    }

    /// Now, to the second: every stored timestamp is whole seconds
    /// (CONTRACT §1), so comparisons agree with what clients see.
    pub fn now(&self) -> OffsetDateTime {
        let now = self.clock.now().to_offset(time::UtcOffset::UTC);
        now.replace_nanosecond(0).unwrap_or(now)
    }

    /// The instant a new id is stamped with: the clock itself, not [`Self::now`],
    /// so that ids made within one second still sort by creation time (to the
    /// millisecond, as ULIDs do) and "newest first" holds between them.
    fn id_instant(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// The key repository (for adapters that need it, such as readiness checks).
    pub fn key_repository(&self) -> &K {
        &self.keys
    }

    /// Creates a key for the caller's tenant.
    ///
    /// # Errors
    /// [`CreateError`].
    pub fn create(
        &self,
        caller: &Principal,
        request: CreateKey,
    ) -> Result<CreatedKey, CreateError> {
        caller.require_key_management()?;
        let mode = request.mode.unwrap_or(caller.mode);
        if caller.mode == Mode::Test && mode == Mode::Live {
            return Err(CreateError::LiveModeRequired);
        }
        let now = self.now();
        let expires_at = request.expires_in.map(|e| now + e.get());
        let (new, secret) = self.new_key(
            caller.tenant_id,
            request.name,
            request.key_type,
            mode,
            request.scopes,
            expires_at,
            now,
        );
        match self.keys.insert(&new, self.max_active_keys, now) {
            Ok(()) => Ok(CreatedKey {
                key: new.key,
                secret,
            }),
            Err(InsertError::LimitReached) => Err(CreateError::LimitReached),
            Err(InsertError::Duplicate) => Err(CreateError::Repository(RepositoryError::failure(
                "insert key",
                "generated key id or hash collided",
            ))),
            Err(InsertError::UnknownTenant) => Err(CreateError::Repository(
                RepositoryError::failure("insert key", "the caller's tenant does not exist"),
            )),
            Err(InsertError::Repository(e)) => Err(e.into()),
        }
    }

    /// Lists the keys visible to the caller, newest first.
    ///
    /// # Errors
    /// [`ListError`].
    pub fn list(&self, caller: &Principal, request: ListKeys) -> Result<KeyPage, ListError> {
        caller.require_key_management()?;
        let mode = match (caller.mode, request.mode) {
            (Mode::Live, requested) => requested,
            (Mode::Test, None | Some(Mode::Test)) => Some(Mode::Test),
            // Live keys are invisible to a test key: the page is empty.
            (Mode::Test, Some(Mode::Live)) => {
                return Ok(KeyPage {
                    keys: Vec::new(),
                    has_more: false,
                })
            }
        };
        let query = ListQuery {
            key_type: request.key_type,
            mode,
            include_revoked: request.include_revoked,
            starting_after: request.starting_after,
            limit: request.limit.get(),
            now: self.now(),
        };
        Ok(self.keys.list(&caller.tenant_id, &query)?)
    }

    /// One key visible to the caller.
    ///
    /// # Errors
    /// [`GetError`].
    pub fn get(&self, caller: &Principal, id: &KeyId) -> Result<ApiKey, GetError> {
        caller.require_key_management()?;
        self.find_visible(caller, id)?.ok_or(GetError::NotFound)
    }

    /// Renames or re-scopes a key.
    ///
    /// # Errors
    /// [`UpdateError`].
    pub fn update(
        &self,
        caller: &Principal,
        id: &KeyId,
        changes: KeyChanges,
    ) -> Result<ApiKey, UpdateError> {
        caller.require_key_management()?;
        if self.find_visible(caller, id)?.is_none() {
            return Err(UpdateError::NotFound);
        }
        match self
            .keys
            .update(&caller.tenant_id, id, &changes, self.now())
        {
            Ok(key) => Ok(key),
            Err(UpdateRepoError::NotFound) => Err(UpdateError::NotFound),
            Err(UpdateRepoError::Revoked) => Err(UpdateError::Revoked),
            Err(UpdateRepoError::LastFullAccessKey) => Err(UpdateError::LastFullAccessKey),
            Err(UpdateRepoError::Repository(e)) => Err(e.into()),
        }
    }

    /// Revokes a key now. Revoking a revoked key changes nothing.
    ///
    /// # Errors
    /// [`RevokeError`].
    pub fn revoke(&self, caller: &Principal, id: &KeyId) -> Result<ApiKey, RevokeError> {
        caller.require_key_management()?;
        if self.find_visible(caller, id)?.is_none() {
            return Err(RevokeError::NotFound);
        }
        match self.keys.revoke(&caller.tenant_id, id, self.now()) {
            Ok(key) => Ok(key),
            Err(RevokeRepoError::NotFound) => Err(RevokeError::NotFound),
            Err(RevokeRepoError::LastFullAccessKey) => Err(RevokeError::LastFullAccessKey),
            Err(RevokeRepoError::Repository(e)) => Err(e.into()),
        }
    }

    /// Replaces a key by a new one with the same tenant, name, type, mode and
    /// scopes; the old key keeps working for `grace`. If the old key had an
    /// expiry, the new key gets the same lifetime counted from now.
    ///
    /// # Errors
    /// [`RotateError`]; of concurrent rotations of one key, all but one get
    /// [`RotateError::AlreadyRotated`].
    pub fn rotate(
        &self,
        caller: &Principal,
        id: &KeyId,
        grace: GracePeriod,
    ) -> Result<RotatedKey, RotateError> {
        caller.require_key_management()?;
        let now = self.now();
        let old = self
            .find_visible(caller, id)?
            .ok_or(RotateError::NotFound)?;
        rotatable(&old, now)?;
        let expires_at = old.expires_at.map(|at| now + (at - old.created_at));
        let (successor, secret) = self.new_key(
            old.tenant_id,
            old.name.clone(),
            old.key_type,
            old.mode,
            old.scopes.clone(),
            expires_at,
            now,
        );
        let revokes_at = now + grace.get();
        match self
            .keys
            .rotate(&caller.tenant_id, id, &successor, revokes_at, now)
        {
            Ok(()) => Ok(RotatedKey {
                key: successor.key,
                secret,
                old_key_id: *id,
                old_key_revokes_at: revokes_at,
            }),
            Err(RotateRepoError::NotFound) => Err(RotateError::NotFound),
            // Lost a race: say what the key has become since it was read.
            Err(RotateRepoError::NotActive) => {
                let current = self
                    .find_visible(caller, id)?
                    .ok_or(RotateError::NotFound)?;
                rotatable(&current, now)?;
                Err(RotateError::AlreadyRotated)
            }
            Err(RotateRepoError::Duplicate) => Err(RotateError::Repository(
                RepositoryError::failure("rotate key", "generated key id or hash collided"),
            )),
            Err(RotateRepoError::Repository(e)) => Err(e.into()),
        }
    }

    /// Creates a tenant with a live and a test full-access secret key.
    ///
    /// # Errors
    /// [`CreateTenantError`].
    pub fn create_tenant(&self, name: &str) -> Result<CreatedTenant, CreateTenantError> {
        let name = KeyName::parse(name)?;
        let now = self.now();
        let tenant = Tenant {
            id: TenantId::generate(self.id_instant(), &self.secrets),
            name: name.as_str().to_owned(),
            created_at: now,
        };
        let make = |mode: Mode, label: &str| {
            // The label is a constant that passes KeyName's rules.
            let name = KeyName::parse(label).unwrap_or_else(|_| name.clone());
            self.new_key(
                tenant.id,
                name,
                KeyType::Secret,
                mode,
                Scopes::full(),
                None,
                now,
            )
        };
        let (live, live_secret) = make(Mode::Live, "Default live secret key");
        let (test, test_secret) = make(Mode::Test, "Default test secret key");
        let keys = [live, test];
        match self.tenants.create(&tenant, &keys) {
            Ok(()) => {
                let [live, test] = keys;
                Ok(CreatedTenant {
                    tenant,
                    live: CreatedKey {
                        key: live.key,
                        secret: live_secret,
                    },
                    test: CreatedKey {
                        key: test.key,
                        secret: test_secret,
                    },
                })
            }
            Err(CreateTenantRepoError::Duplicate) => Err(CreateTenantError::Repository(
                RepositoryError::failure("create tenant", "generated id or hash collided"),
            )),
            Err(CreateTenantRepoError::Repository(e)) => Err(e.into()),
        }
    }

    /// The tenant with this id.
    ///
    /// # Errors
    /// [`RepositoryError`].
    pub fn find_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, RepositoryError> {
        self.tenants.find_tenant(id)
    }

    /// The oldest tenant with this name.
    ///
    /// # Errors
    /// [`RepositoryError`].
    pub fn find_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, RepositoryError> {
        self.tenants.find_tenant_by_name(name)
    }

    #[expect(clippy::too_many_arguments, reason = "every field of a new key")]
    fn new_key(
        &self,
        tenant_id: TenantId,
        name: KeyName,
        key_type: KeyType,
        mode: Mode,
        scopes: Scopes,
        expires_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> (NewKey, PlainKey) {
        let secret = PlainKey::generate(key_type, mode, &self.secrets);
        let key = ApiKey {
            id: KeyId::generate(self.id_instant(), &self.secrets),
            tenant_id,
            name,
            key_type,
            mode,
            prefix: secret.prefix().to_owned(),
            last_four: secret.last_four().to_owned(),
            scopes,
            created_at: now,
            last_used_at: None,
            expires_at,
            revokes_at: None,
            replaced_by: None,
        };
        let hash = self.hash_key.hash(&secret);
        (NewKey { key, hash }, secret)
    }

    /// The key if it is in the caller's tenant and mode: a test key sees only
    /// test keys.
    fn find_visible(
        &self,
        caller: &Principal,
        id: &KeyId,
    ) -> Result<Option<ApiKey>, RepositoryError> {
        let key = self.keys.find(&caller.tenant_id, id)?;
        Ok(key.filter(|k| caller.mode == Mode::Live || k.mode == Mode::Test))
    }
}

/// Why a key cannot be rotated now, if it cannot.
fn rotatable(key: &ApiKey, now: OffsetDateTime) -> Result<(), RotateError> {
    match key.status(now) {
        KeyStatus::Active => Ok(()),
        KeyStatus::RevocationScheduled => Err(RotateError::AlreadyRotated),
        KeyStatus::Revoked => Err(RotateError::Revoked),
        KeyStatus::Expired => Err(RotateError::Expired),
    }
}

impl<K, T, C, S> Authenticator for ApiKeys<K, T, C, S>
where
    K: ApiKeyRepository,
    T: TenantRepository,
    C: Clock,
    S: SecretSource,
{
    fn authenticate(&self, credentials: &Credentials) -> Result<Authentication, AuthError> {
        let hash = self.hash_key.hash(credentials.key());
        let key = self
            .keys
            .find_by_hash(&hash)?
            .ok_or(AuthError::InvalidKey)?;
        let now = self.now();
        match key.status(now) {
            KeyStatus::Revoked => return Err(AuthError::Revoked),
            KeyStatus::Expired => return Err(AuthError::Expired),
            KeyStatus::Active | KeyStatus::RevocationScheduled => {}
        }
        if key.tenant_id != *credentials.tenant() {
            return Err(AuthError::TenantMismatch);
        }
        let last_used_due = key
            .last_used_at
            .is_none_or(|at| now - at >= LAST_USED_RESOLUTION);
        Ok(Authentication {
            principal: Principal {
                tenant_id: key.tenant_id,
                key_id: key.id,
                key_type: key.key_type,
                mode: key.mode,
                scopes: key.scopes,
            },
            last_used_due,
        })
    }

    fn record_use(&self, principal: &Principal) -> Result<(), RepositoryError> {
        self.keys
            .touch_last_used(&principal.tenant_id, &principal.key_id, self.now())
            .map(|_| ())
    }
}

/// The service over shared, type-erased ports: what an application wires
/// once at start-up and hands to the HTTP layer.
pub type DynApiKeys = ApiKeys<
    std::sync::Arc<dyn ApiKeyRepository>,
    std::sync::Arc<dyn TenantRepository>,
    std::sync::Arc<dyn Clock>,
    std::sync::Arc<dyn SecretSource>,
>;
