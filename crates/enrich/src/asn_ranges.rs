//! ASN from CSV range files, `start,end,asn,organization` per line (the layout of
//! ip-location-db's `asn-ipv4.csv` / `asn-ipv6.csv`, and of most IP-to-ASN exports).
//! Each file, once parsed, is kept compiled in a cache directory ([`compiled`]), and later
//! starts map that and look up in place while the file stays the same.

mod compiled;

use std::net::IpAddr;

use flowlog_model::address::parse_ip;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::geoip::Asn;
use crate::EnrichError;
use flowlog_model::address::key;

/// Non-overlapping address ranges with their AS, sorted by start.
#[derive(Debug, Default)]
pub struct AsnRanges {
    /// (first, last, AS number, index into `organizations`) of the files parsed here.
    ranges: Vec<(u128, u128, u32, u32)>,
    organizations: Vec<Arc<str>>,
    /// The files read compiled, looked up where they are mapped.
    compiled: Vec<compiled::Mapped>,
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

/// Where a CSV file was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// Its compiled form, made by an earlier process from the same file.
    Compiled,
    /// The CSV itself (and its compiled form written, where the directory allows).
    Parsed,
}

/// The directory CSV range files are kept compiled in: `FLOWLOG_CACHE_DIR` (empty: none),
/// else `$XDG_CACHE_HOME/flowlog`, else `~/.cache/flowlog`.
pub fn default_compiled_dir() -> Option<PathBuf> {
    match std::env::var_os("FLOWLOG_CACHE_DIR") {
        Some(dir) if dir.is_empty() => None,
        Some(dir) => Some(PathBuf::from(dir)),
        None => std::env::var_os("XDG_CACHE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
            .map(|d| d.join("flowlog")),
    }
}

impl AsnRanges {
    /// Adds the ranges of one CSV file, from its compiled form in
    /// [`default_compiled_dir`] when that was made from this file as it is now.
    pub fn add_file(&mut self, path: &Path) -> Result<Loaded, EnrichError> {
        self.add_file_compiled_in(path, default_compiled_dir().as_deref())
    }

    /// Adds the ranges of one CSV file, kept compiled in `dir` (none: parsed every time).
    /// A line that is not `start,end,asn,org` is an error naming the file and line: a
    /// range table with holes would answer wrongly. A compiled form that cannot be
    /// written costs only the next start its speed.
    pub fn add_file_compiled_in(
        &mut self,
        path: &Path,
        dir: Option<&Path>,
    ) -> Result<Loaded, EnrichError> {
        // Taken before the file is read: a change while it is parsed leaves the compiled
        // form marked with the old identity, so the next start parses again.
        let identity = std::fs::metadata(path)
            .map_err(|e| EnrichError::io(path, e))
            .map(|meta| compiled::Identity::of(&meta))?;
        let place = dir
            .zip(identity)
            .map(|(dir, identity)| (compiled::path_in(dir, path), identity));
        if let Some(mapped) = place
            .as_ref()
            .and_then(|(compiled, identity)| compiled::Mapped::open(compiled, *identity))
        {
            self.label(path, mapped.crc);
            self.compiled.push(mapped);
            return Ok(Loaded::Compiled);
        }
        let file = parse_csv(path)?;
        if let Some((compiled, identity)) = &place {
            if let Err(e) = compiled::write(compiled, *identity, &file) {
                tracing::debug!(
                    "{} not kept compiled in {}: {e}",
                    path.display(),
                    compiled.display()
                );
            }
        }
        self.merge(path, file);
        Ok(Loaded::Parsed)
    }

    fn merge(&mut self, path: &Path, file: compiled::FileRanges) {
        let base = self.organizations.len() as u32;
        self.organizations.extend(file.organizations);
        self.ranges.extend(
            file.ranges
                .into_iter()
                .map(|(first, last, asn, org)| (first, last, asn, base + org)),
        );
        // Each file's ranges are sorted: this is a merge of runs.
        self.ranges.sort_by_key(|r| r.0);
        self.label(path, file.crc);
    }

    fn label(&mut self, path: &Path, crc: u32) {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        self.labels.push(format!("{name}@{crc:08x}"));
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
            + self
                .compiled
                .iter()
                .map(compiled::Mapped::len)
                .sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The AS of `ip`: from the files parsed here, else from those read compiled, in the
    /// order given.
    pub fn lookup(&self, ip: IpAddr) -> Option<Asn> {
        let k = key(ip);
        let parsed = || {
            let i = self.ranges.partition_point(|r| r.0 <= k).checked_sub(1)?;
            let (_, last, number, org) = self.ranges[i];
            (k <= last).then(|| Asn {
                number,
                organization: Some(Arc::clone(&self.organizations[org as usize]))
                    .filter(|o| !o.is_empty()),
            })
        };
        parsed().or_else(|| {
            self.compiled.iter().find_map(|table| {
                let (_, _, number, org) = table.find(k)?;
                let organization = table.organization(org);
                Some(Asn {
                    number,
                    organization: (!organization.is_empty()).then(|| Arc::from(organization)),
                })
            })
        })
    }
}

/// One CSV file's ranges, sorted, with its organizations (one copy each: a large AS
/// announces thousands of ranges) and the CRC-32 of its content.
fn parse_csv(path: &Path) -> Result<compiled::FileRanges, EnrichError> {
    let file = std::fs::File::open(path).map_err(|e| EnrichError::io(path, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(Checksummed::new(file));
    let mut parsed = compiled::FileRanges::default();
    let mut by_name: hashbrown::HashMap<Arc<str>, u32> = hashbrown::HashMap::new();
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
                let i = parsed.organizations.len() as u32;
                parsed.organizations.push(Arc::clone(&org));
                by_name.insert(org, i);
                i
            }
        };
        parsed.ranges.push((first, last, asn, org));
    }
    parsed.ranges.sort_unstable_by_key(|r| r.0);
    parsed.crc = reader.get_ref().hasher.clone().finalize();
    Ok(parsed)
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
        t.add_file_compiled_in(&v4, None).unwrap();
        t.add_file_compiled_in(&v6, None).unwrap();
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
    fn a_csv_is_read_compiled_until_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let csv = dir.path().join("asn-ipv4.csv");
        std::fs::write(
            &csv,
            "8.8.8.0,8.8.8.255,15169,Google LLC\n1.0.0.0,1.0.0.255,13335,\n",
        )
        .unwrap();
        let load = || {
            let mut t = AsnRanges::default();
            let loaded = t.add_file_compiled_in(&csv, Some(&cache)).unwrap();
            let answer = |ip: &str| {
                t.lookup(ip.parse().unwrap())
                    .map(|a| (a.number, a.organization.map(|o| o.to_string())))
            };
            let answers = (answer("8.8.8.8"), answer("1.0.0.1"), answer("9.9.9.9"));
            (loaded, answers, t.labels.clone())
        };
        let first = load();
        assert_eq!(first.0, Loaded::Parsed);
        assert_eq!(
            first.1,
            (
                Some((15169, Some("Google LLC".into()))),
                Some((13335, None)),
                None
            )
        );
        let second = load();
        assert_eq!(second.0, Loaded::Compiled);
        assert_eq!(
            (&second.1, &second.2),
            (&first.1, &first.2),
            "the same answers and stamp"
        );

        // Rewritten (same size, even the same modification time): parsed again.
        let modified = std::fs::metadata(&csv).unwrap().modified().unwrap();
        std::fs::write(
            &csv,
            "8.8.8.0,8.8.8.255,15169,Google LLX\n1.0.0.0,1.0.0.255,13335,\n",
        )
        .unwrap();
        std::fs::File::options()
            .write(true)
            .open(&csv)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        let third = load();
        assert_eq!(third.0, Loaded::Parsed);
        assert_eq!(third.1 .0, Some((15169, Some("Google LLX".into()))));
        assert_ne!(third.2, first.2);
        assert_eq!(load().0, Loaded::Compiled);

        // A compiled file that is damaged is ignored and written again.
        let compiled = std::fs::read_dir(&cache)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::write(&compiled, b"FLASNR").unwrap();
        assert_eq!(load().0, Loaded::Parsed);
        assert_eq!(load().0, Loaded::Compiled);
        assert_eq!(
            std::fs::read_dir(&cache).unwrap().count(),
            1,
            "no temporary left"
        );
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
        let err = AsnRanges::default()
            .add_file_compiled_in(&p, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("asn.csv: line 2: end `nope` is not an IP address"),
            "{err}"
        );
    }
}
