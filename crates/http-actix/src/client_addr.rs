//! The client's address, for the abuse limits (docs/api.md, "Abuse
//! limits"): the peer address, or the `X-Forwarded-For` entry added by a
//! configured trusted proxy. Without trusted proxies the header is ignored,
//! so a client cannot choose the address it is counted under.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use actix_web::http::header::HeaderMap;
use actix_web::HttpRequest;

/// `X-Forwarded-For`.
const FORWARDED_FOR: &str = "x-forwarded-for";

/// One address range: an address and the length of its network prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// `203.0.113.7`, `10.0.0.0/8`, `2001:db8::/32`.
    fn parse(raw: &str) -> Option<Self> {
        let (addr, prefix) = match raw.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (raw, None),
        };
        let addr = canonical(addr.trim().parse().ok()?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
        };
        Some(Network { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The proxies whose `X-Forwarded-For` is believed: addresses or ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Network>);

impl TrustedProxies {
    /// No trusted proxy: `X-Forwarded-For` is ignored.
    pub fn none() -> Self {
        TrustedProxies(Vec::new())
    }

    /// A comma-separated list of addresses and ranges, such as
    /// `10.0.0.0/8, 192.168.1.10, fd00::/8`.
    ///
    /// # Errors
    /// The first entry that is neither, as written.
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| Network::parse(entry).ok_or_else(|| entry.to_owned()))
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The client's address for a request from `peer`: `peer` itself, unless
    /// it is a trusted proxy; then the rightmost `X-Forwarded-For` entry that
    /// is not a trusted proxy (each proxy appends the address it saw, so
    /// entries further left were written by the client and prove nothing).
    /// A malformed entry where the client's should be counts the request
    /// under the proxy's address.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let mut last_proxy = peer;
        // Several headers are one list, in order.
        for value in headers.get_all(FORWARDED_FOR).rev() {
            let Ok(value) = value.to_str() else {
                return peer;
            };
            for entry in value.rsplit(',') {
                let Some(ip) = parse_entry(entry) else {
                    return peer;
                };
                if !self.trusts(ip) {
                    return ip;
                }
                last_proxy = ip;
            }
        }
        last_proxy
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:443`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .map(canonical)
}

/// The key an address is counted under: an IPv4 address, or the /64
/// network of an IPv6 address, since one subscriber usually holds a whole
/// /64 and could otherwise take a fresh address for every attempt.
pub(crate) fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
    }
}

/// The client's address of `req` under `proxies`; `None` when actix knows
/// no peer (a test request, a Unix socket).
pub(crate) fn client_address(req: &HttpRequest, proxies: &TrustedProxies) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    Some(proxies.client_of(peer, req.headers()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(
                HeaderName::from_static(FORWARDED_FOR),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn networks_and_addresses_parse_and_match() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.168.1.10 ,fd00::/8,").unwrap();
        assert_eq!(proxies.to_string(), "10.0.0.0/8, 192.168.1.10/32, fd00::/8");
        assert!(proxies.trusts(ip("10.200.3.4")));
        assert!(proxies.trusts(ip("::ffff:10.1.1.1")));
        assert!(proxies.trusts(ip("192.168.1.10")));
        assert!(!proxies.trusts(ip("192.168.1.11")));
        assert!(proxies.trusts(ip("fd12::1")));
        assert!(!proxies.trusts(ip("fe80::1")));
        assert_eq!(
            TrustedProxies::parse("10.0.0.0/33"),
            Err("10.0.0.0/33".into())
        );
        assert_eq!(
            TrustedProxies::parse("proxy.local"),
            Err("proxy.local".into())
        );
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        assert!(TrustedProxies::parse("0.0.0.0/0")
            .unwrap()
            .trusts(ip("8.8.8.8")));
    }

    #[test]
    fn without_trusted_proxies_forwarded_for_is_ignored() {
        let headers = forwarded(&["198.51.100.1"]);
        assert_eq!(
            TrustedProxies::none().client_of(ip("203.0.113.9"), &headers),
            ip("203.0.113.9")
        );
        let proxies = TrustedProxies::parse("10.0.0.1").unwrap();
        assert_eq!(
            proxies.client_of(ip("203.0.113.9"), &headers),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_rightmost_untrusted_entry() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let peer = ip("10.0.0.1");
        // The client wrote the first entry itself; the proxies appended the rest.
        let headers = forwarded(&["1.1.1.1, 198.51.100.7", "10.0.0.2"]);
        assert_eq!(proxies.client_of(peer, &headers), ip("198.51.100.7"));
        let headers = forwarded(&["[2001:db8::5]:443"]);
        assert_eq!(proxies.client_of(peer, &headers), ip("2001:db8::5"));
        // No header, or junk where the client's address should be: the proxy.
        assert_eq!(proxies.client_of(peer, &HeaderMap::new()), peer);
        assert_eq!(proxies.client_of(peer, &forwarded(&["unknown"])), peer);
        // Only proxies: the first of them.
        assert_eq!(
            proxies.client_of(peer, &forwarded(&["10.9.9.9, 10.0.0.2"])),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_network() {
        assert_eq!(limit_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(limit_key(ip("203.0.113.9")), ip("203.0.113.9"));
    }
}
