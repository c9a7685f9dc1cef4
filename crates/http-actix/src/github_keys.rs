//! GitHub's secret scanning public keys and the signatures they check
//! (docs/secret-scanning.md): ECDSA P-256 with SHA-256 over the raw body,
//! with RustCrypto's `p256`. Pure: the document is read by whoever builds
//! the state, once.

use std::collections::HashMap;
use std::fmt;

use actix_web::http::header::HeaderName;
use actix_web::HttpRequest;
use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use serde::Deserialize;

/// The header naming the key that signed the body.
pub const KEY_IDENTIFIER_HEADER: &str = "Github-Public-Key-Identifier";
/// The header holding the signature: base64 of an ECDSA P-256 SHA-256
/// signature in DER.
pub const SIGNATURE_HEADER: &str = "Github-Public-Key-Signature";

/// GitHub's public keys for secret scanning, by identifier: the document
/// `https://api.github.com/meta/public_keys/secret_scanning` serves
/// (`{"public_keys": [{"key_identifier", "key", "is_current"}]}`, each key a
/// PEM `PUBLIC KEY`). Every key listed is accepted, current or not: GitHub
/// names the one it signed with. Read once, at start
/// (`APIKEYS_GITHUB_PUBLIC_KEYS_FILE`, docs/secret-scanning.md).
#[derive(Clone)]
pub struct GithubPublicKeys {
    keys: HashMap<String, VerifyingKey>,
}

/// Why a `public_keys` document cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GithubKeysError {
    /// Not JSON of GitHub's shape.
    #[error("not GitHub's public_keys document: {0}")]
    Shape(String),
    /// It lists no key.
    #[error("the public_keys document lists no key")]
    Empty,
    /// An identifier is listed twice.
    #[error("the key identifier {0:?} is listed twice")]
    Duplicate(String),
    /// A key is not a PEM P-256 public key.
    #[error("the key {0:?} is not a PEM-encoded P-256 public key (SPKI)")]
    Key(String),
}

/// Why a batch's signature is refused (logged, never shown: every case is
/// 401 `invalid_signature`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A header is missing, sent twice or not text.
    #[error("missing or repeated signature header")]
    Missing,
    /// No key has this identifier.
    #[error("unknown key identifier")]
    UnknownKey,
    /// Not base64 of a DER signature.
    #[error("malformed signature")]
    Malformed,
    /// Does not match the body under that key.
    #[error("signature does not match the body")]
    Mismatch,
}

#[derive(Deserialize)]
struct PublicKeysDocument {
    public_keys: Vec<PublicKeyEntry>,
}

#[derive(Deserialize)]
struct PublicKeyEntry {
    key_identifier: String,
    key: String,
    #[serde(default)]
    #[allow(dead_code, reason = "every listed key is accepted, current or not")]
    is_current: bool,
}

impl GithubPublicKeys {
    /// The keys of a `public_keys` document.
    ///
    /// # Errors
    /// [`GithubKeysError`]: not that shape, no key, an identifier twice, or a
    /// key that is not a P-256 public key in PEM.
    pub fn from_json(document: &str) -> Result<Self, GithubKeysError> {
        let document: PublicKeysDocument =
            serde_json::from_str(document).map_err(|e| GithubKeysError::Shape(e.to_string()))?;
        if document.public_keys.is_empty() {
            return Err(GithubKeysError::Empty);
        }
        let mut keys = HashMap::with_capacity(document.public_keys.len());
        for entry in document.public_keys {
            let key = VerifyingKey::from_public_key_pem(entry.key.trim())
                .map_err(|_| GithubKeysError::Key(entry.key_identifier.clone()))?;
            if keys.insert(entry.key_identifier.clone(), key).is_some() {
                return Err(GithubKeysError::Duplicate(entry.key_identifier));
            }
        }
        Ok(GithubPublicKeys { keys })
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is none (never, for keys read by [`Self::from_json`]).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks `signature` (base64 DER) over `body` under the key named
    /// `identifier`.
    ///
    /// # Errors
    /// [`SignatureError`].
    pub fn verify(
        &self,
        identifier: &str,
        signature: &str,
        body: &[u8],
    ) -> Result<(), SignatureError> {
        let key = self
            .keys
            .get(identifier)
            .ok_or(SignatureError::UnknownKey)?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| SignatureError::Malformed)?;
        let signature = Signature::from_der(&der).map_err(|_| SignatureError::Malformed)?;
        key.verify(body, &signature)
            .map_err(|_| SignatureError::Mismatch)
    }

    /// [`Self::verify`] with the signature headers of `req`.
    pub(crate) fn verify_request(
        &self,
        req: &HttpRequest,
        body: &[u8],
    ) -> Result<(), SignatureError> {
        let identifier = one_header(req, KEY_IDENTIFIER_HEADER)?;
        let signature = one_header(req, SIGNATURE_HEADER)?;
        self.verify(identifier, signature, body)
    }
}

impl fmt::Debug for GithubPublicKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut identifiers: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        identifiers.sort_unstable();
        f.debug_struct("GithubPublicKeys")
            .field("identifiers", &identifiers)
            .finish()
    }
}

/// The value of header `name`, sent exactly once, as text.
pub(crate) fn one_header<'r>(req: &'r HttpRequest, name: &str) -> Result<&'r str, SignatureError> {
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| SignatureError::Missing)?;
    let mut values = req.headers().get_all(name);
    match (values.next(), values.next()) {
        (Some(value), None) => value.to_str().map_err(|_| SignatureError::Missing),
        _ => Err(SignatureError::Missing),
    }
}
