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
use crate::events::{EventPage, EventQuery, EventType, FieldChanges, KeyEvent, StoredEvent};
use crate::hashing::KeyHash;
use crate::idempotency::{IdempotencyKey, IdempotencyRecord, IdempotencyScope};
use crate::ids::{DeliveryId, EndpointId, KeyId, TenantId};
use crate::key_kind::{KeyType, Mode};
use crate::webhooks::{
    AttemptRecord, Delivery, DeliveryPage, DueDelivery, EndpointChanges, EndpointPage, NewEndpoint,
    SealedSecret, WebhookEndpoint,
};

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

/// One use of a key, to record as its `last_used_at` ([`ApiKeyRepository::record_uses`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUse {
    /// The key's tenant.
    pub tenant_id: TenantId,
    /// The key.
    pub key_id: KeyId,
    /// When it was used.
    pub at: OffsetDateTime,
    /// Written only if `last_used_at` is unset or not after this instant
    /// ([`ApiKey::last_used_due_before`]).
    pub due_before: OffsetDateTime,
}

impl KeyUse {
    /// A use of `key` at `at`, with the domain's once-a-minute rule.
    pub fn of(key: &ApiKey, at: OffsetDateTime) -> Self {
        KeyUse {
            tenant_id: key.tenant_id,
            key_id: key.id,
            at,
            due_before: ApiKey::last_used_due_before(at),
        }
    }
}

/// Hears of committed key changes, so that a cache of keys drops what it
/// holds. The service tells it of every change it commits, before it answers;
/// the event feed of other nodes' changes tells it too.
pub trait KeyChangeListener: Send + Sync {
    /// Key `id` changed. Idempotent: a change may be reported more than once
    /// (by the service and again by the event feed).
    fn key_changed(&self, id: &KeyId);

    /// Every change committed before `as_of` has been reported (the event
    /// feed says this after each complete read of the event log). The default
    /// ignores it.
    fn caught_up(&self, as_of: std::time::Instant) {
        let _ = as_of;
    }
}

/// Why a write's actor key may not write, judged on the key as it is when
/// the write commits (docs/events.md, "The actor"): the key must be active,
/// unexpired, a secret key and hold `*`, as the endpoints that write demand
/// of their caller (docs/api.md, "Authentication" and "Authorization").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ActorRefusal {
    /// The key is revoked (or no longer in the event's tenant).
    #[error("the calling key is revoked")]
    Revoked,
    /// The key is past its expiry.
    #[error("the calling key has expired")]
    Expired,
    /// The key is publishable.
    #[error("the calling key is not a secret key")]
    NotSecret,
    /// The key no longer holds `*`.
    #[error("the calling key lacks the scope `*`")]
    NotFullAccess,
}

impl ActorRefusal {
    /// Why `actor` (the stored key, `None` when there is none in the
    /// event's tenant) may not write at `now`, in the order the endpoints
    /// check a caller; `None` when it may.
    pub fn judge(actor: Option<&ApiKey>, now: OffsetDateTime) -> Option<ActorRefusal> {
        let Some(actor) = actor else {
            return Some(ActorRefusal::Revoked);
        };
        if actor.is_revoked(now) {
            Some(ActorRefusal::Revoked)
        } else if actor.expires_at.is_some_and(|at| at <= now) {
            Some(ActorRefusal::Expired)
        } else if actor.key_type != KeyType::Secret {
            Some(ActorRefusal::NotSecret)
        } else if !actor.scopes.is_full_access() {
            Some(ActorRefusal::NotFullAccess)
        } else {
            None
        }
    }
}

