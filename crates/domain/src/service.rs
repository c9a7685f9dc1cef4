//! The use cases, on a service generic over its ports.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::api_key::{ApiKey, KeyStatus, KeyView, NewKey, Tenant};
use crate::auth::{
    check_credentials, AccessError, AuthError, Authenticator, Credentials, Principal,
};
use crate::clock::Clock;
use crate::duration::GracePeriod;
use crate::errors::{
    CreateError, CreateTenantError, GetError, ListError, ListEventsError, RevokeError, RotateError,
    UpdateError,
};
use crate::events::{EventData, EventPage, EventQuery, FieldChanges, KeyEvent, Origin};
use crate::hashing::HashKey;
use crate::idempotency::ResponseSealer;
use crate::ids::{EventId, KeyId, TenantId};
use crate::key_kind::{KeyType, Mode};
use crate::key_string::PlainKey;
use crate::limits::UsageLimits;
use crate::metadata::Metadata;
use crate::name::KeyName;
use crate::ports::{
    ActorRefusal, ApiKeyRepository, CreateTenantRepoError, EventRepository, IdempotencyRepository,
    InsertError, KeyChangeListener, KeyUse, ListQuery, RepositoryError, RevokeRepoError,
    RotateRepoError, TenantRepository, UpdateRepoError,
};
use crate::random::SecretSource;
use crate::requests::{CreateKey, ListEvents, ListKeys, UpdateKey};
use crate::restrictions::{KeyRestrictions, RestrictionError};
use crate::scope::{Scope, Scopes};

/// Most keys a tenant may have active at once in each mode (docs/api.md,
/// "Error codes": `key_limit_reached`).
pub const DEFAULT_MAX_ACTIVE_KEYS: u32 = 10_000;

/// How often [`ApiKeys::update`] re-reads and retries when a concurrent
/// update changed the key between its read and its write.
const UPDATE_ATTEMPTS: usize = 5;

/// One page of a key listing, each key with its status at the time of the
/// call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyViewPage {
    /// Newest first.
    pub keys: Vec<KeyView>,
    /// Whether more keys match after the last one.
    pub has_more: bool,
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

/// The API-key use cases over their ports: keys, tenants and events are
/// stored through the repositories, time comes from the clock and randomness
/// from the secret source. Ports are shared trait objects, so one service is
/// built once and shared by every request.
#[derive(Clone)]
pub struct ApiKeys {
    // `pub(crate)`: the use cases of `leaks.rs` and `operator.rs` are
    // methods of this type too.
    pub(crate) keys: Arc<dyn ApiKeyRepository>,
    pub(crate) tenants: Arc<dyn TenantRepository>,
    pub(crate) events: Arc<dyn EventRepository>,
    pub(crate) idempotency: Arc<dyn IdempotencyRepository>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) secrets: Arc<dyn SecretSource>,
    pub(crate) hash_key: HashKey,
    // Derived from the hash key once, not per request.
    pub(crate) sealer: ResponseSealer,
    pub(crate) max_active_keys: u32,
    pub(crate) listeners: Vec<Arc<dyn KeyChangeListener>>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("max_active_keys", &self.max_active_keys)
            .finish_non_exhaustive()
    }
}

impl ApiKeys {
    /// A service over the given ports, with the default key limit. Adapters
    /// are cheap to clone and share their state (a pool, a store), so pass a
    /// clone of one store for each repository.
    pub fn new(
        keys: impl ApiKeyRepository + 'static,
        tenants: impl TenantRepository + 'static,
        events: impl EventRepository + 'static,
        idempotency: impl IdempotencyRepository + 'static,
        clock: impl Clock + 'static,
        secrets: impl SecretSource + 'static,
        hash_key: HashKey,
    ) -> Self {
        ApiKeys {
            keys: Arc::new(keys),
            tenants: Arc::new(tenants),
            events: Arc::new(events),
            idempotency: Arc::new(idempotency),
            clock: Arc::new(clock),
            secrets: Arc::new(secrets),
            sealer: ResponseSealer::new(&hash_key),
            hash_key,
            max_active_keys: DEFAULT_MAX_ACTIVE_KEYS,
            listeners: Vec::new(),
        }
    }

