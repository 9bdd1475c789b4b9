//! Watch lists: addresses and networks to flag, one per line, `#` starts a comment.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;

use crate::prefixes::PrefixTable;
use crate::EnrichError;

/// A match: the entry as written in the file, and the file's name.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchHit {
    pub entry: Arc<str>,
    pub list: Arc<str>,
}

/// Every watch list given, merged (the first list naming a network wins).
#[derive(Debug, Default)]
pub struct Watchlist {
    table: PrefixTable<WatchHit>,
}

impl Watchlist {
    /// Adds a file. A line that is neither an address nor a network is an error naming the
    /// file and line: a typo must not silently leave an address unwatched.
    pub fn add_file(&mut self, path: &Path) -> Result<(), EnrichError> {
        let text = std::fs::read_to_string(path).map_err(|e| EnrichError::io(path, e))?;
        let list: Arc<str> = path
            .file_name()
            .map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
            .into();
        for (i, line) in text.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            let net = entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    EnrichError::line(
                        path,
                        i + 1,
                        format!("`{entry}` is not an IP address or CIDR network"),
                    )
                })?;
            self.table.entry(net, || WatchHit {
                entry: entry.into(),
                list: Arc::clone(&list),
            });
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<&WatchHit> {
        self.table.longest_match(ip).map(|(_, hit)| hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_networks_and_comments() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad-ips.txt");
        std::fs::write(
            &p,
            "# Tor exits\n185.220.101.0/24\n\n203.0.113.7   # scanner\n2001:db8::/32\n",
        )
        .unwrap();
        let mut w = Watchlist::default();
        w.add_file(&p).unwrap();
        let get = |ip: &str| {
            w.lookup(ip.parse().unwrap())
                .map(|h| format!("{} {}", h.entry, h.list))
        };
        assert_eq!(
            get("185.220.101.4").as_deref(),
            Some("185.220.101.0/24 bad-ips.txt")
        );
        assert_eq!(
            get("203.0.113.7").as_deref(),
            Some("203.0.113.7 bad-ips.txt")
        );
        assert_eq!(
            get("2001:db8::5").as_deref(),
            Some("2001:db8::/32 bad-ips.txt")
        );
        assert_eq!(get("203.0.113.8"), None);
        std::fs::write(&p, "10.0.0.0/8\n10.0.0.300\n").unwrap();
        let err = Watchlist::default().add_file(&p).unwrap_err().to_string();
        assert!(
            err.ends_with("bad-ips.txt: line 2: `10.0.0.300` is not an IP address or CIDR network"),
            "{err}"
        );
    }
}
