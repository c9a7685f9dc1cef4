//! A key's or a tenant's human-readable label (docs/api.md, "Names").
//!
//! A name is shown to people in listings, dashboards and audit logs, so it
//! must look like what it is: no character that is invisible, that reorders
//! or hides the text around it, or that a terminal interprets; and never a
//! key, which would then be stored and shown in clear.

use std::fmt;

use thiserror::Error;
use unicode_general_category::{get_general_category, GeneralCategory};

use crate::key_string::contains_key_material;

/// Longest name, in characters, after trimming.
pub const MAX_NAME_CHARS: usize = 100;

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum KeyNameError {
    /// Empty, or only white space and invisible characters.
    #[error("name must not be empty (white space and invisible characters do not count)")]
    Empty,
    /// More than [`MAX_NAME_CHARS`] characters after trimming.
    #[error("name must be at most 100 characters")]
    TooLong,
    /// A control, format (invisible, bidirectional), line or paragraph
    /// separator, private-use or unassigned character, or a Hangul filler.
    #[error(
        "name must not contain control, invisible, bidirectional-override, private-use or unassigned characters"
    )]
    ControlCharacter,
    /// The name is, or contains, a well-formed API key or the part of one
    /// after its tag.
    #[error("name must not contain an API key: names are stored and shown in clear")]
    ContainsKey,
}

/// Whether `c` may not appear in a name: Unicode general categories Cc
/// (controls), Cf (format: zero-width characters, bidirectional overrides and
/// isolates, soft hyphen, tags), Zl and Zp (line and paragraph separators),
/// Co (private use) and Cn (unassigned), plus the Hangul fillers U+3164 and
/// U+115F, which are letters by category but render as nothing.
pub fn is_forbidden_in_name(c: char) -> bool {
    if c.is_ascii() {
        // The common case without a table lookup: only controls are refused.
        return c.is_ascii_control();
    }
    matches!(c, '\u{3164}' | '\u{115F}')
        || matches!(
            get_general_category(c),
            GeneralCategory::Control
                | GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
                | GeneralCategory::PrivateUse
                | GeneralCategory::Unassigned
        )
}

/// A trimmed label of 1 to 100 characters that shows what it is: see
/// [`KeyName::parse`]. Tenants' names follow the same rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyName(String);

impl KeyName {
    /// Trims white space, then checks, in order: something visible is left
    /// (white space and forbidden characters do not count), no forbidden
    /// character ([`is_forbidden_in_name`]), at most [`MAX_NAME_CHARS`]
    /// characters, and no well-formed key inside.
    ///
    /// # Errors
    /// [`KeyNameError`] saying which rule failed.
    pub fn parse(raw: &str) -> Result<Self, KeyNameError> {
        let trimmed = raw.trim();
        if trimmed
            .chars()
            .all(|c| c.is_whitespace() || is_forbidden_in_name(c))
        {
            return Err(KeyNameError::Empty);
        }
        if trimmed.chars().any(is_forbidden_in_name) {
            return Err(KeyNameError::ControlCharacter);
        }
        if trimmed.chars().count() > MAX_NAME_CHARS {
            return Err(KeyNameError::TooLong);
        }
        if contains_key_material(trimmed) {
            return Err(KeyNameError::ContainsKey);
        }
        Ok(KeyName(trimmed.to_owned()))
    }

    /// A name read back from storage, where it was checked by
    /// [`KeyName::parse`] when it was written. The rule has grown stricter
    /// over time; a name written under an older rule must still load, or the
    /// key it labels could no longer be read, listed or revoked.
    pub fn from_stored(stored: String) -> Self {
        KeyName(stored)
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
