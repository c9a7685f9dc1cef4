//! OpenAPI schemas of the wire's value types (docs/api.md, "Conventions"):
//! identifiers, durations, names and scopes, each stating exactly what the
//! domain's parser accepts, so that a generated client or a validating
//! gateway accepts what the service accepts and refuses what it refuses.
//!
//! The duration patterns are computed from the domain's bounds
//! ([`ExpiresIn`], [`GracePeriod`]) rather than written out, so they cannot
//! drift from the rules.

use std::borrow::Cow;

use domain::{ExpiresIn, GracePeriod};
use serde::Serialize;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// Crockford base32 as the service writes it: upper case, no I, L, O, U.
const ULID: &str = "[0-7][0-9A-HJKMNP-TV-Z]{25}";

fn id_schema(prefix: &str, what: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^{prefix}{ULID}$")))
        .description(Some(format!(
            "{what}: `{prefix}` followed by a ULID (26 upper-case Crockford base32 characters), exactly as the service wrote it."
        )))
        .examples([format!("{prefix}01HQ2ZJ8N0Z3C4V5B6N7M8K9JA")])
        .into()
}

macro_rules! id_schemas {
    ($($(#[$doc:meta])* $name:ident = $prefix:literal, $what:literal;)*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                id_schema($prefix, $what)
            }
        }

        impl ToSchema for $name {}
    )*};
}

id_schemas! {
    /// `key_` + ULID.
    KeyId = "key_", "A key id";
    /// `tnt_` + ULID.
    TenantId = "tnt_", "A tenant id";
    /// `evt_` + ULID.
    EventId = "evt_", "An event id";
}

/// A full key, shown once (docs/api.md, "Key strings"): `pk_` or `sk_`,
/// `live_` or `test_`, then 38 base62 characters. A schema of its own so that
/// a generated client can give it a type whose `Debug` hides it.
pub struct FullKey;

impl PartialSchema for FullKey {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^(pk|sk)_(live|test)_[0-9A-Za-z]{38}$"))
            .description(Some(
                "The full key. Shown only in the answer that creates it; it cannot be retrieved again.",
            ))
            .into()
    }
}

impl ToSchema for FullKey {}

/// A regular expression (a group, no anchors) matching exactly the decimal
/// numbers from `lo` to `hi` written without leading zeros.
pub fn number_range_pattern(lo: u64, hi: u64) -> String {
    let mut alternatives = Vec::new();
    let (lo_len, hi_len) = (digits(lo).len(), digits(hi).len());
    for len in lo_len..=hi_len {
        let smallest = if len == 1 {
            0
        } else {
            10u64.pow(len as u32 - 1)
        };
        let largest = 10u64.pow(len as u32) - 1;
        let (a, b) = (lo.max(smallest), hi.min(largest));
        if a <= b {
            alternatives.push(same_length(&digits(a), &digits(b)));
        }
    }
    format!("(?:{})", alternatives.join("|"))
}

fn digits(n: u64) -> Vec<u8> {
    n.to_string().into_bytes()
}

fn digit_class(a: u8, b: u8) -> String {
    match (a, b) {
        (a, b) if a == b => char::from(a).to_string(),
        (b'0', b'9') => "[0-9]".to_owned(),
        (a, b) => format!("[{}-{}]", char::from(a), char::from(b)),
    }
}

/// Numbers from `a` to `b`, both of the same number of digits, `a <= b`.
fn same_length(a: &[u8], b: &[u8]) -> String {
    let rest = a.len() - 1;
    if rest == 0 {
        return digit_class(a[0], b[0]);
    }
    if a[0] == b[0] {
        return format!("{}(?:{})", char::from(a[0]), same_length(&a[1..], &b[1..]));
    }
    let all = |s: &[u8], d: u8| s.iter().all(|&c| c == d);
    let mut parts = Vec::new();
    let (mut first, mut last) = (a[0], b[0]);
    if !all(&a[1..], b'0') {
        let nines = vec![b'9'; rest];
        parts.push(format!(
            "{}(?:{})",
            char::from(a[0]),
            same_length(&a[1..], &nines)
        ));
        first += 1;
    }
    let mut tail = None;
    if !all(&b[1..], b'9') {
        let zeros = vec![b'0'; rest];
        tail = Some(format!(
            "{}(?:{})",
            char::from(b[0]),
            same_length(&zeros, &b[1..])
        ));
        last -= 1;
    }
    if first <= last {
        parts.push(format!("{}[0-9]{{{rest}}}", digit_class(first, last)));
    }
    parts.extend(tail);
    parts.join("|")
}

