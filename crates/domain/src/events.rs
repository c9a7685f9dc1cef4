//! Key events: one record of every committed change (docs/api.md, "Key
//! events and the audit log").
//!
//! The use cases build each event in full, here in the domain, and hand it to
//! the repository port together with the change; the adapter writes both in
//! one transaction, so an event exists exactly when its change committed.
//! Adapters add only what storage decides: the sequence number other nodes
//! follow.

use std::fmt;

use time::{Duration, OffsetDateTime};

use crate::api_key::ApiKey;
use crate::duration::GracePeriod;
use crate::ids::{EventId, KeyId, TenantId};
use crate::key_kind::{Mode, UnknownVariant};
use crate::limits::{Credits, LimitsUpdate, RateLimit};
use crate::metadata::Metadata;
use crate::name::KeyName;
use crate::restrictions::{AllowedIps, AllowedOrigins};
use crate::scope::Scopes;

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Actor {
    /// A request authenticated with this key.
    ApiKey(KeyId),
    /// The operator's command line (`apikeys tenant create`, ...).
    Cli,
    /// A leaked-key report.
    LeakReport,
    /// The service itself: the expiry events (`api_key.expiring`,
    /// `api_key.expired`).
    System,
}

impl Actor {
    /// The actor's `type` as the API writes it: `api_key`, `cli`,
    /// `leak_report` or `system`.
    pub fn type_str(&self) -> &'static str {
        match self {
            Actor::ApiKey(_) => "api_key",
            Actor::Cli => "cli",
            Actor::LeakReport => "leak_report",
            Actor::System => "system",
        }
    }

    /// The calling key, for an [`Actor::ApiKey`].
    pub fn key_id(&self) -> Option<KeyId> {
        match self {
            Actor::ApiKey(id) => Some(*id),
            Actor::Cli | Actor::LeakReport | Actor::System => None,
        }
    }

    /// The inverse of [`Actor::type_str`] with [`Actor::key_id`].
    ///
    /// # Errors
    /// [`UnknownVariant`] for an unknown type, or a key id given for a type
    /// that has none (or missing for `api_key`).
    pub fn from_parts(type_str: &str, key_id: Option<KeyId>) -> Result<Self, UnknownVariant> {
        match (type_str, key_id) {
            ("api_key", Some(id)) => Ok(Actor::ApiKey(id)),
            ("cli", None) => Ok(Actor::Cli),
            ("leak_report", None) => Ok(Actor::LeakReport),
            ("system", None) => Ok(Actor::System),
            _ => Err(UnknownVariant {
                expected: "api_key (with a key id), cli, leak_report or system",
            }),
        }
    }
}

/// Who found the keys of a batch report ([`ApiKeys::revoke_found`](crate::ApiKeys::revoke_found)), as
/// `data.source` of each revocation's event writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeakSource {
    /// GitHub's secret scanning partner program (docs/secret-scanning.md).
    GitHub,
}

impl LeakSource {
    /// The name `data.source` holds: `github`.
    pub fn as_str(self) -> &'static str {
        match self {
            LeakSource::GitHub => "github",
        }
    }

    /// The inverse of [`LeakSource::as_str`].
    ///
    /// # Errors
    /// [`UnknownVariant`] for any other name.
    pub fn parse(name: &str) -> Result<Self, UnknownVariant> {
        match name {
            "github" => Ok(LeakSource::GitHub),
            _ => Err(UnknownVariant { expected: "github" }),
        }
    }
}

/// Where a change comes from: the actor and, for a change made over HTTP,
/// the request id. Every write use case takes one and records it in its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Who is making the change.
    pub actor: Actor,
    /// The `X-Request-ID` of the request, `None` outside HTTP.
    pub request_id: Option<String>,
}

impl Origin {
    /// A change made by the command line.
    pub fn cli() -> Self {
        Origin {
            actor: Actor::Cli,
            request_id: None,
        }
    }
}

