//! The compiled form of one CSV range file: its ranges and organizations as they are held
//! in memory, written once to a cache directory, so that a process that starts often (a
//! stage per object, a restart) reads them back in a few milliseconds instead of parsing
//! the CSV (24 MB for ip-location-db's IPv4 file) each time.
//!
//! A compiled file is named after the CSV's path and is used only while the CSV is the
//! same file, unchanged: its device, inode, size, and modification and change times are
//! in the header. The change time is what makes this safe where modification times are
//! not (npm gives every file of a package the same one): the system sets it on every
//! write or rename, and tools that restore modification times do not touch it. A CSV
//! changed in the last seconds is not compiled (the caller waits, as git does with
//! "racily clean" files), since a second write within one tick of a coarse clock would
//! keep the change time. Anything else wrong with a compiled file (short, inconsistent,
//! from another version) makes it ignored and written again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `(first, last, AS number, index into the organizations)`, as [`super::AsnRanges`] holds them.
pub(super) type Range = (u128, u128, u32, u32);

/// One CSV file's ranges (sorted by start), its organizations, and its content's CRC-32.
#[derive(Debug, Default, PartialEq)]
pub(super) struct FileRanges {
    pub ranges: Vec<Range>,
    pub organizations: Vec<Arc<str>>,
    pub crc: u32,
}

/// Names the layout: a change of it is a new magic, and old files are rewritten.
const MAGIC: &[u8; 8] = b"FLASNR\x00\x01";
const HEADER: usize = 8 + 7 * 8 + 8 + 3 * 8;
const RANGE: usize = 16 + 16 + 4 + 4;

/// What says a CSV file is the one a compiled file was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Identity([u64; 7]);

impl Identity {
    /// Whether the file changed less than `secs` seconds ago (by its change time).
    pub fn changed_within(&self, secs: u64) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        now.saturating_sub(self.0[5]) < secs
    }

    #[cfg(unix)]
    pub fn of(meta: &std::fs::Metadata) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        Some(Self([
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime() as u64,
            meta.mtime_nsec() as u64,
            meta.ctime() as u64,
            meta.ctime_nsec() as u64,
        ]))
    }

    /// Without a change time to trust, nothing is compiled.
    #[cfg(not(unix))]
    pub fn of(_meta: &std::fs::Metadata) -> Option<Self> {
        None
    }
}

/// Where the compiled form of `csv` lives in `dir`.
pub(super) fn path_in(dir: &Path, csv: &Path) -> PathBuf {
    let canonical = csv.canonicalize().unwrap_or_else(|_| csv.to_path_buf());
    let name = csv
        .file_name()
        .map_or_else(|| "asn".into(), |n| n.to_string_lossy());
    let hash = crc32fast::hash(canonical.to_string_lossy().as_bytes());
    dir.join(format!("{name}-{hash:08x}.ranges"))
}

/// A compiled file, read whole and looked up where it lies: opening one costs a read and
/// a check of its structure, not a rebuild. (Read, not mapped: a mapping of a file that
/// someone truncates would kill the process at its next lookup.)
pub(super) struct Compiled {
    bytes: Vec<u8>,
    ranges: usize,
    organizations: usize,
    offsets_at: usize,
    text_at: usize,
    pub crc: u32,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("ranges", &self.ranges)
            .finish()
    }
}

