//! Where a key may be used from (docs/api.md, "Restricting a key"): the
//! client addresses (`allowed_ips`) and, for publishable keys, the browser
//! origins (`allowed_origins`). Each is a value type that validates and
//! normalizes on construction and is parsed once, when a key is read, so
//! that judging a request is a lookup in memory ([`KeyRestrictions::check`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use thiserror::Error;

use crate::key_kind::KeyType;
use crate::key_string::quoted_in_error;

/// Why a restriction given by a client is refused (400
/// `invalid_parameter`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RestrictionError {
    /// `allowed_ips` is empty or has more than [`AllowedIps::MAX`] blocks.
    #[error("allowed_ips must hold 1 to 100 CIDR blocks (or be null)")]
    IpCount,
    /// An entry of `allowed_ips` is not an address or CIDR block (the entry
    /// as [`quoted_in_error`] shows it).
    #[error("`{0}` is not an IPv4 or IPv6 address or CIDR block")]
    InvalidBlock(String),
    /// `allowed_origins` is empty or has more than [`AllowedOrigins::MAX`]
    /// origins.
    #[error("allowed_origins must hold 1 to 50 origins (or be null)")]
    OriginCount,
    /// An entry of `allowed_origins` is not `scheme://host[:port]` (the
    /// entry as [`quoted_in_error`] shows it).
    #[error("`{0}` is not an origin `scheme://host[:port]` (the host may start with `*.`)")]
    InvalidOrigin(String),
    /// `allowed_origins` on a secret key: origins are a browser's, and a
    /// secret key never belongs in a browser.
    #[error("allowed_origins is only for publishable keys")]
    OriginsOnSecretKey,
}

/// Why a key that authenticated may not be used from where the request
/// comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum UseRefusal {
    /// The client address is not inside `allowed_ips` (or is unknown).
    #[error("the API key may not be used from this address")]
    IpNotAllowed,
    /// The request's origin matches none of `allowed_origins` (or it sent
    /// none).
    #[error("the API key may not be used from this origin")]
    OriginNotAllowed,
}

/// `allowed_ips`: 1 to 100 CIDR blocks, IPv4 or IPv6, each normalized to its
/// network address (`203.0.113.7/24` is `203.0.113.0/24`, a bare address is
/// a /32 or /128, an IPv4-mapped IPv6 block is its IPv4 block), duplicates
/// dropped, in the order given.
#[derive(Clone, PartialEq, Eq)]
pub struct AllowedIps(Arc<Blocks>);

/// Shared: a key is cloned into caches and events, its blocks need not be.
#[derive(PartialEq, Eq)]
struct Blocks {
    blocks: Vec<IpNet>,
    // Both derived from `blocks` once: merged, sorted and disjoint, so a
    // lookup is a binary search whatever the number of blocks.
    v4: Vec<Ipv4Net>,
    v6: Vec<Ipv6Net>,
}

impl AllowedIps {
    /// The most blocks a key may have.
    pub const MAX: usize = 100;

    /// Parses each entry (`203.0.113.0/24`, `2001:db8::/32`, `198.51.100.7`).
    ///
    /// # Errors
    /// [`RestrictionError::InvalidBlock`] naming the first bad entry, or
    /// [`RestrictionError::IpCount`].
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, RestrictionError> {
        let blocks = entries
            .into_iter()
            .map(parse_block)
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(blocks)
    }

    /// From blocks already parsed (as storage holds them), normalized as
    /// [`AllowedIps::parse`] does.
    ///
    /// # Errors
    /// [`RestrictionError::IpCount`].
    pub fn new(blocks: Vec<IpNet>) -> Result<Self, RestrictionError> {
        let mut seen = std::collections::HashSet::with_capacity(blocks.len());
        let normalized: Vec<IpNet> = blocks
            .into_iter()
            .map(normalize)
            .filter(|block| seen.insert(*block))
            .collect();
        // Counted as stored, as `allowed_origins` is: duplicates dropped.
        if normalized.is_empty() || normalized.len() > Self::MAX {
            return Err(RestrictionError::IpCount);
        }
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for block in &normalized {
            match block {
                IpNet::V4(net) => v4.push(*net),
                IpNet::V6(net) => v6.push(*net),
            }
        }
        let mut v4 = Ipv4Net::aggregate(&v4);
        v4.sort_unstable_by_key(Ipv4Net::network);
        let mut v6 = Ipv6Net::aggregate(&v6);
        v6.sort_unstable_by_key(Ipv6Net::network);
        Ok(AllowedIps(Arc::new(Blocks {
            blocks: normalized,
            v4,
            v6,
        })))
    }