/// The kinds of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// `api_key.created`.
    KeyCreated,
    /// `api_key.updated`.
    KeyUpdated,
    /// `api_key.revoked`.
    KeyRevoked,
    /// `api_key.rotated`.
    KeyRotated,
    /// `tenant.created`.
    TenantCreated,
    /// `api_key.expiring`: 7 days before the key expires.
    KeyExpiring,
    /// `api_key.expired`: when the key expired.
    KeyExpired,
}

impl EventType {
    /// Every type, in documentation order.
    pub const ALL: [EventType; 7] = [
        EventType::KeyCreated,
        EventType::KeyUpdated,
        EventType::KeyRevoked,
        EventType::KeyRotated,
        EventType::TenantCreated,
        EventType::KeyExpiring,
        EventType::KeyExpired,
    ];

    /// The type as the API writes it (`api_key.created`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::KeyCreated => "api_key.created",
            EventType::KeyUpdated => "api_key.updated",
            EventType::KeyRevoked => "api_key.revoked",
            EventType::KeyRotated => "api_key.rotated",
            EventType::TenantCreated => "tenant.created",
            EventType::KeyExpiring => "api_key.expiring",
            EventType::KeyExpired => "api_key.expired",
        }
    }

    /// Parses [`EventType::as_str`]'s form.
    ///
    /// # Errors
    /// [`UnknownVariant`] for anything else.
    pub fn parse(s: &str) -> Result<Self, UnknownVariant> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or(UnknownVariant {
                expected: "api_key.created, api_key.updated, api_key.revoked, api_key.rotated, tenant.created, api_key.expiring or api_key.expired",
            })
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One field's value before and after an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<T> {
    /// Before.
    pub old: T,
    /// After.
    pub new: T,
}

/// What an update changed: only fields whose value really changed are
/// present. It doubles as the update's precondition: the repository applies
/// it only while each changed field still holds its `old` value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldChanges {
    /// The name, if it changed.
    pub name: Option<Change<KeyName>>,
    /// The scopes, if they changed.
    pub scopes: Option<Change<Scopes>>,
    /// The rate limit, if it changed (docs/api.md, "Limiting a key's use").
    pub rate_limit: Option<Change<Option<RateLimit>>>,
    /// The credits, if they changed (`remaining` included).
    pub credits: Option<Change<Option<Credits>>>,
    /// `allowed_ips`, if it changed (`None`: any address).
    pub allowed_ips: Option<Change<Option<AllowedIps>>>,
    /// `allowed_origins`, if it changed (`None`: any origin).
    pub allowed_origins: Option<Change<Option<AllowedOrigins>>>,
    /// `metadata`, if it changed (old and new in full, after the merge).
    pub metadata: Option<Change<Metadata>>,
}

impl FieldChanges {
    /// The difference between `key` and the requested values (`None`: leave
    /// as it is).
    pub fn between(key: &ApiKey, name: Option<&KeyName>, scopes: Option<&Scopes>) -> Self {
        FieldChanges {
            name: name.filter(|n| **n != key.name).map(|n| Change {
                old: key.name.clone(),
                new: n.clone(),
            }),
            scopes: scopes.filter(|s| **s != key.scopes).map(|s| Change {
                old: key.scopes,
                new: *s,
            }),
            ..FieldChanges::default()
        }
    }

    /// These changes and those of `limits` against `key`.
    #[must_use]
    pub fn with_limits(mut self, key: &ApiKey, limits: &LimitsUpdate) -> Self {
        let old = key.limits;
        self.rate_limit = limits
            .rate_limit
            .filter(|new| *new != old.rate_limit)
            .map(|new| Change {
                old: old.rate_limit,
                new,
            });
        self.credits = limits
            .credits
            .filter(|new| *new != old.credits)
            .map(|new| Change {
                old: old.credits,
                new,
            });
        self
    }

