//! Webhooks of key events (docs/webhooks.md): endpoints, their signing
//! secrets (sealed at rest), the URL and address rules, Standard Webhooks
//! signatures, deliveries and their retry schedule.
//!
//! Everything here is pure: the delivery worker (in `composition`) resolves
//! names and sends requests, and asks [`forbidden_address`] and
//! [`next_attempt_after`] what to do.

use std::fmt;
use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use ipnet::IpNet;
use sha2::Sha256;
use thiserror::Error;
use time::{Duration, OffsetDateTime};

use crate::events::EventType;
use crate::hashing::HashKey;
use crate::idempotency::{Sealer, UnsealError};
use crate::ids::{DeliveryId, EndpointId, EventId, TenantId};
use crate::key_kind::Mode;
use crate::random::SecretSource;

/// Most endpoints a tenant may have in each mode.
pub const MAX_ENDPOINTS: u32 = 20;

/// How long the secret before a rotation keeps signing: 24 hours.
pub const SECRET_OVERLAP: Duration = Duration::hours(24);

/// The waits before the second to eighth attempts of a delivery; after the
/// eighth failure the delivery is `failed`.
pub const RETRY_SCHEDULE: [Duration; 7] = [
    Duration::seconds(5),
    Duration::minutes(5),
    Duration::minutes(30),
    Duration::hours(2),
    Duration::hours(5),
    Duration::hours(10),
    Duration::hours(10),
];

/// An endpoint whose attempts all failed for this long is disabled.
pub const DISABLE_AFTER: Duration = Duration::days(5);

/// `api_key.expiring` comes this long before `expires_at`.
pub const EXPIRING_NOTICE: Duration = Duration::days(7);

/// How long one attempt may take, connection to last byte read.
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Most bytes of a receiver's response that are read.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Longest URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;

/// The HKDF label of the secret-sealing key. Fixed: changing it makes every
/// stored secret unreadable.
const SECRET_LABEL: &[u8] = b"apikeys webhook-secret AES-256-GCM v1";

/// The prefix of a secret as shown to its owner.
pub const SECRET_PREFIX: &str = "whsec_";

/// A signing secret: 32 random bytes. Shown once as `whsec_` + base64;
/// `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret([u8; 32]);

impl WebhookSecret {
    /// A new secret from `secrets`.
    pub fn generate(secrets: &dyn SecretSource) -> Self {
        let mut bytes = [0u8; 32];
        secrets.fill(&mut bytes);
        WebhookSecret(bytes)
    }

    /// The secret's bytes, the HMAC key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `whsec_` + base64 of the bytes: what its owner is shown, once.
    pub fn reveal(&self) -> String {
        format!("{SECRET_PREFIX}{}", BASE64.encode(self.0))
    }

    /// The `v1,` signature of a message (Standard Webhooks): base64 of
    /// HMAC-SHA256 over `{msg_id}.{timestamp}.{body}`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes keys of any length.
        #[allow(clippy::expect_used)]
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

/// The `webhook-signature` header: one signature per secret, space-separated.
pub fn signature_header(
    secrets: &[WebhookSecret],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|s| s.sign(msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A sealed secret as stored: nonce, then AES-256-GCM ciphertext and tag.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret(Vec<u8>);

impl SealedSecret {
    /// From its stored bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        SealedSecret(bytes)
    }

    /// The bytes to store.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedSecret([{} bytes])", self.0.len())
    }
}

/// Seals secrets for storage, bound to their endpoint's id, under a key
/// derived from the hash key (as idempotent responses are, docs/api.md,
/// "Idempotent requests"). `Debug` is redacted.
#[derive(Clone)]
pub struct SecretSealer(Sealer);

impl fmt::Debug for SecretSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretSealer([redacted])")
    }
}

impl SecretSealer {
    /// The sealer under `hash_key`.
    pub fn new(hash_key: &HashKey) -> Self {
        SecretSealer(Sealer::new(hash_key, SECRET_LABEL))
    }

    /// Seals `secret` for endpoint `id`.
    pub fn seal(
        &self,
        id: &EndpointId,
        secret: &WebhookSecret,
        secrets: &dyn SecretSource,
    ) -> SealedSecret {
        SealedSecret(self.0.seal(id.to_string().as_bytes(), &secret.0, secrets))
    }

