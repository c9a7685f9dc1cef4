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
//!
//! A secret scanner's batch ([`ApiKeys::revoke_found`], docs/secret-scanning.md)
//! is a report too, whose answer tells, token by token, whether it is one of
//! our secret keys: the scanner already holds the tokens, and GitHub shows
//! the verdict to the repository's owner.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::api_key::{ApiKey, KeyStatus};
use crate::events::{Actor, EventData, LeakSource, Origin};
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

/// One token a secret scanner found, and where. Its `Debug` leaves the token
/// out (docs/api.md, "Secrets").
#[derive(Clone, PartialEq, Eq)]
pub struct FoundToken {
    /// The string as found.
    pub token: String,
    /// Where it was found (a commit's file, an issue, a gist), written as
    /// `data.url` of the revocation's event.
    pub url: String,
}

impl fmt::Debug for FoundToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FoundToken")
            .field("token", &"[redacted]")
            .field("url", &self.url)
            .finish()
    }
}

/// What a scanner's batch did ([`ApiKeys::revoke_found`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FoundReport {
    /// For each token of the batch, in order: whether it is one of our
    /// secret keys, in any state (revoked now, before, or expired).
    pub ours: Vec<bool>,
    /// Keys revoked by this batch.
    pub revoked: usize,
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
        let hashes: Vec<KeyHash> = reported
            .iter()
            .filter_map(|text| self.secret_key_hash(text))
            .collect();
        let found = self.find_reported(&hashes)?;
        let revoked = self.revoke_reported(
            request_id,
            found.iter().map(|(_, key)| (key, EventData::KeyRevoked)),
        )?;
        Ok(LeakReport {
            revoked,
            ignored: reported.len() - revoked,
        })
    }

    /// A secret scanner's batch (docs/secret-scanning.md): revokes every
    /// active secret key among the tokens as [`ApiKeys::revoke_leaked`] does
    /// (one lookup for the whole batch, actor [`Actor::LeakReport`]), each
    /// with an [`EventData::KeyRevokedFound`] event naming `source` and the
    /// `url` where the token was first found in the batch; and tells, token by
    /// token, which are our secret keys. Publishable keys are public by
    /// design: they are not ours to report, and are left alone.
    ///
    /// # Errors
    /// [`RepositoryError`], as [`ApiKeys::revoke_leaked`]: the keys the
    /// batch revoked before the failure stay revoked.
    #[tracing::instrument(level = "debug", name = "use_case.revoke_found", skip_all)]
    pub fn revoke_found(
        &self,
        request_id: Option<String>,
        source: LeakSource,
        batch: &[FoundToken],
    ) -> Result<FoundReport, RepositoryError> {
        let hashes: Vec<Option<KeyHash>> = batch
            .iter()
            .map(|found| self.secret_key_hash(&found.token))
            .collect();
        let keys: HashMap<KeyHash, ApiKey> = self
            .find_reported(&hashes.iter().flatten().copied().collect::<Vec<_>>())?
            .into_iter()
            .collect();
        // Each key once, with the place of its first finding.
        let mut taken = HashSet::with_capacity(keys.len());
        let revoking = batch.iter().zip(&hashes).filter_map(|(found, hash)| {
            let hash = (*hash)?;
            let key = keys.get(&hash)?;
            taken.insert(hash).then(|| {
                let data = EventData::KeyRevokedFound {
                    source,
                    url: found.url.clone(),
                };
                (key, data)
            })
        });
        let revoked = self.revoke_reported(request_id, revoking)?;
        Ok(FoundReport {
            ours: hashes
                .iter()
                .map(|hash| hash.is_some_and(|hash| keys.contains_key(&hash)))
                .collect(),
            revoked,
        })
    }

    /// The hash of `text` when it is a well-formed secret key: only those
    /// are looked up. Publishable keys are public by design: reporting one
    /// changes nothing.
    fn secret_key_hash(&self, text: &str) -> Option<KeyHash> {
        PlainKey::parse(text)
            .ok()
            .filter(|plain| plain.key_type() == KeyType::Secret)
            .map(|plain| self.hash_key.hash(&plain))
    }

    /// The keys with these hashes, each once, in one lookup (none for no
    /// hash).
    fn find_reported(&self, hashes: &[KeyHash]) -> Result<Vec<(KeyHash, ApiKey)>, RepositoryError> {
        let mut seen = HashSet::with_capacity(hashes.len());
        let unique: Vec<KeyHash> = hashes.iter().copied().filter(|h| seen.insert(*h)).collect();
        if unique.is_empty() {
            return Ok(Vec::new());
        }
        self.keys.find_by_hashes(&unique)
    }

    /// Revokes each of `found` that still works, with its event's data, by
    /// [`Actor::LeakReport`]; the number revoked. The listeners hear of
    /// every key revoked, also when a failure is returned.
    fn revoke_reported<'k>(
        &self,
        request_id: Option<String>,
        found: impl Iterator<Item = (&'k ApiKey, EventData)>,
    ) -> Result<usize, RepositoryError> {
        let origin = Origin {
            actor: Actor::LeakReport,
            request_id,
        };
        let now = self.now();
        let mut revoked: Vec<KeyId> = Vec::new();
        let mut failure: Option<RepositoryError> = None;
        for (key, data) in found.filter(|(key, _)| still_works(key, now)) {
            match self.revoke_found_leaked(key, &origin, now, data) {
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
            None => Ok(revoked.len()),
        }
    }

    /// Revokes `key`, found by a reported string and still working at
    /// `now`, with an event of `data`; its id once revoked.
    fn revoke_found_leaked(
        &self,
        key: &ApiKey,
        origin: &Origin,
        now: time::OffsetDateTime,
        data: EventData,
    ) -> Result<KeyId, RepositoryError> {
        let event = self.key_event(now, key, origin, data);
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
