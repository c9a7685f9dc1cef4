//! Safe retries: `Idempotency-Key` (docs/api.md, "Idempotent requests").
//!
//! A create or a rotation sent with an idempotency key is recorded in the
//! same transaction as the change it made: the record holds a fingerprint of
//! the request and the response the client got, sealed, because that response
//! holds the full key. A repeat within [`IDEMPOTENCY_WINDOW`] with the same
//! request gets that response again and changes nothing; with another request
//! it is refused. Because record and change commit together, a crash between
//! them cannot leave a record of a change that did not happen, nor a change
//! that a retry would make a second time.
//!
//! The response is the adapter's ([`Replayable`]): the domain seals and opens
//! it as opaque bytes. The seal is AES-256-GCM under a key derived from the
//! [`HashKey`] with HKDF ([`ResponseSealer`]), with a nonce from the
//! [`SecretSource`], bound to the record's scope, idempotency key and
//! fingerprint, so a row copied onto another record does not open.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};
use thiserror::Error;
use time::{Duration, OffsetDateTime};

use crate::duration::GracePeriod;
use crate::hashing::HashKey;
use crate::ids::{KeyId, TenantId};
use crate::key_string::contains_key_material;
use crate::random::SecretSource;
use crate::requests::CreateKey;

/// How long a request's record answers its repeats: 24 hours.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::hours(24);

/// Longest idempotency key, in characters.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The HKDF label of the response-sealing key. Fixed: changing it makes
/// every stored response unreadable, as changing the hash key does.
const SEALING_LABEL: &[u8] = b"apikeys idempotent-response AES-256-GCM v1";

/// AES-GCM's 96-bit nonce, stored in front of the ciphertext.
const NONCE_LEN: usize = 12;

/// A client's `Idempotency-Key`: 1 to 255 printable ASCII characters
/// (`' '` to `'~'`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// Why an idempotency key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum IdempotencyKeyError {
    /// Empty.
    #[error("`Idempotency-Key` must not be empty")]
    Empty,
    /// Over [`MAX_IDEMPOTENCY_KEY_LEN`] characters.
    #[error("`Idempotency-Key` must be at most 255 characters")]
    TooLong,
    /// A character outside printable ASCII.
    #[error("`Idempotency-Key` must be printable ASCII")]
    NotPrintable,
    /// It holds an API key, or a key's part after its tag: the header is
    /// stored in clear for 24 hours.
    #[error("`Idempotency-Key` must not contain an API key: it is stored in clear")]
    ContainsKey,
}

impl IdempotencyKey {
    /// Checks `raw` (as the header carried it).
    ///
    /// # Errors
    /// [`IdempotencyKeyError`].
    pub fn parse(raw: &str) -> Result<Self, IdempotencyKeyError> {
        if raw.is_empty() {
            return Err(IdempotencyKeyError::Empty);
        }
        if !raw.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            return Err(IdempotencyKeyError::NotPrintable);
        }
        if raw.len() > MAX_IDEMPOTENCY_KEY_LEN {
            return Err(IdempotencyKeyError::TooLong);
        }
        if contains_key_material(raw) {
            return Err(IdempotencyKeyError::ContainsKey);
        }
        Ok(IdempotencyKey(raw.to_owned()))
    }

    /// The key as the client sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({:?})", self.0)
    }
}

/// Whose idempotency keys these are: one calling key of one tenant. Two
/// callers may use the same idempotency key without meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdempotencyScope {
    /// The caller's tenant.
    pub tenant_id: TenantId,
    /// The calling key.
    pub caller: KeyId,
}

/// SHA-256 of a request as the use case understood it: the operation and
/// every validated field. Two bodies that mean the same request (other
/// whitespace, other field order, `90d` and `7776000s`) have one fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestFingerprint([u8; 32]);

