//! Authentication (docs/api.md, "Conventions", authentication) and the authenticated caller.

use std::net::IpAddr;
use std::sync::Arc;

use thiserror::Error;
use time::OffsetDateTime;

use crate::api_key::{ApiKey, KeyStatus};
use crate::events::{Actor, Origin};
use crate::ids::{KeyId, TenantId};
use crate::key_kind::{KeyType, Mode};
use crate::key_string::PlainKey;
use crate::ports::RepositoryError;
use crate::restrictions::UseRefusal;
use crate::scope::{Scope, Scopes};

/// Why a request was not authenticated, in the order the checks run: the first
/// failure answers.
#[derive(Debug, Error)]
pub enum AuthError {
    /// No bearer token.
    #[error("no API key was given; send `Authorization: Bearer <key>`")]
    MissingKey,
    /// Not a key (bad shape or checksum), or no key has this value.
    #[error("the API key is not valid")]
    InvalidKey,
    /// `X-Tenant-ID` missing or not `tnt_` + ULID.
    #[error("`X-Tenant-ID` must be `tnt_` followed by a 26-character ULID")]
    InvalidTenantId,
    /// The key was revoked (or its rotation grace period is over).
    #[error("the API key has been revoked")]
    Revoked,
    /// The key is past `expires_at`.
    #[error("the API key has expired")]
    Expired,
    /// The key belongs to another tenant than `X-Tenant-ID`.
    #[error("the API key does not belong to this tenant")]
    TenantMismatch,
    /// The client address is outside the key's `allowed_ips`
    /// ([`KeyRestrictions::check`](crate::KeyRestrictions::check)).
    #[error("the API key may not be used from this address")]
    IpNotAllowed,
    /// The request's origin matches none of the key's `allowed_origins`.
    #[error("the API key may not be used from this origin")]
    OriginNotAllowed,
    /// Storage failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

impl From<UseRefusal> for AuthError {
    fn from(refusal: UseRefusal) -> Self {
        match refusal {
            UseRefusal::IpNotAllowed => AuthError::IpNotAllowed,
            UseRefusal::OriginNotAllowed => AuthError::OriginNotAllowed,
        }
    }
}

/// A key and tenant that passed the checks that need no I/O (steps 1 and 2).
/// The tenant is optional only where docs/api.md says so (forward-auth's
/// `X-Tenant-ID`): then the key's own tenant is the request's.
#[derive(Debug, Clone)]
pub struct Credentials {
    key: PlainKey,
    tenant: Option<TenantId>,
    client: EndClient,
}

/// Where a request comes from, as far as a key's restrictions ask
/// (docs/api.md, "Restricting a key"): the end client's address and its
/// browser origin. Either is `None` when unknown, and an unknown address or
/// origin is inside no restriction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndClient {
    /// The end client's address: the peer, or the `X-Forwarded-For` entry
    /// of a trusted proxy; for verify, the body's `ip`.
    pub ip: Option<IpAddr>,
    /// Its `Origin`, or else its `Referer` (a URL, whose origin counts); for
    /// verify, the body's `origin`.
    pub origin: Option<String>,
}

impl Credentials {
    /// Checks the bearer token and the tenant header, in that order, without
    /// touching storage.
    ///
    /// # Errors
    /// [`AuthError::MissingKey`], [`AuthError::InvalidKey`] or
    /// [`AuthError::InvalidTenantId`].
    pub fn parse(
        bearer_token: Option<&str>,
        tenant_header: Option<&str>,
    ) -> Result<Self, AuthError> {
        let token = bearer_token.ok_or(AuthError::MissingKey)?;
        let key = PlainKey::parse(token).map_err(|_| AuthError::InvalidKey)?;
        let tenant = tenant_header
            .and_then(|t| TenantId::parse(t).ok())
            .ok_or(AuthError::InvalidTenantId)?;
        Ok(Credentials::new(key, tenant))
    }

