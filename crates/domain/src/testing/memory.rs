use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use time::OffsetDateTime;

use crate::api_key::{ApiKey, KeyStatus, NewKey, Tenant};
use crate::events::{Actor, EventPage, EventQuery, FieldChanges, KeyEvent, StoredEvent};
use crate::hashing::KeyHash;
use crate::idempotency::{IdempotencyKey, IdempotencyRecord, IdempotencyScope};
use crate::ids::{KeyId, TenantId};
use crate::key_kind::Mode;
use crate::ports::{
    ActorRefusal, ApiKeyRepository, CreateTenantRepoError, EventRepository, IdempotencyRepository,
    InsertError, KeyPage, KeyUse, ListQuery, RecordedWriteError, RepositoryError, RevokeRepoError,
    RotateRepoError, TenantRepository, UpdateRepoError,
};
use crate::ports::{CreditShare, RefillDue, UsageBudget, WindowShare};

/// Returns the error of the first pending [`Fault`] of this variant, if any.
macro_rules! answer_fault {
    ($store:expr, $variant:ident) => {
        if let Some(e) = $store.fault(|f| match f {
            Fault::$variant(e) => Ok(e),
            other => Err(other),
        }) {
            return Err(e);
        }
    };
}

#[derive(Debug, Default)]
struct State {
    tenants: Vec<Tenant>,
    keys: BTreeMap<KeyId, (ApiKey, KeyHash)>,
    /// In insertion order; `seq` is the position plus one.
    events: Vec<StoredEvent>,
    records: Vec<IdempotencyRecord>,
    /// Webhook endpoints and deliveries (`webhooks.rs`).
    webhooks: webhooks::WebhookState,
    /// Uses handed out per key and window start.
    windows: BTreeMap<(KeyId, OffsetDateTime), u32>,
}

#[path = "webhook_memory.rs"]
mod webhooks;

impl State {
    /// Whether the event's actor may still write at `now`: an actor key must
    /// not be revoked.
    /// Why the event's actor may not write (the rule of
    /// [`ActorRefusal::judge`], as the PostgreSQL adapter applies it).
    fn actor_refusal(&self, event: &KeyEvent) -> Option<ActorRefusal> {
        match event.actor {
            Actor::ApiKey(id) => {
                let actor = self
                    .keys
                    .get(&id)
                    .map(|(k, _)| k)
                    .filter(|k| k.tenant_id == event.tenant_id);
                ActorRefusal::judge(actor, event.created_at)
            }
            Actor::Cli | Actor::LeakReport | Actor::System => None,
        }
    }

    fn record(&mut self, events: &[&KeyEvent]) {
        for event in events {
            let seq = i64::try_from(self.events.len()).unwrap_or(i64::MAX - 1) + 1;
            let stored = StoredEvent {
                seq,
                event: (*event).clone(),
            };
            // As the PostgreSQL trigger does, in the event's own write.
            self.webhooks.deliver(&stored);
            self.events.push(stored);
        }
    }

    fn insert(
        &mut self,
        new: &NewKey,
        max_active: u32,
        event: &KeyEvent,
    ) -> Result<(), InsertError> {
        let now = event.created_at;
        if !self.tenants.iter().any(|t| t.id == new.key.tenant_id) {
            return Err(InsertError::UnknownTenant);
        }
        if let Some(refusal) = self.actor_refusal(event) {
            return Err(InsertError::ActorRefused(refusal));
        }
        if self.has_id_or_hash(new) {
            return Err(InsertError::Duplicate);
        }
        if self.counting_keys(&new.key.tenant_id, new.key.mode, now) >= max_active as usize {
            return Err(InsertError::LimitReached);
        }
        self.keys.insert(new.key.id, (new.key.clone(), new.hash));
        self.record(&[event]);
        Ok(())
    }

