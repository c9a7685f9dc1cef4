//! The webhook use cases (docs/webhooks.md): managing endpoints and their
//! secrets, the deliveries log, and what the delivery worker and the expiry
//! scheduler of each node ask of the domain.

use std::sync::Arc;

use thiserror::Error;
use time::{Duration, OffsetDateTime};

use crate::auth::{AccessError, Principal};
use crate::clock::Clock;
use crate::events::{Actor, EventData, EventType, KeyEvent, Origin};
use crate::hashing::HashKey;
use crate::ids::{DeliveryId, EndpointId, EventId};
use crate::ports::{EndpointScope, InsertEndpointError, RepositoryError, WebhookRepository};
use crate::random::SecretSource;
use crate::requests::PageLimit;
use crate::scope::Scope;
use crate::webhooks::{
    check_description, AllowHosts, AttemptOutcome, AttemptRecord, Delivery, DeliveryPage,
    DueDelivery, EndpointChanges, EndpointPage, EventFilter, InvalidField, NewEndpoint,
    SecretSealer, WebhookEndpoint, WebhookSecret, WebhookUrl, DISABLE_AFTER, EXPIRING_NOTICE,
    MAX_ENDPOINTS, SECRET_OVERLAP,
};

/// Why a webhook use case failed.
#[derive(Debug, Error)]
pub enum WebhookError {
    /// The caller may not.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// No such endpoint in the caller's tenant and mode.
    #[error("no webhook endpoint with this id")]
    NotFound,
    /// No such delivery of the endpoint.
    #[error("no delivery with this id for this endpoint")]
    DeliveryNotFound,
    /// 20 endpoints in this mode already.
    #[error("the tenant has 20 webhook endpoints in this mode already")]
    LimitReached,
    /// A field's value was refused.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// Storage failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

impl From<InsertEndpointError> for WebhookError {
    fn from(e: InsertEndpointError) -> Self {
        match e {
            InsertEndpointError::LimitReached => WebhookError::LimitReached,
            InsertEndpointError::Repository(e) => WebhookError::Repository(e),
        }
    }
}

/// `POST /v1/webhook-endpoints`, unchecked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateEndpoint {
    /// The URL.
    pub url: String,
    /// `["*"]` or event types.
    pub events: Vec<String>,
    /// Free text.
    pub description: Option<String>,
}

/// `PATCH /v1/webhook-endpoints/{id}`, unchecked (`None`: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateEndpoint {
    /// A new URL.
    pub url: Option<String>,
    /// New event types.
    pub events: Option<Vec<String>>,
    /// A new description; `Some(None)` removes it.
    pub description: Option<Option<String>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

/// A created endpoint and its secret, to show once.
#[derive(Debug)]
pub struct CreatedEndpoint {
    /// The endpoint.
    pub endpoint: WebhookEndpoint,
    /// Its secret. Show it once, then drop it.
    pub secret: WebhookSecret,
}

/// A delivery ready to attempt: the claim with its secrets opened.
#[derive(Debug)]
pub struct ReadyDelivery {
    /// The claim.
    pub due: DueDelivery,
    /// The secrets that sign it (current first); empty when none could be
    /// opened (the hash key changed), which fails the attempt.
    pub secrets: Vec<WebhookSecret>,
}

/// The webhook use cases over their port.
#[derive(Clone)]
pub struct Webhooks {
    repo: Arc<dyn WebhookRepository>,
    clock: Arc<dyn Clock>,
    secrets: Arc<dyn SecretSource>,
    sealer: SecretSealer,
    allow: AllowHosts,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("allow", &self.allow)
            .finish_non_exhaustive()
    }
}

fn scope_of(principal: &Principal) -> EndpointScope {
    EndpointScope {
        tenant_id: principal.tenant_id,
        mode: principal.mode,
    }
}

fn require(principal: &Principal, scope: Scope) -> Result<EndpointScope, AccessError> {
    principal.require_secret()?;
    principal.require_scope(scope)?;
    Ok(scope_of(principal))
}

impl Webhooks {
    /// The use cases over `repo`, sealing secrets under a key derived from
    /// `hash_key`, with `allow` the hosts reachable over http and at any
    /// address.
    pub fn new(
        repo: impl WebhookRepository + 'static,
        clock: Arc<dyn Clock>,
        secrets: impl SecretSource + 'static,
        hash_key: &HashKey,
        allow: AllowHosts,
    ) -> Self {
        Webhooks {
            repo: Arc::new(repo),
            clock,
            secrets: Arc::new(secrets),
            sealer: SecretSealer::new(hash_key),
            allow,
        }
    }

    /// The hosts reachable over http and at any address.
    pub fn allow_hosts(&self) -> &AllowHosts {
        &self.allow
    }

