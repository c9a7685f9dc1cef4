//! Request and response bodies. They are separate from the domain types and
//! keep the product document's field order (serde writes fields in
//! declaration order).

use std::fmt;

use domain::{
    AllowedIps, AllowedOrigin, AllowedOrigins, ApiKey, CreatedKey, Credits, KeyView, Metadata,
    RateLimit, RotatedKey,
};
use serde::{Deserialize, Serialize, Serializer};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};
#[cfg(feature = "openapi")]
use utoipa::openapi::schema::{AnyOfBuilder, Schema};
#[cfg(feature = "openapi")]
use utoipa::openapi::{Ref, RefOr};
#[cfg(feature = "openapi")]
use utoipa::{PartialSchema, ToSchema};

#[cfg(feature = "openapi")]
#[allow(unused_imports, reason = "named by the `value_type`s of the schemas")]
use crate::openapi::schemas::{
    AllowedIpsList, AllowedOriginsList, ExpiresInSchema, FullKey, GracePeriodSchema, KeyId,
    KeyName, KeyNameInput, MetadataObject, MetadataPatchObject, Scope, ScopeList,
};
use crate::redact::REDACTED;

const RFC3339_SECONDS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// RFC 3339 in UTC, to the second, with `Z` (`2024-01-10T09:00:00Z`).
pub fn timestamp(at: OffsetDateTime) -> String {
    at.to_offset(UtcOffset::UTC)
        .format(RFC3339_SECONDS)
        .unwrap_or_else(|_| at.to_string())
}

fn opt_timestamp(at: Option<OffsetDateTime>) -> Option<String> {
    at.map(timestamp)
}

fn scope_names(key: &ApiKey) -> Vec<String> {
    key.scopes.names().map(str::to_owned).collect()
}

/// `publishable` or `secret`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", schema(as = KeyType))]
pub enum KeyTypeDto {
    /// `pk_`: safe for frontends.
    Publishable,
    /// `sk_`: backend only.
    Secret,
}

/// `live` or `test`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", schema(as = Mode))]
pub enum ModeDto {
    /// Live keys.
    Live,
    /// Test keys.
    Test,
}

/// The API key object, without its value.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct KeyObject {
    /// `key_` + ULID.
    #[cfg_attr(feature = "openapi", schema(value_type = KeyId))]
    pub id: String,
    /// Label.
    #[cfg_attr(feature = "openapi", schema(value_type = KeyName))]
    pub name: String,
    /// `publishable` or `secret`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(value_type = KeyTypeDto))]
    pub key_type: String,
    /// `live` or `test`.
    #[cfg_attr(feature = "openapi", schema(value_type = ModeDto))]
    pub mode: String,
    /// The key's first 12 characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = "^(pk|sk)_(live|test)_[0-9A-Za-z]{4}$",
            example = "sk_live_abc1"
        )
    )]
    pub prefix: String,
    /// The key's last 4 characters.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9A-Za-z]{4}$"))]
    pub last_four: String,
    /// Scopes, `["*"]` for full access.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Scope>))]
    pub scopes: Vec<String>,
    /// Creation time.
    #[cfg_attr(feature = "openapi", schema(format = DateTime, example = "2024-01-10T09:00:00Z"))]
    pub created_at: String,
    /// Last successful authentication (to 60 s), or null.
    #[cfg_attr(feature = "openapi", schema(required = true, format = DateTime))]
    pub last_used_at: Option<String>,
    /// Expiry, or null.
    #[cfg_attr(feature = "openapi", schema(required = true, format = DateTime))]
    pub expires_at: Option<String>,
    /// Whether the key's revocation has taken effect.
    pub revoked: bool,
    /// When a scheduled revocation takes effect, or null.
    #[cfg_attr(feature = "openapi", schema(required = true, format = DateTime))]
    pub revokes_at: Option<String>,
    /// At most `limit` uses per `window`, or null (docs/api.md, "Limiting a
    /// key's use").
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub rate_limit: Option<RateLimitObject>,
    /// Credits, or null.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub credits: Option<CreditsObject>,
    /// CIDR blocks the key may be used from, normalized; null: any address.
    #[serde(serialize_with = "allowed_ips_out")]
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = Option<AllowedIpsList>))]
    pub allowed_ips: Option<AllowedIps>,
    /// Origins a publishable key may be used from; null: any origin.
    #[serde(serialize_with = "allowed_origins_out")]
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = Option<AllowedOriginsList>))]
    pub allowed_origins: Option<AllowedOrigins>,
    /// String values under short keys; `{}` by default.
    #[serde(serialize_with = "metadata_out")]
    #[cfg_attr(feature = "openapi", schema(value_type = MetadataObject))]
    pub metadata: Metadata,
}