/// Why [`ApiKeyRepository::insert`] did not insert.
#[derive(Debug, Error)]
pub enum InsertError {
    /// The tenant already has `max_active` keys of the mode that count for
    /// the limit.
    #[error("the tenant's active key limit is reached")]
    LimitReached,
    /// The id or the hash is taken (a unique violation).
    #[error("a key with this id or hash exists")]
    Duplicate,
    /// No such tenant.
    #[error("unknown tenant")]
    UnknownTenant,
    /// The event's actor key may no longer write when the change would
    /// commit. Nothing was written.
    #[error(transparent)]
    ActorRefused(ActorRefusal),
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
    /// A changed field no longer holds its `old` value: a concurrent update
    /// won. Nothing was written; read the key again and retry.
    #[error("the key changed concurrently")]
    Stale,
    /// The event's actor key may no longer write when the change would
    /// commit. Nothing was written.
    #[error(transparent)]
    ActorRefused(ActorRefusal),
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
    /// The event's actor key may no longer write when the change would
    /// commit. Nothing was written.
    #[error(transparent)]
    ActorRefused(ActorRefusal),
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
    /// The tenant has `max_active` keys of the mode that count for the limit,
    /// and the old key would keep counting through its grace period.
    /// Nothing was written.
    #[error("key limit reached")]
    LimitReached,
    /// The event's actor key may no longer write when the change would
    /// commit. Nothing was written.
    #[error(transparent)]
    ActorRefused(ActorRefusal),
    /// Storage failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Storage of API keys.
///
/// Every method but [`find_by_hash`](Self::find_by_hash) is scoped to one
/// tenant: a key of another tenant is "not found".
///
/// # Events and the actor
/// Every write takes the [`KeyEvent`]s the domain built for it and stores
/// them in the same transaction as the change: they exist exactly when the
/// change committed, and a refused or failed write stores none. The change
/// happens at the event's `created_at`. When the event's actor is a key
/// ([`Actor::ApiKey`](crate::Actor::ApiKey)), the write commits only if that
/// key exists in the event's tenant and may write ([`ActorRefusal::judge`])
/// as it is when the write commits (a write cannot commit after its caller's
/// revocation, expiry or loss of rights did); otherwise it returns its
/// `ActorRefused` variant and writes nothing.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait ApiKeyRepository: Send + Sync {
    /// Stores a new key and its `api_key.created` event if the tenant has
    /// fewer than `max_active` keys of the new key's mode that count for the
    /// limit ([`ApiKey::counts_for_key_limit`]): live and test keys count
    /// apart, so test keys cannot crowd out live ones.
    ///
    /// Concurrency: the count and the insert are atomic per tenant, so
    /// concurrent inserts never take a tenant's mode past `max_active`.
    ///
    /// # Errors
    /// [`InsertError`].
    fn insert(&self, key: &NewKey, max_active: u32, event: &KeyEvent) -> Result<(), InsertError>;

    /// The key with this hash, in any tenant and any state. This is the one
    /// lookup across tenants: the tenant is checked after the key is found.
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn find_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKey>, RepositoryError>;

    /// The keys with these hashes, each with its hash, in any tenant and any
    /// state, in one lookup, in no particular order; hashes that match no
    /// key are left out, and a hash given twice finds its key once. For leak
    /// reports, which look up many strings at once (docs/api.md, "POST
    /// /v1/leaked-keys"), and secret scanners' batches, which answer for each
    /// string (docs/secret-scanning.md).
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn find_by_hashes(&self, hashes: &[KeyHash])
        -> Result<Vec<(KeyHash, ApiKey)>, RepositoryError>;

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

