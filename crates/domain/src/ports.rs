//! The ports: what the domain needs from the outside world.
//!
//! They are plain synchronous traits so that the domain needs no runtime and
//! is easy to embed and to mock. Adapters (`infra-postgres`, the in-memory
//! store under the `mocks` feature) implement them; callers on an async
//! runtime run them on a blocking thread.
//!
//! Each method's documentation says what an adapter must guarantee under
//! concurrency. The contract suite in `testing::contract` checks those that a
//! single thread can observe.

use std::error::Error as StdError;

use thiserror::Error;
use time::OffsetDateTime;

use crate::api_key::{ApiKey, NewKey, Tenant};
use crate::hashing::KeyHash;
use crate::ids::{KeyId, TenantId};
use crate::kinds::{KeyType, Mode};
use crate::name::KeyName;
use crate::scope::Scopes;

type Source = Box<dyn StdError + Send + Sync + 'static>;

/// A storage failure that is not a business outcome.
#[derive(Debug, Error)]
pub enum RepositoryError {
    /// The store cannot be reached (connection refused, pool timed out). It is
    /// worth retrying later: the HTTP layer answers 503 with `Retry-After`.
    #[error("storage unavailable: {context}")]
    Unavailable {
        /// What was being done.
        context: &'static str,
        /// The cause.
        #[source]
        source: Source,
    },
    /// Anything else: a bug, a broken invariant, unexpected data.
    #[error("storage failure: {context}")]
    Failure {
        /// What was being done.
        context: &'static str,
        /// The cause.
        #[source]
        source: Source,
    },
}

impl RepositoryError {
    /// An [`RepositoryError::Unavailable`] from any error.
    pub fn unavailable(context: &'static str, source: impl Into<Source>) -> Self {
        RepositoryError::Unavailable {
            context,
            source: source.into(),
        }
    }

    /// A [`RepositoryError::Failure`] from any error.
    pub fn failure(context: &'static str, source: impl Into<Source>) -> Self {
        RepositoryError::Failure {
            context,
            source: source.into(),
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, RepositoryError::Unavailable { .. })
    }
}

/// Filters, cursor and page size of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Only keys of this type.
    pub key_type: Option<KeyType>,
    /// Only keys of this mode.
    pub mode: Option<Mode>,
    /// Also keys revoked at `now` (`revokes_at <= now`).
    pub include_revoked: bool,
    /// Keys whose id is strictly smaller (older) than this one.
    pub starting_after: Option<KeyId>,
    /// At most this many keys (1 to 100).
    pub limit: u32,
    /// The instant against which "revoked" is judged.
    pub now: OffsetDateTime,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    /// Newest first (descending id).
    pub keys: Vec<ApiKey>,
    /// Whether more keys match after the last one.
    pub has_more: bool,
}

/// What an update changes; `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyChanges {
    /// A new name.
    pub name: Option<KeyName>,
    /// New scopes, replacing the old ones.
    pub scopes: Option<Scopes>,
}

