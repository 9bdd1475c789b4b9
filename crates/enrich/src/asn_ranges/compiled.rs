//! The compiled form of one CSV range file: its ranges and organizations as they are held
//! in memory, written once to a cache directory, so that a process that starts often (a
//! stage per object, a restart) reads them back in a few milliseconds instead of parsing
//! the CSV (24 MB for ip-location-db's IPv4 file) each time.
//!
//! A compiled file is named after the CSV's path and is used only while the CSV is the
//! same file, unchanged: its device, inode, size, and modification and change times are
//! in the header. The change time is what makes this safe where modification times are
//! not (npm gives every file of a package the same one): the system sets it on every
//! write or rename and nothing can set it back. Anything else wrong with a compiled file
//! (short, inconsistent, from another version) makes it ignored and written again.

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

/// The compiled file at `path`, if it was made from the CSV that has `identity` and reads
/// back whole.
pub(super) fn read(path: &Path, identity: Identity) -> Option<FileRanges> {
    let bytes = std::fs::read(path).ok()?;
    decode(&bytes, identity)
}

fn decode(bytes: &[u8], identity: Identity) -> Option<FileRanges> {
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
    let crc = u64_at(64)? as u32;
    let n_ranges = usize::try_from(u64_at(72)?).ok()?;
    let n_orgs = usize::try_from(u64_at(80)?).ok()?;
    let org_bytes = usize::try_from(u64_at(88)?).ok()?;
    let offsets_at = n_ranges.checked_mul(RANGE)?.checked_add(HEADER)?;
    let text_at = n_orgs
        .checked_add(1)?
        .checked_mul(4)?
        .checked_add(offsets_at)?;
    if text_at.checked_add(org_bytes)? != bytes.len() {
        return None;
    }
    let mut ranges = Vec::with_capacity(n_ranges);
    let mut previous = 0u128;
    for chunk in bytes[HEADER..offsets_at].chunks_exact(RANGE) {
        let first = u128::from_le_bytes(chunk[0..16].try_into().ok()?);
        let last = u128::from_le_bytes(chunk[16..32].try_into().ok()?);
        let asn = u32::from_le_bytes(chunk[32..36].try_into().ok()?);
        let org = u32::from_le_bytes(chunk[36..40].try_into().ok()?);
        if last < first || first < previous || org as usize >= n_orgs.max(1) {
            return None;
        }
        previous = first;
        ranges.push((first, last, asn, org));
    }
    let offsets: Vec<usize> = bytes[offsets_at..text_at]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let text = &bytes[text_at..];
    let mut organizations = Vec::with_capacity(n_orgs);
    for pair in offsets.windows(2) {
        let org = std::str::from_utf8(text.get(pair[0]..pair[1])?).ok()?;
        organizations.push(Arc::from(org));
    }
    Some(FileRanges {
        ranges,
        organizations,
        crc,
    })
}

/// Writes `ranges` as the compiled form of the CSV with `identity`, whole or not at all (a
/// temporary file renamed into place, so a reader never sees half of one).
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
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension(format!("ranges.{}.tmp", std::process::id()));
    let written = std::fs::File::create(&temporary).and_then(|mut file| file.write_all(&out));
    match written.and_then(|()| std::fs::rename(&temporary, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&temporary);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FileRanges {
        FileRanges {
            ranges: vec![(1, 5, 64500, 0), (10, 20, 64501, 1), (30, 30, 64500, 0)],
            organizations: vec![Arc::from("Example, Inc."), Arc::from("")],
            crc: 0xdead_beef,
        }
    }

    #[test]
    fn a_compiled_file_reads_back_as_written_and_only_for_its_csv() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x.ranges");
        let identity = Identity([1, 2, 3, 4, 5, 6, 7]);
        write(&path, identity, &sample()).unwrap();
        assert_eq!(read(&path, identity), Some(sample()));
        // Another file, or the same one changed: not used.
        assert_eq!(read(&path, Identity([1, 2, 3, 4, 5, 6, 8])), None);
        // Cut short, or with a range out of order: not used.
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(decode(&bytes[..bytes.len() - 1], identity), None);
        let mut swapped = bytes.clone();
        swapped[HEADER..HEADER + RANGE].copy_from_slice(&bytes[HEADER + RANGE..HEADER + 2 * RANGE]);
        swapped[HEADER + RANGE..HEADER + 2 * RANGE].copy_from_slice(&bytes[HEADER..HEADER + RANGE]);
        assert_eq!(decode(&swapped, identity), None);
        let mut bad_org = bytes;
        bad_org[HEADER + 36..HEADER + 40].copy_from_slice(&9u32.to_le_bytes());
        assert_eq!(decode(&bad_org, identity), None);
    }
}