/// The pattern of a duration between `min` and `max` (whole seconds): the
/// grammar `^(0|[1-9][0-9]*)(s|m|h|d|w|y)$`, with each unit's numbers
/// limited to the bounds (a year is 365 days).
pub fn duration_pattern(min: time::Duration, max: time::Duration) -> String {
    const UNITS: [(char, i64); 6] = [
        ('s', 1),
        ('m', 60),
        ('h', 3_600),
        ('d', 86_400),
        ('w', 604_800),
        ('y', 31_536_000),
    ];
    let (min, max) = (min.whole_seconds(), max.whole_seconds());
    let alternatives: Vec<String> = UNITS
        .iter()
        .filter_map(|&(unit, seconds)| {
            let lo = u64::try_from((min + seconds - 1) / seconds).ok()?;
            let hi = u64::try_from(max / seconds).ok()?;
            (lo <= hi).then(|| format!("{}{unit}", number_range_pattern(lo, hi)))
        })
        .collect();
    format!("^(?:{})$", alternatives.join("|"))
}

fn duration_schema(
    min: time::Duration,
    max: time::Duration,
    description: &str,
    example: &str,
) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(duration_pattern(min, max)))
        .description(Some(description))
        .examples([example])
        .into()
}

/// `expires_in`: a duration from 1 minute to 10 years.
pub struct ExpiresInSchema;

impl PartialSchema for ExpiresInSchema {
    fn schema() -> RefOr<Schema> {
        duration_schema(
            ExpiresIn::MIN,
            ExpiresIn::MAX,
            "A key's lifetime, 1m to 10y: a whole number without leading zeros and one unit of s, m, h, d, w, y (a year is 365 days), such as `90d`.",
            "90d",
        )
    }
}

impl ToSchema for ExpiresInSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ExpiresIn")
    }
}

/// `grace_period`: a duration from 0 seconds to 7 days.
pub struct GracePeriodSchema;

impl PartialSchema for GracePeriodSchema {
    fn schema() -> RefOr<Schema> {
        duration_schema(
            GracePeriod::MIN,
            GracePeriod::MAX,
            "How long a rotated key keeps working, 0s to 7d: a whole number without leading zeros and one unit of s, m, h, d, w, y, such as `24h`.",
            "24h",
        )
    }
}

impl ToSchema for GracePeriodSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("GracePeriod")
    }
}

/// White space as Rust's `str::trim` removes it (Unicode `White_Space`).
const WHITE_SPACE: &str =
    r"\t\n\x0B\x0C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";
/// The characters that a name may not hold, in the whole of Unicode
/// (`domain::is_forbidden_in_name`: categories Cc, Cf, Zl, Zp, Co and Cn,
/// and two fillers), as character-class ranges, computed once from the
/// domain's rule so that the document cannot drift from it.
///
/// Within the Basic Multilingual Plane they are written `\uXXXX`, which
/// every engine reads. Beyond it they are written as the characters
/// themselves: an escape for them is not portable (`\u{...}` is
/// ECMAScript's with the `u` flag, `\U...` Python's, and surrogate-pair
/// escapes match nothing in an engine that reads code points, as `regress`
/// and Python's `re` do), while a literal character is one code point to
/// Python's `re` (schemathesis), to `regress` (the generated Rust client)
/// and to ECMAScript with the `u` flag. UTF-16 surrogates are left out:
/// they cannot reach the service in UTF-8 JSON, and many regex engines
/// refuse them in a class.
fn forbidden_in_name() -> &'static str {
    static CLASS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CLASS.get_or_init(|| {
        let forbidden = |c: u32| char::from_u32(c).is_some_and(domain::is_forbidden_in_name);
        let write = |class: &mut String, c: u32| match char::from_u32(c) {
            Some(c) if u32::from(c) > 0xFFFF => class.push(c),
            _ => class.push_str(&format!("\\u{c:04X}")),
        };
        let mut class = String::new();
        let mut c = 0u32;
        while c <= u32::from(char::MAX) {
            if !forbidden(c) {
                c += 1;
                continue;
            }
            // A range stays on one side of the plane's end: one way of
            // writing its two ends.
            let last = if c <= 0xFFFF {
                0xFFFF
            } else {
                u32::from(char::MAX)
            };
            let start = c;
            while c < last && forbidden(c + 1) {
                c += 1;
            }
            write(&mut class, start);
            if c > start {
                class.push('-');
                write(&mut class, c);
            }
            c += 1;
        }
        class
    })
}

