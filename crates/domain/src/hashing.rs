//! HMAC-SHA256 of full keys under a server secret (docs/api.md, "Key strings").
//!
//! The database holds only `HMAC(hash key, full key)`; the hash key never
//! reaches it, so a stolen database yields neither keys nor a way to test
//! guesses offline.

use std::fmt;

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use crate::key_string::PlainKey;

/// Shortest accepted hash key, in bytes.
pub const MIN_HASH_KEY_BYTES: usize = 32;

/// Why a hash key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HashKeyError {
    /// Fewer than [`MIN_HASH_KEY_BYTES`] bytes.
    #[error("the hash key must be at least 32 bytes (64 hex characters)")]
    TooShort,
    /// Not an even number of hex digits (a sign or space included).
    #[error("the hash key must be hex")]
    NotHex,
}

/// The server secret that keys are hashed with. `Debug` is redacted.
#[derive(Clone)]
pub struct HashKey {
    // Keyed once: every hash clones this state instead of re-deriving the
    // HMAC pads from the key, which is the per-request work done once.
    mac: Hmac<Sha256>,
    // HKDF-Extract of the hash key, for keys derived from it under a label
    // (the idempotent-response sealing key): one secret to configure.
    derived: Hkdf<Sha256>,
}

impl HashKey {
    /// From raw bytes.
    ///
    /// # Errors
    /// [`HashKeyError::TooShort`] under 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HashKeyError> {
        if bytes.len() < MIN_HASH_KEY_BYTES {
            return Err(HashKeyError::TooShort);
        }
        let mac = Hmac::<Sha256>::new_from_slice(bytes).map_err(|_| HashKeyError::TooShort)?;
        Ok(HashKey {
            mac,
            derived: Hkdf::<Sha256>::new(None, bytes),
        })
    }

    /// From hex, as `APIKEYS_HASH_KEY` holds it (upper or lower case).
    ///
    /// # Errors
    /// [`HashKeyError::NotHex`] or [`HashKeyError::TooShort`].
    pub fn from_hex(hex: &str) -> Result<Self, HashKeyError> {
        let bytes = hex::decode(hex.trim()).map_err(|_| HashKeyError::NotHex)?;
        Self::from_bytes(&bytes)
    }

    /// A 256-bit key derived from the hash key with HKDF-SHA256 under
    /// `label`: a new hash key derives new keys, and no derived key reveals
    /// the hash key.
    pub(crate) fn derive_key(&self, label: &[u8]) -> [u8; 32] {
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte bound.
        #[allow(clippy::expect_used)]
        self.derived
            .expand(label, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 length");
        key
    }

    /// The verifier of this hash key under `salt`, for the database to keep
    /// so that a process started with another hash key is refused
    /// (docs/api.md, "The hash key").
    pub fn verifier(&self, salt: [u8; VERIFIER_SALT_BYTES]) -> HashKeyVerifier {
        HashKeyVerifier {
            salt,
            tag: self.verifier_mac(&salt).finalize().into_bytes().into(),
        }
    }

    /// Whether `verifier` was made from this hash key (compared in constant
    /// time).
    pub fn is_verified_by(&self, verifier: &HashKeyVerifier) -> bool {
        self.verifier_mac(&verifier.salt)
            .verify_slice(&verifier.tag)
            .is_ok()
    }

    // HMAC(hash key, label || salt): the label starts with no key prefix, so
    // a verifier is never the hash of a key.
    fn verifier_mac(&self, salt: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(VERIFIER_LABEL);
        mac.update(salt);
        mac
    }

    /// The hash that the repository stores and looks keys up by.
    pub fn hash(&self, key: &PlainKey) -> KeyHash {
        let mut mac = self.mac.clone();
        mac.update(key.expose_secret().as_bytes());
        KeyHash(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey([redacted])")
    }
}

/// Bytes of a [`HashKeyVerifier`]'s salt.
pub const VERIFIER_SALT_BYTES: usize = 16;

const VERIFIER_LABEL: &[u8] = b"apikeys hash-key verifier v1\0";

/// What a database keeps to recognise the hash key its keys were hashed
/// with: a random salt and HMAC-SHA256 of a fixed label and the salt under
/// the hash key. It tells whether a hash key is the right one and nothing
/// more: testing a guessed hash key against it is no easier than against
/// any stored key hash with a key of one's own, and a hash key is 32 random
/// bytes. `Debug` shows neither part.
#[derive(Clone, PartialEq, Eq)]
pub struct HashKeyVerifier {
    salt: [u8; VERIFIER_SALT_BYTES],
    tag: [u8; 32],
}

impl HashKeyVerifier {
    /// A verifier as stored: `None` unless the salt is 16 bytes and the tag 32.
    pub fn from_parts(salt: &[u8], tag: &[u8]) -> Option<Self> {
        Some(HashKeyVerifier {
            salt: salt.try_into().ok()?,
            tag: tag.try_into().ok()?,
        })
    }

    /// The salt, to store.
    pub fn salt(&self) -> &[u8; VERIFIER_SALT_BYTES] {
        &self.salt
    }

    /// The tag, to store.
    pub fn tag(&self) -> &[u8; 32] {
        &self.tag
    }
}

impl fmt::Debug for HashKeyVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKeyVerifier([redacted])")
    }
}

/// HMAC-SHA256 of a full key. `Debug` is redacted: a hash is not to be logged
/// either (docs/api.md, "Secrets").
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// The 32 bytes, to store or look up.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHash([redacted])")
    }
}

#[cfg(test)]
mod verifier_tests {
    use super::*;

    #[test]
    fn a_verifier_recognises_its_hash_key_only() {
        let key = HashKey::from_bytes(&[7; 32]).unwrap();
        let other = HashKey::from_bytes(&[8; 32]).unwrap();
        let verifier = key.verifier([1; VERIFIER_SALT_BYTES]);

        assert!(key.is_verified_by(&verifier));
        assert!(!other.is_verified_by(&verifier));
        // The salt counts: the same key under another salt gives another tag.
        assert_ne!(key.verifier([2; VERIFIER_SALT_BYTES]), verifier);
        let stored = HashKeyVerifier::from_parts(verifier.salt(), verifier.tag()).unwrap();
        assert!(key.is_verified_by(&stored));
        assert!(HashKeyVerifier::from_parts(&[1; 15], verifier.tag()).is_none());
        assert_eq!(format!("{verifier:?}"), "HashKeyVerifier([redacted])");
    }
}