impl Compiled {
    /// The compiled file at `path`, if it was made from the CSV that has `identity` and
    /// is whole and consistent (ranges in order, each organization in bounds, UTF-8 and
    /// cut at character boundaries).
    pub fn open(path: &Path, identity: Identity) -> Option<Self> {
        let bytes = std::fs::read(path).ok()?;
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        if bytes.get(..8)? != MAGIC {
            return None;
        }
        for (i, want) in identity.0.iter().enumerate() {
            if u64_at(8 + i * 8)? != *want {
                return None;
            }
        }
        let crc = u32::try_from(u64_at(64)?).ok()?;
        let ranges = usize::try_from(u64_at(72)?).ok()?;
        let organizations = usize::try_from(u64_at(80)?).ok()?;
        let org_bytes = usize::try_from(u64_at(88)?).ok()?;
        let offsets_at = ranges.checked_mul(RANGE)?.checked_add(HEADER)?;
        let text_at = organizations
            .checked_add(1)?
            .checked_mul(4)?
            .checked_add(offsets_at)?;
        if text_at.checked_add(org_bytes)? != bytes.len() {
            return None;
        }
        let compiled = Self {
            ranges,
            organizations,
            offsets_at,
            text_at,
            crc,
            bytes,
        };
        let mut previous = 0u128;
        for i in 0..ranges {
            let (first, last, _, org) = compiled.range(i);
            if last < first || first < previous || org as usize >= organizations {
                return None;
            }
            previous = first;
        }
        let text = std::str::from_utf8(&compiled.bytes[text_at..]).ok()?;
        let mut end = 0;
        for i in 0..organizations {
            let (from, to) = (compiled.offset(i), compiled.offset(i + 1));
            if from != end || to < from || !text.is_char_boundary(to) {
                return None;
            }
            end = to;
        }
        (end == org_bytes).then_some(compiled)
    }

    pub fn len(&self) -> usize {
        self.ranges
    }

    /// Range `i` (in bounds: checked by `open`).
    pub fn range(&self, i: usize) -> Range {
        let at = HEADER + i * RANGE;
        let chunk = &self.bytes[at..at + RANGE];
        let bytes = |from: usize, to: usize| &chunk[from..to];
        (
            u128::from_le_bytes(bytes(0, 16).try_into().expect("16 bytes")),
            u128::from_le_bytes(bytes(16, 32).try_into().expect("16 bytes")),
            u32::from_le_bytes(bytes(32, 36).try_into().expect("4 bytes")),
            u32::from_le_bytes(bytes(36, 40).try_into().expect("4 bytes")),
        )
    }

    fn offset(&self, i: usize) -> usize {
        let at = self.offsets_at + i * 4;
        u32::from_le_bytes(self.bytes[at..at + 4].try_into().expect("4 bytes")) as usize
    }

    /// Organization `i` (the ranges' are in bounds and UTF-8: checked by `open`).
    pub fn organization(&self, i: u32) -> &str {
        let i = i as usize;
        if i >= self.organizations {
            return "";
        }
        let text = &self.bytes[self.text_at + self.offset(i)..self.text_at + self.offset(i + 1)];
        std::str::from_utf8(text).unwrap_or_default()
    }