    /// These changes and those of the restrictions and metadata `key` would
    /// get (`None`: leave as it is; metadata already merged).
    #[must_use]
    pub fn with_restrictions(
        mut self,
        key: &ApiKey,
        allowed_ips: Option<&Option<AllowedIps>>,
        allowed_origins: Option<&Option<AllowedOrigins>>,
        metadata: Option<&Metadata>,
    ) -> Self {
        let current = &key.restrictions;
        self.allowed_ips = changed(&current.allowed_ips, allowed_ips);
        self.allowed_origins = changed(&current.allowed_origins, allowed_origins);
        self.metadata = changed(&key.metadata, metadata);
        self
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.scopes.is_none()
            && self.rate_limit.is_none()
            && self.credits.is_none()
            && self.allowed_ips.is_none()
            && self.allowed_origins.is_none()
            && self.metadata.is_none()
    }

    /// Whether `key` still holds every changed field's `old` value: the
    /// precondition of the write.
    pub fn holds_old(&self, key: &ApiKey) -> bool {
        fn holds<T: PartialEq>(change: Option<&Change<T>>, current: &T) -> bool {
            change.is_none_or(|c| c.old == *current)
        }
        holds(self.name.as_ref(), &key.name)
            && holds(self.scopes.as_ref(), &key.scopes)
            && holds(self.allowed_ips.as_ref(), &key.restrictions.allowed_ips)
            && holds(
                self.allowed_origins.as_ref(),
                &key.restrictions.allowed_origins,
            )
            && holds(self.metadata.as_ref(), &key.metadata)
    }

    /// `key` with the new values applied at `now` (new credits count from
    /// then).
    pub fn apply(&self, key: &ApiKey, now: OffsetDateTime) -> ApiKey {
        let mut key = key.clone();
        if let Some(c) = &self.name {
            key.name = c.new.clone();
        }
        if let Some(c) = &self.scopes {
            key.scopes = c.new;
        }
        if let Some(c) = &self.rate_limit {
            key.limits.rate_limit = c.new;
        }
        if let Some(c) = &self.credits {
            key.limits.credits = c.new;
            key.limits.credits_since = c.new.map(|_| now);
        }
        if let Some(c) = &self.allowed_ips {
            key.restrictions.allowed_ips = c.new.clone();
        }
        if let Some(c) = &self.allowed_origins {
            key.restrictions.allowed_origins = c.new.clone();
        }
        if let Some(c) = &self.metadata {
            key.metadata = c.new.clone();
        }
        key
    }
}

/// The change from `current` to `requested`, if it is one.
fn changed<T: Clone + PartialEq>(current: &T, requested: Option<&T>) -> Option<Change<T>> {
    requested.filter(|r| *r != current).map(|r| Change {
        old: current.clone(),
        new: r.clone(),
    })
}

/// What an event says beyond its envelope (`data` in the API).
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "an event is made once per write and passed on, never held in bulk"
)]
pub enum EventData {
    /// `api_key.created`; `rotated_from` for the successor of a rotation.
    KeyCreated {
        /// The rotated key this one replaces.
        rotated_from: Option<KeyId>,
    },
    /// `api_key.updated`.
    KeyUpdated {
        /// The old and new value of each changed field.
        changes: FieldChanges,
    },
    /// `api_key.revoked`.
    KeyRevoked,
    /// `api_key.revoked` by a secret scanner's report: who found the key,
    /// and where (docs/secret-scanning.md).
    KeyRevokedFound {
        /// Who found it: `data.source`.
        source: LeakSource,
        /// Where it was found: `data.url`.
        url: String,
    },
    /// `api_key.rotated`, on the old key.
    KeyRotated {
        /// The successor.
        replaced_by: KeyId,
        /// How long the old key keeps working.
        grace_period: Duration,
        /// When the old key stops working.
        revokes_at: OffsetDateTime,
    },
    /// `tenant.created`.
    TenantCreated {
        /// The tenant's name.
        name: String,
    },
    /// `api_key.expiring`.
    KeyExpiring {
        /// When the key expires.
        expires_at: OffsetDateTime,
    },
    /// `api_key.expired`.
    KeyExpired {
        /// When the key expired.
        expires_at: OffsetDateTime,
    },
}

