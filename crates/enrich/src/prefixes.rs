//! Longest-prefix match over IPv4 and IPv6 networks, shared by ip-ranges.json and watch
//! lists.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

/// Values by network; a lookup answers with the most specific network holding an address.
#[derive(Debug, Clone)]
pub(crate) struct PrefixTable<T> {
    v4: PrefixMap<Ipv4Net, T>,
    v6: PrefixMap<Ipv6Net, T>,
    len: usize,
}

impl<T> Default for PrefixTable<T> {
    fn default() -> Self {
        Self {
            v4: PrefixMap::new(),
            v6: PrefixMap::new(),
            len: 0,
        }
    }
}

impl<T> PrefixTable<T> {
    /// The value stored for exactly `net`, to be set or merged.
    pub fn entry(&mut self, net: IpNet, value: impl FnOnce() -> T) -> &mut T {
        let len = &mut self.len;
        let make = || {
            *len += 1;
            value()
        };
        match net.trunc() {
            IpNet::V4(n) => self.v4.entry(n).or_insert_with(make),
            IpNet::V6(n) => self.v6.entry(n).or_insert_with(make),
        }
    }

    /// The most specific network holding `ip` and its value. IPv4-mapped IPv6 addresses
    /// are looked up as IPv4.
    pub fn longest_match(&self, ip: IpAddr) -> Option<(IpNet, &T)> {
        match ip {
            IpAddr::V4(v4) => self
                .v4
                .get_lpm(&Ipv4Net::from(v4))
                .map(|(n, t)| (IpNet::V4(n), t)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.longest_match(IpAddr::V4(v4)),
                None => self
                    .v6
                    .get_lpm(&Ipv6Net::from(v6))
                    .map(|(n, t)| (IpNet::V6(n), t)),
            },
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_specific_wins() {
        let mut t = PrefixTable::default();
        *t.entry("52.0.0.0/8".parse().unwrap(), || 0) = 1;
        *t.entry("52.94.0.0/16".parse().unwrap(), || 0) = 2;
        *t.entry("2600:1f18::/32".parse().unwrap(), || 0) = 3;
        let get = |ip: &str| {
            t.longest_match(ip.parse().unwrap())
                .map(|(n, v)| (n.to_string(), *v))
        };
        assert_eq!(get("52.94.1.1"), Some(("52.94.0.0/16".into(), 2)));
        assert_eq!(get("52.1.1.1"), Some(("52.0.0.0/8".into(), 1)));
        assert_eq!(get("::ffff:52.1.1.1"), Some(("52.0.0.0/8".into(), 1)));
        assert_eq!(get("2600:1f18:aaaa::1"), Some(("2600:1f18::/32".into(), 3)));
        assert_eq!(get("8.8.8.8"), None);
        assert_eq!(t.len(), 3);
    }
}