    /// From already parsed parts.
    pub fn new(key: PlainKey, tenant: TenantId) -> Self {
        Credentials {
            key,
            tenant: Some(tenant),
            client: EndClient::default(),
        }
    }

    /// A key presented without naming a tenant (forward-auth without
    /// `X-Tenant-ID`): step 4, the tenant check, has nothing to compare and
    /// passes.
    pub fn for_any_tenant(key: PlainKey) -> Self {
        Credentials {
            key,
            tenant: None,
            client: EndClient::default(),
        }
    }

    /// The same credentials presented by `client`. Without it the end
    /// client is unknown, and a key with restrictions is refused.
    #[must_use]
    pub fn from_client(mut self, client: EndClient) -> Self {
        self.client = client;
        self
    }

    /// The presented key.
    pub fn key(&self) -> &PlainKey {
        &self.key
    }

    /// The tenant the request is for, when it names one.
    pub fn tenant(&self) -> Option<&TenantId> {
        self.tenant.as_ref()
    }

    /// Where the key is presented from.
    pub fn client(&self) -> &EndClient {
        &self.client
    }
}

/// Steps 3 and 4 of docs/api.md ("Conventions", authentication) for the key
/// found by the presented key's hash (`None`: no such key), judged at `now`
/// for the tenant the request names (`None`: it names none, and any tenant
/// passes): unknown, revoked, expired, other tenant, in that order. Every authenticator, cached or not, decides with
/// this one function, on every request: a cache keeps keys, never verdicts.
///
/// # Errors
/// [`AuthError::InvalidKey`], [`AuthError::Revoked`], [`AuthError::Expired`]
/// or [`AuthError::TenantMismatch`].
pub fn check_key(
    key: Option<&ApiKey>,
    tenant: Option<&TenantId>,
    now: OffsetDateTime,
) -> Result<(), AuthError> {
    let key = key.ok_or(AuthError::InvalidKey)?;
    match key.status(now) {
        KeyStatus::Revoked => return Err(AuthError::Revoked),
        KeyStatus::Expired => return Err(AuthError::Expired),
        KeyStatus::Active | KeyStatus::RevocationScheduled => {}
    }
    if tenant.is_some_and(|tenant| key.tenant_id != *tenant) {
        return Err(AuthError::TenantMismatch);
    }
    Ok(())
}

/// Whether the key that passed [`check_key`] may be used by a client at `ip`
/// from `origin` (docs/api.md, "Restricting a key"): its `allowed_ips`,
/// then, for a publishable key, its `allowed_origins`
/// ([`KeyRestrictions::check`](crate::KeyRestrictions::check)). Every way a
/// key is used (each authenticated request, verify) decides with this one
/// function, after [`check_key`] and before the scopes, on the key as
/// authenticated (a cached key carries its restrictions parsed).
///
/// # Errors
/// [`AuthError::IpNotAllowed`] or [`AuthError::OriginNotAllowed`].
pub fn check_use(key: &ApiKey, ip: Option<IpAddr>, origin: Option<&str>) -> Result<(), AuthError> {
    key.restrictions
        .check(key.key_type, ip, origin)
        .map_err(AuthError::from)
}

/// Everything an authenticator decides about the key found for
/// `credentials` (`None`: no such key): [`check_key`] (unknown, revoked,
/// expired, other tenant), then [`check_use`] for the credentials' end
/// client (its `allowed_ips`, then `allowed_origins`). A key refused by
/// either was not used: its use is recorded only when both pass.
///
/// # Errors
/// Those of [`check_key`], then of [`check_use`].
pub fn check_credentials(
    key: Option<&ApiKey>,
    credentials: &Credentials,
    now: OffsetDateTime,
) -> Result<(), AuthError> {
    check_key(key, credentials.tenant(), now)?;
    match key {
        Some(key) => {
            let client = credentials.client();
            check_use(key, client.ip, client.origin.as_deref())
        }
        None => Err(AuthError::InvalidKey),
    }
}

