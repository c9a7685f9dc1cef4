//! `POST /v1/secret-scanning/github`: GitHub's secret scanning partner
//! program reports the keys it finds in public code, and every working
//! secret key among them is revoked (docs/secret-scanning.md; docs/api.md,
//! "POST /v1/secret-scanning/github").
//!
//! No `Authorization`: GitHub signs the body instead. The signature is
//! checked before anything in the body is read: ECDSA P-256 with SHA-256
//! over the raw body (`Github-Public-Key-Signature`, base64 DER), under the
//! public key `Github-Public-Key-Identifier` names among
//! [`GithubPublicKeys`], which the operator loads from GitHub's
//! `public_keys` document at start. Without them the route is not served
//! (404, as an unknown route). A batch is a leak report: it shares the
//! reports' bounds (`report_limits.rs`: per client address, and at most a
//! few at once on a node) and their one lookup per report.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use actix_web::http::header::HeaderName;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine as _;
use domain::{FoundToken, LeakSource};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
#[cfg(feature = "openapi")]
use utoipa::ToSchema;

use crate::body::read_json_bytes_up_to;
use crate::error::ApiError;
#[cfg(feature = "openapi")]
use crate::error::ErrorBody;
use crate::rate_limit::FailureLimiter;
use crate::redact::{redact_keys, REDACTED};
use crate::request_id::request_id_of;
use crate::route::routes;
use crate::state::AppState;

routes! {
    /// GitHub's secret scanning reports. No `Authorization`: the body is
    /// signed. Served only with [`GithubPublicKeys`].
    GITHUB = "/v1/secret-scanning/github" { POST github_secret_scanning },
}

/// Most tokens in one batch (CONTRACT: 1,000).
pub const MAX_FOUND_TOKENS: usize = 1_000;

/// Largest batch body: 1 MiB, room for 1,000 tokens with long URLs.
pub const GITHUB_BODY_LIMIT: usize = 1024 * 1024;

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
    fn verify_request(&self, req: &HttpRequest, body: &[u8]) -> Result<(), SignatureError> {
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
fn one_header<'r>(req: &'r HttpRequest, name: &str) -> Result<&'r str, SignatureError> {
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| SignatureError::Missing)?;
    let mut values = req.headers().get_all(name);
    match (values.next(), values.next()) {
        (Some(value), None) => value.to_str().map_err(|_| SignatureError::Missing),
        _ => Err(SignatureError::Missing),
    }
}

/// One token of a batch, as GitHub sends it. Its `Debug` leaves the token
/// out.
#[derive(Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct GithubFoundToken {
    /// The string GitHub found, as found.
    pub token: String,
    /// The token type the pattern was registered under (echoed as
    /// `token_type`).
    #[serde(rename = "type", default)]
    pub token_type: String,
    /// Where it was found: a file at a commit, an issue, a gist, a package.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "https://github.com/octo-org/hello/blob/12345600b9cbe38a219f39a9941c9319b600c002/config.env"
        )
    )]
    pub url: String,
    /// What GitHub scanned (`content`, `commit`, `npm`, ...).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(example = "content"))]
    pub source: String,
}

impl fmt::Debug for GithubFoundToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubFoundToken")
            .field("token", &REDACTED)
            .field("token_type", &self.token_type)
            .field("url", &self.url)
            .field("source", &self.source)
            .finish()
    }
}

/// The verdict on one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TokenLabel {
    /// One of our secret keys, revoked now or before.
    TruePositive,
    /// Anything else: not a key, a mistyped key, an unknown key, a
    /// publishable key (public by design).
    FalsePositive,
}

/// The answer for one token, in the batch's order.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct GithubTokenVerdict {
    /// The SHA-256 of the token, in lowercase hex.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub token_hash: String,
    /// The token's `type`, as sent.
    pub token_type: String,
    /// `true_positive` or `false_positive`.
    pub label: TokenLabel,
}

/// The lowercase hex SHA-256 of `token`.
fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The batch, once its signature holds: a JSON array of at most
/// [`MAX_FOUND_TOKENS`] tokens.
fn parse_batch(body: &[u8]) -> Result<Vec<GithubFoundToken>, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid_json(format!(
            "the request body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let serde_json::Value::Array(entries) = value else {
        return Err(ApiError::invalid_json(
            "the request body must be a JSON array of found tokens",
        ));
    };
    if entries.len() > MAX_FOUND_TOKENS {
        return Err(ApiError::new(
            crate::error::ErrorCode::InvalidParameter,
            format!("a batch holds at most {MAX_FOUND_TOKENS} tokens"),
        ));
    }
    entries
        .into_iter()
        .map(serde_json::from_value::<GithubFoundToken>)
        .collect::<Result<_, _>>()
        .map_err(|_| {
            ApiError::invalid_parameter(
                "token",
                "each entry must be an object with a string `token` (and string `type`, `url`, `source`)",
            )
        })
}