    /// Opens a secret sealed for endpoint `id`.
    ///
    /// # Errors
    /// [`UnsealError`] when the hash key or the endpoint differs, or the bytes
    /// were altered.
    pub fn open(
        &self,
        id: &EndpointId,
        sealed: &SealedSecret,
    ) -> Result<WebhookSecret, UnsealError> {
        let plain = self.0.open(id.to_string().as_bytes(), &sealed.0)?;
        plain.try_into().map(WebhookSecret).map_err(|_| UnsealError)
    }
}

/// Which events an endpoint receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    /// `["*"]`: every type.
    All,
    /// These types (distinct, in [`EventType::ALL`] order).
    Types(Vec<EventType>),
}

/// Why a value of an endpoint was refused; the `param` is the field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct InvalidField {
    /// The field (`url`, `events`, `description`).
    pub param: &'static str,
    /// What is wrong.
    pub message: String,
}

fn invalid(param: &'static str, message: impl Into<String>) -> InvalidField {
    InvalidField {
        param,
        message: message.into(),
    }
}

impl EventFilter {
    /// `["*"]` or one or more event types, each at most once.
    ///
    /// # Errors
    /// [`InvalidField`] (`events`) for an empty list, an unknown type, `*`
    /// with types, or a repeated type.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, InvalidField> {
        if names.is_empty() {
            return Err(invalid(
                "events",
                "`events` must list at least one event type, or `*`",
            ));
        }
        if names.len() == 1 && names[0].as_ref() == "*" {
            return Ok(EventFilter::All);
        }
        let mut types = Vec::new();
        for name in names {
            let name = name.as_ref();
            if name == "*" {
                return Err(invalid("events", "`*` must be alone in `events`"));
            }
            let t =
                EventType::parse(name).map_err(|e| invalid("events", format!("`events`: {e}")))?;
            if types.contains(&t) {
                return Err(invalid("events", format!("`events` lists `{name}` twice")));
            }
            types.push(t);
        }
        types.sort_by_key(|t| EventType::ALL.iter().position(|a| a == t));
        Ok(EventFilter::Types(types))
    }

    /// As the API and storage write it.
    pub fn names(&self) -> Vec<&'static str> {
        match self {
            EventFilter::All => vec!["*"],
            EventFilter::Types(types) => types.iter().map(|t| t.as_str()).collect(),
        }
    }

    /// Whether an event of type `t` goes to the endpoint.
    pub fn matches(&self, t: EventType) -> bool {
        match self {
            EventFilter::All => true,
            EventFilter::Types(types) => types.contains(&t),
        }
    }
}

/// The hosts that may be reached over plain `http` and at any address
/// (`APIKEYS_WEBHOOK_ALLOW_HOSTS`, for local development and tests):
/// lower-case host names or IP literals, without port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowHosts(Vec<String>);

impl AllowHosts {
    /// The listed hosts (compared case-insensitively; IPv6 literals with or
    /// without brackets).
    pub fn new<S: AsRef<str>>(hosts: impl IntoIterator<Item = S>) -> Self {
        AllowHosts(
            hosts
                .into_iter()
                .map(|h| normalize_host(h.as_ref()))
                .filter(|h| !h.is_empty())
                .collect(),
        )
    }

    /// Whether `host` (as a URL writes it) is listed.
    pub fn contains(&self, host: &str) -> bool {
        let host = normalize_host(host);
        self.0.contains(&host)
    }
}

fn normalize_host(host: &str) -> String {
    host.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// An endpoint's URL, checked: absolute, `https` (or `http` to an allowed
/// host), with a host, no user name or password, no fragment, at most
/// [`MAX_URL_LEN`] bytes. The addresses it resolves to are checked at each
/// attempt ([`forbidden_address`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    url: String,
    host: String,
    port: u16,
}

