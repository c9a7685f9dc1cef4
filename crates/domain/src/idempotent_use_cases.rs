//! The idempotent use cases: a create or a rotation that a client may send
//! again under one `Idempotency-Key` (docs/api.md, "Idempotent requests").
//!
//! Each runs in three steps:
//! 1. A live record of the caller's idempotency key answers at once: its
//!    response again if the request is the same, `IdempotencyKeyReused` if
//!    not. Nothing else is read or checked, so a replayed rotation does not
//!    meet the `key_already_rotated` its first run caused.
//! 2. Otherwise the use case runs as usual and the adapter renders its
//!    response ([`Replayable`]), whose bytes are sealed into a record.
//! 3. The store writes the change and the record as one unit. A concurrent
//!    twin that got there first makes this run write nothing and answer as
//!    in step 1, or `IdempotencyKeyInUse` while the twin is still running.

use time::OffsetDateTime;

use crate::auth::Principal;
use crate::duration::GracePeriod;
use crate::errors::{CreateError, RotateError};
use crate::idempotency::{
    IdempotencyKey, IdempotencyRecord, IdempotencyScope, IdempotentResponse, RecordBinding,
    Replayable, RequestFingerprint, IDEMPOTENCY_WINDOW,
};
use crate::ids::KeyId;
use crate::ports::{RecordedWriteError, RepositoryError};
use crate::requests::CreateKey;
use crate::service::{creatable_mode, create_failed, ApiKeys, CreatedKey, RotatedKey};

/// One idempotent request: whose, under which key, asking what.
struct Once<'a> {
    scope: IdempotencyScope,
    key: &'a IdempotencyKey,
    fingerprint: RequestFingerprint,
}

/// Why a record did not answer: another request, or a response that no
/// longer opens.
enum Unanswerable {
    Reused,
    Unreadable(RepositoryError),
}

impl From<Unanswerable> for CreateError {
    fn from(e: Unanswerable) -> Self {
        match e {
            Unanswerable::Reused => CreateError::IdempotencyKeyReused,
            Unanswerable::Unreadable(e) => CreateError::Repository(e),
        }
    }
}

impl From<Unanswerable> for RotateError {
    fn from(e: Unanswerable) -> Self {
        match e {
            Unanswerable::Reused => RotateError::IdempotencyKeyReused,
            Unanswerable::Unreadable(e) => RotateError::Repository(e),
        }
    }
}

impl<'a> Once<'a> {
    /// `caller`'s request under `key`: one calling key's idempotency keys
    /// are its own.
    fn new(caller: &Principal, key: &'a IdempotencyKey, fingerprint: RequestFingerprint) -> Self {
        Once {
            scope: IdempotencyScope {
                tenant_id: caller.tenant_id,
                caller: caller.key_id,
            },
            key,
            fingerprint,
        }
    }

    fn binding(&self) -> RecordBinding<'_> {
        RecordBinding {
            scope: &self.scope,
            key: self.key,
            fingerprint: &self.fingerprint,
        }
    }
}

impl ApiKeys {
    /// [`create`](Self::create), safe to send again under `key`: the first
    /// run's response is rendered by `respond`, stored sealed with the new
    /// key in one transaction, and returned again to every repeat of the same
    /// request by the same caller for 24 hours, which then changes nothing.
    ///
    /// # Errors
    /// As [`create`](Self::create), and
    /// [`CreateError::IdempotencyKeyReused`] (the key was used with another
    /// request) or [`CreateError::IdempotencyKeyInUse`] (a twin is running).
    pub fn create_idempotent<R: Replayable>(
        &self,
        caller: &Principal,
        request_id: Option<String>,
        request: CreateKey,
        key: &IdempotencyKey,
        respond: impl FnOnce(CreatedKey) -> R,
    ) -> Result<IdempotentResponse<R>, CreateError> {
        caller.require_key_management()?;
        let once = Once::new(caller, key, RequestFingerprint::of_create(&request));
        if let Some(replay) = self.replay_of_record(&once)? {
            return Ok(replay);
        }
        let mode = creatable_mode(caller, &request)?;
        let origin = caller.origin(request_id);
        let prepared = self.prepare_key(&origin, caller.tenant_id, mode, request);
        let id = prepared.new.key.id;
        let response = respond(prepared.created);
        let record = self.record(&once, &response, prepared.event.created_at);
        match self.idempotency.insert_recorded(
            &prepared.new,
            self.max_active_keys,
            &prepared.event,
            &record,
        ) {
            Ok(()) => {
                self.changed(&[id]);
                Ok(IdempotentResponse {
                    response,
                    replayed: false,
                })
            }
            Err(RecordedWriteError::InUse) => Err(CreateError::IdempotencyKeyInUse),
            Err(RecordedWriteError::Completed(found)) => Ok(self.replay(&once, &found)?),
            Err(RecordedWriteError::Write(e)) => Err(create_failed(e)),
        }
    }