    /// The clock.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Creates an endpoint in the caller's tenant and mode, with a new
    /// secret.
    ///
    /// # Errors
    /// [`WebhookError`]: access (`webhooks:write`), a refused field, the
    /// limit of 20, storage.
    pub fn create(
        &self,
        principal: &Principal,
        request: CreateEndpoint,
    ) -> Result<CreatedEndpoint, WebhookError> {
        let scope = require(principal, Scope::WebhooksWrite)?;
        let url = WebhookUrl::parse(&request.url, &self.allow)?;
        let events = EventFilter::parse(&request.events)?;
        if let Some(d) = &request.description {
            check_description(d)?;
        }
        let now = self.clock.now();
        let id = EndpointId::generate(now, self.secrets.as_ref());
        let secret = WebhookSecret::generate(self.secrets.as_ref());
        let endpoint = WebhookEndpoint {
            id,
            tenant_id: scope.tenant_id,
            mode: scope.mode,
            url,
            events,
            description: request.description,
            enabled: true,
            created_at: now,
        };
        let new = NewEndpoint {
            endpoint: endpoint.clone(),
            secret: self.sealer.seal(&id, &secret, self.secrets.as_ref()),
        };
        self.repo.insert_endpoint(&new, MAX_ENDPOINTS)?;
        Ok(CreatedEndpoint { endpoint, secret })
    }

    /// The caller's endpoints, newest first.
    ///
    /// # Errors
    /// [`WebhookError`]: access (`webhooks:read`), storage.
    pub fn list(
        &self,
        principal: &Principal,
        starting_after: Option<EndpointId>,
        limit: PageLimit,
    ) -> Result<EndpointPage, WebhookError> {
        let scope = require(principal, Scope::WebhooksRead)?;
        Ok(self
            .repo
            .list_endpoints(&scope, starting_after, limit.get())?)
    }

    /// One endpoint.
    ///
    /// # Errors
    /// [`WebhookError`]: access (`webhooks:read`), not found, storage.
    pub fn get(
        &self,
        principal: &Principal,
        id: &EndpointId,
    ) -> Result<WebhookEndpoint, WebhookError> {
        let scope = require(principal, Scope::WebhooksRead)?;
        self.repo
            .find_endpoint(&scope, id)?
            .ok_or(WebhookError::NotFound)
    }

    /// Changes an endpoint.
    ///
    /// # Errors
    /// [`WebhookError`]: access (`webhooks:write`), a refused field, not
    /// found, storage.
    pub fn update(
        &self,
        principal: &Principal,
        id: &EndpointId,
        request: UpdateEndpoint,
    ) -> Result<WebhookEndpoint, WebhookError> {
        let scope = require(principal, Scope::WebhooksWrite)?;
        let changes = EndpointChanges {
            url: request
                .url
                .map(|u| WebhookUrl::parse(&u, &self.allow))
                .transpose()?,
            events: request.events.map(|e| EventFilter::parse(&e)).transpose()?,
            description: match request.description {
                Some(Some(d)) => {
                    check_description(&d)?;
                    Some(Some(d))
                }
                other => other,
            },
            enabled: request.enabled,
        };
        self.repo
            .update_endpoint(&scope, id, &changes)?
            .ok_or(WebhookError::NotFound)
    }

    /// Deletes an endpoint: no delivery of it is attempted again.
    ///
    /// # Errors
    /// [`WebhookError`]: access (`webhooks:write`), not found, storage.
    pub fn delete(&self, principal: &Principal, id: &EndpointId) -> Result<(), WebhookError> {
        let scope = require(principal, Scope::WebhooksWrite)?;
        if self.repo.delete_endpoint(&scope, id)? {
            Ok(())
        } else {
            Err(WebhookError::NotFound)
        }
    }

    /// A new secret for the endpoint; the current one keeps signing for
    /// [`SECRET_OVERLAP`].
    ///
    /// # Errors
    /// [`WebhookError`]: access (`webhooks:write`), not found, storage.
    pub fn rotate_secret(
        &self,
        principal: &Principal,
        id: &EndpointId,
    ) -> Result<CreatedEndpoint, WebhookError> {
        let scope = require(principal, Scope::WebhooksWrite)?;
        let now = self.clock.now();
        let secret = WebhookSecret::generate(self.secrets.as_ref());
        let sealed = self.sealer.seal(id, &secret, self.secrets.as_ref());
        if !self
            .repo
            .rotate_endpoint_secret(&scope, id, &sealed, now + SECRET_OVERLAP)?
        {
            return Err(WebhookError::NotFound);
        }
        let endpoint = self
            .repo
            .find_endpoint(&scope, id)?
            .ok_or(WebhookError::NotFound)?;
        Ok(CreatedEndpoint { endpoint, secret })
    }