impl WebhookUrl {
    /// Checks `raw` against the rules and the allowed hosts.
    ///
    /// # Errors
    /// [`InvalidField`] (`url`) saying which rule.
    pub fn parse(raw: &str, allow: &AllowHosts) -> Result<Self, InvalidField> {
        if raw.len() > MAX_URL_LEN {
            return Err(invalid("url", "`url` must be at most 2048 bytes"));
        }
        let url = url::Url::parse(raw)
            .map_err(|e| invalid("url", format!("`url` is not an absolute URL: {e}")))?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("url", "`url` must have a host"))?
            .to_owned();
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "url",
                "`url` must not hold a user name or password",
            ));
        }
        if url.fragment().is_some() {
            return Err(invalid("url", "`url` must not have a fragment"));
        }
        let allowed = allow.contains(&host);
        match url.scheme() {
            "https" => {}
            "http" if allowed => {}
            "http" => {
                return Err(invalid(
                    "url",
                    "`url` must use https (http only to a host in APIKEYS_WEBHOOK_ALLOW_HOSTS)",
                ))
            }
            _ => return Err(invalid("url", "`url` must use https")),
        }
        if !allowed {
            if let Ok(ip) = normalize_host(&host).parse::<IpAddr>() {
                if let Some(kind) = forbidden_address(ip) {
                    return Err(invalid("url", format!("`url` points to a {kind} address")));
                }
            }
        }
        let port = url.port_or_known_default().unwrap_or(443);
        Ok(WebhookUrl {
            url: url.into(),
            host,
            port,
        })
    }

    /// A URL as stored, trusted (it was checked when written).
    pub fn from_stored(url: String) -> Self {
        let parsed = url::Url::parse(&url).ok();
        let host = parsed
            .as_ref()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        let port = parsed
            .and_then(|u| u.port_or_known_default())
            .unwrap_or(443);
        WebhookUrl { url, host, port }
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The host as the URL writes it (IPv6 in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, explicit or the scheme's.
    pub fn port(&self) -> u16 {
        self.port
    }
}

fn in_any(ip: IpAddr, nets: &[&str]) -> bool {
    nets.iter()
        .filter_map(|n| n.parse::<IpNet>().ok())
        .any(|net| net.contains(&ip))
}

/// Why an address may not be reached (unless its host is allowed):
/// `loopback`, `private`, `link-local`, `multicast` or `unspecified`;
/// `None` for a public address. IPv4-mapped IPv6 addresses are judged as
/// their IPv4 address.
pub fn forbidden_address(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let kinds: [(&'static str, &[&str]); 5] = [
        ("unspecified", &["0.0.0.0/8", "::/128"]),
        ("loopback", &["127.0.0.0/8", "::1/128"]),
        (
            "private",
            // RFC 1918, shared address space (RFC 6598), unique local IPv6.
            &[
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "100.64.0.0/10",
                "fc00::/7",
            ],
        ),
        ("link-local", &["169.254.0.0/16", "fe80::/10"]),
        (
            "multicast",
            &["224.0.0.0/4", "255.255.255.255/32", "ff00::/8"],
        ),
    ];
    kinds
        .into_iter()
        .find(|(_, nets)| in_any(ip, nets))
        .map(|(kind, _)| kind)
}

/// A webhook endpoint, without its secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// `whe_` + ULID.
    pub id: EndpointId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// The mode of the key that created it: it receives that mode's events.
    pub mode: Mode,
    /// Where events are sent.
    pub url: WebhookUrl,
    /// Which events.
    pub events: EventFilter,
    /// Free text.
    pub description: Option<String>,
    /// Whether events are sent (an endpoint failing for 5 days is disabled).
    pub enabled: bool,
    /// When it was created.
    pub created_at: OffsetDateTime,
}

/// An endpoint to insert, with its sealed secret.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    /// The endpoint.
    pub endpoint: WebhookEndpoint,
    /// Its secret, sealed.
    pub secret: SealedSecret,
}

/// What a PATCH changes (`None`: leave as it is).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointChanges {
    /// A new URL.
    pub url: Option<WebhookUrl>,
    /// New event types.
    pub events: Option<EventFilter>,
    /// A new description (`Some(None)`: remove it).
    pub description: Option<Option<String>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

/// Checks a description: at most [`MAX_DESCRIPTION_CHARS`] characters, no
/// control character.
///
/// # Errors
/// [`InvalidField`] (`description`).
pub fn check_description(description: &str) -> Result<(), InvalidField> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(invalid(
            "description",
            "`description` must be at most 500 characters",
        ));
    }
    if description.chars().any(char::is_control) {
        return Err(invalid(
            "description",
            "`description` must not hold control characters",
        ));
    }
    Ok(())
}

/// A delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Not delivered yet; an attempt is due at `next_attempt_at`.
    Pending,
    /// A 2xx answered.
    Delivered,
    /// Every attempt of the schedule failed.
    Failed,
}