/// A stored name: 1 to 100 characters, none forbidden, no white space at
/// either end.
fn trimmed_name_pattern() -> String {
    let forbidden = forbidden_in_name();
    let edge = format!("[^{forbidden}{WHITE_SPACE}]");
    let inner = format!("[^{forbidden}]");
    format!("{edge}(?:{inner}{{0,98}}{edge})?")
}

/// A key's name as sent: white space around it is trimmed, what remains is 1
/// to 100 characters without control characters.
pub struct KeyNameInput;

impl PartialSchema for KeyNameInput {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!(
                "^[{WHITE_SPACE}]*{}[{WHITE_SPACE}]*$",
                trimmed_name_pattern()
            )))
            .description(Some(
                "A label: trimmed of white space, then 1 to 100 characters. Refused: control, format (invisible, bidirectional), line and paragraph separator, private-use and unassigned characters, U+3164 and U+115F (the pattern states this rule for the whole of Unicode: characters beyond the Basic Multilingual Plane are written in it as themselves, one code point each, as Python's `re`, `regress` and ECMAScript with the `u` flag read them), and a name that is or holds a well-formed key (docs/api.md, \"Names\").",
            ))
            .examples(["Analytics Service"])
            .into()
    }
}

impl ToSchema for KeyNameInput {}

/// A key's name as stored and answered: trimmed, 1 to 100 characters, no
/// control characters.
pub struct KeyName;

impl PartialSchema for KeyName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(domain::MAX_NAME_CHARS))
            .pattern(Some(format!("^{}$", trimmed_name_pattern())))
            .description(Some("The label, trimmed."))
            .examples(["Analytics Service"])
            .into()
    }
}

impl ToSchema for KeyName {}

/// A scope (docs/api.md, "Scopes"): `*` is full access.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub enum Scope {
    /// Full access.
    #[serde(rename = "*")]
    All,
    /// `users:read`.
    #[serde(rename = "users:read")]
    UsersRead,
    /// `users:write`.
    #[serde(rename = "users:write")]
    UsersWrite,
    /// `sessions:read`.
    #[serde(rename = "sessions:read")]
    SessionsRead,
    /// `sessions:write`.
    #[serde(rename = "sessions:write")]
    SessionsWrite,
    /// `organizations:read`.
    #[serde(rename = "organizations:read")]
    OrganizationsRead,
    /// `organizations:write`.
    #[serde(rename = "organizations:write")]
    OrganizationsWrite,
    /// `webhooks:read`.
    #[serde(rename = "webhooks:read")]
    WebhooksRead,
    /// `webhooks:write`.
    #[serde(rename = "webhooks:write")]
    WebhooksWrite,
    /// `audit-logs:read`.
    #[serde(rename = "audit-logs:read")]
    AuditLogsRead,
}

/// The scopes of a new or updated key: a non-empty array, either only `*`
/// (full access) or only named scopes; repetitions are removed.
pub struct ScopeList;

fn scope_array(description: &str, item: RefOr<Schema>) -> ArrayBuilder {
    ArrayBuilder::new()
        .items(item)
        .min_items(Some(1))
        .description(Some(description))
}

impl PartialSchema for ScopeList {
    fn schema() -> RefOr<Schema> {
        let named: Vec<&str> = domain::Scope::ALL
            .into_iter()
            .filter(|s| *s != domain::Scope::All)
            .map(domain::Scope::as_str)
            .collect();
        let wildcard = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some([domain::Scope::All.as_str()]));
        let named = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(named));
        OneOfBuilder::new()
            .item(scope_array("Full access: `[\"*\"]`.", wildcard.into()))
            .item(scope_array(
                "Named scopes (`*` cannot be among them).",
                named.into(),
            ))
            .description(Some(
                "Non-empty; `*` (full access) only alone; repetitions are removed.",
            ))
            .examples([serde_json::json!(["users:read", "sessions:read"])])
            .into()
    }
}

impl ToSchema for ScopeList {}

/// `allowed_ips`: 1 to 100 CIDR blocks or addresses, IPv4 or IPv6.
pub struct AllowedIpsList;

impl PartialSchema for AllowedIpsList {
    fn schema() -> RefOr<Schema> {
        let block = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[0-9A-Fa-f.:]+(/[0-9]{1,3})?$"))
            .max_length(Some(64));
        ArrayBuilder::new()
            .items(block)
            .min_items(Some(1))
            .max_items(Some(domain::AllowedIps::MAX))
            .description(Some(
                "CIDR blocks, IPv4 or IPv6; a bare address is a /32 or /128. Stored as each block's network, duplicates dropped (docs/api.md, \"Restricting a key\").",
            ))
            .examples([serde_json::json!(["203.0.113.0/24", "2001:db8::/32"])])
            .into()
    }
}