impl RequestFingerprint {
    /// A fingerprint from its stored bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        RequestFingerprint(bytes)
    }

    /// The 32 bytes to store.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Of a creation.
    pub fn of_create(request: &CreateKey) -> Self {
        let mut text = String::from("create");
        for field in [
            request.name.as_str(),
            request.key_type.as_str(),
            request.mode.map_or("-", |m| m.as_str()),
        ] {
            push_field(&mut text, field);
        }
        let scopes: Vec<&str> = request.scopes.names().collect();
        push_field(&mut text, &scopes.join(","));
        let expires = request
            .expires_in
            .map_or_else(|| "-".to_owned(), |e| e.get().whole_seconds().to_string());
        push_field(&mut text, &expires);
        // Only when given, so that a request without them keeps the
        // fingerprint it always had.
        let restrictions = &request.restrictions;
        if !restrictions.is_unrestricted() || !request.metadata.is_empty() {
            let ips = restrictions.allowed_ips.as_ref().map_or_else(
                || "-".to_owned(),
                |ips| {
                    let blocks: Vec<String> =
                        ips.blocks().iter().map(ToString::to_string).collect();
                    blocks.join(",")
                },
            );
            push_field(&mut text, &ips);
            let origins = restrictions.allowed_origins.as_ref().map_or_else(
                || "-".to_owned(),
                |o| o.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(","),
            );
            push_field(&mut text, &origins);
            let mut metadata = String::new();
            for (key, value) in request.metadata.iter() {
                push_field(&mut metadata, key);
                push_field(&mut metadata, value);
            }
            push_field(&mut text, &metadata);
        }
        Self::of_text(&text)
    }

    /// Of a rotation of `id` with `grace`.
    pub fn of_rotate(id: &KeyId, grace: GracePeriod) -> Self {
        let mut text = String::from("rotate");
        push_field(&mut text, &id.to_string());
        push_field(&mut text, &grace.get().whole_seconds().to_string());
        Self::of_text(&text)
    }

    fn of_text(text: &str) -> Self {
        RequestFingerprint(Sha256::digest(text.as_bytes()).into())
    }
}

/// Appends one field, length-prefixed so that no two field lists can make
/// the same text.
fn push_field(text: &mut String, field: &str) {
    text.push('\n');
    text.push_str(&field.len().to_string());
    text.push(':');
    text.push_str(field);
}

impl fmt::Debug for RequestFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RequestFingerprint(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…)")
    }
}

/// A response as the adapter that answered rendered it: what a repeat gets
/// again, byte for byte. The domain keeps it only as the bytes it seals; the
/// adapter owns its shape (the HTTP adapter's holds a status, headers and a
/// body).
pub trait Replayable: Sized {
    /// The bytes to seal and store.
    fn to_bytes(&self) -> Vec<u8>;

    /// The response again, from what [`to_bytes`](Self::to_bytes) made;
    /// `None` if `bytes` are not such bytes.
    fn from_bytes(bytes: &[u8]) -> Option<Self>;
}

/// Bytes as they are: for an adapter whose response is already bytes.
impl Replayable for Vec<u8> {
    fn to_bytes(&self) -> Vec<u8> {
        self.clone()
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(bytes.to_vec())
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Every part is far below 4 GiB (bodies are a few hundred bytes).
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// A sealed response ([`Replayable::to_bytes`]): nonce, then AES-256-GCM
/// ciphertext and tag. This is what the database holds.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedResponse(Vec<u8>);

impl SealedResponse {
    /// From its stored bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        SealedResponse(bytes)
    }

    /// The bytes to store.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SealedResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedResponse([{} bytes])", self.0.len())
    }
}

/// A stored response could not be opened: the hash key changed since it was
/// sealed, or the row was altered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("a stored idempotent response could not be opened (was the hash key changed?)")]
pub struct UnsealError;

/// Seals and opens stored responses under a key derived once from the hash
/// key. `Debug` is redacted.
#[derive(Clone)]
pub struct ResponseSealer {
    cipher: Aes256Gcm,
}

impl fmt::Debug for ResponseSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseSealer([redacted])")
    }
}

