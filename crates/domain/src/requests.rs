//! What the use cases are asked: requests whose every field is already
//! valid (the adapters parse them from their own input). Below the service,
//! the idempotency records (a request's fingerprint) and the ports, so that
//! each of them can name a request without importing the use cases.

use thiserror::Error;

use crate::duration::ExpiresIn;
use crate::events::EventType;
use crate::ids::{EventId, KeyId};
use crate::key_kind::{KeyType, Mode};
use crate::metadata::{Metadata, MetadataPatch};
use crate::name::KeyName;
use crate::restrictions::{AllowedIps, AllowedOrigins, KeyRestrictions};
use crate::scope::Scopes;

/// A page size of 1 to 100 (default 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u32);

/// A page size outside 1 to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("limit must be between 1 and 100")]
pub struct PageLimitError;

impl PageLimit {
    /// The largest and default page size.
    pub const MAX: u32 = 100;

    /// Checks the bounds.
    ///
    /// # Errors
    /// [`PageLimitError`] outside 1 to 100.
    pub fn new(limit: u32) -> Result<Self, PageLimitError> {
        if (1..=Self::MAX).contains(&limit) {
            Ok(PageLimit(limit))
        } else {
            Err(PageLimitError)
        }
    }

    /// The size.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for PageLimit {
    fn default() -> Self {
        PageLimit(Self::MAX)
    }
}

/// A request to create a key; every field is already valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateKey {
    /// Label.
    pub name: KeyName,
    /// Publishable or secret.
    pub key_type: KeyType,
    /// Live or test; `None` takes the caller's mode.
    pub mode: Option<Mode>,
    /// What the key may do (`["*"]` by default at the edge).
    pub scopes: Scopes,
    /// Lifetime; `None` never expires.
    pub expires_in: Option<ExpiresIn>,
    /// `allowed_ips` and `allowed_origins` (none by default).
    pub restrictions: KeyRestrictions,
    /// `metadata` (empty by default).
    pub metadata: Metadata,
}

/// A change of a key (PATCH); every field is already valid, and `None`
/// leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpdateKey {
    /// The new name.
    pub name: Option<KeyName>,
    /// The new scopes.
    pub scopes: Option<Scopes>,
    /// The new `allowed_ips`; `Some(None)` lifts the restriction.
    pub allowed_ips: Option<Option<AllowedIps>>,
    /// The new `allowed_origins`; `Some(None)` lifts the restriction.
    pub allowed_origins: Option<Option<AllowedOrigins>>,
    /// Metadata keys to set or (to `None`) remove; others stay.
    pub metadata: Option<MetadataPatch>,
}

/// An audit-log listing request; every field is already valid.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListEvents {
    /// Only events of this key.
    pub key_id: Option<KeyId>,
    /// Only events of this type.
    pub event_type: Option<EventType>,
    /// Cursor: events older than this one.
    pub starting_after: Option<EventId>,
    /// Page size.
    pub limit: PageLimit,
}

/// A listing request; every field is already valid.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListKeys {
    /// Only this type.
    pub key_type: Option<KeyType>,
    /// Only this mode (a test caller sees test keys whatever this says).
    pub mode: Option<Mode>,
    /// Also revoked keys.
    pub include_revoked: bool,
    /// Cursor: keys older than this one.
    pub starting_after: Option<KeyId>,
    /// Page size.
    pub limit: PageLimit,
}