    /// The endpoint's deliveries, newest first.
    ///
    /// # Errors
    /// [`WebhookError`]: access (`webhooks:read`), not found, storage.
    pub fn list_deliveries(
        &self,
        principal: &Principal,
        id: &EndpointId,
        starting_after: Option<DeliveryId>,
        limit: PageLimit,
    ) -> Result<DeliveryPage, WebhookError> {
        let scope = require(principal, Scope::WebhooksRead)?;
        self.repo
            .list_deliveries(&scope, id, starting_after, limit.get())?
            .ok_or(WebhookError::NotFound)
    }

    /// Schedules a delivery again, now.
    ///
    /// # Errors
    /// [`WebhookError`]: access (`webhooks:write`), endpoint or delivery not
    /// found, storage.
    pub fn retry_delivery(
        &self,
        principal: &Principal,
        id: &EndpointId,
        delivery: &DeliveryId,
    ) -> Result<Delivery, WebhookError> {
        let scope = require(principal, Scope::WebhooksWrite)?;
        if self.repo.find_endpoint(&scope, id)?.is_none() {
            return Err(WebhookError::NotFound);
        }
        self.repo
            .retry_delivery(&scope, id, delivery, self.clock.now())?
            .ok_or(WebhookError::DeliveryNotFound)
    }

    /// Claims at most `limit` due deliveries for `lease` and opens their
    /// secrets (the worker's step 1).
    ///
    /// # Errors
    /// [`RepositoryError`].
    pub fn claim_due(
        &self,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<ReadyDelivery>, RepositoryError> {
        let due = self
            .repo
            .claim_due_deliveries(self.clock.now(), lease, limit)?;
        Ok(due
            .into_iter()
            .map(|due| {
                let id = due.delivery.endpoint_id;
                let secrets = due
                    .secrets
                    .iter()
                    .filter_map(|s| self.sealer.open(&id, s).ok())
                    .collect();
                ReadyDelivery { due, secrets }
            })
            .collect())
    }

    /// Records how an attempt of `due` ended, per the retry schedule (the
    /// worker's last step); returns what was written.
    ///
    /// # Errors
    /// [`RepositoryError`].
    pub fn finish(
        &self,
        due: &DueDelivery,
        outcome: &AttemptOutcome,
    ) -> Result<AttemptRecord, RepositoryError> {
        let record = AttemptRecord::of(
            due.delivery.id,
            due.delivery.attempts.saturating_add(1),
            outcome,
            self.clock.now(),
        );
        self.repo.record_attempt(&record, DISABLE_AFTER)?;
        Ok(record)
    }

    /// How long the oldest pending delivery has waited.
    ///
    /// # Errors
    /// [`RepositoryError`].
    pub fn oldest_pending_age(&self) -> Result<Option<Duration>, RepositoryError> {
        Ok(self
            .repo
            .oldest_pending_delivery()?
            .map(|created| self.clock.now() - created))
    }

    /// Writes the expiry events now due (`api_key.expiring`,
    /// `api_key.expired`), at most one of each per key across every node;
    /// returns how many this call wrote.
    ///
    /// # Errors
    /// [`RepositoryError`].
    pub fn write_expiry_events(&self) -> Result<usize, RepositoryError> {
        const BATCH: u32 = 500;
        let mut written = 0;
        loop {
            let now = self.clock.now();
            let due = self.repo.keys_due_expiry_events(now, BATCH)?;
            if due.is_empty() {
                return Ok(written);
            }
            let origin = Origin {
                actor: Actor::System,
                request_id: None,
            };
            let mut id = EventId::generate(now, self.secrets.as_ref());
            let events: Vec<KeyEvent> = due
                .iter()
                .filter_map(|(key, event_type)| {
                    let expires_at = key.expires_at?;
                    let data = match event_type {
                        EventType::KeyExpiring => EventData::KeyExpiring { expires_at },
                        _ => EventData::KeyExpired { expires_at },
                    };
                    let event = KeyEvent::for_key(id, now, key, &origin, data);
                    id = id.next();
                    Some(event)
                })
                .collect();
            written += self.repo.insert_expiry_events(&events)?;
            if due.len() < BATCH as usize {
                return Ok(written);
            }
        }
    }
}

/// Whether a key created at `created_at` to expire at `expires_at` gets an
/// `api_key.expiring` event: only with at least [`EXPIRING_NOTICE`] to live.
pub fn gets_expiring_notice(created_at: OffsetDateTime, expires_at: OffsetDateTime) -> bool {
    expires_at - created_at >= EXPIRING_NOTICE
}