    /// Applies `changes` (not empty) to a key that is not revoked, only while
    /// each changed field still holds its `old` value, and stores `event`
    /// (`api_key.updated`). Returns the key as stored afterwards.
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
        changes: &FieldChanges,
        event: &KeyEvent,
    ) -> Result<ApiKey, UpdateRepoError>;

    /// Revokes a key at the event's time (also one in its grace period) and
    /// stores `event` (`api_key.revoked`), returning the key as stored
    /// afterwards. A key already revoked then is returned as it is: nothing
    /// changes and no event is stored.
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
        event: &KeyEvent,
    ) -> Result<ApiKey, RevokeRepoError>;

    /// [`revoke`](Self::revoke) without the full-access guard: even the
    /// tenant's last full-access key is revoked. For a leaked key (a leak
    /// outweighs the lockout) and the operator's `key revoke --force`.
    ///
    /// # Errors
    /// [`RevokeRepoError`] but `LastFullAccessKey`.
    fn revoke_unguarded(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        event: &KeyEvent,
    ) -> Result<ApiKey, RevokeRepoError>;

    /// Rotates `old` into `successor` as one unit: inserts the successor,
    /// sets the old key's `revokes_at` and `replaced_by`, and stores both
    /// events (`rotated` on the old key, `created` on the successor), but
    /// only if the old key is [`Active`](crate::KeyStatus::Active) at the
    /// events' time (not revoked, not expired, no revocation scheduled).
    ///
    /// The key limit: while `revokes_at` is after the events' time, the old
    /// key keeps counting ([`ApiKey::counts_for_key_limit`]) and the
    /// successor adds one, so the rotation needs the tenant to have fewer
    /// than `max_active` counting keys of the mode
    /// ([`RotateRepoError::LimitReached`]). A rotation that revokes the old
    /// key at once (`revokes_at` not after the events' time) changes no count
    /// and is never refused for the limit: it is the way to replace a leaked
    /// key when the tenant is at the limit (docs/api.md, "POST
    /// /v1/api-keys/rotate").
    ///
    /// Concurrency: of concurrent rotations of one key exactly one succeeds;
    /// the others get [`RotateRepoError::NotActive`] and write nothing.
    /// Concurrent rotations and inserts never take a tenant's mode past
    /// `max_active`.
    ///
    /// # Errors
    /// [`RotateRepoError`].
    fn rotate(
        &self,
        old: &KeyId,
        successor: &NewKey,
        revokes_at: OffsetDateTime,
        max_active: u32,
        rotated: &KeyEvent,
        created: &KeyEvent,
    ) -> Result<(), RotateRepoError>;

    /// Records uses of keys: sets each key's `last_used_at` to the use's
    /// `at`, but only where it is unset or not after the use's `due_before`
    /// (in one statement for all of them, so a batch costs one round trip).
    /// Uses of unknown keys are ignored. Returns how many keys were written.
    /// Writes no event: a use is not a change.
    ///
    /// Concurrency: the condition is checked by the write itself, so however
    /// many nodes record uses of one key, it is written at most once per
    /// [`LAST_USED_RESOLUTION`](crate::LAST_USED_RESOLUTION).
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn record_uses(&self, uses: &[KeyUse]) -> Result<usize, RepositoryError>;
}

/// What authenticating against storage needs, and nothing more: a key by
/// its hash, and recording uses. A cache of keys in front of storage depends
/// on this, so that its test doubles implement two methods, not every one
/// of [`ApiKeyRepository`].
///
/// Every [`ApiKeyRepository`] is one (a blanket implementation forwards to
/// it), so a new repository method costs nothing here.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait KeyLookup: Send + Sync {
    /// The key with this hash, as [`ApiKeyRepository::find_by_hash`].
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn find_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKey>, RepositoryError>;

    /// Records uses of keys, as [`ApiKeyRepository::record_uses`].
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn record_uses(&self, uses: &[KeyUse]) -> Result<usize, RepositoryError>;
}

impl<R: ApiKeyRepository + ?Sized> KeyLookup for R {
    fn find_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKey>, RepositoryError> {
        ApiKeyRepository::find_by_hash(self, hash)
    }

    fn record_uses(&self, uses: &[KeyUse]) -> Result<usize, RepositoryError> {
        ApiKeyRepository::record_uses(self, uses)
    }
}

/// Why an idempotent write of [`IdempotencyRepository`] did not write.
#[derive(Debug, Error)]
pub enum RecordedWriteError<E> {
    /// Another request of the same scope and idempotency key is being written
    /// right now. Nothing was written.
    #[error("a request with this idempotency key is in progress")]
    InUse,
    /// A request of the same scope and idempotency key completed while this
    /// one ran: its live record. Nothing was written.
    #[error("a request with this idempotency key completed meanwhile")]
    Completed(Box<IdempotencyRecord>),
    /// The write itself was refused or failed. Nothing was written.
    #[error(transparent)]
    Write(E),
}

