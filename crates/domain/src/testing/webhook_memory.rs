//! [`WebhookRepository`] on [`InMemoryStore`]: deliveries made with each
//! recorded event, as the PostgreSQL trigger makes them.

use time::{Duration, OffsetDateTime};

use super::{InMemoryStore, State};
use crate::api_key::ApiKey;
use crate::events::{EventType, KeyEvent, StoredEvent};
use crate::ids::{DeliveryId, EndpointId};
use crate::ports::{EndpointScope, InsertEndpointError, RepositoryError, WebhookRepository};
use crate::webhook_service::gets_expiring_notice;
use crate::webhooks::{
    AttemptRecord, Delivery, DeliveryPage, DeliveryStatus, DueDelivery, EndpointChanges,
    EndpointPage, NewEndpoint, SealedSecret, WebhookEndpoint, EXPIRING_NOTICE,
};

#[derive(Debug, Clone)]
struct StoredEndpoint {
    endpoint: WebhookEndpoint,
    secret: SealedSecret,
    previous: Option<(SealedSecret, OffsetDateTime)>,
    failing_since: Option<OffsetDateTime>,
}

#[derive(Debug, Clone)]
struct StoredDelivery {
    delivery: Delivery,
    seq: i64,
    lease_until: Option<OffsetDateTime>,
}

#[derive(Debug, Default)]
pub(super) struct WebhookState {
    endpoints: Vec<StoredEndpoint>,
    deliveries: Vec<StoredDelivery>,
    next_delivery: u64,
}

impl WebhookState {
    /// One delivery per enabled endpoint of the event's tenant and mode whose
    /// filter matches.
    pub(super) fn deliver(&mut self, stored: &StoredEvent) {
        let event = &stored.event;
        let Some(mode) = event.mode else { return };
        let targets: Vec<EndpointId> = self
            .endpoints
            .iter()
            .filter(|e| {
                let e = &e.endpoint;
                e.tenant_id == event.tenant_id
                    && e.mode == mode
                    && e.enabled
                    && e.events.matches(event.event_type())
            })
            .map(|e| e.endpoint.id)
            .collect();
        for endpoint_id in targets {
            self.next_delivery += 1;
            // Digits only: a valid ULID that sorts by creation.
            let id = DeliveryId::parse(&format!("whd_{:026}", self.next_delivery))
                .unwrap_or_else(|_| unreachable!("26 digits are a ULID"));
            self.deliveries.push(StoredDelivery {
                delivery: Delivery {
                    id,
                    endpoint_id,
                    event_id: event.id,
                    event_type: event.event_type(),
                    status: DeliveryStatus::Pending,
                    attempts: 0,
                    last_status: None,
                    last_error: None,
                    next_attempt_at: Some(event.created_at),
                    created_at: event.created_at,
                },
                seq: stored.seq,
                lease_until: None,
            });
        }
    }

    fn in_scope(&mut self, scope: &EndpointScope, id: &EndpointId) -> Option<&mut StoredEndpoint> {
        self.endpoints.iter_mut().find(|e| {
            e.endpoint.id == *id
                && e.endpoint.tenant_id == scope.tenant_id
                && e.endpoint.mode == scope.mode
        })
    }
}

fn page<T: Clone>(mut items: Vec<T>, limit: u32) -> (Vec<T>, bool) {
    let has_more = items.len() > limit as usize;
    items.truncate(limit as usize);
    (items, has_more)
}

fn expiry_due(state: &State, key: &ApiKey, t: EventType, now: OffsetDateTime) -> bool {
    let Some(expires_at) = key.expires_at else {
        return false;
    };
    let written = state
        .events
        .iter()
        .any(|e| e.event.key_id == Some(key.id) && e.event.event_type() == t);
    let revoked_by = |at: OffsetDateTime| key.revokes_at.is_some_and(|r| r <= at);
    !written
        && match t {
            EventType::KeyExpiring => {
                expires_at - EXPIRING_NOTICE <= now
                    && expires_at > now
                    && gets_expiring_notice(key.created_at, expires_at)
                    && !revoked_by(now)
            }
            _ => expires_at <= now && !revoked_by(expires_at),
        }
}

