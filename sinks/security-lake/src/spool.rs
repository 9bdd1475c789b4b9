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
use arrow_schema::{ArrowError, SchemaRef};

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

    /// The spool files a previous run left, with their partitions, oldest name first.
    pub fn leftovers(&self) -> io::Result<Vec<(Partition, PathBuf)>> {
        let mut found = Vec::new();
        if !self.dir.exists() {
            return Ok(found);
        }
        for region in read_dir(&self.dir)? {
            for account in read_dir(&region)? {
                for day in read_dir(&account)? {
                    for file in read_dir(&day)? {
                        if file.extension().is_some_and(|e| e == EXTENSION) {
                            let value = |p: &Path, key: &str| {
                                p.file_name()
                                    .and_then(|n| n.to_str())
                                    .and_then(|n| n.strip_prefix(key))
                                    .map(str::to_string)
                            };
                            if let (Some(region), Some(account), Some(day)) = (
                                value(&region, "region="),
                                value(&account, "accountId="),
                                value(&day, "eventDay="),
                            ) {
                                found.push((
                                    Partition {
                                        region,
                                        account,
                                        day,
                                    },
                                    file,
                                ));
                            }
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
        let writer = StreamWriter::try_new(BufWriter::with_capacity(1 << 20, file), schema)
            .map_err(io::Error::other)?;
        Ok(SpoolFile { path, writer })
    }
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

/// The events of a spool file, and whether a torn last message (a batch never
/// acknowledged) was left out.
pub fn read(path: &Path) -> Result<(Vec<RecordBatch>, bool), ArrowError> {
    let file = File::open(path)?;
    // A crash before the schema reached the disk leaves a file without one: nothing in it
    // was acknowledged.
    let Ok(reader) = StreamReader::try_new(io::BufReader::new(file), None) else {
        return Ok((Vec::new(), true));
    };
    let mut batches = Vec::new();
    for batch in reader {
        match batch {
            Ok(batch) => batches.push(batch),
            Err(_) => return Ok((batches, true)),
        }
    }
    Ok((batches, false))
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
        file.append(&batch(vec![2])).unwrap();
        file.sync().unwrap();
        // A crash here: the stream has no end marker; a later one, half a message.
        let left = spool.leftovers().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0, partition);
        let (batches, torn) = read(&left[0].1).unwrap();
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 3);
        assert!(!torn, "a stream without its end marker is whole");
        let mut raw = std::fs::OpenOptions::new()
            .append(true)
            .open(&left[0].1)
            .unwrap();
        raw.write_all(&[0xff, 0xff, 0xff, 0xff, 0x40, 0, 0, 0, 1, 2])
            .unwrap();
        let (batches, torn) = read(&left[0].1).unwrap();
        assert_eq!(batches.len(), 2);
        assert!(torn);
        // Killed before the schema was written: an empty file, nothing acknowledged.
        let empty = spool.dir().join("empty.arrows");
        std::fs::write(&empty, b"").unwrap();
        let (batches, torn) = read(&empty).unwrap();
        assert!(batches.is_empty() && torn);
        // Finished normally, the file reads whole.
        drop(file);
        let mut file = spool.create(&partition, &schema).unwrap();
        file.append(&batch(vec![5])).unwrap();
        let path = file.finish().unwrap();
        assert_eq!(read(&path).unwrap().0.len(), 1);
    }
}
