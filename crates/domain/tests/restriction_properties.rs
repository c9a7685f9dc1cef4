//! Property tests of a key's restrictions (docs/api.md, "Restricting a
//! key"): random IPv4 and IPv6 blocks hold the addresses inside them and no
//! other, an IPv4 client seen over IPv6 (`::ffff:a.b.c.d`) is judged as its
//! IPv4 address, a set of up to 100 blocks answers as asking each block in
//! turn would, and a wildcard origin allows the subdomains of its host and
//! nothing else.
//!
//! The oracle here is arithmetic on the address as an integer (a block is
//! the addresses that agree with its network on the first `prefix` bits),
//! independent of the merged, sorted lookup [`AllowedIps`] does.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use domain::{AllowedIps, AllowedOrigins, KeyRestrictions, KeyType, UseRefusal};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;

/// The mask of a `prefix`-bit network of a `bits`-bit address family.
fn mask(bits: u32, prefix: u8) -> u128 {
    let all = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    // The bits after the prefix are the host's; a /128 has none.
    all & !all.checked_shr(u32::from(prefix)).unwrap_or(0)
}

/// A block as the oracle sees it: family width, network, prefix.
#[derive(Debug, Clone, Copy)]
struct Block {
    bits: u32,
    network: u128,
    prefix: u8,
}

impl Block {
    fn v4(address: u32, prefix: u8) -> Block {
        Block {
            bits: 32,
            network: u128::from(address) & mask(32, prefix),
            prefix,
        }
    }

    fn v6(address: u128, prefix: u8) -> Block {
        Block {
            bits: 128,
            network: address & mask(128, prefix),
            prefix,
        }
    }

    /// As written by a client: the given address (host bits and all) and
    /// the prefix.
    fn written(&self, address: u128) -> String {
        match self.bits {
            32 => format!("{}/{}", Ipv4Addr::from(address as u32), self.prefix),
            _ => format!("{}/{}", Ipv6Addr::from(address), self.prefix),
        }
    }

    fn net(&self) -> IpNet {
        match self.bits {
            32 => Ipv4Net::new(Ipv4Addr::from(self.network as u32), self.prefix)
                .unwrap()
                .into(),
            _ => Ipv6Net::new(Ipv6Addr::from(self.network), self.prefix)
                .unwrap()
                .into(),
        }
    }

    fn address(&self, value: u128) -> IpAddr {
        match self.bits {
            32 => IpAddr::V4(Ipv4Addr::from(value as u32)),
            _ => IpAddr::V6(Ipv6Addr::from(value)),
        }
    }

    /// An address of the block: the network with `host` as its host bits.
    fn inside(&self, host: u128) -> u128 {
        self.network | (host & !mask(self.bits, self.prefix) & all(self.bits))
    }

    /// An address outside the block: `inside` with bit `at` (counted from
    /// the most significant, within the prefix) flipped. `None` for a /0.
    fn outside(&self, host: u128, at: u8) -> Option<u128> {
        (self.prefix > 0).then(|| {
            let bit = u32::from(at % self.prefix);
            self.inside(host) ^ (1u128 << (self.bits - 1 - bit))
        })
    }

    /// Whether `ip` is inside, by arithmetic (an IPv4-mapped IPv6 address is
    /// its IPv4 address).
    fn holds(&self, ip: IpAddr) -> bool {
        let (bits, value) = match ip.to_canonical() {
            IpAddr::V4(v4) => (32, u128::from(u32::from(v4))),
            IpAddr::V6(v6) => (128, u128::from(v6)),
        };
        bits == self.bits && value & mask(bits, self.prefix) == self.network
    }
}

/// Every bit of a `bits`-bit address.
fn all(bits: u32) -> u128 {
    mask(bits, bits as u8)
}

fn v4_block() -> impl Strategy<Value = (Block, u32)> {
    (any::<u32>(), 0u8..=32).prop_map(|(address, prefix)| (Block::v4(address, prefix), address))
}

fn v6_block() -> impl Strategy<Value = (Block, u128)> {
    (any::<u128>(), 0u8..=128).prop_map(|(address, prefix)| (Block::v6(address, prefix), address))
}