    /// The keys of `tenant` and `mode` that count for the key limit at `now`.
    fn counting_keys(&self, tenant: &TenantId, mode: Mode, now: OffsetDateTime) -> usize {
        self.keys
            .values()
            .filter(|(k, _)| {
                k.tenant_id == *tenant && k.mode == mode && k.counts_for_key_limit(now)
            })
            .count()
    }

    fn rotate(
        &mut self,
        old: &KeyId,
        successor: &NewKey,
        revokes_at: OffsetDateTime,
        max_active: u32,
        rotated: &KeyEvent,
        created: &KeyEvent,
    ) -> Result<(), RotateRepoError> {
        let (tenant, now) = (&successor.key.tenant_id, rotated.created_at);
        let status = self
            .tenant_key_mut(tenant, old)
            .ok_or(RotateRepoError::NotFound)?
            .status(now);
        if status != KeyStatus::Active {
            return Err(RotateRepoError::NotActive);
        }
        if let Some(refusal) = self.actor_refusal(rotated) {
            return Err(RotateRepoError::ActorRefused(refusal));
        }
        if self.has_id_or_hash(successor) {
            return Err(RotateRepoError::Duplicate);
        }
        // The old key keeps counting through its grace period and the
        // successor adds one (ApiKeyRepository::rotate).
        if revokes_at > now
            && self.counting_keys(tenant, successor.key.mode, now) >= max_active as usize
        {
            return Err(RotateRepoError::LimitReached);
        }
        let stored = self
            .tenant_key_mut(tenant, old)
            .ok_or(RotateRepoError::NotFound)?;
        stored.revokes_at = Some(revokes_at);
        stored.replaced_by = Some(successor.key.id);
        // The successor takes the old key's name and scopes as they are now
        // (as the PostgreSQL adapter does from the locked row).
        let mut key = successor.key.clone();
        key.name = stored.name.clone();
        key.scopes = stored.scopes;
        key.restrictions = stored.restrictions.clone();
        key.metadata = stored.metadata.clone();
        self.keys.insert(successor.key.id, (key, successor.hash));
        self.record(&[rotated, created]);
        Ok(())
    }

    /// The live record of `record`'s scope and key at `now`.
    fn live_record(
        &self,
        scope: &IdempotencyScope,
        key: &IdempotencyKey,
        now: OffsetDateTime,
    ) -> Option<&IdempotencyRecord> {
        self.records
            .iter()
            .find(|r| r.scope == *scope && r.key == *key && r.expires_at > now)
    }

    /// Stores `record` after its change, replacing an expired one.
    fn keep_record(&mut self, record: &IdempotencyRecord) {
        self.records
            .retain(|r| !(r.scope == record.scope && r.key == record.key));
        self.records.push(record.clone());
    }

    fn has_id_or_hash(&self, key: &NewKey) -> bool {
        self.keys.contains_key(&key.key.id) || self.keys.values().any(|(_, h)| *h == key.hash)
    }

    fn tenant_key_mut(&mut self, tenant: &TenantId, id: &KeyId) -> Option<&mut ApiKey> {
        self.keys
            .get_mut(id)
            .map(|(k, _)| k)
            .filter(|k| k.tenant_id == *tenant)
    }

    /// Whether a key other than `except` keeps the tenant manageable.
    fn other_guard_key(&self, tenant: &TenantId, except: &KeyId, now: OffsetDateTime) -> bool {
        self.keys.values().any(|(k, _)| {
            k.tenant_id == *tenant && k.id != *except && k.counts_for_full_access_guard(now)
        })
    }
}

/// An in-memory [`ApiKeyRepository`], [`TenantRepository`],
/// [`EventRepository`] and [`IdempotencyRepository`].
///
/// One mutex serialises every call, which makes each one atomic and keeps every
/// concurrency guarantee of the port docs. Clones share the same data.
/// [`InMemoryStore::set_unavailable`] makes every call fail as an unreachable
/// database would; [`InMemoryStore::fail_next`] makes one write answer as a
/// race or a fault would.
#[derive(Debug, Clone, Default)]
pub struct InMemoryStore {
    state: Arc<Mutex<State>>,
    unavailable: Arc<AtomicBool>,
    faults: Arc<Mutex<Vec<Fault>>>,
}