    /// [`rotate`](Self::rotate), safe to send again under `key`, as
    /// [`create_idempotent`](Self::create_idempotent) is for a creation. A
    /// repeat gets the first rotation's successor again, with its full key,
    /// not `key_already_rotated`.
    ///
    /// # Errors
    /// As [`rotate`](Self::rotate), and
    /// [`RotateError::IdempotencyKeyReused`] or
    /// [`RotateError::IdempotencyKeyInUse`].
    pub fn rotate_idempotent<R: Replayable>(
        &self,
        caller: &Principal,
        request_id: Option<String>,
        id: &KeyId,
        grace: GracePeriod,
        key: &IdempotencyKey,
        respond: impl FnOnce(RotatedKey) -> R,
    ) -> Result<IdempotentResponse<R>, RotateError> {
        caller.require_key_management()?;
        let once = Once::new(caller, key, RequestFingerprint::of_rotate(id, grace));
        if let Some(replay) = self.replay_of_record(&once)? {
            return Ok(replay);
        }
        let rotation = self.prepare_rotation(caller, request_id, id, grace)?;
        let successor = rotation.successor.key.id;
        let revokes_at = rotation.outcome.old_key_revokes_at;
        let response = respond(rotation.outcome);
        let record = self.record(&once, &response, rotation.rotated.created_at);
        match self.idempotency.rotate_recorded(
            id,
            &rotation.successor,
            revokes_at,
            self.max_active_keys,
            &rotation.rotated,
            &rotation.created,
            &record,
        ) {
            Ok(()) => {
                self.changed(&[*id, successor]);
                Ok(IdempotentResponse {
                    response,
                    replayed: false,
                })
            }
            Err(RecordedWriteError::InUse) => Err(RotateError::IdempotencyKeyInUse),
            Err(RecordedWriteError::Completed(found)) => Ok(self.replay(&once, &found)?),
            Err(RecordedWriteError::Write(e)) => Err(self.rotation_failed(caller, id, e)),
        }
    }

    /// Deletes the idempotency records that expired by now; returns how
    /// many. The program runs it periodically, so a record's sealed response
    /// does not outlive its 24 hours by more than that period.
    ///
    /// # Errors
    /// [`RepositoryError`].
    pub fn delete_expired_idempotency_records(&self) -> Result<usize, RepositoryError> {
        self.idempotency.delete_expired_records(self.now())
    }

    /// The answer of the live record of `once`'s key, if there is one.
    fn replay_of_record<R: Replayable>(
        &self,
        once: &Once<'_>,
    ) -> Result<Option<IdempotentResponse<R>>, Unanswerable> {
        let found = self
            .idempotency
            .find_record(&once.scope, once.key, self.now())
            .map_err(Unanswerable::Unreadable)?;
        found.map(|record| self.replay(once, &record)).transpose()
    }

    /// `record`'s response again, if it records the same request.
    fn replay<R: Replayable>(
        &self,
        once: &Once<'_>,
        record: &IdempotencyRecord,
    ) -> Result<IdempotentResponse<R>, Unanswerable> {
        if record.fingerprint != once.fingerprint {
            return Err(Unanswerable::Reused);
        }
        let unreadable = |e: &str| {
            Unanswerable::Unreadable(RepositoryError::failure(
                "reading an idempotency record",
                e.to_owned(),
            ))
        };
        let bytes = self
            .sealer
            .open(&record.binding(), &record.response)
            .map_err(|e| unreadable(&e.to_string()))?;
        let response = R::from_bytes(&bytes)
            .ok_or_else(|| unreadable("the stored response is not one this adapter renders"))?;
        Ok(IdempotentResponse {
            response,
            replayed: true,
        })
    }

    /// The record of `once` answered by `response`, made at `now`.
    fn record(
        &self,
        once: &Once<'_>,
        response: &impl Replayable,
        now: OffsetDateTime,
    ) -> IdempotencyRecord {
        let sealed = self
            .sealer
            .seal(&once.binding(), &response.to_bytes(), self.secrets.as_ref());
        IdempotencyRecord {
            scope: once.scope,
            key: once.key.clone(),
            fingerprint: once.fingerprint,
            response: sealed,
            created_at: now,
            expires_at: now + IDEMPOTENCY_WINDOW,
        }
    }
}