/// `allowed_ips` as the API writes it: the blocks, or null.
pub(crate) fn allowed_ips_out<S: Serializer>(
    ips: &Option<AllowedIps>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match ips {
        Some(ips) => s.collect_seq(ips.blocks().iter().map(ToString::to_string)),
        None => s.serialize_none(),
    }
}

/// `allowed_origins` as the API writes it: the origins, or null.
pub(crate) fn allowed_origins_out<S: Serializer>(
    origins: &Option<AllowedOrigins>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match origins {
        Some(origins) => s.collect_seq(origins.iter().map(AllowedOrigin::as_str)),
        None => s.serialize_none(),
    }
}

/// `metadata` as the API writes it: an object of strings.
pub(crate) fn metadata_out<S: Serializer>(metadata: &Metadata, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(metadata.iter())
}

/// A key's rate limit: at most `limit` uses in each `window`, windows
/// fixed and aligned to the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RateLimitObject {
    /// Uses per window, 1–1,000,000.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_000_000))]
    pub limit: u32,
    /// The window, a duration of 1s–1d (`10s`, `1m`, `1h`, `1d`).
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^(0|[1-9][0-9]*)(s|m|h|d|w|y)$", example = "10s")
    )]
    pub window: String,
}

/// A key's credits: every use spends its cost; at 0, uses are refused
/// with `usage_exceeded`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreditsObject {
    /// Credits not yet handed out to a node, 0–10^12 (docs/limits.md).
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 0, maximum = 1_000_000_000_000_u64)
    )]
    pub remaining: u64,
    /// The refill, or null (always sent in answers; a request may leave it
    /// out, meaning null).
    pub refill: Option<RefillObject>,
}

/// A refill: `remaining` is set to `amount` at 00:00 UTC every day, or on
/// the 1st of every month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RefillObject {
    /// What `remaining` becomes, 1–10^12.
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1, maximum = 1_000_000_000_000_u64)
    )]
    pub amount: u64,
    /// `daily` or `monthly`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^(daily|monthly)$"))]
    pub interval: String,
}

impl RateLimitObject {
    /// The object of a key's rate limit.
    pub fn of(rate: Option<RateLimit>) -> Option<Self> {
        rate.map(|r| RateLimitObject {
            limit: r.limit(),
            window: domain::format_duration(r.window()),
        })
    }
}

impl CreditsObject {
    /// The object of a key's credits.
    pub fn of(credits: Option<Credits>) -> Option<Self> {
        credits.map(|c| CreditsObject {
            remaining: c.remaining(),
            refill: c.refill().map(|r| RefillObject {
                amount: r.amount(),
                interval: r.interval().as_str().to_owned(),
            }),
        })
    }
}

/// A limited key's budget as a response reports it (verify's `limits`; the
/// `RateLimit-*` headers carry the same three numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct LimitsObject {
    /// The rate limit per window; for a key with credits only, its refill
    /// amount (without a refill: its remaining credits).
    pub limit: u64,
    /// What is left (of the window, else of the credits).
    pub remaining: u64,
    /// Seconds until the window ends (else until the next refill; 0: none).
    pub reset: u64,
}

