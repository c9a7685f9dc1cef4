//! One error enum per use case, exhaustive, so that the HTTP layer's `match`
//! shows every outcome.

use thiserror::Error;

use crate::auth::AccessError;
use crate::metadata::MetadataError;
use crate::name::KeyNameError;
use crate::ports::RepositoryError;
use crate::restrictions::RestrictionError;
use crate::scope::Scope;

/// Why [`ApiKeys::create`](crate::ApiKeys::create) failed.
#[derive(Debug, Error)]
pub enum CreateError {
    /// The caller may not manage keys.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// A test key asked for a live key.
    #[error("a test key cannot create live keys")]
    LiveModeRequired,
    /// A publishable key was asked for with a sensitive scope.
    #[error("a publishable key cannot hold {}: it is public by design", .0.as_str())]
    SensitiveScope(Scope),
    /// A restriction the key's type may not hold (`allowed_origins` on a
    /// secret key).
    #[error(transparent)]
    Restriction(#[from] RestrictionError),
    /// The tenant has the maximum number of active keys.
    #[error("the tenant has reached its limit of active keys")]
    LimitReached,
    /// The calling key was revoked before the change could commit; nothing
    /// was written.
    #[error("the API key has been revoked")]
    CallerRevoked,
    /// The calling key expired before the change could commit; nothing was
    /// written.
    #[error("the API key has expired")]
    CallerExpired,
    /// The idempotency key was used before by this caller with another
    /// request (within 24 hours).
    #[error("this idempotency key was used with another request")]
    IdempotencyKeyReused,
    /// A request with this idempotency key is still being processed.
    #[error("a request with this idempotency key is in progress")]
    IdempotencyKeyInUse,
    /// Storage failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Why [`ApiKeys::list`](crate::ApiKeys::list) failed.
#[derive(Debug, Error)]
pub enum ListError {
    /// The caller may not manage keys.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// Storage failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Why [`ApiKeys::list_events`](crate::ApiKeys::list_events) failed.
#[derive(Debug, Error)]
pub enum ListEventsError {
    /// The caller may not read the audit log.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// Storage failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Why [`ApiKeys::get`](crate::ApiKeys::get) failed.
#[derive(Debug, Error)]
pub enum GetError {
    /// The caller may not manage keys.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// No such key visible to the caller.
    #[error("no such API key")]
    NotFound,
    /// Storage failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Why [`ApiKeys::update`](crate::ApiKeys::update) failed.
#[derive(Debug, Error)]
pub enum UpdateError {
    /// The caller may not manage keys.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// No such key visible to the caller.
    #[error("no such API key")]
    NotFound,
    /// The key is revoked and cannot change.
    #[error("the API key is revoked")]
    Revoked,
    /// A publishable key was given a sensitive scope.
    #[error("a publishable key cannot hold {}: it is public by design", .0.as_str())]
    SensitiveScope(Scope),
    /// A restriction the key's type may not hold (`allowed_origins` on a
    /// secret key).
    #[error(transparent)]
    Restriction(#[from] RestrictionError),
    /// The merged metadata breaks its limits (more than 20 entries).
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// Narrowing the scopes would leave the tenant without a full-access live
    /// secret key.
    #[error("this is the tenant's last full-access live secret key")]
    LastFullAccessKey,
    /// The calling key was revoked before the change could commit; nothing
    /// was written.
    #[error("the API key has been revoked")]
    CallerRevoked,
    /// The calling key expired before the change could commit; nothing was
    /// written.
    #[error("the API key has expired")]
    CallerExpired,
    /// Storage failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Why [`ApiKeys::revoke`](crate::ApiKeys::revoke) failed.
#[derive(Debug, Error)]
pub enum RevokeError {
    /// The caller may not manage keys.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// No such key visible to the caller.
    #[error("no such API key")]
    NotFound,
    /// Revoking would leave the tenant without a full-access live secret key.
    #[error("this is the tenant's last full-access live secret key")]
    LastFullAccessKey,
    /// The calling key was revoked before the change could commit; nothing
    /// was written.
    #[error("the API key has been revoked")]
    CallerRevoked,
    /// The calling key expired before the change could commit; nothing was
    /// written.
    #[error("the API key has expired")]
    CallerExpired,
    /// Storage failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Why [`ApiKeys::rotate`](crate::ApiKeys::rotate) failed.
#[derive(Debug, Error)]
pub enum RotateError {
    /// The caller may not manage keys.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// No such key visible to the caller.
    #[error("no such API key")]
    NotFound,
    /// The key is revoked.
    #[error("the API key is revoked")]
    Revoked,
    /// The key was rotated already (its revocation is scheduled).
    #[error("the API key has already been rotated")]
    AlreadyRotated,
    /// The key is past its expiry.
    #[error("the API key has expired")]
    Expired,
    /// The calling key was revoked before the change could commit; nothing
    /// was written.
    #[error("the API key has been revoked")]
    CallerRevoked,
    /// The calling key expired before the change could commit; nothing was
    /// written.
    #[error("the API key has expired")]
    CallerExpired,
    /// The idempotency key was used before by this caller with another
    /// request (within 24 hours).
    #[error("this idempotency key was used with another request")]
    IdempotencyKeyReused,
    /// A request with this idempotency key is still being processed.
    #[error("a request with this idempotency key is in progress")]
    IdempotencyKeyInUse,
    /// Storage failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Why [`ApiKeys::create_tenant`](crate::ApiKeys::create_tenant) failed.
#[derive(Debug, Error)]
pub enum CreateTenantError {
    /// The tenant name breaks the same rules as a key name.
    #[error("invalid tenant name")]
    InvalidName(#[from] KeyNameError),
    /// Storage failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}
