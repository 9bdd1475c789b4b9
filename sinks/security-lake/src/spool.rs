//! The spool: each open object's events on disk (Arrow IPC streams in the data dir), made
//! durable before their batches are acknowledged, and read back when the object is
//! written.
//!
//! Sources hold each unit of work (an SQS message, a Firehose request, a file, a backfill
//! object) until its batches are acknowledged. Holding acknowledgements for the five
//! minutes an object stays open would stall them, or turn the lake into a flood of tiny
//! objects; holding the events in memory would lose them in a crash. So a batch is
//! acknowledged once its events are appended to their partitions' spool files and
//! fsynced, and a spool file is deleted only after its object is complete. A crash leaves
//! the files; the next run writes them first. A crash in the middle of an append leaves a
//! torn last message, whose batch was never acknowledged (the source sends it again): it
//! is dropped when read back.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::SchemaRef;

use crate::object::Partition;

const EXTENSION: &str = "arrows";

/// The folder of one sink's spool files: `<data_dir>/security-lake/<sink>/`, with one
/// folder per partition, as in the lake.
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    pub fn new(data_dir: &Path, sink: &str) -> Self {
        Self {
            dir: data_dir.join("security-lake").join(sink),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The spools beside this one (of other `security_lake` sinks, or of a sink since
    /// renamed or removed) that hold files, with how many: their records were acknowledged
    /// and wait for a sink of that name.
    pub fn others(&self) -> Vec<(PathBuf, usize)> {
        let (Some(parent), Some(own)) = (self.dir.parent(), self.dir.file_name()) else {
            return Vec::new();
        };
        let Ok(siblings) = read_dir(parent) else {
            return Vec::new();
        };
        siblings
            .into_iter()
            .filter(|d| d.is_dir() && d.file_name() != Some(own))
            .filter_map(|d| {
                let spool = Spool { dir: d.clone() };
                let files = spool.leftovers().map_or(0, |l| l.len());
                (files > 0).then_some((d, files))
            })
            .collect()
    }

    /// The spool files a previous run left, with their partitions, oldest name first.
    /// Entries that are not the spool's own (a stray file, a folder of another layout)
    /// are left alone and named in a warning.
    pub fn leftovers(&self) -> io::Result<Vec<(Partition, PathBuf)>> {
        let mut found = Vec::new();
        if !self.dir.exists() {
            return Ok(found);
        }
        for (region, region_dir) in folders(&self.dir, "region=")? {
            for (account, account_dir) in folders(&region_dir, "accountId=")? {
                for (day, day_dir) in folders(&account_dir, "eventDay=")? {
                    for file in read_dir(&day_dir)? {
                        if file.is_file() && file.extension().is_some_and(|e| e == EXTENSION) {
                            let partition = Partition {
                                region: region.clone(),
                                account: account.clone(),
                                day: day.clone(),
                            };
                            found.push((partition, file));
                        } else if !is_quarantined(&file) {
                            foreign(&file);
                        }
                    }
                }
            }
        }
        found.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(found)
    }

    /// A new spool file for `partition`.
    pub fn create(&self, partition: &Partition, schema: &SchemaRef) -> io::Result<SpoolFile> {
        let name = format!("{}.{EXTENSION}", uuid::Uuid::new_v4());
        let path = self
            .dir
            .join(partition.key("", &name).trim_start_matches('/'));
        let dir = path.parent().expect("a partition's folders");
        std::fs::create_dir_all(dir)?;
        let file = File::create(&path)?;
        // The new name must survive a crash as well as what is written under it.
        File::open(dir)?.sync_all()?;
        let writer = StreamWriter::try_new(BufWriter::with_capacity(64 << 10, file), schema)
            .map_err(io::Error::other)?;
        Ok(SpoolFile { path, writer })
    }
}

/// The folders in `dir` named `<key><value>`, with their values; anything else is named
/// in a warning.
fn folders(dir: &Path, key: &str) -> io::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    for entry in read_dir(dir)? {
        let value = entry
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(key))
            .map(str::to_string);
        match value {
            Some(value) if entry.is_dir() && !value.is_empty() => found.push((value, entry)),
            _ => foreign(&entry),
        }
    }
    Ok(found)
}

fn foreign(path: &Path) {
    tracing::warn!(
        "{}: not a spool file of flowlog's; left alone (remove it)",
        path.display()
    );
}

/// Spool files set aside as damaged ([`quarantine`]).
fn is_quarantined(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "damaged")
}

/// Sets a damaged spool file aside under `<name>.damaged`, out of the next run's way.
pub fn quarantine(path: &Path) -> io::Result<PathBuf> {
    let to = path.with_extension(format!("{EXTENSION}.damaged"));
    std::fs::rename(path, &to)?;
    Ok(to)
}

fn read_dir(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    entries.sort();
    Ok(entries)
}

/// One open object's events on disk.
pub struct SpoolFile {
    path: PathBuf,
    writer: StreamWriter<BufWriter<File>>,
}

impl SpoolFile {
    pub fn append(&mut self, events: &RecordBatch) -> io::Result<()> {
        self.writer.write(events).map_err(io::Error::other)
    }

