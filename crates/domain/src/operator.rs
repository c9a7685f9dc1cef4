//! The operator's use cases, for the command line (README.md, "The
//! program"): listing tenants, and creating, listing and revoking any
//! tenant's keys, each change recorded with actor `cli`.
//!
//! There is no caller key here: whoever runs the program with the database
//! and the hash key is trusted with every tenant. That is what makes
//! `apikeys key create` the way back in for a tenant that lost every
//! full-access key. The rules that protect a tenant from itself still hold
//! unless the operator overrides them explicitly: revoking the last active
//! full-access live secret key needs `force`.

use thiserror::Error;

use crate::api_key::{KeyView, Tenant};
use crate::events::{EventData, Origin};
use crate::ids::{KeyId, TenantId};
use crate::key_kind::{KeyType, Mode};
use crate::ports::{InsertError, ListQuery, RepositoryError, RevokeRepoError};
use crate::requests::{CreateKey, ListKeys};
use crate::scope::Scope;
use crate::service::{ApiKeys, CreatedKey, KeyViewPage};

/// Why [`ApiKeys::create_key_for`] failed.
#[derive(Debug, Error)]
pub enum CreateKeyForError {
    /// No such tenant.
    #[error("unknown tenant {0}")]
    UnknownTenant(TenantId),
    /// A publishable key was asked for with a sensitive scope.
    #[error("a publishable key cannot hold {}: it is public by design", .0.as_str())]
    SensitiveScope(Scope),
    /// The tenant has the maximum number of active keys.
    #[error("the tenant has reached its limit of active keys")]
    LimitReached,
    /// Storage failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Why [`ApiKeys::list_keys_for`] failed.
#[derive(Debug, Error)]
pub enum ListKeysForError {
    /// No such tenant.
    #[error("unknown tenant {0}")]
    UnknownTenant(TenantId),
    /// Storage failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Why [`ApiKeys::revoke_key_for`] failed.
#[derive(Debug, Error)]
pub enum RevokeKeyForError {
    /// No such tenant.
    #[error("unknown tenant {0}")]
    UnknownTenant(TenantId),
    /// No such key in the tenant.
    #[error("no key {key} in tenant {tenant}")]
    KeyNotFound {
        /// The tenant.
        tenant: TenantId,
        /// The key asked for.
        key: KeyId,
    },
    /// Revoking would leave the tenant without an active full-access live
    /// secret key, and `force` was not given.
    #[error(
        "{0} is the tenant's last active full-access live secret key: revoking it would lock \
         the tenant out"
    )]
    LastFullAccessKey(KeyId),
    /// Storage failure.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// The outcome of [`ApiKeys::revoke_key_for`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedKey {
    /// The key as stored afterwards, with its status now.
    pub key: KeyView,
    /// Whether this call revoked it; `false` if it was revoked already when
    /// read (nothing changed and no event was written).
    pub changed: bool,
}

impl ApiKeys {
    /// Every tenant, oldest first.
    ///
    /// # Errors
    /// [`RepositoryError`].
    #[tracing::instrument(level = "debug", name = "use_case.list_tenants", skip_all)]
    pub fn list_tenants(&self) -> Result<Vec<Tenant>, RepositoryError> {
        self.tenants.list_tenants()
    }

    /// Whether the tenant exists. Reads every tenant: the use cases below
    /// call it only on their unhappy paths.
    fn tenant_exists(&self, tenant: &TenantId) -> Result<bool, RepositoryError> {
        Ok(self.tenants.list_tenants()?.iter().any(|t| t.id == *tenant))
    }

    /// Creates a key for `tenant` with no calling key: any type, mode and
    /// scopes (`request.mode` `None` means live). Writes `api_key.created`
    /// with `origin`. The tenant's active key limit (per mode) still
    /// applies; [`create_key_for_past_the_limit`](Self::create_key_for_past_the_limit)
    /// passes it.
    ///
    /// # Errors
    /// [`CreateKeyForError`].
    #[tracing::instrument(level = "debug", name = "use_case.create_key_for", skip_all)]
    pub fn create_key_for(
        &self,
        origin: &Origin,
        tenant: &TenantId,
        request: CreateKey,
    ) -> Result<CreatedKey, CreateKeyForError> {
        self.create_key_for_within(origin, tenant, request, self.max_active_keys)
    }