    /// The range holding `key`, if any.
    pub fn find(&self, key: u128) -> Option<Range> {
        // partition_point over indices: the first range starting after `key`.
        let (mut low, mut high) = (0, self.ranges);
        while low < high {
            let middle = low + (high - low) / 2;
            if self.range(middle).0 <= key {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        let range = self.range(low.checked_sub(1)?);
        (key <= range.1).then_some(range)
    }
}

/// Writes `ranges` as the compiled form of the CSV with `identity`, whole or not at all.
pub(super) fn write(path: &Path, identity: Identity, ranges: &FileRanges) -> std::io::Result<()> {
    let org_bytes: usize = ranges.organizations.iter().map(|o| o.len()).sum();
    if u32::try_from(org_bytes).is_err() {
        return Err(std::io::Error::other("organizations too large to compile"));
    }
    let mut out = Vec::with_capacity(
        HEADER + ranges.ranges.len() * RANGE + (ranges.organizations.len() + 1) * 4 + org_bytes,
    );
    out.extend_from_slice(MAGIC);
    for value in identity.0 {
        out.extend_from_slice(&value.to_le_bytes());
    }
    for value in [
        u64::from(ranges.crc),
        ranges.ranges.len() as u64,
        ranges.organizations.len() as u64,
        org_bytes as u64,
    ] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    for (first, last, asn, org) in &ranges.ranges {
        out.extend_from_slice(&first.to_le_bytes());
        out.extend_from_slice(&last.to_le_bytes());
        out.extend_from_slice(&asn.to_le_bytes());
        out.extend_from_slice(&org.to_le_bytes());
    }
    let mut offset = 0u32;
    out.extend_from_slice(&offset.to_le_bytes());
    for org in &ranges.organizations {
        offset += org.len() as u32;
        out.extend_from_slice(&offset.to_le_bytes());
    }
    for org in &ranges.organizations {
        out.extend_from_slice(org.as_bytes());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // A new file of a random name (created exclusively), renamed into place: writers
    // never share a file, and a reader sees a whole one or none.
    let mut temporary = tempfile::Builder::new()
        .prefix(".asn-ranges-")
        .tempfile_in(dir)?;
    temporary.write_all(&out)?;
    temporary.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FileRanges {
        FileRanges {
            ranges: vec![(1, 5, 64500, 0), (10, 20, 64501, 1), (30, 30, 64500, 0)],
            organizations: vec![Arc::from("Exämple"), Arc::from("")],
            crc: 0xdead_beef,
        }
    }

    fn read(path: &Path, identity: Identity) -> Option<FileRanges> {
        let compiled = Compiled::open(path, identity)?;
        Some(FileRanges {
            ranges: (0..compiled.len()).map(|i| compiled.range(i)).collect(),
            organizations: (0..compiled.organizations as u32)
                .map(|i| Arc::from(compiled.organization(i)))
                .collect(),
            crc: compiled.crc,
        })
    }

    #[test]
    fn a_compiled_file_reads_back_as_written_and_only_for_its_csv() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x.ranges");
        let identity = Identity([1, 2, 3, 4, 5, 6, 7]);
        write(&path, identity, &sample()).unwrap();
        assert_eq!(read(&path, identity), Some(sample()));
        let compiled = Compiled::open(&path, identity).unwrap();
        assert_eq!(compiled.find(0), None);
        assert_eq!(compiled.find(3), Some((1, 5, 64500, 0)));
        assert_eq!(compiled.find(7), None);
        assert_eq!(compiled.find(20), Some((10, 20, 64501, 1)));
        assert_eq!(compiled.find(30), Some((30, 30, 64500, 0)));
        assert_eq!(compiled.find(u128::MAX), None);
        // Another file, or the same one changed: not used.
        assert_eq!(read(&path, Identity([1, 2, 3, 4, 5, 6, 8])), None);
        // Cut short, with ranges out of order, or naming an organization it has not: not
        // used.
        let bytes = std::fs::read(&path).unwrap();
        let damaged = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            read(&path, identity)
        };
        assert_eq!(damaged(&bytes[..bytes.len() - 1]), None);
        let mut swapped = bytes.clone();
        swapped[HEADER..HEADER + RANGE].copy_from_slice(&bytes[HEADER + RANGE..HEADER + 2 * RANGE]);
        swapped[HEADER + RANGE..HEADER + 2 * RANGE].copy_from_slice(&bytes[HEADER..HEADER + RANGE]);
        assert_eq!(damaged(&swapped), None);
        let mut bad_org = bytes.clone();
        bad_org[HEADER + 36..HEADER + 40].copy_from_slice(&9u32.to_le_bytes());
        assert_eq!(damaged(&bad_org), None);
        // Another magic, counts past the file, an offset inside a character.
        let mut magic = bytes.clone();
        magic[7] = 2;
        assert_eq!(damaged(&magic), None);
        let mut huge = bytes.clone();
        huge[72..80].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(damaged(&huge), None);
        let text_at = bytes.len() - "Exämple".len();
        let offsets_at = text_at - 3 * 4;
        let mut split = bytes.clone();
        split[offsets_at + 4..offsets_at + 8].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(damaged(&split), None, "an offset inside ä");
        assert_eq!(damaged(&bytes), Some(sample()));
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