impl From<domain::UsageReport> for LimitsObject {
    fn from(r: domain::UsageReport) -> Self {
        LimitsObject {
            limit: r.limit,
            remaining: r.remaining,
            reset: r.reset,
        }
    }
}

impl From<&KeyView> for KeyObject {
    /// The object for a key with its status at the time of the call.
    fn from(view: &KeyView) -> Self {
        let key = &view.key;
        KeyObject {
            id: key.id.to_string(),
            name: key.name.as_str().to_owned(),
            key_type: key.key_type.as_str().to_owned(),
            mode: key.mode.as_str().to_owned(),
            prefix: key.prefix.clone(),
            last_four: key.last_four.clone(),
            scopes: scope_names(key),
            created_at: timestamp(key.created_at),
            last_used_at: opt_timestamp(key.last_used_at),
            expires_at: opt_timestamp(key.expires_at),
            revoked: view.is_revoked(),
            revokes_at: opt_timestamp(key.revokes_at),
            rate_limit: RateLimitObject::of(key.limits.rate_limit),
            credits: CreditsObject::of(key.limits.credits),
            allowed_ips: key.restrictions.allowed_ips.clone(),
            allowed_origins: key.restrictions.allowed_origins.clone(),
            metadata: key.metadata.clone(),
        }
    }
}

/// A page of keys, newest first.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct KeyList {
    /// The keys.
    pub data: Vec<KeyObject>,
    /// Whether more keys follow (`starting_after` the last one).
    pub has_more: bool,
}

// The three request types below are the bodies' schemas for the OpenAPI
// document only: the handlers read a body field by field (`crate::body`).
// `Deserialize` is derived for the `serde` attributes the schema reads
// (`deny_unknown_fields` for `additionalProperties: false`, `rename`).

/// `POST /v1/api-keys` body.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// 1–100 characters after trimming, no control characters.
    #[cfg_attr(feature = "openapi", schema(value_type = KeyNameInput))]
    pub name: String,
    /// `publishable` or `secret`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(value_type = KeyTypeDto))]
    pub key_type: String,
    /// Non-empty, known scopes, `*` only alone; default `["*"]`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<ScopeList>))]
    pub scopes: Option<Vec<String>>,
    /// Lifetime, 1m–10y (`90d`, `1y`); default: no expiry.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<ExpiresInSchema>))]
    pub expires_in: Option<String>,
    /// `live` or `test`; default: the caller's mode.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<ModeDto>))]
    pub mode: Option<String>,
    /// At most `limit` uses per `window`; default: null (no rate limit).
    pub rate_limit: Option<RateLimitObject>,
    /// Credits; default: null (uses are not counted).
    pub credits: Option<CreditsObject>,
    /// CIDR blocks the key may be used from; default null (any address).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<AllowedIpsList>))]
    pub allowed_ips: Option<Vec<String>>,
    /// Publishable keys only: origins it may be used from; default null.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<AllowedOriginsList>))]
    pub allowed_origins: Option<Vec<String>>,
    /// String values under short keys; default `{}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<MetadataObject>))]
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
}