impl DeliveryStatus {
    /// `pending`, `delivered` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// The inverse of [`DeliveryStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// One event's delivery to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// `whd_` + ULID.
    pub id: DeliveryId,
    /// The endpoint.
    pub endpoint_id: EndpointId,
    /// The event.
    pub event_id: EventId,
    /// The event's type.
    pub event_type: EventType,
    /// Its state.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's HTTP status, if it got a response.
    pub last_status: Option<u16>,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<OffsetDateTime>,
    /// When the event was committed.
    pub created_at: OffsetDateTime,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A 2xx answered within the time.
    Delivered {
        /// The status.
        status: u16,
    },
    /// Anything else.
    Failed {
        /// The status, if a response came.
        status: Option<u16>,
        /// What went wrong (never a secret).
        error: String,
    },
}

/// The wait before the next attempt after `attempts` attempts failed, or
/// `None` when the schedule is over (the delivery is `failed`).
pub fn next_attempt_after(attempts: u32) -> Option<Duration> {
    let index = usize::try_from(attempts).ok()?.checked_sub(1)?;
    RETRY_SCHEDULE.get(index).copied()
}

/// What an attempt's end writes to a delivery and its endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// The delivery.
    pub delivery: DeliveryId,
    /// The attempt made (1 for the first).
    pub attempts: u32,
    /// The new state.
    pub status: DeliveryStatus,
    /// The response's status.
    pub last_status: Option<u16>,
    /// The error, for a failure.
    pub last_error: Option<String>,
    /// When to try again (pending only).
    pub next_attempt_at: Option<OffsetDateTime>,
    /// When the attempt ended.
    pub at: OffsetDateTime,
}

impl AttemptRecord {
    /// The record of attempt number `attempts` of `delivery`, ended at `at`
    /// with `outcome`, per the retry schedule.
    pub fn of(
        delivery: DeliveryId,
        attempts: u32,
        outcome: &AttemptOutcome,
        at: OffsetDateTime,
    ) -> Self {
        match outcome {
            AttemptOutcome::Delivered { status } => AttemptRecord {
                delivery,
                attempts,
                status: DeliveryStatus::Delivered,
                last_status: Some(*status),
                last_error: None,
                next_attempt_at: None,
                at,
            },
            AttemptOutcome::Failed { status, error } => {
                let next = next_attempt_after(attempts).map(|wait| at + wait);
                AttemptRecord {
                    delivery,
                    attempts,
                    status: if next.is_some() {
                        DeliveryStatus::Pending
                    } else {
                        DeliveryStatus::Failed
                    },
                    last_status: *status,
                    last_error: Some(error.clone()),
                    next_attempt_at: next,
                    at,
                }
            }
        }
    }

    /// Whether the attempt succeeded.
    pub fn succeeded(&self) -> bool {
        self.status == DeliveryStatus::Delivered
    }
}

/// A delivery a node claimed (leased) to attempt now, with what the attempt
/// needs: the endpoint's URL and sealed secrets (the one before a rotation
/// while it still signs), and the event.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// The delivery, as claimed (`attempts` not yet counting this one).
    pub delivery: Delivery,
    /// The endpoint's URL.
    pub url: WebhookUrl,
    /// The current secret first, then the previous one while it signs.
    pub secrets: Vec<SealedSecret>,
    /// The event, as stored.
    pub event: crate::events::KeyEvent,
}

/// A page of endpoints, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPage {
    /// The endpoints.
    pub endpoints: Vec<WebhookEndpoint>,
    /// Whether more follow.
    pub has_more: bool,
}