    /// The blocks, normalized, in the order given.
    pub fn blocks(&self) -> &[IpNet] {
        &self.0.blocks
    }

    /// Whether `ip` is inside one of the blocks. An IPv4-mapped IPv6 address
    /// (`::ffff:203.0.113.7`) is its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(ip) => within(&self.0.v4, ip, Ipv4Net::network, |n, a| n.contains(a)),
            IpAddr::V6(ip) => within(&self.0.v6, ip, Ipv6Net::network, |n, a| n.contains(a)),
        }
    }
}

impl fmt::Debug for AllowedIps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.blocks()).finish()
    }
}

/// Whether `ip` is in one of `nets` (sorted by network address, disjoint):
/// only the last network starting at or before `ip` can hold it.
fn within<N, A: Ord + Copy>(
    nets: &[N],
    ip: A,
    network: fn(&N) -> A,
    contains: fn(&N, &A) -> bool,
) -> bool {
    let after = nets.partition_point(|net| network(net) <= ip);
    after > 0 && contains(&nets[after - 1], &ip)
}

/// An address or block as written.
fn parse_block(raw: &str) -> Result<IpNet, RestrictionError> {
    let entry = raw.trim();
    entry
        .parse::<IpNet>()
        .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| RestrictionError::InvalidBlock(quoted_in_error(raw)))
}

/// The block's network address; an IPv4-mapped IPv6 block (`::ffff:0:0/96`
/// and longer) as the IPv4 block it maps.
fn normalize(block: IpNet) -> IpNet {
    let block = block.trunc();
    if let IpNet::V6(v6) = block {
        if v6.prefix_len() >= 96 {
            if let Some(v4) = v6.network().to_ipv4_mapped() {
                if let Ok(net) = Ipv4Net::new(v4, v6.prefix_len() - 96) {
                    return IpNet::V4(net);
                }
            }
        }
    }
    block
}

/// One entry of `allowed_origins`: `scheme://host[:port]`, lowercase, the
/// scheme's default port left out; a host written `*.example.com` allows
/// every subdomain of `example.com` (at any depth), not `example.com`
/// itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigin {
    text: String,
    origin: SeenOrigin,
    /// The host was `*.` + `origin.host`.
    wildcard: bool,
}

impl AllowedOrigin {
    /// Longest origin accepted, in bytes.
    pub const MAX_LEN: usize = 255;

    /// Parses `https://app.example.com`, `https://*.example.com`,
    /// `http://localhost:3000`.
    ///
    /// # Errors
    /// [`RestrictionError::InvalidOrigin`].
    pub fn parse(raw: &str) -> Result<Self, RestrictionError> {
        let invalid = || RestrictionError::InvalidOrigin(quoted_in_error(raw));
        if raw.len() > Self::MAX_LEN {
            return Err(invalid());
        }
        let mut origin = SeenOrigin::parse(raw).ok_or_else(invalid)?;
        let text = origin.to_string();
        let wildcard = match origin.host.strip_prefix("*.") {
            Some(rest) => {
                origin.host = rest.to_owned();
                true
            }
            None => false,
        };
        if !valid_host(&origin.host) {
            return Err(invalid());
        }
        Ok(AllowedOrigin {
            text,
            origin,
            wildcard,
        })
    }

    /// The origin as normalized (`https://*.example.com`).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a request's origin is this one: same scheme and port, and the
    /// same host, or for a wildcard a host that ends in `.` + the host with
    /// at least one label before it.
    fn matches(&self, seen: &SeenOrigin) -> bool {
        let allowed = &self.origin;
        if allowed.scheme != seen.scheme || allowed.port != seen.port {
            return false;
        }
        if !self.wildcard {
            return allowed.host == seen.host;
        }
        seen.host
            .strip_suffix(allowed.host.as_str())
            .and_then(|sub| sub.strip_suffix('.'))
            .is_some_and(|sub| !sub.is_empty() && !sub.ends_with('.'))
    }
}

/// A host of `allowed_origins` (after a `*.`): a DNS name, an IPv4 address
/// or a bracketed IPv6 address.
fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().is_ok();
    }
    if host.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// An origin as a request shows it, normalized: lowercase, without the