impl ResponseSealer {
    /// The sealer of responses under `hash_key`.
    pub fn new(hash_key: &HashKey) -> Self {
        let key = hash_key.derive_key(SEALING_LABEL);
        ResponseSealer {
            cipher: Aes256Gcm::new(&key.into()),
        }
    }

    /// Seals the bytes of a response for the record it belongs to, under a
    /// nonce drawn from `secrets`.
    pub fn seal(
        &self,
        record: &RecordBinding<'_>,
        plain: &[u8],
        secrets: &dyn SecretSource,
    ) -> SealedResponse {
        let mut nonce = [0u8; NONCE_LEN];
        secrets.fill(&mut nonce);
        let aad = record.aad();
        // Encryption fails only for inputs over AES-GCM's 64 GiB bound.
        #[allow(clippy::expect_used)]
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .expect("a response far below AES-GCM's length bound");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        SealedResponse(out)
    }

    /// Opens what [`seal`](Self::seal) sealed for the same record.
    ///
    /// # Errors
    /// [`UnsealError`] when the key or the record differs, or the bytes were
    /// altered.
    pub fn open(
        &self,
        record: &RecordBinding<'_>,
        sealed: &SealedResponse,
    ) -> Result<Vec<u8>, UnsealError> {
        if sealed.0.len() < NONCE_LEN {
            return Err(UnsealError);
        }
        let (nonce, ciphertext) = sealed.0.split_at(NONCE_LEN);
        let aad = record.aad();
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| UnsealError)
    }
}

/// What a sealed response is bound to: its record's scope, key and
/// fingerprint (the AEAD's associated data).
#[derive(Debug, Clone, Copy)]
pub struct RecordBinding<'a> {
    /// The scope.
    pub scope: &'a IdempotencyScope,
    /// The idempotency key.
    pub key: &'a IdempotencyKey,
    /// The request's fingerprint.
    pub fingerprint: &'a RequestFingerprint,
}

impl RecordBinding<'_> {
    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(96 + self.key.0.len());
        put_bytes(&mut aad, self.scope.tenant_id.to_string().as_bytes());
        put_bytes(&mut aad, self.scope.caller.to_string().as_bytes());
        put_bytes(&mut aad, self.key.0.as_bytes());
        aad.extend_from_slice(&self.fingerprint.0);
        aad
    }
}

/// A completed idempotent request, as stored with its change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// Whose.
    pub scope: IdempotencyScope,
    /// The client's key.
    pub key: IdempotencyKey,
    /// What was asked.
    pub fingerprint: RequestFingerprint,
    /// What was answered, sealed.
    pub response: SealedResponse,
    /// When (the change's time).
    pub created_at: OffsetDateTime,
    /// When it stops answering repeats: [`IDEMPOTENCY_WINDOW`] later.
    pub expires_at: OffsetDateTime,
}

impl IdempotencyRecord {
    /// What its response is bound to.
    pub fn binding(&self) -> RecordBinding<'_> {
        RecordBinding {
            scope: &self.scope,
            key: &self.key,
            fingerprint: &self.fingerprint,
        }
    }
}

/// The answer to an idempotent request: the adapter's response to send, and
/// whether it is a repeat's (send `Idempotent-Replayed: true`). Its `Debug`
/// leaves the response out: it holds a full key (docs/api.md, "Secrets").
#[derive(Clone, PartialEq, Eq)]
pub struct IdempotentResponse<R> {
    /// The response, the first request's when `replayed`.
    pub response: R,
    /// Whether this is a replay of an earlier request's response.
    pub replayed: bool,
}