/// `PATCH /v1/api-keys/{id}` body: `name`, `scopes` or both, at least one
/// of them not `null` (`{}` is 400 `missing_parameter`). The schema is the
/// union of its two shapes, since a `null` field counts as absent.
pub struct UpdateKeyRequest;

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for UpdateKeyRequest {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(Ref::from_schema_name(UpdateKeyName::name()))
            .item(Ref::from_schema_name(UpdateKeyScopes::name()))
            .item(Ref::from_schema_name(UpdateKeyLimits::name()))
            .item(Ref::from_schema_name(UpdateKeyRestrictions::name()))
            .description(Some(
                "At least one of `name`, `scopes`, `rate_limit`, `credits`, `allowed_ips`, \
                 `allowed_origins` and `metadata`; `name` and `scopes` not `null` (a `null` \
                 limit or restriction removes it).",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl ToSchema for UpdateKeyRequest {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((UpdateKeyName::name().into(), UpdateKeyName::schema()));
        schemas.push((UpdateKeyScopes::name().into(), UpdateKeyScopes::schema()));
        schemas.push((UpdateKeyLimits::name().into(), UpdateKeyLimits::schema()));
        schemas.push((
            UpdateKeyRestrictions::name().into(),
            UpdateKeyRestrictions::schema(),
        ));
        <UpdateKeyName as ToSchema>::schemas(schemas);
        <UpdateKeyScopes as ToSchema>::schemas(schemas);
        <UpdateKeyLimits as ToSchema>::schemas(schemas);
        <UpdateKeyRestrictions as ToSchema>::schemas(schemas);
    }
}

/// A `PATCH /v1/api-keys/{id}` body that renames (and may re-scope).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyName {
    /// New label.
    #[cfg_attr(feature = "openapi", schema(value_type = KeyNameInput))]
    pub name: String,
    /// New scopes (replace the old ones).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<ScopeList>))]
    pub scopes: Option<Vec<String>>,
    /// The new rate limit; `null` removes it.
    pub rate_limit: Option<RateLimitObject>,
    /// The new credits (`remaining` counted from now); `null` removes them.
    pub credits: Option<CreditsObject>,
    /// New `allowed_ips` (replaces them; null lifts the restriction).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<AllowedIpsList>))]
    pub allowed_ips: Option<Vec<String>>,
    /// New `allowed_origins` (replaces them; null lifts the restriction).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<AllowedOriginsList>))]
    pub allowed_origins: Option<Vec<String>>,
    /// Metadata to merge: a key set to null is removed, others stay.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<MetadataPatchObject>))]
    pub metadata: Option<std::collections::BTreeMap<String, Option<String>>>,
}

/// A `PATCH /v1/api-keys/{id}` body that re-scopes (and may rename).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyScopes {
    /// New label.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<KeyNameInput>))]
    pub name: Option<String>,
    /// New scopes (replace the old ones).
    #[cfg_attr(feature = "openapi", schema(value_type = ScopeList))]
    pub scopes: Vec<String>,
    /// The new rate limit; `null` removes it.
    pub rate_limit: Option<RateLimitObject>,
    /// The new credits (`remaining` counted from now); `null` removes them.
    pub credits: Option<CreditsObject>,
    /// New `allowed_ips` (replaces them; null lifts the restriction).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<AllowedIpsList>))]
    pub allowed_ips: Option<Vec<String>>,
    /// New `allowed_origins` (replaces them; null lifts the restriction).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<AllowedOriginsList>))]
    pub allowed_origins: Option<Vec<String>>,
    /// Metadata to merge: a key set to null is removed, others stay.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<MetadataPatchObject>))]
    pub metadata: Option<std::collections::BTreeMap<String, Option<String>>>,
}

/// A `PATCH /v1/api-keys/{id}` body that changes restrictions or metadata
/// (at least one of them; `{}` is 400 `missing_parameter`).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyRestrictions {
    /// New `allowed_ips` (replaces them; null lifts the restriction).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<AllowedIpsList>))]
    pub allowed_ips: Option<Vec<String>>,
    /// New `allowed_origins` (replaces them; null lifts the restriction).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<AllowedOriginsList>))]
    pub allowed_origins: Option<Vec<String>>,
    /// Metadata to merge: a key set to null is removed, others stay.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<MetadataPatchObject>))]
    pub metadata: Option<std::collections::BTreeMap<String, Option<String>>>,
}

