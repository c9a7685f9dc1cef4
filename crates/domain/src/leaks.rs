//! Leaked-key reports (docs/api.md, "POST /v1/leaked-keys"): anyone who finds
//! a key may report it, and every real secret key among the reports is
//! revoked at once.
//!
//! A report is anonymous: its strings are looked up across tenants by hash,
//! as authentication does, and the revocation skips the full-access guard
//! ([`ApiKeyRepository::revoke_unguarded`](crate::ApiKeyRepository::revoke_unguarded)):
//! a leaked key must stop working even if it is its tenant's last
//! full-access key. Each revocation writes `api_key.revoked` with actor
//! [`Actor::LeakReport`]. Publishable keys are public by design and are left
//! alone, as are strings that are not keys.

use std::collections::HashSet;

use crate::api_key::{ApiKey, KeyStatus};
use crate::events::{Actor, EventData, Origin};
use crate::hashing::KeyHash;
use crate::ids::KeyId;
use crate::key_kind::KeyType;
use crate::key_string::PlainKey;
use crate::ports::{RepositoryError, RevokeRepoError};
use crate::service::ApiKeys;

/// What a leaked-key report did. For logs and tests only: whoever reported
/// must never learn which of the strings were keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeakReport {
    /// Keys revoked (a key that a concurrent revocation took first, in the
    /// same instant, counts here too).
    pub revoked: usize,
    /// Strings that changed nothing: not a key (shape or checksum), no key
    /// has this value, a publishable key, a key already revoked or expired,
    /// or a repetition of a string reported before in the same report.
    pub ignored: usize,
}

impl ApiKeys {
    /// Revokes every active secret key (also one in its rotation grace
    /// period, and also its tenant's last full-access key) whose full value
    /// is among `reported`, each with an `api_key.revoked` event by
    /// [`Actor::LeakReport`] in the request `request_id`. Everything else is
    /// ignored: strings that are not keys, unknown keys, publishable keys,
    /// keys already revoked or expired. A string reported twice counts once.
    /// The change listeners hear of every key revoked.
    ///
    /// A storage failure on one key does not spare the others: the report
    /// goes on with the next string, unless storage is unreachable (the rest
    /// would fail alike), and the first failure is returned at the end, after
    /// the listeners heard of the keys that were revoked.
    ///
    /// # Errors
    /// [`RepositoryError`]: the first storage failure; an answer of the
    /// repository that cannot happen for this actor (the key vanished, the
    /// guard or the actor refused) is a [`RepositoryError::Failure`].
    #[tracing::instrument(level = "debug", name = "use_case.revoke_leaked", skip_all)]
    pub fn revoke_leaked(
        &self,
        request_id: Option<String>,
        reported: &[String],
    ) -> Result<LeakReport, RepositoryError> {
        let origin = Origin {
            actor: Actor::LeakReport,
            request_id,
        };
        // The well-formed secret keys among the strings, each once: only they
        // cost a lookup, and all of them one lookup together. Publishable
        // keys are public by design: reporting one changes nothing.
        let mut seen = HashSet::with_capacity(reported.len());
        let hashes: Vec<KeyHash> = reported
            .iter()
            .filter(|text| seen.insert(text.as_str()))
            .filter_map(|text| PlainKey::parse(text).ok())
            .filter(|plain| plain.key_type() == KeyType::Secret)
            .map(|plain| self.hash_key.hash(&plain))
            .collect();
        let found = if hashes.is_empty() {
            Vec::new()
        } else {
            self.keys.find_by_hashes(&hashes)?
        };
        let now = self.now();
        let mut revoked: Vec<KeyId> = Vec::new();
        let mut failure: Option<RepositoryError> = None;
        for key in found.iter().filter(|key| still_works(key, now)) {
            match self.revoke_found_leaked(key, &origin, now) {
                Ok(id) => revoked.push(id),
                Err(e) => {
                    let unreachable = e.is_unavailable();
                    failure.get_or_insert(e);
                    if unreachable {
                        break;
                    }
                }
            }
        }
        self.changed(&revoked);
        match failure {
            Some(e) => Err(e),
            None => Ok(LeakReport {
                revoked: revoked.len(),
                ignored: reported.len() - revoked.len(),
            }),
        }
    }

    /// Revokes `key`, found by a reported string and still working at
    /// `now`; its id once revoked.
    fn revoke_found_leaked(
        &self,
        key: &ApiKey,
        origin: &Origin,
        now: time::OffsetDateTime,
    ) -> Result<KeyId, RepositoryError> {
        let event = self.key_event(now, key, origin, EventData::KeyRevoked);
        match self.keys.revoke_unguarded(&key.tenant_id, &key.id, &event) {
            // A key that a concurrent revocation took first comes back as it
            // is, without an event; either way it no longer works.
            Ok(stored) => Ok(stored.id),
            Err(RevokeRepoError::Repository(e)) => Err(e),
            Err(RevokeRepoError::NotFound) => Err(RepositoryError::failure(
                "revoke leaked key",
                "a key found by its hash was not found by its id",
            )),
            Err(RevokeRepoError::LastFullAccessKey) => Err(RepositoryError::failure(
                "revoke leaked key",
                "the unguarded revocation applied the full-access guard",
            )),
            Err(RevokeRepoError::ActorRefused(_)) => Err(RepositoryError::failure(
                "revoke leaked key",
                "a leak report has no actor key, yet it was refused",
            )),
        }
    }
}

/// Whether the key still authenticates at `now` (active, or rotated and in
/// its grace period): only then does a leak matter.
fn still_works(key: &ApiKey, now: time::OffsetDateTime) -> bool {
    matches!(
        key.status(now),
        KeyStatus::Active | KeyStatus::RevocationScheduled
    )
}