impl ToSchema for AllowedIpsList {}

/// `allowed_origins`: 1 to 50 origins `scheme://host[:port]`.
pub struct AllowedOriginsList;

impl PartialSchema for AllowedOriginsList {
    fn schema() -> RefOr<Schema> {
        let origin = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(
                "^[A-Za-z][A-Za-z0-9+.-]*://(\\*\\.)?(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$",
            ))
            .max_length(Some(domain::AllowedOrigin::MAX_LEN));
        ArrayBuilder::new()
            .items(origin)
            .min_items(Some(1))
            .max_items(Some(domain::AllowedOrigins::MAX))
            .description(Some(
                "Publishable keys only. Origins `scheme://host[:port]`; a host `*.example.com` allows every subdomain of `example.com`, not `example.com` itself. Stored in lower case without the default port.",
            ))
            .examples([serde_json::json!(["https://*.example.com"])])
            .into()
    }
}

impl ToSchema for AllowedOriginsList {}

fn metadata_schema(value: ObjectBuilder, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[A-Za-z0-9_.-]{1,40}$")),
        ))
        .additional_properties(Some(value))
        .max_properties(Some(domain::Metadata::MAX_ENTRIES))
        .description(Some(description))
        .examples([serde_json::json!({"customer_id": "cus_42"})])
        .into()
}

/// `metadata`: at most 20 string values under keys of `[A-Za-z0-9_.-]{1,40}`.
pub struct MetadataObject;

impl PartialSchema for MetadataObject {
    fn schema() -> RefOr<Schema> {
        metadata_schema(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(domain::Metadata::MAX_VALUE_CHARS)),
            "At most 20 entries; keys 1-40 characters of `A-Za-z0-9_.-`; string values of at most 500 characters.",
        )
    }
}

impl ToSchema for MetadataObject {}

/// A PATCH's `metadata`: values to set, or null to remove.
pub struct MetadataPatchObject;

impl PartialSchema for MetadataPatchObject {
    fn schema() -> RefOr<Schema> {
        metadata_schema(
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                    Type::String,
                    Type::Null,
                ]))
                .max_length(Some(domain::Metadata::MAX_VALUE_CHARS)),
            "Merged into the key's metadata: each key given is set, a key given null is removed, others stay. At most 20 entries after the merge.",
        )
    }
}

impl ToSchema for MetadataPatchObject {}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(pattern: &str) -> regress::Regex {
        regress::Regex::new(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"))
    }

    fn full(pattern: &str) -> regress::Regex {
        matcher(&format!("^{pattern}$"))
    }

    #[test]
    fn number_ranges_match_exactly_their_numbers() {
        for (lo, hi) in [
            (0, 0),
            (0, 7),
            (1, 10),
            (60, 10_080),
            (1, 521),
            (7, 168),
            (0, 604_800),
            (99, 100),
            (3, 3_650),
        ] {
            let re = full(&number_range_pattern(lo, hi));
            for n in 0..=(hi + 1_000).min(120_000) {
                assert_eq!(
                    re.find(&n.to_string()).is_some(),
                    (lo..=hi).contains(&n),
                    "{lo}..={hi}: {n}"
                );
            }
            assert!(re.find(&format!("0{lo}")).is_none(), "leading zero of {lo}");
        }
        let big = full(&number_range_pattern(60, 315_360_000));
        for n in [
            59,
            60,
            61,
            99,
            100,
            999_999,
            315_359_999,
            315_360_000,
            315_360_001,
            999_999_999,
        ] {
            assert_eq!(
                big.find(&n.to_string()).is_some(),
                (60..=315_360_000).contains(&n),
                "{n}"
            );
        }
    }

    #[test]
    fn duration_patterns_accept_what_the_domain_accepts() {
        let expires = matcher(&duration_pattern(ExpiresIn::MIN, ExpiresIn::MAX));
        let grace = matcher(&duration_pattern(GracePeriod::MIN, GracePeriod::MAX));
        let samples = [
            "0s",
            "1s",
            "59s",
            "60s",
            "0m",
            "1m",
            "7d",
            "8d",
            "1w",
            "2w",
            "0y",
            "1y",
            "10y",
            "11y",
            "521w",
            "522w",
            "3650d",
            "3651d",
            "87600h",
            "87601h",
            "5256000m",
            "5256001m",
            "315360000s",
            "315360001s",
            "604800s",
            "604801s",
            "10080m",
            "10081m",
            "168h",
            "169h",
            "01m",
            "1 m",
            "1M",
            "-1m",
            "1.5h",
            "",
            "m",
            "1",
            "1mm",
        ];
        for s in samples {
            assert_eq!(
                expires.find(s).is_some(),
                ExpiresIn::parse(s).is_ok(),
                "expires_in {s:?}"
            );
            assert_eq!(
                grace.find(s).is_some(),
                GracePeriod::parse(s).is_ok(),
                "grace_period {s:?}"
            );
        }
    }