    /// Tells `listener` of every key change this service commits, before the
    /// use case returns (a cache of keys on this node drops the key at once).
    #[must_use]
    pub fn with_change_listener(mut self, listener: Arc<dyn KeyChangeListener>) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Reports committed changes of `keys` to the listeners.
    pub(crate) fn changed(&self, keys: &[KeyId]) {
        for listener in &self.listeners {
            for key in keys {
                listener.key_changed(key);
            }
        }
    }

    /// Overrides the per-tenant active key limit.
    #[must_use]
    pub fn with_max_active_keys(mut self, max: u32) -> Self {
        self.max_active_keys = max;
        self
    }

    /// Now, to the second: every stored timestamp is whole seconds
    /// (docs/decisions.md, "Keys and time"), so comparisons agree with what
    /// clients see.
    pub fn now(&self) -> OffsetDateTime {
        let now = self.clock.now().to_offset(time::UtcOffset::UTC);
        now.replace_nanosecond(0).unwrap_or(now)
    }

    /// The instant a new id is stamped with: the clock itself, not [`Self::now`],
    /// so that ids made within one second still sort by creation time (to the
    /// millisecond, as ULIDs do) and "newest first" holds between them.
    pub(crate) fn id_instant(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub(crate) fn event_id(&self) -> EventId {
        EventId::generate(self.id_instant(), self.secrets.as_ref())
    }

    /// An event about `key`, made at `now` by `origin`.
    pub(crate) fn key_event(
        &self,
        now: OffsetDateTime,
        key: &ApiKey,
        origin: &Origin,
        data: EventData,
    ) -> KeyEvent {
        KeyEvent::for_key(self.event_id(), now, key, origin, data)
    }

    /// Creates a key for the caller's tenant.
    ///
    /// # Errors
    /// [`CreateError`].
    #[tracing::instrument(level = "debug", name = "use_case.create", skip_all)]
    pub fn create(
        &self,
        caller: &Principal,
        request_id: Option<String>,
        request: CreateKey,
    ) -> Result<CreatedKey, CreateError> {
        caller.require_key_management()?;
        let mode = creatable_mode(caller, &request)?;
        let origin = caller.origin(request_id);
        self.insert_key(
            &origin,
            caller.tenant_id,
            mode,
            request,
            self.max_active_keys,
        )
        .map_err(create_failed)
    }

    /// Makes a key of `mode` for `tenant` as `request` says, with its
    /// `api_key.created` event by `origin`, ready to store.
    pub(crate) fn prepare_key(
        &self,
        origin: &Origin,
        tenant: TenantId,
        mode: Mode,
        request: CreateKey,
    ) -> PreparedKey {
        let now = self.now();
        let expires_at = request.expires_in.map(|e| now + e.get());
        let (mut new, secret) = self.new_key(
            tenant,
            request.name,
            request.key_type,
            mode,
            request.scopes,
            expires_at,
            now,
        );
        new.key.limits = limits_set_at(request.limits, now);
        new.key.restrictions = request.restrictions;
        new.key.metadata = request.metadata;
        let event = self.key_event(
            now,
            &new.key,
            origin,
            EventData::KeyCreated { rotated_from: None },
        );
        let created = CreatedKey {
            key: new.key.clone(),
            secret,
        };
        PreparedKey {
            new,
            event,
            created,
        }
    }

    /// Makes a key of `mode` for `tenant` as `request` says and stores it
    /// with its `api_key.created` event by `origin`, under the key limit:
    /// what creating a key means for the API and the operator alike.
    ///
    /// # Errors
    /// The store's [`InsertError`], for the caller to name.
    pub(crate) fn insert_key(
        &self,
        origin: &Origin,
        tenant: TenantId,
        mode: Mode,
        request: CreateKey,
        max_active: u32,
    ) -> Result<CreatedKey, InsertError> {
        let prepared = self.prepare_key(origin, tenant, mode, request);
        self.keys
            .insert(&prepared.new, max_active, &prepared.event)?;
        self.changed(&[prepared.new.key.id]);
        Ok(prepared.created)
    }

    /// Lists the keys visible to the caller, newest first.
    ///
    /// # Errors
    /// [`ListError`].
    #[tracing::instrument(level = "debug", name = "use_case.list", skip_all)]
    pub fn list(&self, caller: &Principal, request: ListKeys) -> Result<KeyViewPage, ListError> {
        caller.require_key_management()?;
        let mode = match (caller.mode, request.mode) {
            (Mode::Live, requested) => requested,
            (Mode::Test, None | Some(Mode::Test)) => Some(Mode::Test),
            // Live keys are invisible to a test key: the page is empty.
            (Mode::Test, Some(Mode::Live)) => {
                return Ok(KeyViewPage {
                    keys: Vec::new(),
                    has_more: false,
                })
            }
        };
        let now = self.now();
        let query = ListQuery {
            key_type: request.key_type,
            mode,
            include_revoked: request.include_revoked,
            starting_after: request.starting_after,
            limit: request.limit.get(),
            now,
        };
        let page = self.keys.list(&caller.tenant_id, &query)?;
        Ok(KeyViewPage {
            keys: page.keys.into_iter().map(|k| KeyView::at(k, now)).collect(),
            has_more: page.has_more,
        })
    }

    /// One key visible to the caller.
    ///
    /// # Errors
    /// [`GetError`].
    #[tracing::instrument(level = "debug", name = "use_case.get", skip_all, fields(key_id = %id))]
    pub fn get(&self, caller: &Principal, id: &KeyId) -> Result<KeyView, GetError> {
        caller.require_key_management()?;
        let key = self.find_visible(caller, id)?.ok_or(GetError::NotFound)?;
        Ok(KeyView::at(key, self.now()))
    }

    /// Renames or re-scopes a key (`None` leaves a field as it is): an
    /// [`ApiKeys::update_with`] of those two fields.
    ///
    /// # Errors
    /// [`UpdateError`].
    pub fn update(
        &self,
        caller: &Principal,
        request_id: Option<String>,
        id: &KeyId,
        name: Option<KeyName>,
        scopes: Option<Scopes>,
    ) -> Result<KeyView, UpdateError> {
        let request = UpdateKey {
            name,
            scopes,
            ..UpdateKey::default()
        };
        self.update_with(caller, request_id, id, &request)
    }

    /// Changes a key as `request` says (`None` leaves a field as it is;
    /// metadata merges, docs/api.md, "PATCH /v1/api-keys/{id}"). A change
    /// that leaves every field as it was writes nothing and no event.
    ///
    /// # Errors
    /// [`UpdateError`].
    #[tracing::instrument(level = "debug", name = "use_case.update", skip_all, fields(key_id = %id))]
    pub fn update_with(
        &self,
        caller: &Principal,
        request_id: Option<String>,
        id: &KeyId,
        request: &UpdateKey,
    ) -> Result<KeyView, UpdateError> {
        let UpdateKey {
            name,
            scopes,
            allowed_ips,
            allowed_origins,
            metadata,
            limits,
        } = request;
        caller.require_key_management()?;
        let origin = caller.origin(request_id);
        // The event records each field's old value, and the write applies
        // only while the field still holds it; a concurrent update in between
        // makes the write stale, and it is redone from a fresh read.
        for _ in 0..UPDATE_ATTEMPTS {
            let now = self.now();
            let key = self
                .find_visible(caller, id)?
                .ok_or(UpdateError::NotFound)?;
            if key.is_revoked(now) {
                return Err(UpdateError::Revoked);
            }
            if key.key_type == KeyType::Publishable {
                if let Some(scope) = scopes.as_ref().and_then(Scopes::first_sensitive) {
                    return Err(UpdateError::SensitiveScope(scope));
                }
            }
            if key.key_type == KeyType::Secret && matches!(allowed_origins, Some(Some(_))) {
                return Err(RestrictionError::OriginsOnSecretKey.into());
            }
            let merged = metadata
                .as_ref()
                .map(|patch| key.metadata.merged(patch))
                .transpose()?;
            let changes = FieldChanges::between(&key, name.as_ref(), scopes.as_ref())
                .with_restrictions(
                    &key,
                    allowed_ips.as_ref(),
                    allowed_origins.as_ref(),
                    merged.as_ref(),
                )
                .with_limits(&key, limits);
            if changes.is_empty() {
                return Ok(KeyView::at(key, now));
            }
            let event = self.key_event(
                now,
                &key,
                &origin,
                EventData::KeyUpdated {
                    changes: changes.clone(),
                },
            );
            return match self.keys.update(&caller.tenant_id, id, &changes, &event) {
                Ok(key) => {
                    self.changed(&[key.id]);
                    Ok(KeyView::at(key, now))
                }
                Err(UpdateRepoError::Stale) => continue,
                Err(UpdateRepoError::NotFound) => Err(UpdateError::NotFound),
                Err(UpdateRepoError::Revoked) => Err(UpdateError::Revoked),
                Err(UpdateRepoError::LastFullAccessKey) => Err(UpdateError::LastFullAccessKey),
                Err(UpdateRepoError::ActorRefused(r)) => Err(caller_refused(
                    r,
                    UpdateError::CallerRevoked,
                    UpdateError::CallerExpired,
                )),
                Err(UpdateRepoError::Repository(e)) => Err(e.into()),
            };
        }
        Err(UpdateError::Repository(RepositoryError::failure(
            "update key",
            "concurrent updates of the key kept conflicting",
        )))
    }

    /// Revokes a key now. Revoking a revoked key changes nothing and writes
    /// no event.
    ///
    /// # Errors
    /// [`RevokeError`].
    #[tracing::instrument(level = "debug", name = "use_case.revoke", skip_all, fields(key_id = %id))]
    pub fn revoke(
        &self,
        caller: &Principal,
        request_id: Option<String>,
        id: &KeyId,
    ) -> Result<KeyView, RevokeError> {
        caller.require_key_management()?;
        let origin = caller.origin(request_id);
        let now = self.now();
        let key = self
            .find_visible(caller, id)?
            .ok_or(RevokeError::NotFound)?;
        if key.is_revoked(now) {
            return Ok(KeyView::at(key, now));
        }
        let event = self.key_event(now, &key, &origin, EventData::KeyRevoked);
        match self.keys.revoke(&caller.tenant_id, id, &event) {
            Ok(key) => {
                self.changed(&[key.id]);
                Ok(KeyView::at(key, now))
            }
            Err(RevokeRepoError::NotFound) => Err(RevokeError::NotFound),
            Err(RevokeRepoError::LastFullAccessKey) => Err(RevokeError::LastFullAccessKey),
            Err(RevokeRepoError::ActorRefused(r)) => Err(caller_refused(
                r,
                RevokeError::CallerRevoked,
                RevokeError::CallerExpired,
            )),
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
    #[tracing::instrument(level = "debug", name = "use_case.rotate", skip_all, fields(key_id = %id))]
    pub fn rotate(
        &self,
        caller: &Principal,
        request_id: Option<String>,
        id: &KeyId,
        grace: GracePeriod,
    ) -> Result<RotatedKey, RotateError> {
        caller.require_key_management()?;
        let rotation = self.prepare_rotation(caller, request_id, id, grace)?;
        match self.keys.rotate(
            id,
            &rotation.successor,
            rotation.outcome.old_key_revokes_at,
            self.max_active_keys,
            &rotation.rotated,
            &rotation.created,
        ) {
            Ok(()) => {
                self.changed(&[*id, rotation.successor.key.id]);
                Ok(rotation.outcome)
            }
            Err(e) => Err(self.rotation_failed(caller, id, e)),
        }
    }

    /// Reads key `id` as the caller sees it, checks that it can be rotated
    /// now, and makes its successor and both events by the caller.
    ///
    /// # Errors
    /// [`RotateError`]: not found, or not active.
    pub(crate) fn prepare_rotation(
        &self,
        caller: &Principal,
        request_id: Option<String>,
        id: &KeyId,
        grace: GracePeriod,
    ) -> Result<PreparedRotation, RotateError> {
        let origin = caller.origin(request_id);
        let now = self.now();
        let old = self
            .find_visible(caller, id)?
            .ok_or(RotateError::NotFound)?;
        rotatable(&old, now)?;
        let expires_at = old.expires_at.map(|at| now + (at - old.created_at));
        let (mut successor, secret) = self.new_key(
            old.tenant_id,
            old.name.clone(),
            old.key_type,
            old.mode,
            old.scopes,
            expires_at,
            now,
        );
        // Rotation copies where the key may be used from and its metadata
        // (docs/api.md, "Restricting a key"), and its limits, its credits
        // as they were read, counted from now (docs/limits.md).
        successor.key.restrictions = old.restrictions.clone();
        successor.key.metadata = old.metadata.clone();
        successor.key.limits = limits_set_at(old.limits, now);
        let revokes_at = now + grace.get();
        let rotated = self.key_event(
            now,
            &old,
            &origin,
            EventData::KeyRotated {
                replaced_by: successor.key.id,
                grace_period: grace.get(),
                revokes_at,
            },
        );
        let created = KeyEvent::for_key(
            rotated.id.next(),
            now,
            &successor.key,
            &origin,
            EventData::KeyCreated {
                rotated_from: Some(old.id),
            },
        );
        let outcome = RotatedKey {
            key: successor.key.clone(),
            secret,
            old_key_id: *id,
            old_key_revokes_at: revokes_at,
        };
        Ok(PreparedRotation {
            successor,
            rotated,
            created,
            outcome,
        })
    }

    /// Names why the store did not rotate key `id`.
    pub(crate) fn rotation_failed(
        &self,
        caller: &Principal,
        id: &KeyId,
        error: RotateRepoError,
    ) -> RotateError {
        match error {
            RotateRepoError::NotFound => RotateError::NotFound,
            // Lost a race: say what the key has become since it was read.
            RotateRepoError::NotActive => match self.find_visible(caller, id) {
                Ok(Some(current)) => rotatable(&current, self.now())
                    .err()
                    .unwrap_or(RotateError::AlreadyRotated),
                Ok(None) => RotateError::NotFound,
                Err(e) => e.into(),
            },
            RotateRepoError::ActorRefused(r) => {
                caller_refused(r, RotateError::CallerRevoked, RotateError::CallerExpired)
            }
            RotateRepoError::LimitReached => RotateError::LimitReached,
            RotateRepoError::Duplicate => RotateError::Repository(RepositoryError::failure(
                "rotate key",
                "generated key id or hash collided",
            )),
            RotateRepoError::Repository(e) => e.into(),
        }
    }

    /// Creates a tenant with a live and a test full-access secret key.
    ///
    /// # Errors
    /// [`CreateTenantError`].
    #[tracing::instrument(level = "debug", name = "use_case.create_tenant", skip_all)]
    pub fn create_tenant(
        &self,
        origin: &Origin,
        name: &str,
    ) -> Result<CreatedTenant, CreateTenantError> {
        let name = KeyName::parse(name)?;
        let now = self.now();
        let tenant = Tenant {
            id: TenantId::generate(self.id_instant(), self.secrets.as_ref()),
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
        let mut events = vec![KeyEvent {
            id: self.event_id(),
            created_at: now,
            tenant_id: tenant.id,
            key_id: None,
            mode: None,
            actor: origin.actor,
            request_id: origin.request_id.clone(),
            data: EventData::TenantCreated {
                name: tenant.name.clone(),
            },
        }];
        let mut id = events[0].id;
        for key in [&live, &test] {
            id = id.next();
            let data = EventData::KeyCreated { rotated_from: None };
            events.push(KeyEvent::for_key(id, now, &key.key, origin, data));
        }
        let keys = [live, test];
        match self.tenants.create(&tenant, &keys, &events) {
            Ok(()) => {
                self.changed(&[keys[0].key.id, keys[1].key.id]);
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

    /// A page of the tenant's audit log, newest first. Needs a secret key
    /// with `*` or `audit-logs:read`; a test key sees only events of test
    /// keys.
    ///
    /// # Errors
    /// [`ListEventsError`].
    #[tracing::instrument(level = "debug", name = "use_case.list_events", skip_all)]
    pub fn list_events(
        &self,
        caller: &Principal,
        request: ListEvents,
    ) -> Result<EventPage, ListEventsError> {
        caller.require_secret()?;
        caller.require_scope(Scope::AuditLogsRead)?;
        let query = EventQuery {
            key_id: request.key_id,
            event_type: request.event_type,
            mode: match caller.mode {
                Mode::Live => None,
                Mode::Test => Some(Mode::Test),
            },
            starting_after: request.starting_after,
            limit: request.limit.get(),
        };
        Ok(self.events.list_events(&caller.tenant_id, &query)?)
    }

    /// The oldest tenant with this name.
    ///
    /// # Errors
    /// [`RepositoryError`].
    #[tracing::instrument(level = "debug", name = "use_case.find_tenant_by_name", skip_all)]
    pub fn find_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, RepositoryError> {
        self.tenants.find_tenant_by_name(name)
    }

    #[expect(clippy::too_many_arguments, reason = "every field of a new key")]
    pub(crate) fn new_key(
        &self,
        tenant_id: TenantId,
        name: KeyName,
        key_type: KeyType,
        mode: Mode,
        scopes: Scopes,
        expires_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> (NewKey, PlainKey) {
        let secret = PlainKey::generate(key_type, mode, self.secrets.as_ref());
        let key = ApiKey {
            id: KeyId::generate(self.id_instant(), self.secrets.as_ref()),
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
            limits: UsageLimits::default(),
            restrictions: KeyRestrictions::default(),
            metadata: Metadata::default(),
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
/// A key made and ready to store: the row, its event, and what the caller
/// gets back.
pub(crate) struct PreparedKey {
    pub(crate) new: NewKey,
    pub(crate) event: KeyEvent,
    pub(crate) created: CreatedKey,
}

/// A rotation made and ready to store: the successor, both events, and what
/// the caller gets back.
pub(crate) struct PreparedRotation {
    pub(crate) successor: NewKey,
    pub(crate) rotated: KeyEvent,
    pub(crate) created: KeyEvent,
    pub(crate) outcome: RotatedKey,
}

/// The mode a creation makes its key in: the request's, or the caller's.
/// A test key cannot create live keys, and a publishable key cannot be given
/// a sensitive scope ([`Scope::is_sensitive`]).
pub(crate) fn creatable_mode(caller: &Principal, request: &CreateKey) -> Result<Mode, CreateError> {
    if request.key_type == KeyType::Publishable {
        if let Some(scope) = request.scopes.first_sensitive() {
            return Err(CreateError::SensitiveScope(scope));
        }
    }
    request.restrictions.check_type(request.key_type)?;
    let mode = request.mode.unwrap_or(caller.mode);
    if caller.mode == Mode::Test && mode == Mode::Live {
        return Err(CreateError::LiveModeRequired);
    }
    Ok(mode)
}

/// Names why the store did not insert the caller's new key.
/// A write refused because its calling key may no longer write, as the
/// endpoints refuse such a caller (docs/api.md, "Authentication" and
/// "Authorization"): 401 when it is revoked (`revoked`) or expired
/// (`expired`), 403 when it is no longer a full-access secret key.
fn caller_refused<E: From<AccessError>>(refusal: ActorRefusal, revoked: E, expired: E) -> E {
    match refusal {
        ActorRefusal::Revoked => revoked,
        ActorRefusal::Expired => expired,
        ActorRefusal::NotSecret => AccessError::SecretKeyRequired.into(),
        ActorRefusal::NotFullAccess => AccessError::InsufficientScope {
            required: Scope::All,
        }
        .into(),
    }
}

/// `limits` as set by a person at `now`: credits count from then.
pub(crate) fn limits_set_at(limits: UsageLimits, now: OffsetDateTime) -> UsageLimits {
    UsageLimits {
        credits_since: limits.credits.map(|_| now),
        ..limits
    }
}

pub(crate) fn create_failed(error: InsertError) -> CreateError {
    match error {
        InsertError::LimitReached => CreateError::LimitReached,
        InsertError::ActorRefused(r) => {
            caller_refused(r, CreateError::CallerRevoked, CreateError::CallerExpired)
        }
        InsertError::Duplicate => CreateError::Repository(RepositoryError::failure(
            "insert key",
            "generated key id or hash collided",
        )),
        InsertError::UnknownTenant => CreateError::Repository(RepositoryError::failure(
            "insert key",
            "the caller's tenant does not exist",
        )),
        InsertError::Repository(e) => e.into(),
    }
}

fn rotatable(key: &ApiKey, now: OffsetDateTime) -> Result<(), RotateError> {
    match key.status(now) {
        KeyStatus::Active => Ok(()),
        KeyStatus::RevocationScheduled => Err(RotateError::AlreadyRotated),
        KeyStatus::Revoked => Err(RotateError::Revoked),
        KeyStatus::Expired => Err(RotateError::Expired),
    }
}

impl Authenticator for ApiKeys {
    /// Looks the key up in storage on every call, and records its use when
    /// due with one write of its own (best effort: a failed write is not the
    /// request's failure). A cache in front batches those writes instead.
    fn authenticate(&self, credentials: &Credentials) -> Result<Arc<ApiKey>, AuthError> {
        let hash = self.hash_key.hash(credentials.key());
        let key = self.keys.find_by_hash(&hash)?;
        let now = self.now();
        check_credentials(key.as_ref(), credentials, now)?;
        let key = key.ok_or(AuthError::InvalidKey)?;
        if key.last_used_due(now) {
            // `last_used_at` is accurate to a minute at best; losing one
            // write to a storage hiccup is not worth failing the request.
            let _ = self.keys.record_uses(&[KeyUse::of(&key, now)]);
        }
        Ok(Arc::new(key))
    }
}