/// Why [`ApiKeyRepository::insert`] did not insert.
#[derive(Debug, Error)]
pub enum InsertError {
    /// The tenant already has `max_active` keys that count for the limit.
    #[error("the tenant's active key limit is reached")]
    LimitReached,
    /// The id or the hash is taken (a unique violation).
    #[error("a key with this id or hash exists")]
    Duplicate,
    /// No such tenant.
    #[error("unknown tenant")]
    UnknownTenant,
    /// Storage failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Why [`ApiKeyRepository::update`] did not update.
#[derive(Debug, Error)]
pub enum UpdateRepoError {
    /// No such key in the tenant.
    #[error("key not found")]
    NotFound,
    /// The key is revoked at `now`.
    #[error("key revoked")]
    Revoked,
    /// The change would leave the tenant without a full-access guard key.
    #[error("last full-access key")]
    LastFullAccessKey,
    /// Storage failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Why [`ApiKeyRepository::revoke`] did not revoke.
#[derive(Debug, Error)]
pub enum RevokeRepoError {
    /// No such key in the tenant.
    #[error("key not found")]
    NotFound,
    /// Revoking would leave the tenant without a full-access guard key.
    #[error("last full-access key")]
    LastFullAccessKey,
    /// Storage failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Why [`ApiKeyRepository::rotate`] did not rotate.
#[derive(Debug, Error)]
pub enum RotateRepoError {
    /// No such key in the tenant.
    #[error("key not found")]
    NotFound,
    /// The old key is no longer [`KeyStatus::Active`](crate::KeyStatus::Active)
    /// at `now`: revoked, expired, or already rotated (by a concurrent caller,
    /// perhaps). Nothing was written.
    #[error("key no longer active")]
    NotActive,
    /// The successor's id or hash is taken.
    #[error("a key with this id or hash exists")]
    Duplicate,
    /// Storage failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Storage of API keys.
///
/// Every method but [`find_by_hash`](Self::find_by_hash) is scoped to one
/// tenant: a key of another tenant is "not found".
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait ApiKeyRepository: Send + Sync {
    /// Stores a new key if the tenant has fewer than `max_active` keys that
    /// count for the limit at `now` ([`ApiKey::counts_for_key_limit`]).
    ///
    /// Concurrency: the count and the insert are atomic per tenant, so
    /// concurrent inserts never take a tenant past `max_active`.
    ///
    /// # Errors
    /// [`InsertError`].
    fn insert(&self, key: &NewKey, max_active: u32, now: OffsetDateTime)
        -> Result<(), InsertError>;

    /// The key with this hash, in any tenant and any state. This is the one
    /// lookup across tenants: the tenant is checked after the key is found.
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn find_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKey>, RepositoryError>;

    /// The key with this id in this tenant, in any state.
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn find(&self, tenant: &TenantId, id: &KeyId) -> Result<Option<ApiKey>, RepositoryError>;

    /// A page of the tenant's keys matching `query`, newest (largest id) first.
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn list(&self, tenant: &TenantId, query: &ListQuery) -> Result<KeyPage, RepositoryError>;

    /// Applies `changes` to a key that is not revoked at `now`, returning the
    /// key as stored afterwards.
    ///
    /// The full-access guard: if the key counts for it
    /// ([`ApiKey::counts_for_full_access_guard`]) and the new scopes are not
    /// `*`, the update happens only if another key of the tenant counts too;
    /// otherwise [`UpdateRepoError::LastFullAccessKey`] and nothing changes.
    /// Concurrency: the guard check and the write are serialised per tenant
    /// with [`revoke`](Self::revoke) and other updates, so two concurrent
    /// changes cannot both remove the tenant's last two guard keys.
    ///
    /// # Errors
    /// [`UpdateRepoError`].
    fn update(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        changes: &KeyChanges,
        now: OffsetDateTime,
    ) -> Result<ApiKey, UpdateRepoError>;

    /// Revokes a key at `now` (also one in its grace period), returning the key
    /// as stored afterwards. A key already revoked at `now` is returned as it
    /// is: nothing changes.
    ///
    /// The full-access guard and its concurrency are as for
    /// [`update`](Self::update): revoking a key that counts for the guard
    /// succeeds only if another key of the tenant counts too.
    ///
    /// # Errors
    /// [`RevokeRepoError`].
    fn revoke(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        now: OffsetDateTime,
    ) -> Result<ApiKey, RevokeRepoError>;

    /// Rotates `old` into `successor` as one unit: inserts the successor and
    /// sets the old key's `revokes_at` and `replaced_by`, but only if the old
    /// key is [`Active`](crate::KeyStatus::Active) at `now` (not revoked, not
    /// expired, no revocation scheduled).
    ///
    /// Concurrency: of concurrent rotations of one key exactly one succeeds;
    /// the others get [`RotateRepoError::NotActive`] and write nothing. The
    /// key limit is not applied: the old key is on its way out.
    ///
    /// # Errors
    /// [`RotateRepoError`].
    fn rotate(
        &self,
        tenant: &TenantId,
        old: &KeyId,
        successor: &NewKey,
        revokes_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), RotateRepoError>;

    /// Sets `last_used_at = now` only if it is unset or older than
    /// `now - 60 s`, in one conditional write. Returns whether it wrote.
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn touch_last_used(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        now: OffsetDateTime,
    ) -> Result<bool, RepositoryError>;
}

/// Why [`TenantRepository::create`] did not create.
#[derive(Debug, Error)]
pub enum CreateTenantRepoError {
    /// The tenant id or a key's id or hash is taken.
    #[error("a tenant or key with this id exists")]
    Duplicate,
    /// Storage failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Storage of tenants.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait TenantRepository: Send + Sync {
    /// Stores a tenant together with its first keys, all or nothing.
    ///
    /// # Errors
    /// [`CreateTenantRepoError`].
    fn create(&self, tenant: &Tenant, keys: &[NewKey]) -> Result<(), CreateTenantRepoError>;

