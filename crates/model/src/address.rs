//! IP addresses in text form, read exactly as `std::net` reads them but without its cost.
//!
//! Every stage meets addresses as text: the decoder checks them, enrichment looks them
//! up, the encoders hash them for the Community ID. Nine in ten are dotted quads, and
//! std's parser, general over `str`, costs several times what a direct read does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A dotted quad as [`Ipv4Addr`]'s `FromStr` accepts it: four decimal octets of at most
/// 255, without leading zeros ("0" but not "01"), nothing else.
#[inline]
pub fn parse_ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    if b.len() < 7 || b.len() > 15 {
        return None;
    }
    let mut octets = [0u8; 4];
    let mut octet = 0;
    let mut value: u32 = 0;
    let mut digits = 0;
    for &c in b {
        if c == b'.' {
            if digits == 0 || octet == 3 {
                return None;
            }
            octets[octet] = value as u8;
            octet += 1;
            digits = 0;
            value = 0;
            continue;
        }
        let d = c.wrapping_sub(b'0');
        // A leading zero is only allowed as the whole octet.
        if d > 9 || (digits == 1 && value == 0) {
            return None;
        }
        value = value * 10 + u32::from(d);
        digits += 1;
        if value > 255 {
            return None;
        }
    }
    if octet != 3 || digits == 0 {
        return None;
    }
    octets[3] = value as u8;
    Some(Ipv4Addr::from(octets))
}

/// An IPv4 or IPv6 address as [`IpAddr`]'s `FromStr` accepts it.
#[inline]
pub fn parse_ip(b: &[u8]) -> Option<IpAddr> {
    if let Some(v4) = parse_ipv4(b) {
        return Some(IpAddr::V4(v4));
    }
    // Only IPv6 is left; the standard parser is exact and IPv6 is rare enough.
    std::str::from_utf8(b).ok()?.parse().ok().map(IpAddr::V6)
}

/// True for addresses that are routed on the internet: not private (RFC 1918, unique
/// local), loopback, link-local, shared (RFC 6598 carrier-grade NAT), unspecified,
/// multicast, broadcast or reserved. GeoIP and ASN lookups skip the others, as their
/// answers for them are meaningless.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0
        || a >= 240
        // 100.64.0.0/10, shared address space.
        || (a == 100 && (b & 0xc0) == 64))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7 unique local, fe80::/10 link-local.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80)
}

/// The address as a number, IPv4 as its IPv4-mapped IPv6 form, so both families share
/// one ordered key space.
pub fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_agrees_with_std() {
        for s in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.1",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "01.1.1.1",
            "1..1.1",
            "1.1.1.",
            ".1.1.1",
            "1.1.1.1a",
            "",
            "1234.1.1.1",
            "0.00.0.0",
            "a.b.c.d",
        ] {
            assert_eq!(parse_ipv4(s.as_bytes()), s.parse::<Ipv4Addr>().ok(), "{s}");
        }
    }

    #[test]
    fn ipv4_agrees_with_std_on_digit_and_dot_strings() {
        // Every string of up to six characters over a small alphabet, and a pseudo-random
        // sample of longer ones: octet lengths, leading zeros, values around 255.
        let alphabet = b"0125.9";
        let mut cases: Vec<Vec<u8>> = vec![Vec::new()];
        let mut all = Vec::new();
        for _ in 0..6 {
            cases = cases
                .iter()
                .flat_map(|c| {
                    alphabet.iter().map(move |&a| {
                        let mut c = c.clone();
                        c.push(a);
                        c
                    })
                })
                .collect();
            all.extend(cases.iter().cloned());
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300_000 {
            // Four octets of zero to four digits, mostly joined by dots.
            let mut case = Vec::new();
            for octet in 0..4 {
                if octet > 0 {
                    case.push(match next() % 32 {
                        0 => b':',
                        1 => b'a',
                        _ => b'.',
                    });
                }
                let digits = [1, 1, 2, 2, 3, 3, 3, 0, 4][(next() % 9) as usize];
                for _ in 0..digits {
                    case.push(b"0122555679"[(next() % 10) as usize]);
                }
            }
            all.push(case);
        }
        let mut valid = 0;
        for case in &all {
            let s = std::str::from_utf8(case).unwrap();
            let expected = s.parse::<IpAddr>().ok();
            valid += expected.is_some_and(|ip| ip.is_ipv4()) as usize;
            assert_eq!(parse_ip(case), expected, "{s}");
        }
        assert!(valid > 1000, "only {valid} valid addresses among the cases");
    }

    #[test]
    fn ipv6_goes_through_std() {
        for s in [
            "::1",
            "2600:1f18:42ba:931c::4cb6",
            "::ffff:1.2.3.4",
            ":::1",
            "1::2::3",
        ] {
            assert_eq!(parse_ip(s.as_bytes()), s.parse::<IpAddr>().ok(), "{s}");
        }
    }

    #[test]
    fn public_and_not() {
        for ip in [
            "8.8.8.8",
            "185.220.101.4",
            "2600:1f18::1",
            "100.128.0.1",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "10.0.3.17",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "fd00::1",
            "fe80::1",
            "::1",
            "::ffff:10.1.2.3",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
