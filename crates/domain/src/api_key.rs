//! The `ApiKey` entity, its status at an instant, and tenants.

use time::{Duration, OffsetDateTime};

use crate::hashing::KeyHash;
use crate::ids::{KeyId, TenantId};
use crate::key_kind::{KeyType, Mode};
use crate::metadata::Metadata;
use crate::name::KeyName;
use crate::restrictions::KeyRestrictions;
use crate::scope::Scopes;

/// A tenant: the owner of keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// `tnt_` + ULID.
    pub id: TenantId,
    /// A label for operators.
    pub name: String,
    /// When it was created.
    pub created_at: OffsetDateTime,
}

/// A key as stored: everything but the full key and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// `key_` + ULID.
    pub id: KeyId,
    /// The owner.
    pub tenant_id: TenantId,
    /// Human-readable label.
    pub name: KeyName,
    /// Publishable or secret.
    pub key_type: KeyType,
    /// Live or test.
    pub mode: Mode,
    /// The first 12 characters of the key.
    pub prefix: String,
    /// The last 4 characters of the key.
    pub last_four: String,
    /// What the key may do.
    pub scopes: Scopes,
    /// Creation time, to the second.
    pub created_at: OffsetDateTime,
    /// Last successful authentication, accurate to 60 seconds.
    pub last_used_at: Option<OffsetDateTime>,
    /// When the key stops working by age, if ever.
    pub expires_at: Option<OffsetDateTime>,
    /// When the key is (or was) revoked: now for a deletion, the end of the
    /// grace period for a rotation.
    pub revokes_at: Option<OffsetDateTime>,
    /// The successor, once the key has been rotated.
    pub replaced_by: Option<KeyId>,
    /// Where the key may be used from: `allowed_ips`, `allowed_origins`
    /// (docs/api.md, "Restricting a key"), parsed once when the key is read.
    pub restrictions: KeyRestrictions,
    /// `metadata`.
    pub metadata: Metadata,
}

/// `last_used_at` is written at most once per key in this interval
/// (docs/api.md, "The key object"). The rule lives only in
/// [`ApiKey::last_used_due_before`]; adapters compare with the instant it gives.
pub const LAST_USED_RESOLUTION: Duration = Duration::seconds(60);

/// What a key is at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Works, no revocation scheduled.
    Active,
    /// Works until `revokes_at` (a rotated key in its grace period).
    RevocationScheduled,
    /// Past `expires_at`.
    Expired,
    /// Past `revokes_at`.
    Revoked,
}

impl ApiKey {
    /// The status at `now`. Revocation wins over expiry: a key that is both is
    /// reported revoked, since revocation is the operator's deliberate act.
    pub fn status(&self, now: OffsetDateTime) -> KeyStatus {
        if self.revokes_at.is_some_and(|at| at <= now) {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            KeyStatus::Expired
        } else if self.revokes_at.is_some() {
            KeyStatus::RevocationScheduled
        } else {
            KeyStatus::Active
        }
    }

    /// `revoked` of the key object: true once the revocation time has passed.
    pub fn is_revoked(&self, now: OffsetDateTime) -> bool {
        self.status(now) == KeyStatus::Revoked
    }

    /// Whether the key keeps its tenant manageable (docs/api.md, "Conventions", authorization): an active,
    /// full-access, live secret key with no revocation scheduled. A tenant must
    /// always keep at least one.
    pub fn counts_for_full_access_guard(&self, now: OffsetDateTime) -> bool {
        self.status(now) == KeyStatus::Active
            && self.key_type == KeyType::Secret
            && self.mode == Mode::Live
            && self.scopes.is_full_access()
    }

    /// A use at `now` is recorded only if `last_used_at` is unset or not
    /// after this instant: at most one write per key per
    /// [`LAST_USED_RESOLUTION`].
    pub fn last_used_due_before(now: OffsetDateTime) -> OffsetDateTime {
        now - LAST_USED_RESOLUTION
    }

    /// Whether a use at `now` should be recorded
    /// ([`ApiKey::last_used_due_before`]).
    pub fn last_used_due(&self, now: OffsetDateTime) -> bool {
        self.last_used_at
            .is_none_or(|at| at <= Self::last_used_due_before(now))
    }

    /// Whether the key counts toward the tenant's active key limit: not revoked
    /// and not expired (a key in its grace period still counts).
    pub fn counts_for_key_limit(&self, now: OffsetDateTime) -> bool {
        matches!(
            self.status(now),
            KeyStatus::Active | KeyStatus::RevocationScheduled
        )
    }
}

/// A key together with its status at the instant a use case ran: what a
/// response needs, so that handlers need no clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyView {
    /// The key.
    pub key: ApiKey,
    /// Its status at the time of the call.
    pub status: KeyStatus,
}

impl KeyView {
    /// `key` as it is at `now`.
    pub fn at(key: ApiKey, now: OffsetDateTime) -> Self {
        let status = key.status(now);
        KeyView { key, status }
    }

    /// `revoked` of the key object.
    pub fn is_revoked(&self) -> bool {
        self.status == KeyStatus::Revoked
    }
}

/// A key to insert, with the hash it will be found by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// The stored fields.
    pub key: ApiKey,
    /// HMAC of the full key.
    pub hash: KeyHash,
}