impl EventData {
    /// The event's type.
    pub fn event_type(&self) -> EventType {
        match self {
            EventData::KeyCreated { .. } => EventType::KeyCreated,
            EventData::KeyUpdated { .. } => EventType::KeyUpdated,
            EventData::KeyRevoked | EventData::KeyRevokedFound { .. } => EventType::KeyRevoked,
            EventData::KeyRotated { .. } => EventType::KeyRotated,
            EventData::TenantCreated { .. } => EventType::TenantCreated,
            EventData::KeyExpiring { .. } => EventType::KeyExpiring,
            EventData::KeyExpired { .. } => EventType::KeyExpired,
        }
    }
}

/// One event. Events are never changed or deleted through the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEvent {
    /// `evt_` + ULID; newest first is descending id.
    pub id: EventId,
    /// When the change happened (the change's `now`).
    pub created_at: OffsetDateTime,
    /// The tenant the change belongs to.
    pub tenant_id: TenantId,
    /// The key changed, `None` for tenant events.
    pub key_id: Option<KeyId>,
    /// The changed key's mode, `None` for tenant events.
    pub mode: Option<Mode>,
    /// Who made the change.
    pub actor: Actor,
    /// The request that made it, `None` outside HTTP.
    pub request_id: Option<String>,
    /// What happened.
    pub data: EventData,
}

impl KeyEvent {
    /// An event about `key`.
    pub fn for_key(
        id: EventId,
        at: OffsetDateTime,
        key: &ApiKey,
        origin: &Origin,
        data: EventData,
    ) -> Self {
        KeyEvent {
            id,
            created_at: at,
            tenant_id: key.tenant_id,
            key_id: Some(key.id),
            mode: Some(key.mode),
            actor: origin.actor,
            request_id: origin.request_id.clone(),
            data,
        }
    }

    /// The event's type.
    pub fn event_type(&self) -> EventType {
        self.data.event_type()
    }
}

/// A stored event with the sequence number storage gave it. Numbers increase
/// with every insert but may commit out of order (docs/events.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Storage order.
    pub seq: i64,
    /// The event.
    pub event: KeyEvent,
}

/// Filters, cursor and page size of an audit-log listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Only events of this key.
    pub key_id: Option<KeyId>,
    /// Only events of this type.
    pub event_type: Option<EventType>,
    /// Only events of keys of this mode (tenant events have none and are then
    /// left out).
    pub mode: Option<Mode>,
    /// Events whose id is strictly smaller (older) than this one.
    pub starting_after: Option<EventId>,
    /// At most this many events (1 to 100).
    pub limit: u32,
}

/// One page of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    /// Newest first (descending id).
    pub events: Vec<KeyEvent>,
    /// Whether more events match after the last one.
    pub has_more: bool,
}

/// A grace period in the duration grammar, in its largest exact unit
/// (`86400s` is written `1d`), as `data.grace_period` shows it.
pub fn format_duration(d: Duration) -> String {
    let seconds = d.whole_seconds();
    let units: [(i64, char); 6] = [
        (365 * 86_400, 'y'),
        (7 * 86_400, 'w'),
        (86_400, 'd'),
        (3_600, 'h'),
        (60, 'm'),
        (1, 's'),
    ];
    if seconds == 0 {
        return "0s".to_owned();
    }
    for (size, unit) in units {
        if seconds % size == 0 {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

impl GracePeriod {
    /// [`format_duration`] of the period.
    pub fn to_duration_string(self) -> String {
        format_duration(self.get())
    }
}