impl WebhookRepository for InMemoryStore {
    fn insert_endpoint(&self, new: &NewEndpoint, max: u32) -> Result<(), InsertEndpointError> {
        let mut state = self.lock()?;
        let e = &new.endpoint;
        let count = state
            .webhooks
            .endpoints
            .iter()
            .filter(|s| s.endpoint.tenant_id == e.tenant_id && s.endpoint.mode == e.mode)
            .count();
        if count >= max as usize {
            return Err(InsertEndpointError::LimitReached);
        }
        state.webhooks.endpoints.push(StoredEndpoint {
            endpoint: e.clone(),
            secret: new.secret.clone(),
            previous: None,
            failing_since: None,
        });
        Ok(())
    }

    fn list_endpoints(
        &self,
        scope: &EndpointScope,
        starting_after: Option<EndpointId>,
        limit: u32,
    ) -> Result<EndpointPage, RepositoryError> {
        let state = self.lock()?;
        let mut endpoints: Vec<WebhookEndpoint> = state
            .webhooks
            .endpoints
            .iter()
            .map(|s| &s.endpoint)
            .filter(|e| e.tenant_id == scope.tenant_id && e.mode == scope.mode)
            .filter(|e| starting_after.is_none_or(|after| e.id < after))
            .cloned()
            .collect();
        endpoints.sort_by_key(|e| std::cmp::Reverse(e.id));
        let (endpoints, has_more) = page(endpoints, limit);
        Ok(EndpointPage {
            endpoints,
            has_more,
        })
    }

    fn find_endpoint(
        &self,
        scope: &EndpointScope,
        id: &EndpointId,
    ) -> Result<Option<WebhookEndpoint>, RepositoryError> {
        let mut state = self.lock()?;
        Ok(state
            .webhooks
            .in_scope(scope, id)
            .map(|e| e.endpoint.clone()))
    }

    fn update_endpoint(
        &self,
        scope: &EndpointScope,
        id: &EndpointId,
        changes: &EndpointChanges,
    ) -> Result<Option<WebhookEndpoint>, RepositoryError> {
        let mut state = self.lock()?;
        let Some(stored) = state.webhooks.in_scope(scope, id) else {
            return Ok(None);
        };
        let e = &mut stored.endpoint;
        if let Some(url) = &changes.url {
            e.url = url.clone();
        }
        if let Some(events) = &changes.events {
            e.events = events.clone();
        }
        if let Some(description) = &changes.description {
            e.description = description.clone();
        }
        if let Some(enabled) = changes.enabled {
            e.enabled = enabled;
            if enabled {
                stored.failing_since = None;
            }
        }
        Ok(Some(stored.endpoint.clone()))
    }

    fn delete_endpoint(
        &self,
        scope: &EndpointScope,
        id: &EndpointId,
    ) -> Result<bool, RepositoryError> {
        let mut state = self.lock()?;
        if state.webhooks.in_scope(scope, id).is_none() {
            return Ok(false);
        }
        state.webhooks.endpoints.retain(|e| e.endpoint.id != *id);
        state
            .webhooks
            .deliveries
            .retain(|d| d.delivery.endpoint_id != *id);
        Ok(true)
    }

    fn rotate_endpoint_secret(
        &self,
        scope: &EndpointScope,
        id: &EndpointId,
        secret: &SealedSecret,
        previous_until: OffsetDateTime,
    ) -> Result<bool, RepositoryError> {
        let mut state = self.lock()?;
        let Some(stored) = state.webhooks.in_scope(scope, id) else {
            return Ok(false);
        };
        let old = std::mem::replace(&mut stored.secret, secret.clone());
        stored.previous = Some((old, previous_until));
        Ok(true)
    }

    fn list_deliveries(
        &self,
        scope: &EndpointScope,
        endpoint: &EndpointId,
        starting_after: Option<DeliveryId>,
        limit: u32,
    ) -> Result<Option<DeliveryPage>, RepositoryError> {
        let mut state = self.lock()?;
        if state.webhooks.in_scope(scope, endpoint).is_none() {
            return Ok(None);
        }
        let mut deliveries: Vec<Delivery> = state
            .webhooks
            .deliveries
            .iter()
            .map(|d| &d.delivery)
            .filter(|d| d.endpoint_id == *endpoint)
            .filter(|d| starting_after.is_none_or(|after| d.id < after))
            .cloned()
            .collect();
        deliveries.sort_by_key(|d| std::cmp::Reverse(d.id));
        let (deliveries, has_more) = page(deliveries, limit);
        Ok(Some(DeliveryPage {
            deliveries,
            has_more,
        }))
    }