/// scheme's default port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SeenOrigin {
    scheme: String,
    host: String,
    /// `None` for the scheme's default port.
    port: Option<u16>,
}

impl SeenOrigin {
    /// `scheme://host[:port]` and nothing else.
    fn parse(raw: &str) -> Option<Self> {
        let lower = raw.trim().to_ascii_lowercase();
        let (scheme, authority) = lower.split_once("://")?;
        let mut chars = scheme.bytes();
        if !chars.next().is_some_and(|b| b.is_ascii_lowercase())
            || !chars.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+.-".contains(&b))
        {
            return None;
        }
        if authority
            .bytes()
            .any(|b| b"/?#@\\".contains(&b) || !b.is_ascii_graphic())
        {
            return None;
        }
        // A port follows the last `:` unless it is inside `[...]`.
        let (host, port) = match authority.rfind(':') {
            Some(i) if !authority[i..].contains(']') => {
                let digits = &authority[i + 1..];
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (&authority[..i], Some(digits.parse::<u16>().ok()?))
            }
            _ => (authority, None),
        };
        if host.is_empty() {
            return None;
        }
        // An IPv6 address in one spelling (`[0:0::1]` is `[::1]`).
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(inner) => match inner.parse::<Ipv6Addr>() {
                Ok(address) => format!("[{address}]"),
                Err(_) => host.to_owned(),
            },
            None => host.to_owned(),
        };
        let default = match scheme {
            "https" | "wss" => Some(443),
            "http" | "ws" => Some(80),
            _ => None,
        };
        Some(SeenOrigin {
            scheme: scheme.to_owned(),
            host,
            port: port.filter(|p| Some(*p) != default),
        })
    }

    /// The origin of a URL (a `Referer`): its scheme and authority, without
    /// user information.
    fn of_url(url: &str) -> Option<Self> {
        let (scheme, rest) = url.trim().split_once("://")?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        Self::parse(&format!("{scheme}://{authority}"))
    }
}

impl fmt::Display for SeenOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// `allowed_origins`: 1 to 50 [`AllowedOrigin`]s, duplicates dropped, in
/// the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigins(Vec<AllowedOrigin>);

impl AllowedOrigins {
    /// The most origins a key may have.
    pub const MAX: usize = 50;

    /// Parses each entry.
    ///
    /// # Errors
    /// [`RestrictionError::InvalidOrigin`] naming the first bad entry, or
    /// [`RestrictionError::OriginCount`].
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, RestrictionError> {
        let mut origins: Vec<AllowedOrigin> = Vec::new();
        for entry in entries {
            let origin = AllowedOrigin::parse(entry)?;
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        if origins.is_empty() || origins.len() > Self::MAX {
            return Err(RestrictionError::OriginCount);
        }
        Ok(AllowedOrigins(origins))
    }

    /// The origins, normalized.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &AllowedOrigin> {
        self.0.iter()
    }

    /// Whether `origin` (an `Origin` header's value, or a URL such as a
    /// `Referer`, whose origin is taken) matches one of them.
    pub fn allows(&self, origin: &str) -> bool {
        let seen = SeenOrigin::parse(origin).or_else(|| SeenOrigin::of_url(origin));
        seen.is_some_and(|seen| self.0.iter().any(|o| o.matches(&seen)))
    }
}

/// The origin of a `Referer` URL (`https://app.example.com/page?q` is
/// `https://app.example.com`), normalized; `None` when it has none.
pub fn origin_of_url(url: &str) -> Option<String> {
    SeenOrigin::of_url(url).map(|o| o.to_string())
}

/// A key's restrictions: where it may be used from. The default restricts
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyRestrictions {
    /// `allowed_ips`: `None` is any address.
    pub allowed_ips: Option<AllowedIps>,
    /// `allowed_origins` (publishable keys only): `None` is any origin.
    pub allowed_origins: Option<AllowedOrigins>,
}

impl KeyRestrictions {
    /// Whether nothing is restricted: then no request needs its address or
    /// origin read.
    pub fn is_unrestricted(&self) -> bool {
        self.allowed_ips.is_none() && self.allowed_origins.is_none()
    }