/// Report keys GitHub found in public code: every active secret key among
/// them is revoked.
///
/// No `Authorization`: the body must carry GitHub's signature. 200 with one
/// verdict per token, in order, once the revocations are committed (each
/// writing `api_key.revoked` with actor `leak_report`, `data.source`
/// `github` and `data.url`). 404 while the service has no GitHub public
/// keys.
#[cfg_attr(
    feature = "openapi",
    utoipa::path(
        post,
        path = GITHUB.path,
        tag = "secret-scanning",
        operation_id = "github_secret_scanning",
        params(
            ("Github-Public-Key-Identifier" = String, Header, description = "The identifier of the GitHub key that signed the body (`key_identifier` in GitHub's `public_keys`)."),
            ("Github-Public-Key-Signature" = String, Header, description = "Base64 of the ECDSA P-256 SHA-256 signature of the raw body, in DER."),
        ),
        request_body(content = Vec<GithubFoundToken>, content_type = "application/json",
            description = "1 to 1,000 tokens GitHub found (an empty array is answered with one)."),
        responses(
            (status = 200, description = "One verdict per token, in order; the revocations are committed.", body = Vec<GithubTokenVerdict>),
            (status = 400, description = "`invalid_json` (not a JSON array), `invalid_parameter` (more than 1,000 tokens, or an entry without a string `token`).", body = ErrorBody),
            (status = 401, description = "`invalid_signature`: a signature header missing or sent twice, an unknown key identifier, or a signature that does not match the body. Nothing changes.", body = ErrorBody),
            (status = 404, description = "`not_found`: the service has no GitHub public keys (`APIKEYS_GITHUB_PUBLIC_KEYS_FILE` unset).", body = ErrorBody),
            (status = 408, description = "`request_timeout`.", body = ErrorBody),
            (status = 413, description = "`payload_too_large`: a body over 1 MiB.", body = ErrorBody),
            (status = 415, description = "`unsupported_media_type`: not `application/json`, or a `Content-Encoding` other than `identity`.", body = ErrorBody),
            (status = 429, description = "`too_many_requests`: too many reports, or failed authentications, from this address.", body = ErrorBody,
                headers(("Retry-After" = String, description = "Seconds until the address is admitted again."))),
            crate::openapi::responses::Unavailable,
        ),
    )
)]
pub(crate) async fn github_secret_scanning(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let Some(keys) = state.github_keys.clone() else {
        return Err(ApiError::route_not_found());
    };
    // Bounded as leak reports are: the address's failures and reports, then
    // the body (at most 1 MiB, within the body timeout), then the signature.
    let limiter = req.app_data::<web::Data<FailureLimiter>>().cloned();
    let client = limiter.as_ref().map(|l| l.admit(&req)).transpose()?;
    let gate = Arc::clone(&state.leak_reports);
    gate.admit(&req)?;
    // A failed signature is a failed authentication like a bad key
    // (docs/api.md, "Abuse limits"): counted against the address.
    let refuse = |e: SignatureError| {
        let too_many = limiter
            .as_ref()
            .zip(client)
            .and_then(|(limiter, client)| limiter.failed(client));
        too_many.unwrap_or_else(|| ApiError::invalid_signature().with_source(e))
    };
    // Without both headers there is nothing to verify the body with: it is
    // not read.
    if let Err(e) =
        one_header(&req, KEY_IDENTIFIER_HEADER).and_then(|_| one_header(&req, SIGNATURE_HEADER))
    {
        return Err(refuse(e));
    }
    let body = read_json_bytes_up_to(&req, payload, GITHUB_BODY_LIMIT).await?;
    keys.verify_request(&req, &body).map_err(refuse)?;
    let batch = parse_batch(&body)?;
    drop(body);
    let verdict_parts: Vec<(String, String)> = batch
        .iter()
        .map(|found| (token_hash(&found.token), found.token_type.clone()))
        .collect();
    let found: Vec<FoundToken> = batch
        .into_iter()
        .map(|found| FoundToken {
            // A URL holding a key would put it in the event: it is redacted.
            url: redact_keys(&found.url).into_owned(),
            token: found.token,
        })
        .collect();
    let place = gate.enter()?;
    let service = state.service().clone();
    let request_id = request_id_of(&req);
    let report = state
        .storage(move || {
            let _place = place;
            service.revoke_found(request_id, LeakSource::GitHub, &found)
        })
        .await??;
    tracing::info!(
        tokens = report.ours.len(),
        ours = report.ours.iter().filter(|ours| **ours).count(),
        revoked = report.revoked,
        "GitHub secret scanning batch processed"
    );
    let verdicts: Vec<GithubTokenVerdict> = verdict_parts
        .into_iter()
        .zip(report.ours)
        .map(|((token_hash, token_type), ours)| GithubTokenVerdict {
            token_hash,
            token_type,
            label: if ours {
                TokenLabel::TruePositive
            } else {
                TokenLabel::FalsePositive
            },
        })
        .collect();
    Ok(HttpResponse::Ok().json(verdicts))
}