/// Why an authenticated caller may not do something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AccessError {
    /// A publishable key where a secret key is required.
    #[error("this endpoint requires a secret key")]
    SecretKeyRequired,
    /// The key lacks the scope.
    #[error("the API key lacks the scope `{required}`")]
    InsufficientScope {
        /// The scope that was needed.
        required: Scope,
    },
}

/// An authenticated caller: the key that was presented, as far as it matters
/// for deciding what the request may do. `Copy`: handing it around costs
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The tenant the key belongs to (and `X-Tenant-ID` named).
    pub tenant_id: TenantId,
    /// The key's id.
    pub key_id: KeyId,
    /// Publishable or secret.
    pub key_type: KeyType,
    /// Live or test.
    pub mode: Mode,
    /// What the key may do.
    pub scopes: Scopes,
}

impl Principal {
    /// The caller that presented `key`.
    pub fn of(key: &ApiKey) -> Self {
        Principal {
            tenant_id: key.tenant_id,
            key_id: key.id,
            key_type: key.key_type,
            mode: key.mode,
            scopes: key.scopes,
        }
    }

    /// Requires a secret key.
    ///
    /// # Errors
    /// [`AccessError::SecretKeyRequired`] for a publishable key.
    pub fn require_secret(&self) -> Result<(), AccessError> {
        match self.key_type {
            KeyType::Secret => Ok(()),
            KeyType::Publishable => Err(AccessError::SecretKeyRequired),
        }
    }

    /// Requires `scope` (a key with `*` has every scope, but a publishable
    /// key never has a sensitive one: [`Scopes::allow_for`]).
    ///
    /// # Errors
    /// [`AccessError::InsufficientScope`].
    pub fn require_scope(&self, scope: Scope) -> Result<(), AccessError> {
        if self.scopes.allow_for(self.key_type, scope) {
            Ok(())
        } else {
            Err(AccessError::InsufficientScope { required: scope })
        }
    }

    /// The origin of a change this caller makes in the request `request_id`.
    pub fn origin(&self, request_id: Option<String>) -> Origin {
        Origin {
            actor: Actor::ApiKey(self.key_id),
            request_id,
        }
    }

    /// What managing keys requires (docs/api.md, "Authorization"): a secret
    /// key with `*`.
    ///
    /// # Errors
    /// [`AccessError`], the key type checked first.
    pub fn require_key_management(&self) -> Result<(), AccessError> {
        self.require_secret()?;
        self.require_scope(Scope::All)
    }
}

/// The authentication path, as a port of its own so that a cache can wrap it
/// (the HTTP layer depends on this trait, not on the service).
///
/// An implementation judges the key with [`check_credentials`] (so also
/// where it is used from, the credentials' [`EndClient`]) and records the
/// use of a key that passes (`last_used_at`, at most one write per key per
/// 60 s, [`ApiKey::last_used_due`]): callers never do.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Authenticator: Send + Sync {
    /// Answers from memory without blocking, when the implementation can
    /// (a cache hit it can prove fresh); `None` means "call
    /// [`authenticate`](Self::authenticate) on a thread that may block". The
    /// default never can.
    fn authenticate_cached(
        &self,
        credentials: &Credentials,
    ) -> Option<Result<Arc<ApiKey>, AuthError>> {
        let _ = credentials;
        None
    }

    /// Steps 3 and 4 of docs/api.md ("Conventions", authentication), then
    /// the key's restrictions: finds the key by its hash and judges it with
    /// [`check_credentials`]. May block on storage. Returns the key as
    /// stored.
    ///
    /// # Errors
    /// [`AuthError::InvalidKey`], [`AuthError::Revoked`],
    /// [`AuthError::Expired`], [`AuthError::TenantMismatch`],
    /// [`AuthError::IpNotAllowed`], [`AuthError::OriginNotAllowed`] or
    /// [`AuthError::Repository`].
    fn authenticate(&self, credentials: &Credentials) -> Result<Arc<ApiKey>, AuthError>;
}