/// What the next call of one write answers instead of doing anything
/// ([`InMemoryStore::fail_next`]): a refusal that a race with another request
/// or node would cause (the key was revoked meanwhile, the caller's key too),
/// a collision, or a storage failure. Tests of the use cases check how each
/// answer is named to the caller, on the fake, without a mock.
#[derive(Debug)]
pub enum Fault {
    /// [`ApiKeyRepository::insert`].
    Insert(InsertError),
    /// [`ApiKeyRepository::update`].
    Update(UpdateRepoError),
    /// [`ApiKeyRepository::revoke`] or [`ApiKeyRepository::revoke_unguarded`].
    Revoke(RevokeRepoError),
    /// [`ApiKeyRepository::rotate`].
    Rotate(RotateRepoError),
    /// [`ApiKeyRepository::record_uses`].
    RecordUses(RepositoryError),
    /// [`TenantRepository::create`].
    CreateTenant(CreateTenantRepoError),
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// While `true`, every call returns [`RepositoryError::Unavailable`].
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// The next call of `fault`'s write answers with its error and writes
    /// nothing; faults of one write answer in the order they were given.
    pub fn fail_next(&self, fault: Fault) {
        self.faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(fault);
    }

    /// The first pending fault that `pick` takes, removed.
    fn fault<E>(&self, pick: fn(Fault) -> Result<E, Fault>) -> Option<E> {
        let mut faults = self.faults.lock().unwrap_or_else(PoisonError::into_inner);
        let mut taken = None;
        for fault in std::mem::take(&mut *faults) {
            if taken.is_some() {
                faults.push(fault);
                continue;
            }
            match pick(fault) {
                Ok(error) => taken = Some(error),
                Err(other) => faults.push(other),
            }
        }
        taken
    }

    /// Every stored hash, for tests that check what is kept.
    pub fn stored_hashes(&self) -> Vec<KeyHash> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys
            .values()
            .map(|(_, h)| *h)
            .collect()
    }

    /// Key `id` as stored now, whatever its tenant (a test's look behind
    /// the ports, such as at credits spent).
    pub fn stored_key(&self, id: &KeyId) -> Option<ApiKey> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys
            .get(id)
            .map(|(k, _)| k.clone())
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, RepositoryError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(RepositoryError::unavailable(
                "in-memory store",
                "the store was switched off by the test",
            ));
        }
        Ok(self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl InMemoryStore {
    fn revoke_with(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        event: &KeyEvent,
        guarded: bool,
    ) -> Result<ApiKey, RevokeRepoError> {
        answer_fault!(self, Revoke);
        let now = event.created_at;
        let mut state = self.lock()?;
        let key = state
            .tenant_key_mut(tenant, id)
            .ok_or(RevokeRepoError::NotFound)?
            .clone();
        if key.is_revoked(now) {
            return Ok(key);
        }
        if let Some(refusal) = state.actor_refusal(event) {
            return Err(RevokeRepoError::ActorRefused(refusal));
        }
        if guarded
            && key.counts_for_full_access_guard(now)
            && !state.other_guard_key(tenant, id, now)
        {
            return Err(RevokeRepoError::LastFullAccessKey);
        }
        let stored = state
            .tenant_key_mut(tenant, id)
            .ok_or(RevokeRepoError::NotFound)?;
        stored.revokes_at = Some(now);
        let revoked = stored.clone();
        state.record(&[event]);
        Ok(revoked)
    }

    /// Every stored event, oldest first, with its sequence number.
    pub fn stored_events(&self) -> Vec<StoredEvent> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .events
            .clone()
    }
}

impl ApiKeyRepository for InMemoryStore {
    fn insert(&self, new: &NewKey, max_active: u32, event: &KeyEvent) -> Result<(), InsertError> {
        answer_fault!(self, Insert);
        self.lock()?.insert(new, max_active, event)
    }