    fn retry_delivery(
        &self,
        scope: &EndpointScope,
        endpoint: &EndpointId,
        delivery: &DeliveryId,
        now: OffsetDateTime,
    ) -> Result<Option<Delivery>, RepositoryError> {
        let mut state = self.lock()?;
        if state.webhooks.in_scope(scope, endpoint).is_none() {
            return Ok(None);
        }
        Ok(state
            .webhooks
            .deliveries
            .iter_mut()
            .find(|d| d.delivery.id == *delivery && d.delivery.endpoint_id == *endpoint)
            .map(|d| {
                d.delivery.status = DeliveryStatus::Pending;
                d.delivery.next_attempt_at = Some(now);
                d.lease_until = None;
                d.delivery.clone()
            }))
    }

    fn claim_due_deliveries(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, RepositoryError> {
        let mut state = self.lock()?;
        let State {
            webhooks, events, ..
        } = &mut *state;
        let mut due: Vec<&mut StoredDelivery> = webhooks
            .deliveries
            .iter_mut()
            .filter(|d| {
                d.delivery.status == DeliveryStatus::Pending
                    && d.delivery.next_attempt_at.is_some_and(|at| at <= now)
                    && d.lease_until.is_none_or(|until| until <= now)
            })
            .collect();
        due.sort_by_key(|d| d.delivery.next_attempt_at);
        let mut claimed = Vec::new();
        for d in due {
            if claimed.len() >= limit as usize {
                break;
            }
            let Some(endpoint) = webhooks
                .endpoints
                .iter()
                .find(|e| e.endpoint.id == d.delivery.endpoint_id && e.endpoint.enabled)
            else {
                continue;
            };
            let Some(event) = events.iter().find(|e| e.seq == d.seq) else {
                continue;
            };
            d.lease_until = Some(now + lease);
            let mut secrets = vec![endpoint.secret.clone()];
            secrets.extend(
                endpoint
                    .previous
                    .iter()
                    .filter(|(_, until)| *until > now)
                    .map(|(s, _)| s.clone()),
            );
            claimed.push(DueDelivery {
                delivery: d.delivery.clone(),
                url: endpoint.endpoint.url.clone(),
                secrets,
                event: event.event.clone(),
            });
        }
        Ok(claimed)
    }

    fn record_attempt(
        &self,
        record: &AttemptRecord,
        disable_after: Duration,
    ) -> Result<(), RepositoryError> {
        let mut state = self.lock()?;
        let webhooks = &mut state.webhooks;
        let Some(d) = webhooks
            .deliveries
            .iter_mut()
            .find(|d| d.delivery.id == record.delivery)
        else {
            return Ok(());
        };
        d.delivery.status = record.status;
        d.delivery.attempts = record.attempts;
        d.delivery.last_status = record.last_status;
        d.delivery.last_error.clone_from(&record.last_error);
        d.delivery.next_attempt_at = record.next_attempt_at;
        d.lease_until = None;
        let endpoint_id = d.delivery.endpoint_id;
        if let Some(e) = webhooks
            .endpoints
            .iter_mut()
            .find(|e| e.endpoint.id == endpoint_id)
        {
            if record.succeeded() {
                e.failing_since = None;
            } else {
                let since = *e.failing_since.get_or_insert(record.at);
                if since <= record.at - disable_after {
                    e.endpoint.enabled = false;
                }
            }
        }
        Ok(())
    }

    fn oldest_pending_delivery(&self) -> Result<Option<OffsetDateTime>, RepositoryError> {
        let state = self.lock()?;
        Ok(state
            .webhooks
            .deliveries
            .iter()
            .filter(|d| d.delivery.status == DeliveryStatus::Pending)
            .map(|d| d.delivery.created_at)
            .min())
    }

    fn keys_due_expiry_events(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(ApiKey, EventType)>, RepositoryError> {
        let state = self.lock()?;
        let mut due: Vec<(ApiKey, EventType)> = Vec::new();
        for (key, _) in state.keys.values() {
            for t in [EventType::KeyExpiring, EventType::KeyExpired] {
                if expiry_due(&state, key, t, now) {
                    due.push((key.clone(), t));
                }
            }
        }
        due.truncate(limit as usize);
        Ok(due)
    }

    fn insert_expiry_events(&self, events: &[KeyEvent]) -> Result<usize, RepositoryError> {
        let mut state = self.lock()?;
        let mut written = 0;
        for event in events {
            let exists = state.events.iter().any(|e| {
                e.event.key_id == event.key_id && e.event.event_type() == event.event_type()
            });
            if !exists {
                state.record(&[event]);
                written += 1;
            }
        }
        Ok(written)
    }
}