    /// The tenant with this id.
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn find_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, RepositoryError>;

    /// The oldest tenant with exactly this name (used by `apikeys dev`).
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn find_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, RepositoryError>;
}

/// The current time. The only source of time in the domain: no `now()` in SQL.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: Send + Sync {
    /// Now, in UTC.
    fn now(&self) -> OffsetDateTime;
}

/// Cryptographically secure random bytes, for key bodies and ULIDs.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait SecretSource: Send + Sync {
    /// Fills `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]);
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// The operating system's CSPRNG.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsSecretSource;

impl SecretSource for OsSecretSource {
    fn fill(&self, buf: &mut [u8]) {
        // The OS generator failing means the machine cannot make keys safely at
        // all; there is no sensible way to go on.
        #[expect(clippy::expect_used, reason = "no safe fallback for a broken CSPRNG")]
        getrandom::getrandom(buf).expect("the operating system's random source failed");
    }
}

// Shared ports: a service built over `Arc<dyn Port>` (as the HTTP layer does)
// or over an `Arc` of a concrete adapter uses the same implementation.

impl<P: ApiKeyRepository + ?Sized> ApiKeyRepository for std::sync::Arc<P> {
    fn insert(
        &self,
        key: &NewKey,
        max_active: u32,
        now: OffsetDateTime,
    ) -> Result<(), InsertError> {
        (**self).insert(key, max_active, now)
    }
    fn find_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKey>, RepositoryError> {
        (**self).find_by_hash(hash)
    }
    fn find(&self, tenant: &TenantId, id: &KeyId) -> Result<Option<ApiKey>, RepositoryError> {
        (**self).find(tenant, id)
    }
    fn list(&self, tenant: &TenantId, query: &ListQuery) -> Result<KeyPage, RepositoryError> {
        (**self).list(tenant, query)
    }
    fn update(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        changes: &KeyChanges,
        now: OffsetDateTime,
    ) -> Result<ApiKey, UpdateRepoError> {
        (**self).update(tenant, id, changes, now)
    }
    fn revoke(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        now: OffsetDateTime,
    ) -> Result<ApiKey, RevokeRepoError> {
        (**self).revoke(tenant, id, now)
    }
    fn rotate(
        &self,
        tenant: &TenantId,
        old: &KeyId,
        successor: &NewKey,
        revokes_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), RotateRepoError> {
        (**self).rotate(tenant, old, successor, revokes_at, now)
    }
    fn touch_last_used(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        now: OffsetDateTime,
    ) -> Result<bool, RepositoryError> {
        (**self).touch_last_used(tenant, id, now)
    }
}

impl<P: TenantRepository + ?Sized> TenantRepository for std::sync::Arc<P> {
    fn create(&self, tenant: &Tenant, keys: &[NewKey]) -> Result<(), CreateTenantRepoError> {
        (**self).create(tenant, keys)
    }
    fn find_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, RepositoryError> {
        (**self).find_tenant(id)
    }
    fn find_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, RepositoryError> {
        (**self).find_tenant_by_name(name)
    }
}

impl<P: Clock + ?Sized> Clock for std::sync::Arc<P> {
    fn now(&self) -> OffsetDateTime {
        (**self).now()
    }
}

impl<P: SecretSource + ?Sized> SecretSource for std::sync::Arc<P> {
    fn fill(&self, buf: &mut [u8]) {
        (**self).fill(buf);
    }
}