/// A `PATCH /v1/api-keys/{id}` body that sets a key's limits (and may
/// rename or re-scope it): docs/api.md, "Limiting a key's use".
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[cfg_attr(feature = "openapi", schema(min_properties = 1))]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyLimits {
    /// New label.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<KeyNameInput>))]
    pub name: Option<String>,
    /// New scopes (replace the old ones).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<ScopeList>))]
    pub scopes: Option<Vec<String>>,
    /// The new rate limit; `null` removes it.
    pub rate_limit: Option<RateLimitObject>,
    /// The new credits (`remaining` counted from now); `null` removes them.
    pub credits: Option<CreditsObject>,
    /// New `allowed_ips` (replaces them; null lifts the restriction).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<AllowedIpsList>))]
    pub allowed_ips: Option<Vec<String>>,
    /// New `allowed_origins` (replaces them; null lifts the restriction).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<AllowedOriginsList>))]
    pub allowed_origins: Option<Vec<String>>,
    /// Metadata to merge: a key set to null is removed, others stay.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<MetadataPatchObject>))]
    pub metadata: Option<std::collections::BTreeMap<String, Option<String>>>,
}

/// `POST /v1/api-keys/rotate` body.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RotateKeyRequest {
    /// The key to rotate.
    #[cfg_attr(feature = "openapi", schema(value_type = KeyId))]
    pub id: String,
    /// How long the old key keeps working, 0s–7d; default `1h`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<GracePeriodSchema>))]
    pub grace_period: Option<String>,
}

/// `201` body of `POST /v1/api-keys`: the only time `key` is shown. Its
/// `Debug` leaves the key out (docs/api.md, "Secrets").
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CreatedKeyResponse {
    /// `key_` + ULID.
    #[cfg_attr(feature = "openapi", schema(value_type = KeyId))]
    pub id: String,
    /// Label.
    #[cfg_attr(feature = "openapi", schema(value_type = KeyName))]
    pub name: String,
    /// `publishable` or `secret`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(value_type = KeyTypeDto))]
    pub key_type: String,
    /// `live` or `test`.
    #[cfg_attr(feature = "openapi", schema(value_type = ModeDto))]
    pub mode: String,
    /// The full key. It cannot be retrieved again.
    #[cfg_attr(feature = "openapi", schema(value_type = FullKey))]
    pub key: String,
    /// The key's first 12 characters.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^(pk|sk)_(live|test)_[0-9A-Za-z]{4}$")
    )]
    pub prefix: String,
    /// The key's last 4 characters.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9A-Za-z]{4}$"))]
    pub last_four: String,
    /// Scopes.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Scope>))]
    pub scopes: Vec<String>,
    /// Expiry, or null.
    #[cfg_attr(feature = "openapi", schema(required = true, format = DateTime))]
    pub expires_at: Option<String>,
    /// Creation time.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
}

impl From<CreatedKey> for CreatedKeyResponse {
    fn from(created: CreatedKey) -> Self {
        let key = created.key;
        CreatedKeyResponse {
            id: key.id.to_string(),
            name: key.name.as_str().to_owned(),
            key_type: key.key_type.as_str().to_owned(),
            mode: key.mode.as_str().to_owned(),
            key: created.secret.into_secret(),
            prefix: key.prefix.clone(),
            last_four: key.last_four.clone(),
            scopes: scope_names(&key),
            expires_at: opt_timestamp(key.expires_at),
            created_at: timestamp(key.created_at),
        }
    }
}

/// `200` body of `POST /v1/api-keys/rotate`. Its `Debug` leaves the key out
/// (docs/api.md, "Secrets").
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RotatedKeyResponse {
    /// The new key's id.
    #[cfg_attr(feature = "openapi", schema(value_type = KeyId))]
    pub id: String,
    /// The new key. It cannot be retrieved again.
    #[cfg_attr(feature = "openapi", schema(value_type = FullKey))]
    pub key: String,
    /// The rotated key.
    #[cfg_attr(feature = "openapi", schema(value_type = KeyId))]
    pub old_key_id: String,
    /// When the rotated key stops working.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub old_key_revokes_at: String,
    /// Label (copied).
    #[cfg_attr(feature = "openapi", schema(value_type = KeyName))]
    pub name: String,
    /// `publishable` or `secret` (copied).
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(value_type = KeyTypeDto))]
    pub key_type: String,
    /// `live` or `test` (copied).
    #[cfg_attr(feature = "openapi", schema(value_type = ModeDto))]
    pub mode: String,
    /// Scopes (copied).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Scope>))]
    pub scopes: Vec<String>,
    /// The new key's first 12 characters.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^(pk|sk)_(live|test)_[0-9A-Za-z]{4}$")
    )]
    pub prefix: String,
    /// The new key's last 4 characters.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9A-Za-z]{4}$"))]
    pub last_four: String,
    /// Creation time of the new key.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    /// The new key's expiry (the old lifetime from now), or null.
    #[cfg_attr(feature = "openapi", schema(required = true, format = DateTime))]
    pub expires_at: Option<String>,
}