/// A storage failure is the write's.
impl<E: From<RepositoryError>> From<RepositoryError> for RecordedWriteError<E> {
    fn from(e: RepositoryError) -> Self {
        RecordedWriteError::Write(e.into())
    }
}

/// The records of idempotent requests (docs/api.md, "Idempotent requests"),
/// each written in the same transaction as the change it records, so that a
/// record exists exactly when its change committed.
///
/// A record is live until its `expires_at`; an expired record is as good as
/// absent (a new request replaces it) until
/// [`delete_expired_records`](Self::delete_expired_records) removes it.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait IdempotencyRepository: Send + Sync {
    /// The live record (`expires_at` after `now`) of `key` in `scope`.
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn find_record(
        &self,
        scope: &IdempotencyScope,
        key: &IdempotencyKey,
        now: OffsetDateTime,
    ) -> Result<Option<IdempotencyRecord>, RepositoryError>;

    /// Does what [`ApiKeyRepository::insert`] does and stores `record`, as
    /// one unit, unless the record's scope and key are taken.
    ///
    /// Concurrency: of concurrent calls with one scope and key, at most one
    /// writes; the others get [`RecordedWriteError::InUse`] while it runs,
    /// or [`RecordedWriteError::Completed`] once it has committed.
    ///
    /// # Errors
    /// [`RecordedWriteError`].
    fn insert_recorded(
        &self,
        key: &NewKey,
        max_active: u32,
        event: &KeyEvent,
        record: &IdempotencyRecord,
    ) -> Result<(), RecordedWriteError<InsertError>>;

    /// Does what [`ApiKeyRepository::rotate`] does and stores `record`, as
    /// one unit, unless the record's scope and key are taken (as for
    /// [`insert_recorded`](Self::insert_recorded)).
    ///
    /// # Errors
    /// [`RecordedWriteError`].
    #[allow(clippy::too_many_arguments)]
    fn rotate_recorded(
        &self,
        old: &KeyId,
        successor: &NewKey,
        revokes_at: OffsetDateTime,
        max_active: u32,
        rotated: &KeyEvent,
        created: &KeyEvent,
        record: &IdempotencyRecord,
    ) -> Result<(), RecordedWriteError<RotateRepoError>>;

    /// Deletes the records expired at `now`; returns how many.
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn delete_expired_records(&self, now: OffsetDateTime) -> Result<usize, RepositoryError>;
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
    /// Stores a tenant together with its first keys and their events
    /// (`tenant.created`, then `api_key.created` for each key), all or
    /// nothing.
    ///
    /// # Errors
    /// [`CreateTenantRepoError`].
    fn create(
        &self,
        tenant: &Tenant,
        keys: &[NewKey],
        events: &[KeyEvent],
    ) -> Result<(), CreateTenantRepoError>;

    /// The oldest tenant with exactly this name (used by `apikeys dev`).
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn find_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, RepositoryError>;

    /// Every tenant, oldest first (by creation time, then id). For the
    /// operator's `apikeys tenant list`; the operator use cases also tell an
    /// unknown tenant by it.
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn list_tenants(&self) -> Result<Vec<Tenant>, RepositoryError>;
}

/// Reading the event log. Writing happens with each change, through the
/// other repositories.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait EventRepository: Send + Sync {
    /// A page of the tenant's events matching `query`, newest (largest id)
    /// first.
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn list_events(
        &self,
        tenant: &TenantId,
        query: &EventQuery,
    ) -> Result<EventPage, RepositoryError>;

    /// At most `limit` events of every tenant with a sequence number greater
    /// than `after`, in sequence order: what another node follows. The one
    /// read across tenants besides
    /// [`ApiKeyRepository::find_by_hash`]. Numbers can commit out of order,
    /// so a follower cannot track them alone (docs/events.md).
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, RepositoryError>;
}