    /// [`create_key_for`](Self::create_key_for) whatever the number of the
    /// tenant's active keys (`apikeys key create --force`): the operator's
    /// way back in when a mode's keys fill the limit.
    ///
    /// # Errors
    /// [`CreateKeyForError`], never `LimitReached`.
    #[tracing::instrument(
        level = "debug",
        name = "use_case.create_key_for_past_the_limit",
        skip_all
    )]
    pub fn create_key_for_past_the_limit(
        &self,
        origin: &Origin,
        tenant: &TenantId,
        request: CreateKey,
    ) -> Result<CreatedKey, CreateKeyForError> {
        self.create_key_for_within(origin, tenant, request, u32::MAX)
    }

    fn create_key_for_within(
        &self,
        origin: &Origin,
        tenant: &TenantId,
        request: CreateKey,
        max_active: u32,
    ) -> Result<CreatedKey, CreateKeyForError> {
        if request.key_type == KeyType::Publishable {
            if let Some(scope) = request.scopes.first_sensitive() {
                return Err(CreateKeyForError::SensitiveScope(scope));
            }
        }
        let mode = request.mode.unwrap_or(Mode::Live);
        match self.insert_key(origin, *tenant, mode, request, max_active) {
            Ok(created) => Ok(created),
            Err(InsertError::UnknownTenant) => Err(CreateKeyForError::UnknownTenant(*tenant)),
            Err(InsertError::LimitReached) => Err(CreateKeyForError::LimitReached),
            Err(InsertError::Duplicate) => Err(RepositoryError::failure(
                "insert key",
                "generated key id or hash collided",
            )
            .into()),
            Err(InsertError::ActorRefused(_)) => Err(RepositoryError::failure(
                "insert key",
                "the store refused an operator's write for its actor",
            )
            .into()),
            Err(InsertError::Repository(e)) => Err(e.into()),
        }
    }

    /// A page of `tenant`'s keys, every mode unless `request.mode` says
    /// otherwise, newest first, each with its status now.
    ///
    /// # Errors
    /// [`ListKeysForError`]; an unknown tenant is an error, not an empty
    /// page.
    #[tracing::instrument(level = "debug", name = "use_case.list_keys_for", skip_all)]
    pub fn list_keys_for(
        &self,
        tenant: &TenantId,
        request: ListKeys,
    ) -> Result<KeyViewPage, ListKeysForError> {
        let now = self.now();
        let query = ListQuery {
            key_type: request.key_type,
            mode: request.mode,
            include_revoked: request.include_revoked,
            starting_after: request.starting_after,
            limit: request.limit.get(),
            now,
        };
        let page = self.keys.list(tenant, &query)?;
        if page.keys.is_empty() && !self.tenant_exists(tenant)? {
            return Err(ListKeysForError::UnknownTenant(*tenant));
        }
        Ok(KeyViewPage {
            keys: page.keys.into_iter().map(|k| KeyView::at(k, now)).collect(),
            has_more: page.has_more,
        })
    }

    /// Revokes a key of `tenant` now, writing `api_key.revoked` with
    /// `origin`. Without `force` the full-access guard holds as for
    /// [`ApiKeys::revoke`]; with it even the tenant's last full-access key
    /// is revoked. A key revoked already is returned as it is: nothing
    /// changes and no event is written.
    ///
    /// # Errors
    /// [`RevokeKeyForError`].
    #[tracing::instrument(level = "debug", name = "use_case.revoke_key_for", skip_all, fields(key_id = %id))]
    pub fn revoke_key_for(
        &self,
        origin: &Origin,
        tenant: &TenantId,
        id: &KeyId,
        force: bool,
    ) -> Result<RevokedKey, RevokeKeyForError> {
        let now = self.now();
        let Some(key) = self.keys.find(tenant, id)? else {
            return Err(self.not_found(tenant, id)?);
        };
        if key.is_revoked(now) {
            return Ok(RevokedKey {
                key: KeyView::at(key, now),
                changed: false,
            });
        }
        let event = self.key_event(now, &key, origin, EventData::KeyRevoked);
        let revoked = if force {
            self.keys.revoke_unguarded(tenant, id, &event)
        } else {
            self.keys.revoke(tenant, id, &event)
        };
        match revoked {
            Ok(after) => {
                self.changed(&[after.id]);
                Ok(RevokedKey {
                    key: KeyView::at(after, now),
                    changed: true,
                })
            }
            Err(RevokeRepoError::NotFound) => Err(self.not_found(tenant, id)?),
            Err(RevokeRepoError::LastFullAccessKey) => {
                Err(RevokeKeyForError::LastFullAccessKey(*id))
            }
            Err(RevokeRepoError::ActorRefused(_)) => Err(RepositoryError::failure(
                "revoke key",
                "the store refused an operator's write for its actor",
            )
            .into()),
            Err(RevokeRepoError::Repository(e)) => Err(e.into()),
        }
    }

    /// The error for a key that is not in `tenant`: the tenant itself may be
    /// unknown.
    fn not_found(
        &self,
        tenant: &TenantId,
        id: &KeyId,
    ) -> Result<RevokeKeyForError, RepositoryError> {
        Ok(if self.tenant_exists(tenant)? {
            RevokeKeyForError::KeyNotFound {
                tenant: *tenant,
                key: *id,
            }
        } else {
            RevokeKeyForError::UnknownTenant(*tenant)
        })
    }
}