impl From<RotatedKey> for RotatedKeyResponse {
    fn from(rotated: RotatedKey) -> Self {
        let key = rotated.key;
        RotatedKeyResponse {
            id: key.id.to_string(),
            key: rotated.secret.into_secret(),
            old_key_id: rotated.old_key_id.to_string(),
            old_key_revokes_at: timestamp(rotated.old_key_revokes_at),
            name: key.name.as_str().to_owned(),
            key_type: key.key_type.as_str().to_owned(),
            mode: key.mode.as_str().to_owned(),
            scopes: scope_names(&key),
            prefix: key.prefix.clone(),
            last_four: key.last_four.clone(),
            created_at: timestamp(key.created_at),
            expires_at: opt_timestamp(key.expires_at),
        }
    }
}

impl fmt::Debug for CreatedKeyResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedKeyResponse")
            .field("id", &self.id)
            .field("prefix", &self.prefix)
            .field("key", &REDACTED)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RotatedKeyResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotatedKeyResponse")
            .field("id", &self.id)
            .field("prefix", &self.prefix)
            .field("key", &REDACTED)
            .field("old_key_id", &self.old_key_id)
            .finish_non_exhaustive()
    }
}

/// `GET /healthz` and `GET /readyz` body.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct StatusBody {
    /// `ok` (healthz) or `ready` (readyz).
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^(ok|ready)$"))]
    pub status: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn timestamps_are_utc_to_the_second_with_z() {
        assert_eq!(
            timestamp(datetime!(2024-01-10 09:00:00.987 UTC)),
            "2024-01-10T09:00:00Z"
        );
        assert_eq!(
            timestamp(datetime!(2024-01-10 10:00:00 +01:00)),
            "2024-01-10T09:00:00Z"
        );
    }

    #[test]
    fn debug_of_a_response_never_shows_the_full_key() {
        let key = domain::PlainKey::generate(
            domain::KeyType::Secret,
            domain::Mode::Live,
            &domain::testing::SeqSecretSource::default(),
        )
        .into_secret();
        let created = CreatedKeyResponse {
            id: "key_01HQ2ZJ8N0000000000000000B".to_owned(),
            name: "Backend".to_owned(),
            key_type: "secret".to_owned(),
            mode: "live".to_owned(),
            key: key.clone(),
            prefix: key[..12].to_owned(),
            last_four: key[key.len() - 4..].to_owned(),
            scopes: vec!["*".to_owned()],
            expires_at: None,
            created_at: "2024-01-10T09:00:00Z".to_owned(),
        };
        let rotated = RotatedKeyResponse {
            id: created.id.clone(),
            key: key.clone(),
            old_key_id: "key_01HQ2ZJ8N0000000000000000A".to_owned(),
            old_key_revokes_at: "2024-01-10T10:00:00Z".to_owned(),
            name: created.name.clone(),
            key_type: created.key_type.clone(),
            mode: created.mode.clone(),
            scopes: created.scopes.clone(),
            prefix: created.prefix.clone(),
            last_four: created.last_four.clone(),
            created_at: created.created_at.clone(),
            expires_at: None,
        };
        for debug in [format!("{created:?}"), format!("{rotated:?}")] {
            assert!(!debug.contains(&key), "{debug}");
            assert!(!debug.contains(&key[12..]), "{debug}");
            assert!(debug.contains("[redacted]"), "{debug}");
        }
    }
}