/// Where an endpoint belongs: its tenant and mode (a test key manages test
/// endpoints only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointScope {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The mode.
    pub mode: Mode,
}

/// Why an endpoint was not inserted.
#[derive(Debug, Error)]
pub enum InsertEndpointError {
    /// The tenant already has the most endpoints in this mode.
    #[error("the tenant has the most webhook endpoints in this mode")]
    LimitReached,
    /// Storage failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Webhook endpoints and their deliveries (docs/webhooks.md). Deliveries
/// are made by storage, in the transaction of each event, for every enabled
/// endpoint of the event's tenant and mode whose filter matches.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait WebhookRepository: Send + Sync {
    /// Inserts an endpoint unless its tenant already has `max` in its mode;
    /// the count and the insert are atomic against concurrent inserts.
    ///
    /// # Errors
    /// [`InsertEndpointError`].
    fn insert_endpoint(&self, new: &NewEndpoint, max: u32) -> Result<(), InsertEndpointError>;

    /// A page of the scope's endpoints, newest first, older than
    /// `starting_after`.
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn list_endpoints(
        &self,
        scope: &EndpointScope,
        starting_after: Option<EndpointId>,
        limit: u32,
    ) -> Result<EndpointPage, RepositoryError>;

    /// One endpoint of the scope.
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn find_endpoint(
        &self,
        scope: &EndpointScope,
        id: &EndpointId,
    ) -> Result<Option<WebhookEndpoint>, RepositoryError>;

    /// Applies `changes` to the endpoint (enabling it clears its failing
    /// streak); `None` when it does not exist in the scope.
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn update_endpoint(
        &self,
        scope: &EndpointScope,
        id: &EndpointId,
        changes: &EndpointChanges,
    ) -> Result<Option<WebhookEndpoint>, RepositoryError>;

    /// Deletes the endpoint and its deliveries; `false` when it does not
    /// exist in the scope.
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn delete_endpoint(
        &self,
        scope: &EndpointScope,
        id: &EndpointId,
    ) -> Result<bool, RepositoryError>;

    /// Makes `secret` the endpoint's secret; the one it replaces keeps
    /// signing until `previous_until`. `false` when it does not exist.
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn rotate_endpoint_secret(
        &self,
        scope: &EndpointScope,
        id: &EndpointId,
        secret: &SealedSecret,
        previous_until: OffsetDateTime,
    ) -> Result<bool, RepositoryError>;

    /// A page of the endpoint's deliveries, newest first; `None` when the
    /// endpoint does not exist in the scope.
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn list_deliveries(
        &self,
        scope: &EndpointScope,
        endpoint: &EndpointId,
        starting_after: Option<DeliveryId>,
        limit: u32,
    ) -> Result<Option<DeliveryPage>, RepositoryError>;

    /// Makes the delivery pending again, due at `now` (its attempts kept);
    /// `None` when it (or its endpoint) does not exist in the scope.
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn retry_delivery(
        &self,
        scope: &EndpointScope,
        endpoint: &EndpointId,
        delivery: &DeliveryId,
        now: OffsetDateTime,
    ) -> Result<Option<Delivery>, RepositoryError>;