    #[test]
    fn name_patterns_accept_what_the_domain_accepts() {
        let RefOr::T(Schema::Object(input)) = KeyNameInput::schema() else {
            panic!("an object schema")
        };
        let input = matcher(input.pattern.as_deref().unwrap_or_default());
        let stored = full(&trimmed_name_pattern());
        let long = "x".repeat(100);
        let too_long = "x".repeat(101);
        let samples = [
            "a",
            " a ",
            "\ta\n",
            "a b",
            "",
            " ",
            "\t",
            "a\u{0}b",
            "a\nb",
            "\u{85}a\u{a0}",
            "\u{3000}名前\u{3000}",
            "a\u{1f}",
            &long,
            &too_long,
            " \u{7f} ",
            "é",
            "a\u{200b}b",
            "\u{200d}",
            "a\u{2029}b",
            "a\u{202e}b",
            "a\u{ad}b",
            "\u{3164}",
            "a\u{e000}",
            "a\u{378}",
            "Ünïcödé 名前 ✓",
            // Beyond the Basic Multilingual Plane: private use (planes 15
            // and 16), unassigned, a noncharacter, tags (format), and
            // assigned letters, symbols and emoji.
            "a\u{F0000}",
            "\u{10FFFD}b",
            "a\u{E0001}",
            "a\u{E007F}b",
            "\u{2FFFE}",
            "x\u{DFFFF}",
            "a\u{1D173}b",
            "\u{10FFFF}",
            "\u{1F600}",
            "𝕏 \u{1F680} 𐍈",
            "\u{10000}",
            "\u{20000}名",
        ];
        for s in samples {
            let parsed = domain::KeyName::parse(s);
            assert_eq!(input.find(s).is_some(), parsed.is_ok(), "input {s:?}");
            if let Ok(name) = parsed {
                assert!(stored.find(name.as_str()).is_some(), "stored {s:?}");
            }
        }
        let padded = format!("  {long}  ");
        assert!(input.find(&padded).is_some());
    }

    /// One character at a time, the class is the domain's rule on both
    /// sides of every boundary of it, in the whole of Unicode.
    #[test]
    fn the_name_class_is_the_rule_at_every_boundary() {
        let one = full(&format!("[^{}]", forbidden_in_name()));
        let forbidden = |c: u32| char::from_u32(c).is_some_and(domain::is_forbidden_in_name);
        let mut checked = 0;
        for c in 1..=u32::from(char::MAX) {
            if forbidden(c) == forbidden(c - 1) && c != 0x10000 {
                continue;
            }
            for c in [c - 1, c] {
                let Some(ch) = char::from_u32(c) else {
                    continue;
                };
                let text = ch.to_string();
                assert_eq!(
                    one.find(&text).is_some(),
                    !domain::is_forbidden_in_name(ch),
                    "U+{c:04X}"
                );
                checked += 1;
            }
        }
        assert!(checked > 1000, "{checked} boundary characters");
    }

    #[test]
    fn id_patterns_accept_exactly_the_ids_the_domain_accepts() {
        let RefOr::T(Schema::Object(key)) = KeyId::schema() else {
            panic!("an object schema")
        };
        let key = matcher(key.pattern.as_deref().unwrap_or_default());
        for s in [
            "key_01HQ2ZJ8N0Z3C4V5B6N7M8K9JA",
            "key_81HQ2ZJ8N0Z3C4V5B6N7M8K9JA",
            "key_01hq2zj8n0z3c4v5b6n7m8k9ja",
            "key_01HQ2ZJ8N0Z3C4V5B6N7M8K9JI",
            "key_01HQ2ZJ8N0Z3C4V5B6N7M8K9J",
            "tnt_01HQ2ZJ8N0Z3C4V5B6N7M8K9JA",
        ] {
            assert_eq!(
                key.find(s).is_some(),
                domain::KeyId::parse(s).is_ok(),
                "{s}"
            );
        }
    }
}
