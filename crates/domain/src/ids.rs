//! Identifiers: `tnt_`, `key_` and `evt_` followed by a ULID (docs/api.md, Conventions).
//!
//! A ULID is 48 bits of milliseconds since the Unix epoch followed by 80 random
//! bits, written as 26 Crockford base32 characters. ULIDs sort by creation time,
//! which is what lets the list endpoint page newest first by id.

use std::fmt;

use thiserror::Error;
use time::OffsetDateTime;

use crate::random::SecretSource;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const ULID_LEN: usize = 26;

/// A ULID, stored as its 128-bit value.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Ulid(u128);

impl Ulid {
    fn generate(now: OffsetDateTime, secrets: &dyn SecretSource) -> Self {
        // Milliseconds before 1970 cannot come from a sane clock; clamp rather than panic.
        let millis = u128::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let millis = millis & ((1u128 << 48) - 1);
        let mut random = [0u8; 10];
        secrets.fill(&mut random);
        let mut value = millis << 80;
        for (i, byte) in random.iter().enumerate() {
            value |= u128::from(*byte) << (8 * (9 - i));
        }
        Ulid(value)
    }

    /// Strict parsing: exactly 26 upper-case Crockford characters, first at most `7`
    /// (anything larger overflows 128 bits).
    fn parse(s: &str) -> Option<Self> {
        let bytes = s.as_bytes();
        if bytes.len() != ULID_LEN || bytes[0] > b'7' {
            return None;
        }
        let mut value: u128 = 0;
        for &b in bytes {
            let digit = CROCKFORD.iter().position(|&c| c == b)?;
            value = (value << 5) | digit as u128;
        }
        Some(Ulid(value))
    }

    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; ULID_LEN];
        for (i, slot) in out.iter_mut().enumerate() {
            let shift = 5 * (ULID_LEN - 1 - i);
            *slot = CROCKFORD[((self.0 >> shift) & 0x1f) as usize];
        }
        // Every byte comes from CROCKFORD, which is ASCII.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

/// Why an identifier was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum IdError {
    /// Not the expected prefix followed by 26 upper-case Crockford base32 characters.
    #[error("expected `{prefix}` followed by a 26-character ULID")]
    Malformed {
        /// The prefix that was expected (`tnt_`, `key_` or `evt_`).
        prefix: &'static str,
    },
}

macro_rules! prefixed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Ulid);

        impl $name {
            /// The prefix every identifier of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A new identifier for something created at `now`.
            pub fn generate(now: OffsetDateTime, secrets: &dyn SecretSource) -> Self {
                Self(Ulid::generate(now, secrets))
            }

            /// Parses the prefixed form, strictly (upper-case ULID only).
            ///
            /// # Errors
            /// [`IdError::Malformed`] for anything else.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                s.strip_prefix($prefix)
                    .and_then(Ulid::parse)
                    .map(Self)
                    .ok_or(IdError::Malformed { prefix: $prefix })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($prefix)?;
                self.0.write(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }
    };
}

prefixed_id!(
    /// A tenant's identifier: `tnt_` + ULID.
    TenantId,
    "tnt_"
);
prefixed_id!(
    /// An API key's identifier: `key_` + ULID. Not secret.
    KeyId,
    "key_"
);
prefixed_id!(
    /// A key event's identifier: `evt_` + ULID.
    EventId,
    "evt_"
);

prefixed_id!(
    /// A webhook endpoint's identifier: `whe_` + ULID.
    EndpointId,
    "whe_"
);
prefixed_id!(
    /// A webhook delivery's identifier: `whd_` + ULID (made by the database,
    /// docs/webhooks.md).
    DeliveryId,
    "whd_"
);

impl EventId {
    /// The id right after this one: for the second event of one change (a
    /// rotation's successor, a tenant's keys), so that events of one change
    /// sort in the order they were made even within one millisecond.
    #[must_use]
    pub fn next(self) -> Self {
        EventId(Ulid(self.0 .0.saturating_add(1)))
    }
}
