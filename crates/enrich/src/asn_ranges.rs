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

/// Address ranges with their AS, one table per file, in the order given.
#[derive(Debug, Default)]
pub struct AsnRanges {
    tables: Vec<Table>,
    /// `file name@CRC-32 of its content` of each file read, stamped on events. A CSV file
    /// says nothing of its build, and its modification time is where and when it was
    /// copied (npm sets every file of a package to 1985-10-26): the same content gives the
    /// same stamp on every machine.
    pub(crate) labels: Vec<String>,
}

/// One file's ranges: parsed here, or read compiled. Either answers the same.
#[derive(Debug)]
enum Table {
    Parsed(compiled::FileRanges),
    Compiled(compiled::Compiled),
}

impl Table {
    fn len(&self) -> usize {
        match self {
            Table::Parsed(file) => file.ranges.len(),
            Table::Compiled(file) => file.len(),
        }
    }

    /// The range that holds `key` (the one starting last at or before it, as ranges in
    /// one file do not overlap).
    fn find(&self, key: u128) -> Option<compiled::Range> {
        match self {
            Table::Parsed(file) => {
                let i = file.ranges.partition_point(|r| r.0 <= key).checked_sub(1)?;
                Some(file.ranges[i]).filter(|r| key <= r.1)
            }
            Table::Compiled(file) => file.find(key),
        }
    }

    fn organization(&self, i: u32) -> Option<Arc<str>> {
        let organization = match self {
            Table::Parsed(file) => Arc::clone(file.organizations.get(i as usize)?),
            Table::Compiled(file) => Arc::from(file.organization(i)),
        };
        Some(organization).filter(|o| !o.is_empty())
    }
}

/// A CSV changed less than this long ago is parsed but not compiled yet (see
/// [`compiled`]).
const SETTLED_SECS: u64 = 2;

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
        self.add_file_settled(path, dir, SETTLED_SECS)
    }

    fn add_file_settled(
        &mut self,
        path: &Path,
        dir: Option<&Path>,
        settled_secs: u64,
    ) -> Result<Loaded, EnrichError> {
        let identity_of = |path: &Path| {
            std::fs::metadata(path)
                .map_err(|e| EnrichError::io(path, e))
                .map(|meta| compiled::Identity::of(&meta))
        };
        let before = identity_of(path)?;
        let place = dir
            .zip(before)
            .map(|(dir, identity)| (compiled::path_in(dir, path), identity));
        if let Some(file) = place
            .as_ref()
            .and_then(|(compiled, identity)| compiled::Compiled::open(compiled, *identity))
        {
            self.label(path, file.crc);
            self.tables.push(Table::Compiled(file));
            return Ok(Loaded::Compiled);
        }
        let file = parse_csv(path)?;
        if let Some((compiled, identity)) = &place {
            // Compiled only if the file did not change while it was read, nor so recently
            // that another write in the same clock tick could go unseen.
            let settled = identity_of(path).ok().flatten() == Some(*identity)
                && !identity.changed_within(settled_secs);
            if settled {
                if let Err(e) = compiled::write(compiled, *identity, &file) {
                    tracing::debug!(
                        "{} not kept compiled in {}: {e}",
                        path.display(),
                        compiled.display()
                    );
                }
            }
        }
        self.label(path, file.crc);
        self.tables.push(Table::Parsed(file));
        Ok(Loaded::Parsed)
    }

    fn label(&mut self, path: &Path, crc: u32) {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        self.labels.push(format!("{name}@{crc:08x}"));
    }

    pub fn len(&self) -> usize {
        self.tables.iter().map(Table::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The AS of `ip`: of the ranges that hold it, the one that starts last (the most
    /// specific), and of those the one from the file given last, whether each file was
    /// parsed or read compiled.
    pub fn lookup(&self, ip: IpAddr) -> Option<Asn> {
        let k = key(ip);
        let mut best: Option<(&Table, compiled::Range)> = None;
        for table in &self.tables {
            if let Some(range) = table.find(k) {
                if best.is_none_or(|(_, b)| range.0 >= b.0) {
                    best = Some((table, range));
                }
            }
        }
        let (table, (_, _, number, org)) = best?;
        Some(Asn {
            number,
            organization: table.organization(org),
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
        let load = |settled_secs| {
            let mut t = AsnRanges::default();
            let loaded = t
                .add_file_settled(&csv, Some(&cache), settled_secs)
                .unwrap();
            let answer = |ip: &str| {
                t.lookup(ip.parse().unwrap())
                    .map(|a| (a.number, a.organization.map(|o| o.to_string())))
            };
            let answers = (answer("8.8.8.8"), answer("1.0.0.1"), answer("9.9.9.9"));
            (loaded, answers, t.labels.clone())
        };
        // Just written: parsed, and not compiled until it has settled.
        assert_eq!(load(3600).0, Loaded::Parsed);
        assert_eq!(load(3600).0, Loaded::Parsed);
        let first = load(0);
        assert_eq!(first.0, Loaded::Parsed);
        assert_eq!(
            first.1,
            (
                Some((15169, Some("Google LLC".into()))),
                Some((13335, None)),
                None
            )
        );
        let second = load(0);
        assert_eq!(second.0, Loaded::Compiled);
        assert_eq!(
            (&second.1, &second.2),
            (&first.1, &first.2),
            "the same answers and stamp"
        );

        // Rewritten (same size, even the same modification time; past a coarse clock's
        // tick): parsed again.
        std::thread::sleep(std::time::Duration::from_millis(20));
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
        let third = load(0);
        assert_eq!(third.0, Loaded::Parsed);
        assert_eq!(third.1 .0, Some((15169, Some("Google LLX".into()))));
        assert_ne!(third.2, first.2);
        assert_eq!(load(0).0, Loaded::Compiled);

        // A compiled file that is damaged is ignored and written again.
        let compiled = std::fs::read_dir(&cache)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::write(&compiled, b"FLASNR").unwrap();
        assert_eq!(load(0).0, Loaded::Parsed);
        assert_eq!(load(0).0, Loaded::Compiled);
        assert_eq!(
            std::fs::read_dir(&cache).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn overlapping_files_answer_the_same_parsed_or_compiled() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let wide = dir.path().join("a/asn.csv");
        let narrow = dir.path().join("b/asn.csv");
        std::fs::create_dir_all(wide.parent().unwrap()).unwrap();
        std::fs::create_dir_all(narrow.parent().unwrap()).unwrap();
        std::fs::write(&wide, "10.0.0.0,10.255.255.255,1,Wide\n").unwrap();
        std::fs::write(
            &narrow,
            "10.1.0.0,10.1.255.255,2,Narrow\n10.9.0.0,10.9.0.0,3,\n",
        )
        .unwrap();
        let answers = |expect: Loaded| {
            let mut t = AsnRanges::default();
            for csv in [&wide, &narrow] {
                assert_eq!(t.add_file_settled(csv, Some(&cache), 0).unwrap(), expect);
            }
            ["10.1.0.1", "10.2.0.1", "10.9.0.0", "11.0.0.0"]
                .map(|ip| t.lookup(ip.parse().unwrap()).map(|a| a.number))
        };
        let parsed = answers(Loaded::Parsed);
        // The most specific range wins, in whichever file; outside both, nothing.
        assert_eq!(parsed, [Some(2), Some(1), Some(3), None]);
        // Two files of one name in two places: each its own compiled file.
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
        assert_eq!(answers(Loaded::Compiled), parsed);
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