    /// Claims at most `limit` pending deliveries of enabled endpoints due at
    /// `now` that no node holds, for `lease`: until `now + lease` no other
    /// claim returns them. Concurrent claims never return the same delivery.
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn claim_due_deliveries(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, RepositoryError>;

    /// Writes an attempt's end and lets go of the lease. A success clears
    /// the endpoint's failing streak; a failure starts it if none, and
    /// disables the endpoint when the streak began `disable_after` ago or
    /// more. Nothing when the delivery is gone (its endpoint deleted).
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn record_attempt(
        &self,
        record: &AttemptRecord,
        disable_after: time::Duration,
    ) -> Result<(), RepositoryError>;

    /// When the oldest pending delivery was created, over every tenant.
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn oldest_pending_delivery(&self) -> Result<Option<OffsetDateTime>, RepositoryError>;

    /// Active keys (not revoked by `now`) due an expiry event at `now` that
    /// has not been written: `api_key.expiring` from 7 days before
    /// `expires_at` (for keys created at least 7 days before it), and
    /// `api_key.expired` from `expires_at`. At most `limit`, oldest due
    /// first.
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn keys_due_expiry_events(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(ApiKey, EventType)>, RepositoryError>;

    /// Inserts expiry events, skipping any whose key already has an event of
    /// that type (written by another node meanwhile): at most one of each
    /// type per key, ever. Returns how many were inserted.
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn insert_expiry_events(&self, events: &[KeyEvent]) -> Result<usize, RepositoryError>;
}

/// A share of one window's uses, as the store handed it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowShare {
    /// Uses granted to the caller: at most what it asked for, and never
    /// more than the window had left (0 when it had none).
    pub granted: u32,
    /// The window's uses handed out to every node, this share included.
    pub used: u32,
}

/// A refill due before credits are taken: when the stored credits were set
/// before `at`, `remaining` becomes `amount` and their period `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefillDue {
    /// What `remaining` becomes.
    pub amount: u64,
    /// The refill instant (docs/api.md, "Limiting a key's use").
    pub at: OffsetDateTime,
}

/// A share of a key's credits, as the store handed it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditShare {
    /// Credits granted: at most what was asked for, never more than were
    /// left.
    pub granted: u64,
    /// Credits left in the store after this share.
    pub remaining: u64,
    /// The period the credits belong to (when they were last set or
    /// refilled): a share returned later goes back only into the same
    /// period.
    pub period: OffsetDateTime,
}

/// Where the budgets of limited keys live across nodes (docs/limits.md).
/// Every method is one conditional write: a node takes a share and spends
/// it in memory.
///
/// Concurrency: of any number of concurrent takes of one key, on any
/// number of nodes, the granted amounts of one window never add up to more
/// than the `limit` passed, and the granted credits never to more than the
/// key had (after its refills): no over-admission.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait UsageBudget: Send + Sync {
    /// Takes up to `want` uses of key `key`'s window that starts at
    /// `window_start`, of which at most `limit` may be handed out.
    ///
    /// # Errors
    /// [`RepositoryError`]; nothing is taken then.
    fn take_window_share(
        &self,
        key: &KeyId,
        window_start: OffsetDateTime,
        limit: u32,
        want: u32,
    ) -> Result<WindowShare, RepositoryError>;

    /// Gives `amount` unspent uses of a share back to the window (a graceful
    /// stop). Never takes the window's count below zero.
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn return_window_share(
        &self,
        key: &KeyId,
        window_start: OffsetDateTime,
        amount: u32,
    ) -> Result<(), RepositoryError>;

    /// Takes up to `want` of key `key`'s credits, first applying `refill`
    /// when it is due. `None` when the key has no credits (any more).
    ///
    /// # Errors
    /// [`RepositoryError`]; nothing is taken then.
    fn take_credits(
        &self,
        key: &KeyId,
        want: u64,
        refill: Option<RefillDue>,
    ) -> Result<Option<CreditShare>, RepositoryError>;

    /// Gives `amount` unspent credits back, only while the key's credits
    /// are still of `period` (not set or refilled since).
    ///
    /// # Errors
    /// [`RepositoryError`].
    fn return_credits(
        &self,
        key: &KeyId,
        period: OffsetDateTime,
        amount: u64,
    ) -> Result<(), RepositoryError>;

    /// Deletes the counts of windows that ended before `before`: those of a
    /// key whose window (its rate limit's, now) ended by then, and every
    /// count of a key without a rate limit. A window's count is read only
    /// while the window lasts. Returns how many were deleted.
    ///
    /// # Errors
    /// [`RepositoryError`]; nothing is deleted then.
    fn delete_ended_windows(&self, before: OffsetDateTime) -> Result<usize, RepositoryError>;
}