/// A page of deliveries, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPage {
    /// The deliveries.
    pub deliveries: Vec<Delivery>,
    /// Whether more follow.
    pub has_more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_gives_eight_attempts() {
        let waits: Vec<_> = (1..=8).map(next_attempt_after).collect();
        assert_eq!(waits[0], Some(Duration::seconds(5)));
        assert_eq!(waits[6], Some(Duration::hours(10)));
        assert_eq!(waits[7], None);
        assert_eq!(next_attempt_after(0), None);
    }

    #[test]
    fn addresses_are_judged_by_range() {
        let kind = |s: &str| forbidden_address(s.parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(kind("127.0.0.1"), Some("loopback"));
        assert_eq!(kind("::1"), Some("loopback"));
        assert_eq!(kind("::ffff:127.0.0.1"), Some("loopback"));
        assert_eq!(kind("10.1.2.3"), Some("private"));
        assert_eq!(kind("172.20.0.1"), Some("private"));
        assert_eq!(kind("192.168.1.1"), Some("private"));
        assert_eq!(kind("fd00::1"), Some("private"));
        assert_eq!(kind("169.254.169.254"), Some("link-local"));
        assert_eq!(kind("fe80::1"), Some("link-local"));
        assert_eq!(kind("224.0.0.1"), Some("multicast"));
        assert_eq!(kind("ff02::1"), Some("multicast"));
        assert_eq!(kind("0.0.0.0"), Some("unspecified"));
        assert_eq!(kind("::"), Some("unspecified"));
        assert_eq!(kind("93.184.216.34"), None);
        assert_eq!(kind("2606:4700::1111"), None);
    }

    #[test]
    fn urls_need_https_unless_the_host_is_allowed() {
        let none = AllowHosts::default();
        let local = AllowHosts::new(["localhost", "127.0.0.1"]);
        assert!(WebhookUrl::parse("https://example.com/hook", &none).is_ok());
        assert_eq!(
            WebhookUrl::parse("http://example.com/hook", &none).map_err(|e| e.param),
            Err("url")
        );
        assert!(WebhookUrl::parse("ftp://example.com/", &none).is_err());
        assert!(WebhookUrl::parse("https://user:pw@example.com/", &none).is_err());
        assert!(WebhookUrl::parse("https://127.0.0.1/", &none).is_err());
        assert!(WebhookUrl::parse("https://[::1]/", &none).is_err());
        assert!(WebhookUrl::parse("http://127.0.0.1:8080/h", &local).is_ok());
        assert!(WebhookUrl::parse("http://LOCALHOST:1/h", &local).is_ok());
        assert!(WebhookUrl::parse("not a url", &none).is_err());
    }

    #[test]
    fn filters_parse_star_alone_and_known_types_once() {
        assert_eq!(EventFilter::parse(&["*"]), Ok(EventFilter::All));
        assert!(EventFilter::parse::<&str>(&[]).is_err());
        assert!(EventFilter::parse(&["*", "api_key.created"]).is_err());
        assert!(EventFilter::parse(&["api_key.nope"]).is_err());
        assert!(EventFilter::parse(&["api_key.revoked", "api_key.revoked"]).is_err());
        let f = EventFilter::parse(&["api_key.revoked", "api_key.created"])
            .unwrap_or_else(|_| unreachable!());
        assert_eq!(f.names(), vec!["api_key.created", "api_key.revoked"]);
        assert!(f.matches(EventType::KeyRevoked));
        assert!(!f.matches(EventType::KeyExpired));
    }

    #[test]
    fn secrets_are_shown_as_whsec_and_sealed_per_endpoint() {
        let secrets = crate::random::OsSecretSource;
        let secret = WebhookSecret::generate(&secrets);
        assert!(secret.reveal().starts_with("whsec_"));
        assert_eq!(format!("{secret:?}"), "WebhookSecret([redacted])");
        let hash_key = HashKey::from_bytes(&[9; 32]).unwrap_or_else(|_| unreachable!());
        let sealer = SecretSealer::new(&hash_key);
        let id = EndpointId::generate(OffsetDateTime::UNIX_EPOCH, &secrets);
        let other = EndpointId::generate(OffsetDateTime::UNIX_EPOCH, &secrets);
        let sealed = sealer.seal(&id, &secret, &secrets);
        assert!(!sealed
            .as_bytes()
            .windows(32)
            .any(|w| w == secret.as_bytes()));
        assert_eq!(sealer.open(&id, &sealed), Ok(secret));
        assert_eq!(sealer.open(&other, &sealed), Err(UnsealError));
    }

    #[test]
    fn a_signature_is_v1_base64_hmac_of_id_timestamp_body() {
        let secret = WebhookSecret([1; 32]);
        let sig = secret.sign("evt_1", 1_700_000_000, b"{}");
        assert!(sig.starts_with("v1,"));
        assert_eq!(sig.len(), 3 + 44);
        let two = signature_header(&[secret.clone(), WebhookSecret([2; 32])], "evt_1", 1, b"{}");
        assert_eq!(two.split(' ').count(), 2);
    }
}