    fn find_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKey>, RepositoryError> {
        let state = self.lock()?;
        Ok(state
            .keys
            .values()
            .find(|(_, h)| h == hash)
            .map(|(k, _)| k.clone()))
    }

    fn find_by_hashes(
        &self,
        hashes: &[KeyHash],
    ) -> Result<Vec<(KeyHash, ApiKey)>, RepositoryError> {
        let state = self.lock()?;
        Ok(state
            .keys
            .values()
            .filter(|(_, h)| hashes.contains(h))
            .map(|(k, h)| (*h, k.clone()))
            .collect())
    }

    fn find(&self, tenant: &TenantId, id: &KeyId) -> Result<Option<ApiKey>, RepositoryError> {
        let mut state = self.lock()?;
        Ok(state.tenant_key_mut(tenant, id).map(|k| k.clone()))
    }

    fn list(&self, tenant: &TenantId, query: &ListQuery) -> Result<KeyPage, RepositoryError> {
        let state = self.lock()?;
        let limit = query.limit as usize;
        let mut keys: Vec<ApiKey> = state
            .keys
            .values()
            .rev()
            .map(|(k, _)| k)
            .filter(|k| k.tenant_id == *tenant)
            .filter(|k| query.key_type.is_none_or(|t| k.key_type == t))
            .filter(|k| query.mode.is_none_or(|m| k.mode == m))
            .filter(|k| query.include_revoked || !k.is_revoked(query.now))
            .filter(|k| query.starting_after.is_none_or(|after| k.id < after))
            .take(limit + 1)
            .cloned()
            .collect();
        let has_more = keys.len() > limit;
        keys.truncate(limit);
        Ok(KeyPage { keys, has_more })
    }

    fn update(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        changes: &FieldChanges,
        event: &KeyEvent,
    ) -> Result<ApiKey, UpdateRepoError> {
        answer_fault!(self, Update);
        let now = event.created_at;
        let mut state = self.lock()?;
        let key = state
            .tenant_key_mut(tenant, id)
            .ok_or(UpdateRepoError::NotFound)?
            .clone();
        if key.is_revoked(now) {
            return Err(UpdateRepoError::Revoked);
        }
        let stale = !changes.holds_old(&key);
        if stale {
            return Err(UpdateRepoError::Stale);
        }
        if let Some(refusal) = state.actor_refusal(event) {
            return Err(UpdateRepoError::ActorRefused(refusal));
        }
        let narrows = changes
            .scopes
            .as_ref()
            .is_some_and(|c| !c.new.is_full_access());
        if narrows
            && key.counts_for_full_access_guard(now)
            && !state.other_guard_key(tenant, id, now)
        {
            return Err(UpdateRepoError::LastFullAccessKey);
        }
        let updated = changes.apply(&key, now);
        state
            .keys
            .entry(*id)
            .and_modify(|(k, _)| *k = updated.clone());
        state.record(&[event]);
        Ok(updated)
    }

    fn revoke(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        event: &KeyEvent,
    ) -> Result<ApiKey, RevokeRepoError> {
        self.revoke_with(tenant, id, event, true)
    }

    fn revoke_unguarded(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        event: &KeyEvent,
    ) -> Result<ApiKey, RevokeRepoError> {
        self.revoke_with(tenant, id, event, false)
    }

    fn rotate(
        &self,
        old: &KeyId,
        successor: &NewKey,
        revokes_at: OffsetDateTime,
        max_active: u32,
        rotated: &KeyEvent,
        created: &KeyEvent,
    ) -> Result<(), RotateRepoError> {
        answer_fault!(self, Rotate);
        self.lock()?
            .rotate(old, successor, revokes_at, max_active, rotated, created)
    }

    fn record_uses(&self, uses: &[KeyUse]) -> Result<usize, RepositoryError> {
        answer_fault!(self, RecordUses);
        let mut state = self.lock()?;
        let mut written = 0;
        for u in uses {
            let Some(key) = state.tenant_key_mut(&u.tenant_id, &u.key_id) else {
                continue;
            };
            if key.last_used_at.is_some_and(|at| at > u.due_before) {
                continue;
            }
            key.last_used_at = Some(u.at);
            written += 1;
        }
        Ok(written)
    }
}

