//! The key string (docs/api.md, "Key strings"): `{pk|sk}_{live|test}_{body}{checksum}`.
//!
//! `body` is 32 base62 characters drawn from a [`SecretSource`] without modulo
//! bias; `checksum` is the CRC-32 (IEEE) of everything before it, as 6 base62
//! digits, most significant first. The checksum lets a mistyped or made-up key
//! be refused before any hashing or database work.

use std::fmt;

use thiserror::Error;

use crate::key_kind::{KeyType, Mode};
use crate::random::SecretSource;

/// The base62 alphabet: `0-9A-Za-z`.
pub const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Random characters in a key.
pub const BODY_LEN: usize = 32;
/// Checksum characters at the end of a key.
pub const CHECKSUM_LEN: usize = 6;
/// Length of `sk_live_`, `pk_test_`, ...
const TAG_LEN: usize = 8;
/// Length of every key string.
pub const KEY_LEN: usize = TAG_LEN + BODY_LEN + CHECKSUM_LEN;
/// Characters shown as a key's `prefix`.
pub const PREFIX_LEN: usize = 12;
/// Characters shown as a key's `last_four`.
pub const LAST_FOUR_LEN: usize = 4;

/// Why a string is not a key. Deliberately coarse: a client learns only that the
/// key is invalid, and no part of it is echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum KeyFormatError {
    /// Wrong length, tag or alphabet.
    #[error("not an API key")]
    Malformed,
    /// Well formed, but the checksum does not match.
    #[error("API key checksum mismatch")]
    BadChecksum,
}

/// A full key string. It exists only while a key is created, rotated or
/// authenticated: its `Debug` is redacted, it has no `Display`, and
/// [`PlainKey::into_secret`] consumes it.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainKey {
    text: String,
    key_type: KeyType,
    mode: Mode,
}

impl PlainKey {
    /// A new random key of the given type and mode.
    pub fn generate(key_type: KeyType, mode: Mode, secrets: &dyn SecretSource) -> Self {
        let mut text = String::with_capacity(KEY_LEN);
        push_tag(&mut text, key_type, mode);
        let mut pool = [0u8; 64];
        let mut filled = 0;
        while text.len() < TAG_LEN + BODY_LEN {
            secrets.fill(&mut pool);
            for &byte in &pool {
                // 248 = 4 * 62: bytes at or above it would favour the first
                // characters of the alphabet, so they are drawn again.
                if byte < 248 && filled < BODY_LEN {
                    text.push(char::from(BASE62[usize::from(byte % 62)]));
                    filled += 1;
                }
            }
        }
        push_checksum(&mut text);
        PlainKey {
            text,
            key_type,
            mode,
        }
    }

    /// Parses and verifies a key string without any I/O.
    ///
    /// # Errors
    /// [`KeyFormatError::Malformed`] for the wrong shape,
    /// [`KeyFormatError::BadChecksum`] for a checksum that does not match.
    pub fn parse(s: &str) -> Result<Self, KeyFormatError> {
        if s.len() != KEY_LEN || !s.is_ascii() {
            return Err(KeyFormatError::Malformed);
        }
        let key_type = match &s[..3] {
            "pk_" => KeyType::Publishable,
            "sk_" => KeyType::Secret,
            _ => return Err(KeyFormatError::Malformed),
        };
        let mode = match &s[3..TAG_LEN] {
            "live_" => Mode::Live,
            "test_" => Mode::Test,
            _ => return Err(KeyFormatError::Malformed),
        };
        let (payload, checksum) = s.split_at(TAG_LEN + BODY_LEN);
        if !s[TAG_LEN..].bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(KeyFormatError::Malformed);
        }
        if checksum.as_bytes() != encode_checksum(payload) {
            return Err(KeyFormatError::BadChecksum);
        }
        Ok(PlainKey {
            text: s.to_owned(),
            key_type,
            mode,
        })
    }

    /// Publishable or secret, from the key's tag.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// Live or test, from the key's tag.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The first 12 characters, such as `sk_live_abc1`: safe to show.
    pub fn prefix(&self) -> &str {
        &self.text[..PREFIX_LEN]
    }

    /// The last 4 characters: safe to show.
    pub fn last_four(&self) -> &str {
        &self.text[KEY_LEN - LAST_FOUR_LEN..]
    }

    /// The full key, borrowed for hashing. Never log or store it.
    pub fn expose_secret(&self) -> &str {
        &self.text
    }

    /// Hands the full key over to be shown once; the `PlainKey` is gone after.
    pub fn into_secret(self) -> String {
        self.text
    }
}

impl fmt::Debug for PlainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlainKey({}…[redacted])", self.prefix())
    }
}

fn push_tag(text: &mut String, key_type: KeyType, mode: Mode) {
    text.push_str(key_type.tag());
    text.push('_');
    text.push_str(mode.as_str());
    text.push('_');
}

fn push_checksum(text: &mut String) {
    let digits = encode_checksum(text);
    for d in digits {
        text.push(char::from(d));
    }
}

/// `text` as an error message may quote it (docs/api.md, "Secrets"): as
/// given, cut to its first 100 characters, or `[redacted]` when it holds key
/// material ([`contains_key_material`]), so that no refusal repeats a key.
pub fn quoted_in_error(text: &str) -> String {
    const SHOWN_CHARS: usize = 100;
    if contains_key_material(text) {
        return "[redacted]".to_owned();
    }
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Whether `text` holds key material anywhere: a well-formed key, or the part
/// of one after its tag, that is 32 base62 characters followed by the 6 of a
/// checksum that matches them under one of the four tags (docs/api.md,
/// "Secrets"). Such text is refused where a key does not belong (names,
/// `Idempotency-Key`, `X-Request-ID`, ...), so that no key is stored, listed
/// or logged by mistake. A random string passes with a chance of about
/// 4 in 62^6 (7 in 10^11) per 38-character window.
pub fn contains_key_material(text: &str) -> bool {
    const TAIL_LEN: usize = BODY_LEN + CHECKSUM_LEN;
    const TAGS: [&str; 4] = ["sk_live_", "sk_test_", "pk_live_", "pk_test_"];
    let bytes = text.as_bytes();
    let mut run = 0;
    for (end, byte) in bytes.iter().enumerate() {
        if !byte.is_ascii_alphanumeric() {
            run = 0;
            continue;
        }
        run += 1;
        if run < TAIL_LEN {
            continue;
        }
        // ASCII alphanumerics only: every index here is a char boundary.
        let start = end + 1 - TAIL_LEN;
        let body = &bytes[start..start + BODY_LEN];
        let checksum = &bytes[start + BODY_LEN..=end];
        let matches = TAGS.iter().any(|tag| {
            let mut crc = crc32fast::Hasher::new();
            crc.update(tag.as_bytes());
            crc.update(body);
            base62_checksum(crc.finalize()) == checksum
        });
        if matches {
            return true;
        }
    }
    false
}

/// CRC-32 (IEEE) of `payload` as 6 base62 digits, most significant first.
fn encode_checksum(payload: &str) -> [u8; CHECKSUM_LEN] {
    base62_checksum(crc32fast::hash(payload.as_bytes()))
}

/// A CRC-32 as 6 base62 digits, most significant first.
fn base62_checksum(crc: u32) -> [u8; CHECKSUM_LEN] {
    let mut value = crc;
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    out
}
