//! The two axes of a key's string: its type (`pk`/`sk`) and its mode (`live`/`test`).

use std::fmt;

use thiserror::Error;

/// Publishable keys are safe for frontends; secret keys are for backends only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyType {
    /// `pk_`: frontends, SDKs, client-side code.
    Publishable,
    /// `sk_`: server-side API calls.
    Secret,
}

/// Live keys act on production data; test keys see only test keys (docs/api.md, "Conventions", authorization).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// `live`
    Live,
    /// `test`
    Test,
}

/// A value that is not one of the documented names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("expected one of: {expected}")]
pub struct UnknownVariant {
    /// The accepted values, for the error message.
    pub expected: &'static str,
}

impl KeyType {
    /// The wire name: `publishable` or `secret`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Publishable => "publishable",
            KeyType::Secret => "secret",
        }
    }

    /// The two-letter tag in the key string: `pk` or `sk`.
    pub fn tag(self) -> &'static str {
        match self {
            KeyType::Publishable => "pk",
            KeyType::Secret => "sk",
        }
    }

    /// Parses the wire name (exact, lower case).
    ///
    /// # Errors
    /// [`UnknownVariant`] for anything but `publishable` or `secret`.
    pub fn parse(s: &str) -> Result<Self, UnknownVariant> {
        match s {
            "publishable" => Ok(KeyType::Publishable),
            "secret" => Ok(KeyType::Secret),
            _ => Err(UnknownVariant {
                expected: "publishable, secret",
            }),
        }
    }
}

impl Mode {
    /// The wire name: `live` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Test => "test",
        }
    }

    /// Parses the wire name (exact, lower case).
    ///
    /// # Errors
    /// [`UnknownVariant`] for anything but `live` or `test`.
    pub fn parse(s: &str) -> Result<Self, UnknownVariant> {
        match s {
            "live" => Ok(Mode::Live),
            "test" => Ok(Mode::Test),
            _ => Err(UnknownVariant {
                expected: "live, test",
            }),
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