impl<R> fmt::Debug for IdempotentResponse<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotentResponse")
            .field("response", &format_args!("[redacted]"))
            .field("replayed", &self.replayed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::SeqSecretSource;

    fn sealer() -> ResponseSealer {
        ResponseSealer::new(&HashKey::from_bytes(&[7; 32]).expect("32 bytes"))
    }

    fn scope() -> IdempotencyScope {
        IdempotencyScope {
            tenant_id: TenantId::parse("tnt_01J9ZQ3V6X8R2M4N5P7Q9S1T3W").expect("id"),
            caller: KeyId::parse("key_01J9ZQ3V6X8R2M4N5P7Q9S1T3W").expect("id"),
        }
    }

    fn response() -> Vec<u8> {
        br#"{"key":"sk_live_secret"}"#.to_vec()
    }

    #[test]
    fn keys_are_printable_ascii_of_1_to_255_characters() {
        assert_eq!(IdempotencyKey::parse(""), Err(IdempotencyKeyError::Empty));
        assert_eq!(
            IdempotencyKey::parse("a\u{7f}"),
            Err(IdempotencyKeyError::NotPrintable)
        );
        assert_eq!(
            IdempotencyKey::parse("é"),
            Err(IdempotencyKeyError::NotPrintable)
        );
        assert_eq!(
            IdempotencyKey::parse("a\tb"),
            Err(IdempotencyKeyError::NotPrintable)
        );
        assert_eq!(
            IdempotencyKey::parse(&"x".repeat(256)),
            Err(IdempotencyKeyError::TooLong)
        );
        let longest = "~".repeat(255);
        assert_eq!(
            IdempotencyKey::parse(&longest).map(|k| k.as_str().len()),
            Ok(255)
        );
        assert_eq!(
            IdempotencyKey::parse(" a b ").map(|k| k.as_str().to_owned()),
            Ok(" a b ".to_owned())
        );
    }

    #[test]
    fn a_sealed_response_opens_for_its_own_record_only() {
        let key = IdempotencyKey::parse("retry-1").expect("key");
        let fingerprint = RequestFingerprint::of_text("a");
        let scope = scope();
        let binding = RecordBinding {
            scope: &scope,
            key: &key,
            fingerprint: &fingerprint,
        };
        let secrets = SeqSecretSource::new(5);
        let sealed = sealer().seal(&binding, &response(), &secrets);
        assert_eq!(sealer().open(&binding, &sealed), Ok(response()));

        // The body is not in the sealed bytes.
        assert!(!sealed
            .as_bytes()
            .windows(b"sk_live_secret".len())
            .any(|w| w == b"sk_live_secret"));
        // Another record, another hash key, altered bytes: refused.
        let other_key = IdempotencyKey::parse("retry-2").expect("key");
        let other = RecordBinding {
            key: &other_key,
            ..binding
        };
        assert_eq!(sealer().open(&other, &sealed), Err(UnsealError));
        let rotated = ResponseSealer::new(&HashKey::from_bytes(&[8; 32]).expect("32 bytes"));
        assert_eq!(rotated.open(&binding, &sealed), Err(UnsealError));
        let mut altered = sealed.as_bytes().to_vec();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(
            sealer().open(&binding, &SealedResponse::from_bytes(altered)),
            Err(UnsealError)
        );
        // Two seals of one response differ (fresh nonces).
        assert_ne!(sealer().seal(&binding, &response(), &secrets), sealed);
    }

    #[test]
    fn fingerprints_tell_requests_apart_and_not_their_spelling() {
        let a = RequestFingerprint::of_text("create\n1:a");
        assert_eq!(a, RequestFingerprint::of_text("create\n1:a"));
        assert_ne!(a, RequestFingerprint::of_text("create\n1:b"));
        let mut one = String::new();
        push_field(&mut one, "a\n1:b");
        let mut two = String::new();
        push_field(&mut two, "a");
        push_field(&mut two, "b");
        assert_ne!(one, two);
    }

    #[test]
    fn debug_shows_no_response() {
        let answer = IdempotentResponse {
            response: String::from("sk_live_secret"),
            replayed: true,
        };
        assert_eq!(
            format!("{answer:?}"),
            "IdempotentResponse { response: [redacted], replayed: true }"
        );
    }
}
