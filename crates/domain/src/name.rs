//! A key's human-readable label.

use std::fmt;

use thiserror::Error;

/// Longest name, in characters, after trimming.
pub const MAX_NAME_CHARS: usize = 100;

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum KeyNameError {
    /// Empty, or only white space.
    #[error("name must not be empty")]
    Empty,
    /// More than [`MAX_NAME_CHARS`] characters after trimming.
    #[error("name must be at most 100 characters")]
    TooLong,
    /// A control character (newline, tab, NUL, ...).
    #[error("name must not contain control characters")]
    ControlCharacter,
}

/// A trimmed label of 1 to 100 characters without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyName(String);

impl KeyName {
    /// Trims, then checks length and characters.
    ///
    /// # Errors
    /// [`KeyNameError`] saying which rule failed.
    pub fn parse(raw: &str) -> Result<Self, KeyNameError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(KeyNameError::Empty);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(KeyNameError::ControlCharacter);
        }
        if trimmed.chars().count() > MAX_NAME_CHARS {
            return Err(KeyNameError::TooLong);
        }
        Ok(KeyName(trimmed.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