    /// Makes everything appended so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.writer.flush().map_err(io::Error::other)?;
        self.writer.get_mut().flush()?;
        self.writer.get_ref().get_ref().sync_data()
    }

    /// Ends the stream; the file is read back with [`read`].
    pub fn finish(mut self) -> io::Result<PathBuf> {
        self.writer.finish().map_err(io::Error::other)?;
        self.writer.get_mut().flush()?;
        Ok(self.path)
    }
}

/// What reading a spool file back found.
#[derive(Debug)]
pub enum Read {
    /// Every batch, and whether a torn last message (a batch never acknowledged: the
    /// crash came while it was written) was left out.
    Whole {
        batches: Vec<RecordBatch>,
        torn: bool,
    },
    /// The file cannot be read before its end: damaged, not cut short. Its batches were
    /// acknowledged; it must not be deleted.
    Damaged(String),
}

/// Reads a spool file back. A read error at the end of the file is a crash's torn tail;
/// one before it is damage.
pub fn read(path: &Path) -> io::Result<Read> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let consumed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counting = Counting {
        inner: io::BufReader::new(file),
        consumed: std::sync::Arc::clone(&consumed),
    };
    let at_end = || consumed.load(std::sync::atomic::Ordering::Relaxed) >= size;
    let reader = match StreamReader::try_new(counting, None) {
        Ok(reader) => reader,
        // A crash before the schema reached the disk: nothing in it was acknowledged.
        Err(_) if at_end() => {
            return Ok(Read::Whole {
                batches: Vec::new(),
                torn: true,
            })
        }
        Err(e) => return Ok(Read::Damaged(format!("its schema cannot be read: {e}"))),
    };
    let mut batches = Vec::new();
    for batch in reader {
        match batch {
            Ok(batch) => batches.push(batch),
            Err(_) if at_end() => {
                return Ok(Read::Whole {
                    batches,
                    torn: true,
                })
            }
            Err(e) => {
                return Ok(Read::Damaged(format!(
                    "batch {} cannot be read: {e}",
                    batches.len() + 1
                )))
            }
        }
    }
    Ok(Read::Whole {
        batches,
        torn: false,
    })
}

/// Counts the bytes read through it, so that a failure can be placed in the file.
struct Counting<R> {
    inner: R,
    consumed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: io::Read> io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::Int64Array;
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn events_come_back_and_a_torn_tail_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path(), "lake");
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("time", DataType::Int64, true)]));
        let partition = Partition {
            region: "us-east-1".into(),
            account: "123456789012".into(),
            day: "20260801".into(),
        };
        let batch = |v: Vec<i64>| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(v))]).unwrap()
        };
        let mut file = spool.create(&partition, &schema).unwrap();
        file.append(&batch(vec![3, 1])).unwrap();
        file.sync().unwrap();
        let first_batch_end = std::fs::metadata(&file.path).unwrap().len();
        file.append(&batch(vec![2])).unwrap();
        file.sync().unwrap();
        // A crash here: the stream has no end marker; a later one, half a message.
        let left = spool.leftovers().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0, partition);
        let whole = |path: &Path| match read(path).unwrap() {
            Read::Whole { batches, torn } => (batches, torn),
            Read::Damaged(why) => panic!("{why}"),
        };
        let (batches, torn) = whole(&left[0].1);
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 3);
        assert!(!torn, "a stream without its end marker is whole");
        // The second batch's message made unreadable: damage before the end, not a torn
        // tail.
        let bytes = std::fs::read(&left[0].1).unwrap();
        let damaged = spool.dir().join("damaged.arrows");
        let mut changed = bytes.clone();
        let at = first_batch_end as usize + 8;
        changed[at..at + 8].copy_from_slice(&[0xff; 8]);
        std::fs::write(&damaged, &changed).unwrap();
        assert!(matches!(read(&damaged).unwrap(), Read::Damaged(_)));
        // Stray entries are not spool files.
        std::fs::write(spool.dir().join("README.txt"), "hi").unwrap();
        assert_eq!(spool.leftovers().unwrap().len(), 1);
        let mut raw = std::fs::OpenOptions::new()
            .append(true)
            .open(&left[0].1)
            .unwrap();
        raw.write_all(&[0xff, 0xff, 0xff, 0xff, 0x40, 0, 0, 0, 1, 2])
            .unwrap();
        let (batches, torn) = whole(&left[0].1);
        assert_eq!(batches.len(), 2);
        assert!(torn);
        // Killed before the schema was written: an empty file, nothing acknowledged.
        let empty = spool.dir().join("empty.arrows");
        std::fs::write(&empty, b"").unwrap();
        let (batches, torn) = whole(&empty);
        assert!(batches.is_empty() && torn);
        // A spool beside this one holding files is named; an empty one, or this one, not.
        let other = Spool::new(dir.path(), "renamed");
        let mut kept = other.create(&partition, &schema).unwrap();
        kept.sync().unwrap();
        std::fs::create_dir_all(Spool::new(dir.path(), "empty").dir()).unwrap();
        assert_eq!(spool.others(), [(other.dir().to_path_buf(), 1)]);
        // Finished normally, the file reads whole.
        drop(file);
        let mut file = spool.create(&partition, &schema).unwrap();
        file.append(&batch(vec![5])).unwrap();
        let path = file.finish().unwrap();
        assert_eq!(whole(&path).0.len(), 1);
    }
}