/// A block of either family, biased to long prefixes (the blocks keys
/// are pinned to), so that sets of them leave room outside.
fn any_block() -> impl Strategy<Value = Block> {
    prop_oneof![
        (any::<u32>(), 8u8..=32).prop_map(|(a, p)| Block::v4(a, p)),
        (any::<u128>(), 32u8..=128).prop_map(|(a, p)| Block::v6(a, p)),
        // Near one another, so that blocks nest, touch and overlap.
        (0u32..4096, 20u8..=32).prop_map(|(a, p)| Block::v4(0xCB00_7000 | a, p)),
        (0u128..4096, 116u8..=128).prop_map(|(a, p)| Block::v6((0x2001_0db8u128 << 96) | a, p)),
    ]
}

fn allowed(blocks: &[Block]) -> AllowedIps {
    AllowedIps::new(blocks.iter().map(Block::net).collect()).unwrap()
}

/// The IPv4-mapped IPv6 form of an IPv4 address.
fn mapped(v4: u32) -> IpAddr {
    IpAddr::V6(Ipv4Addr::from(v4).to_ipv6_mapped())
}

proptest! {
    #[test]
    fn a_v4_block_holds_its_addresses_and_no_other(
        (block, written) in v4_block(),
        host in any::<u128>(),
        at in any::<u8>(),
    ) {
        // Written with its host bits set, read back as its network.
        let ips = AllowedIps::parse([block.written(u128::from(written)).as_str()]).unwrap();
        prop_assert_eq!(ips.blocks(), &[block.net()]);
        let inside = block.inside(host);
        prop_assert!(ips.contains(block.address(inside)));
        prop_assert!(ips.contains(mapped(inside as u32)), "v4-mapped");
        if let Some(outside) = block.outside(host, at) {
            prop_assert!(!ips.contains(block.address(outside)));
            prop_assert!(!ips.contains(mapped(outside as u32)), "v4-mapped");
        }
    }

    #[test]
    fn a_v6_block_holds_its_addresses_and_no_other(
        (block, written) in v6_block(),
        host in any::<u128>(),
        at in any::<u8>(),
    ) {
        let ips = AllowedIps::parse([block.written(written).as_str()]).unwrap();
        // A block inside ::ffff:0:0/96 is the IPv4 block it maps.
        if block.prefix >= 96 && block.network >> 32 == 0xffff {
            let v4 = Block::v4(block.network as u32, block.prefix - 96);
            prop_assert_eq!(ips.blocks(), &[v4.net()]);
        } else {
            prop_assert_eq!(ips.blocks(), &[block.net()]);
        }
        prop_assert!(ips.contains(block.address(block.inside(host))));
        if let Some(outside) = block.outside(host, at) {
            prop_assert!(!ips.contains(block.address(outside)));
        }
        // An IPv6 block holds no IPv4 client, unless it maps IPv4 blocks.
        if !(block.prefix >= 96 && block.network >> 32 == 0xffff) {
            prop_assert!(!ips.contains(IpAddr::V4(Ipv4Addr::from(host as u32))));
        }
    }

    #[test]
    fn a_v4_mapped_block_is_its_v4_block(
        (block, written) in v4_block(),
        host in any::<u128>(),
        at in any::<u8>(),
    ) {
        let as_v6 = format!(
            "{}/{}",
            Ipv4Addr::from(written).to_ipv6_mapped(),
            block.prefix + 96
        );
        let ips = AllowedIps::parse([as_v6.as_str()]).unwrap();
        prop_assert_eq!(ips.blocks(), &[block.net()]);
        let inside = block.inside(host) as u32;
        prop_assert!(ips.contains(IpAddr::V4(Ipv4Addr::from(inside))));
        prop_assert!(ips.contains(mapped(inside)));
        if let Some(outside) = block.outside(host, at) {
            prop_assert!(!ips.contains(IpAddr::V4(Ipv4Addr::from(outside as u32))));
        }
    }

    #[test]
    fn a_bare_address_is_a_block_of_one(address in any::<u128>(), v4 in any::<bool>()) {
        let (block, ip) = if v4 {
            (Block::v4(address as u32, 32), IpAddr::V4(Ipv4Addr::from(address as u32)))
        } else {
            // Not a mapped address: that one reads back as IPv4.
            let address = address | (1 << 127);
            (Block::v6(address, 128), IpAddr::V6(Ipv6Addr::from(address)))
        };
        let ips = AllowedIps::parse([ip.to_string().as_str()]).unwrap();
        prop_assert_eq!(ips.blocks(), &[block.net()]);
        prop_assert!(ips.contains(ip));
        let next = block.address(block.network ^ 1);
        prop_assert!(!ips.contains(next));
    }

    /// Up to 100 blocks, merged and searched, answer as asking each block.
    #[test]
    fn a_set_of_blocks_answers_as_its_blocks_one_by_one(
        blocks in prop::collection::vec(any_block(), 1..=100),
        probes in prop::collection::vec((any::<prop::sample::Index>(), any::<u128>(), any::<u8>(), 0u8..4), 1..64),
    ) {
        let ips = allowed(&blocks);
        for (pick, host, at, how) in probes {
            let block = pick.get(&blocks);
            // Inside a block, just outside it (a bit of its prefix flipped,
            // or one past either end), or a random address.
            let value = match how {
                0 => block.inside(host),
                1 => block.outside(host, at).unwrap_or(host),
                2 => block.network.wrapping_sub(1) & all(block.bits),
                _ => (block.network | !mask(block.bits, block.prefix)).wrapping_add(1) & all(block.bits),
            };
            let ip = block.address(value);
            let expected = blocks.iter().any(|b| b.holds(ip));
            prop_assert_eq!(ips.contains(ip), expected, "{} in {:?}", ip, blocks);
            if block.bits == 32 {
                prop_assert_eq!(ips.contains(mapped(value as u32)), expected, "v4-mapped {}", ip);
            }
        }
    }

    /// A wildcard origin allows every subdomain of its host, at any depth,
    /// with the same scheme and port, and never the host itself.
    #[test]
    fn a_wildcard_origin_allows_the_subdomains_of_its_host_only(
        host in "[a-z][a-z0-9]{0,8}(\\.[a-z][a-z0-9]{0,8}){1,2}",
        subdomain in "[a-z0-9]{1,8}(\\.[a-z0-9]{1,8}){0,2}",
        lookalike in "[a-z0-9]{1,8}",
        port in prop::option::of(1024u16..),
    ) {
        let port_part = port.map(|p| format!(":{p}")).unwrap_or_default();
        let origins = AllowedOrigins::parse([format!("https://*.{host}{port_part}").as_str()]).unwrap();
        let at = |scheme: &str, h: &str, port: &str| format!("{scheme}://{h}{port}");
        let sub = format!("{subdomain}.{host}");
        prop_assert!(origins.allows(&at("https", &sub, &port_part)));
        prop_assert!(origins.allows(&at("HTTPS", &sub.to_uppercase(), &port_part)), "case");
        prop_assert!(origins.allows(&format!("{}/some/page?x=1", at("https", &sub, &port_part))), "a Referer");
        prop_assert!(!origins.allows(&at("https", &host, &port_part)), "the bare host");
        prop_assert!(!origins.allows(&at("http", &sub, &port_part)), "another scheme");
        prop_assert!(!origins.allows(&at("https", &sub, ":1")), "another port");
        // A host that merely ends with the same letters is another site.
        let other = format!("{lookalike}{host}");
        prop_assert!(!origins.allows(&at("https", &other, &port_part)), "{}", other);
        let longer = format!("{host}.{lookalike}");
        prop_assert!(!origins.allows(&at("https", &longer, &port_part)), "{}", longer);

        // Only a publishable key is judged by its origin.
        let restrictions = KeyRestrictions { allowed_ips: None, allowed_origins: Some(origins) };
        let sub_origin = at("https", &sub, &port_part);
        prop_assert_eq!(restrictions.check(KeyType::Publishable, None, Some(&sub_origin)), Ok(()));
        prop_assert_eq!(
            restrictions.check(KeyType::Publishable, None, Some(&at("https", &host, &port_part))),
            Err(UseRefusal::OriginNotAllowed)
        );
        prop_assert_eq!(restrictions.check(KeyType::Publishable, None, None), Err(UseRefusal::OriginNotAllowed));
    }
}