    /// Checks that a key of `key_type` may hold these restrictions.
    ///
    /// # Errors
    /// [`RestrictionError::OriginsOnSecretKey`].
    pub fn check_type(&self, key_type: KeyType) -> Result<(), RestrictionError> {
        match (key_type, &self.allowed_origins) {
            (KeyType::Secret, Some(_)) => Err(RestrictionError::OriginsOnSecretKey),
            _ => Ok(()),
        }
    }

    /// Whether a key of `key_type` with these restrictions may be used by a
    /// client at `ip` from `origin` (docs/api.md, "Restricting a key"): the
    /// address must be inside `allowed_ips`, and, for a publishable key,
    /// the origin must match one of `allowed_origins`. An unknown address
    /// or origin matches no restriction. Every way a key is used decides
    /// with this function, after the key authenticated and before its
    /// scopes are looked at.
    ///
    /// # Errors
    /// [`UseRefusal::IpNotAllowed`], then [`UseRefusal::OriginNotAllowed`].
    pub fn check(
        &self,
        key_type: KeyType,
        ip: Option<IpAddr>,
        origin: Option<&str>,
    ) -> Result<(), UseRefusal> {
        if let Some(allowed) = &self.allowed_ips {
            if !ip.is_some_and(|ip| allowed.contains(ip)) {
                return Err(UseRefusal::IpNotAllowed);
            }
        }
        if let (KeyType::Publishable, Some(allowed)) = (key_type, &self.allowed_origins) {
            if !origin.is_some_and(|o| allowed.allows(o)) {
                return Err(UseRefusal::OriginNotAllowed);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(entries: &[&str]) -> AllowedIps {
        AllowedIps::parse(entries.iter().copied()).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_are_normalized_and_deduplicated() {
        let allowed = ips(&[
            "203.0.113.7/24",
            "198.51.100.7",
            "2001:db8::1/32",
            "203.0.113.0/24",
            "::ffff:192.0.2.0/120",
        ]);
        let shown: Vec<String> = allowed.blocks().iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "203.0.113.0/24",
                "198.51.100.7/32",
                "2001:db8::/32",
                "192.0.2.0/24"
            ]
        );
    }

    #[test]
    fn bad_blocks_and_counts_are_refused() {
        assert_eq!(
            AllowedIps::parse(["10.0.0.0/33"]),
            Err(RestrictionError::InvalidBlock("10.0.0.0/33".into()))
        );
        assert_eq!(
            AllowedIps::parse(["example.com"]),
            Err(RestrictionError::InvalidBlock("example.com".into()))
        );
        assert_eq!(AllowedIps::parse([]), Err(RestrictionError::IpCount));
        let many: Vec<String> = (0..=100).map(|i| format!("10.0.{i}.0/24")).collect();
        assert_eq!(
            AllowedIps::parse(many.iter().map(String::as_str)),
            Err(RestrictionError::IpCount)
        );
        // Counted as stored: 100 blocks and their duplicates are 100.
        let doubled: Vec<String> = (0..100)
            .flat_map(|i| [format!("10.0.{i}.0/24"), format!("10.0.{i}.7/24")])
            .collect();
        let doubled = AllowedIps::parse(doubled.iter().map(String::as_str)).unwrap();
        assert_eq!(doubled.blocks().len(), 100);
    }

    #[test]
    fn a_refused_entry_is_quoted_but_never_a_key() {
        let key = crate::PlainKey::generate(
            KeyType::Secret,
            crate::Mode::Live,
            &crate::testing::SeqSecretSource::new(3),
        );
        let key = key.expose_secret();
        for entry in [key, &key[8..]] {
            assert_eq!(
                AllowedIps::parse([entry]),
                Err(RestrictionError::InvalidBlock("[redacted]".into()))
            );
            assert_eq!(
                AllowedOrigins::parse([entry]),
                Err(RestrictionError::InvalidOrigin("[redacted]".into()))
            );
        }
        let long = "x".repeat(300);
        let Err(RestrictionError::InvalidBlock(quoted)) = AllowedIps::parse([long.as_str()]) else {
            panic!("refused");
        };
        assert_eq!(quoted, format!("{}…", "x".repeat(100)));
    }

    #[test]
    fn addresses_match_their_blocks_v4_mapped_included() {
        let allowed = ips(&[
            "203.0.113.0/24",
            "2001:db8::/32",
            "10.0.0.0/8",
            "10.1.0.0/16",
        ]);
        assert!(allowed.contains(ip("203.0.113.255")));
        assert!(allowed.contains(ip("::ffff:203.0.113.9")));
        assert!(allowed.contains(ip("10.1.2.3")));
        assert!(allowed.contains(ip("2001:db8:ffff::1")));
        assert!(!allowed.contains(ip("203.0.114.0")));
        assert!(!allowed.contains(ip("2001:db9::1")));
        assert!(!allowed.contains(ip("11.0.0.0")));
    }

    #[test]
    fn origins_parse_normalized() {
        let o = AllowedOrigins::parse([
            "HTTPS://App.Example.com:443",
            "https://*.example.com",
            "http://localhost:3000",
            "https://app.example.com",
        ])
        .unwrap();
        let shown: Vec<&str> = o.iter().map(AllowedOrigin::as_str).collect();
        assert_eq!(
            shown,
            [
                "https://app.example.com",
                "https://*.example.com",
                "http://localhost:3000"
            ]
        );
        for bad in [
            "example.com",
            "https://example.com/",
            "https://example.com/path",
            "https://*.",
            "https://*",
            "https://ex ample.com",
            "https://user@example.com",
            "https://example.com:99999",
            "https://a.*.example.com",
            "*://example.com",
        ] {
            assert_eq!(
                AllowedOrigins::parse([bad]),
                Err(RestrictionError::InvalidOrigin(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_ipv6_origin_has_one_spelling() {
        let origins = AllowedOrigins::parse(["http://[0:0::1]:3000"]).unwrap();
        assert_eq!(
            origins
                .iter()
                .map(AllowedOrigin::as_str)
                .collect::<Vec<_>>(),
            ["http://[::1]:3000"]
        );
        assert!(origins.allows("http://[::1]:3000"));
        assert!(origins.allows("http://[0000::0001]:3000"));
        assert!(!origins.allows("http://[::2]:3000"));
    }

    #[test]
    fn wildcards_match_subdomains_not_the_bare_host() {
        let o = AllowedOrigins::parse(["https://*.example.com", "http://*.test.dev:8080"]).unwrap();
        assert!(o.allows("https://app.example.com"));
        assert!(o.allows("https://a.b.example.com"));
        assert!(o.allows("https://app.example.com:443"));
        assert!(o.allows("https://app.example.com/page?q=1"));
        assert!(!o.allows("https://example.com"));
        assert!(!o.allows("https://evilexample.com"));
        assert!(!o.allows("http://app.example.com"));
        assert!(!o.allows("https://app.example.com:8443"));
        assert!(!o.allows("https://app.example.com.evil.net"));
        assert!(o.allows("http://x.test.dev:8080"));
        assert!(!o.allows("http://x.test.dev"));
        assert!(!o.allows("null"));
        assert!(!o.allows(""));
    }

    #[test]
    fn exact_origins_match_exactly() {
        let o = AllowedOrigins::parse(["https://app.example.com"]).unwrap();
        assert!(o.allows("https://APP.example.com"));
        assert!(!o.allows("https://www.app.example.com"));
        assert_eq!(
            origin_of_url("https://u:p@app.example.com:443/x#y").as_deref(),
            Some("https://app.example.com")
        );
    }

    #[test]
    fn the_check_refuses_an_address_first_then_an_origin() {
        let r = KeyRestrictions {
            allowed_ips: Some(ips(&["203.0.113.0/24"])),
            allowed_origins: Some(AllowedOrigins::parse(["https://*.example.com"]).unwrap()),
        };
        let good_ip = Some(ip("203.0.113.5"));
        let p = KeyType::Publishable;
        assert_eq!(r.check(p, good_ip, Some("https://a.example.com")), Ok(()));
        assert_eq!(
            r.check(p, None, Some("https://a.example.com")),
            Err(UseRefusal::IpNotAllowed)
        );
        assert_eq!(
            r.check(p, Some(ip("198.51.100.1")), None),
            Err(UseRefusal::IpNotAllowed)
        );
        assert_eq!(r.check(p, good_ip, None), Err(UseRefusal::OriginNotAllowed));
        assert_eq!(
            r.check(p, good_ip, Some("https://example.org")),
            Err(UseRefusal::OriginNotAllowed)
        );
        assert_eq!(
            r.check_type(KeyType::Secret),
            Err(RestrictionError::OriginsOnSecretKey)
        );
        assert!(KeyRestrictions::default().is_unrestricted());
        assert_eq!(KeyRestrictions::default().check(p, None, None), Ok(()));
    }
}