impl InMemoryStore {
    /// Runs `write` and keeps `record`, as one unit, unless a live record of
    /// its scope and key exists.
    fn write_recorded<E: From<RepositoryError>>(
        &self,
        record: &IdempotencyRecord,
        write: impl FnOnce(&mut State) -> Result<(), E>,
    ) -> Result<(), RecordedWriteError<E>> {
        let mut state = self.lock()?;
        if let Some(found) = state.live_record(&record.scope, &record.key, record.created_at) {
            return Err(RecordedWriteError::Completed(Box::new(found.clone())));
        }
        write(&mut state).map_err(RecordedWriteError::Write)?;
        state.keep_record(record);
        Ok(())
    }
}

/// One mutex serialises every call, so a twin request is never seen in
/// progress here: it has either committed (`Completed`) or not started.
impl IdempotencyRepository for InMemoryStore {
    fn find_record(
        &self,
        scope: &IdempotencyScope,
        key: &IdempotencyKey,
        now: OffsetDateTime,
    ) -> Result<Option<IdempotencyRecord>, RepositoryError> {
        Ok(self.lock()?.live_record(scope, key, now).cloned())
    }

    fn insert_recorded(
        &self,
        key: &NewKey,
        max_active: u32,
        event: &KeyEvent,
        record: &IdempotencyRecord,
    ) -> Result<(), RecordedWriteError<InsertError>> {
        self.write_recorded(record, |state| state.insert(key, max_active, event))
    }

    fn rotate_recorded(
        &self,
        old: &KeyId,
        successor: &NewKey,
        revokes_at: OffsetDateTime,
        max_active: u32,
        rotated: &KeyEvent,
        created: &KeyEvent,
        record: &IdempotencyRecord,
    ) -> Result<(), RecordedWriteError<RotateRepoError>> {
        self.write_recorded(record, |state| {
            state.rotate(old, successor, revokes_at, max_active, rotated, created)
        })
    }

    fn delete_expired_records(&self, now: OffsetDateTime) -> Result<usize, RepositoryError> {
        let mut state = self.lock()?;
        let before = state.records.len();
        state.records.retain(|r| r.expires_at > now);
        Ok(before - state.records.len())
    }
}

impl TenantRepository for InMemoryStore {
    fn create(
        &self,
        tenant: &Tenant,
        keys: &[NewKey],
        events: &[KeyEvent],
    ) -> Result<(), CreateTenantRepoError> {
        answer_fault!(self, CreateTenant);
        let mut state = self.lock()?;
        let mut ids: Vec<KeyId> = keys.iter().map(|k| k.key.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if state.tenants.iter().any(|t| t.id == tenant.id)
            || ids.len() != keys.len()
            || keys.iter().any(|k| state.has_id_or_hash(k))
        {
            return Err(CreateTenantRepoError::Duplicate);
        }
        state.tenants.push(tenant.clone());
        for key in keys {
            state.keys.insert(key.key.id, (key.key.clone(), key.hash));
        }
        state.record(&events.iter().collect::<Vec<_>>());
        Ok(())
    }

    fn find_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, RepositoryError> {
        Ok(self
            .lock()?
            .tenants
            .iter()
            .filter(|t| t.name == name)
            .min_by_key(|t| (t.created_at, t.id))
            .cloned())
    }

    fn list_tenants(&self) -> Result<Vec<Tenant>, RepositoryError> {
        let mut tenants = self.lock()?.tenants.clone();
        tenants.sort_by_key(|t| (t.created_at, t.id));
        Ok(tenants)
    }
}

impl EventRepository for InMemoryStore {
    fn list_events(
        &self,
        tenant: &TenantId,
        query: &EventQuery,
    ) -> Result<EventPage, RepositoryError> {
        let state = self.lock()?;
        let limit = query.limit as usize;
        let mut events: Vec<KeyEvent> = state
            .events
            .iter()
            .map(|stored| &stored.event)
            .filter(|e| e.tenant_id == *tenant)
            .filter(|e| query.key_id.is_none_or(|id| e.key_id == Some(id)))
            .filter(|e| query.event_type.is_none_or(|t| e.event_type() == t))
            .filter(|e| query.mode.is_none_or(|m| e.mode == Some(m)))
            .filter(|e| query.starting_after.is_none_or(|after| e.id < after))
            .cloned()
            .collect();
        events.sort_by_key(|e| std::cmp::Reverse(e.id));
        let has_more = events.len() > limit;
        events.truncate(limit);
        Ok(EventPage { events, has_more })
    }

    fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, RepositoryError> {
        let state = self.lock()?;
        Ok(state
            .events
            .iter()
            .filter(|e| e.seq > after)
            .take(limit as usize)
            .cloned()
            .collect())
    }
}

impl UsageBudget for InMemoryStore {
    fn take_window_share(
        &self,
        key: &KeyId,
        window_start: OffsetDateTime,
        limit: u32,
        want: u32,
    ) -> Result<WindowShare, RepositoryError> {
        let mut state = self.lock()?;
        let used = state.windows.entry((*key, window_start)).or_insert(0);
        let granted = want.min(limit.saturating_sub(*used));
        *used += granted;
        Ok(WindowShare {
            granted,
            used: *used,
        })
    }

    fn return_window_share(
        &self,
        key: &KeyId,
        window_start: OffsetDateTime,
        amount: u32,
    ) -> Result<(), RepositoryError> {
        let mut state = self.lock()?;
        if let Some(used) = state.windows.get_mut(&(*key, window_start)) {
            *used = used.saturating_sub(amount);
        }
        Ok(())
    }

    fn delete_ended_windows(&self, before: OffsetDateTime) -> Result<usize, RepositoryError> {
        let mut state = self.lock()?;
        let windows = std::mem::take(&mut state.windows);
        let total = windows.len();
        let kept: BTreeMap<_, _> = windows
            .into_iter()
            .filter(|((key, start), _)| {
                let window = state
                    .keys
                    .get(key)
                    .and_then(|(stored, _)| stored.limits.rate_limit)
                    .map(|r| r.window());
                window.is_some_and(|window| *start + window > before)
            })
            .collect();
        let deleted = total - kept.len();
        state.windows = kept;
        Ok(deleted)
    }

    fn take_credits(
        &self,
        key: &KeyId,
        want: u64,
        refill: Option<RefillDue>,
    ) -> Result<Option<CreditShare>, RepositoryError> {
        let mut state = self.lock()?;
        let Some((stored, _)) = state.keys.get_mut(key) else {
            return Ok(None);
        };
        let limits = &mut stored.limits;
        let Some(credits) = limits.credits else {
            return Ok(None);
        };
        let mut since = limits.credits_since.unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let mut remaining = credits.remaining();
        if let Some(due) = refill.filter(|due| since < due.at) {
            remaining = due.amount;
            since = due.at;
        }
        let granted = want.min(remaining);
        remaining -= granted;
        limits.credits = Some(credits.with_remaining(remaining));
        limits.credits_since = Some(since);
        Ok(Some(CreditShare {
            granted,
            remaining,
            period: since,
        }))
    }

    fn return_credits(
        &self,
        key: &KeyId,
        period: OffsetDateTime,
        amount: u64,
    ) -> Result<(), RepositoryError> {
        let mut state = self.lock()?;
        if let Some((stored, _)) = state.keys.get_mut(key) {
            let limits = &mut stored.limits;
            if let (Some(credits), Some(since)) = (limits.credits, limits.credits_since) {
                if since == period {
                    limits.credits = Some(credits.with_remaining(credits.remaining() + amount));
                }
            }
        }
        Ok(())
    }
}
