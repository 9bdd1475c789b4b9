//! ASN from CSV range files, `start,end,asn,organization` per line (the layout of
//! ip-location-db's `asn-ipv4.csv` / `asn-ipv6.csv`, and of most IP-to-ASN exports).

use std::net::IpAddr;

use flowlog_model::address::parse_ip;
use std::path::Path;
use std::sync::Arc;

use crate::geoip::Asn;
use crate::EnrichError;
use flowlog_model::address::key;

/// Non-overlapping address ranges with their AS, sorted by start.
#[derive(Debug, Default)]
pub struct AsnRanges {
    /// (first, last, AS number, index into `organizations`)
    ranges: Vec<(u128, u128, u32, u32)>,
    organizations: Vec<Arc<str>>,
    /// `file name@CRC-32 of its content` of each file read, stamped on events. A CSV file
    /// says nothing of its build, and its modification time is where and when it was
    /// copied (npm sets every file of a package to 1985-10-26): the same content gives the
    /// same stamp on every machine.
    pub(crate) labels: Vec<String>,
}

/// A reader that keeps the CRC-32 of what has been read through it (the whole file once
/// the CSV reader is done), so the stamp costs no second pass.
struct Checksummed<R> {
    inner: R,
    hasher: crc32fast::Hasher,
}

impl<R> Checksummed<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: crc32fast::Hasher::new(),
        }
    }
}

impl<R: std::io::Read> std::io::Read for Checksummed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl AsnRanges {
    /// Adds the ranges of one CSV file. A line that is not `start,end,asn,org` is an
    /// error naming the file and line: a range table with holes would answer wrongly.
    pub fn add_file(&mut self, path: &Path) -> Result<(), EnrichError> {
        let file = std::fs::File::open(path).map_err(|e| EnrichError::io(path, e))?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(Checksummed::new(file));
        // Organizations repeat (a large AS announces thousands of ranges): one copy each.
        let mut by_name: hashbrown::HashMap<Arc<str>, u32> = self
            .organizations
            .iter()
            .enumerate()
            .map(|(i, org)| (Arc::clone(org), i as u32))
            .collect();
        let mut record = csv::ByteRecord::new();
        let mut line = 0;
        loop {
            line += 1;
            match reader.read_byte_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => return Err(EnrichError::line(path, line, e.to_string())),
            }
            let field = |i: usize, name: &str| {
                record.get(i).ok_or_else(|| {
                    EnrichError::line(path, line, format!("no {name} (column {})", i + 1))
                })
            };
            let ip = |i: usize, name: &str| -> Result<u128, EnrichError> {
                let text = field(i, name)?;
                parse_ip(text).map(key).ok_or_else(|| {
                    let text = String::from_utf8_lossy(text);
                    EnrichError::line(path, line, format!("{name} `{text}` is not an IP address"))
                })
            };
            let (first, last) = (ip(0, "start")?, ip(1, "end")?);
            let asn_text = field(2, "asn")?;
            let digits = asn_text.strip_prefix(b"AS").unwrap_or(asn_text);
            let asn: u32 = std::str::from_utf8(digits)
                .ok()
                .and_then(|d| d.parse().ok())
                .ok_or_else(|| {
                    let text = String::from_utf8_lossy(asn_text);
                    EnrichError::line(path, line, format!("asn `{text}` is not a number"))
                })?;
            if last < first {
                return Err(EnrichError::line(path, line, "end is before start"));
            }
            let org = std::str::from_utf8(record.get(3).unwrap_or(b""))
                .map_err(|_| EnrichError::line(path, line, "organization is not UTF-8"))?;
            let org = match by_name.get(org) {
                Some(&i) => i,
                None => {
                    let org: Arc<str> = org.into();
                    let i = self.organizations.len() as u32;
                    self.organizations.push(Arc::clone(&org));
                    by_name.insert(org, i);
                    i
                }
            };
            self.ranges.push((first, last, asn, org));
        }
        self.ranges.sort_unstable_by_key(|r| r.0);
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let checksum = reader.get_ref().hasher.clone().finalize();
        self.labels.push(format!("{name}@{checksum:08x}"));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<Asn> {
        let k = key(ip);
        let i = self.ranges.partition_point(|r| r.0 <= k).checked_sub(1)?;
        let (_, last, number, org) = self.ranges[i];
        (k <= last).then(|| Asn {
            number,
            organization: Some(Arc::clone(&self.organizations[org as usize]))
                .filter(|o| !o.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_from_csv() {
        let dir = tempfile::tempdir().unwrap();
        let v4 = dir.path().join("asn-ipv4.csv");
        std::fs::write(
            &v4,
            "8.8.4.0,8.8.4.255,15169,Google LLC\n8.8.8.0,8.8.8.255,15169,Google LLC\n1.0.0.0,1.0.0.255,13335,\"Cloudflare, Inc.\"\n",
        )
        .unwrap();
        let v6 = dir.path().join("asn-ipv6.csv");
        std::fs::write(
            &v6,
            "2001:4860::,2001:4860:ffff:ffff:ffff:ffff:ffff:ffff,15169,Google LLC\n",
        )
        .unwrap();
        let mut t = AsnRanges::default();
        t.add_file(&v4).unwrap();
        t.add_file(&v6).unwrap();
        let get = |ip: &str| {
            t.lookup(ip.parse().unwrap())
                .map(|a| (a.number, a.organization.unwrap().to_string()))
        };
        assert_eq!(get("8.8.8.8"), Some((15169, "Google LLC".into())));
        assert_eq!(get("1.0.0.1"), Some((13335, "Cloudflare, Inc.".into())));
        assert_eq!(
            get("2001:4860:4860::8888"),
            Some((15169, "Google LLC".into()))
        );
        assert_eq!(get("8.8.7.1"), None);
        assert_eq!(get("0.0.0.1"), None);
        assert_eq!(t.labels.len(), 2);
        // The stamp is the content's: the file's CRC-32, whatever its modification time.
        let crc = crc32fast::hash(&std::fs::read(&v4).unwrap());
        assert_eq!(t.labels[0], format!("asn-ipv4.csv@{crc:08x}"));
    }

    #[test]
    fn a_bad_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("asn.csv");
        std::fs::write(
            &p,
            "8.8.4.0,8.8.4.255,15169,Google LLC\n8.8.8.0,nope,15169,Google LLC\n",
        )
        .unwrap();
        let err = AsnRanges::default().add_file(&p).unwrap_err().to_string();
        assert!(
            err.contains("asn.csv: line 2: end `nope` is not an IP address"),
            "{err}"
        );
    }
}
