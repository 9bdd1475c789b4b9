//! The objects of a custom source: which partition each event belongs to, the events an
//! object gathers until it is rolled, and the Parquet file it becomes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;

use crate::spool::SpoolFile;

/// Security Lake's partition of an event: `region=<region>/accountId=<account>/eventDay=<day>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    pub region: String,
    pub account: String,
    /// `YYYYMMDD`, the UTC day of the event's `time`.
    pub day: String,
}

impl Partition {
    /// The object's key under `prefix`.
    pub fn key(&self, prefix: &str, name: &str) -> String {
        format!(
            "{prefix}/region={}/accountId={}/eventDay={}/{name}",
            self.region, self.account, self.day
        )
    }
}

/// Why an event has no partition.
pub const NO_ACCOUNT: &str = "no account id for the Security Lake partition (the record has \
     none, or not 12 digits, and the sink sets no account_id)";
pub const NO_REGION: &str = "no region for the Security Lake partition (the record has none, \
     or not a region name, and the sink has no region)";

/// An AWS account id: 12 digits (flow logs say `unknown` for some AWS-managed interfaces).
pub fn is_account(value: &str) -> bool {
    value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit())
}

/// A region name (`us-east-1`): what may safely be a folder name.
pub fn is_region(value: &str) -> bool {
    (1..=32).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A batch's events by partition, in partition order, and the rows that have none (no
/// account).
pub struct Split {
    pub parts: Vec<(Partition, RecordBatch)>,
    /// Rows without a partition, and why.
    pub orphans: Vec<(usize, &'static str)>,
}

/// The events of a batch, by partition.
pub fn split(
    events: &RecordBatch,
    default_region: Option<&str>,
    default_account: Option<&str>,
) -> Result<Split, arrow_schema::ArrowError> {
    let cloud = events.column_by_name("cloud").map(|c| c.as_struct());
    let text = |array: Option<&Arc<dyn Array>>| -> Option<StringArray> {
        array.map(|a| a.as_string::<i32>().clone())
    };
    let region = text(cloud.and_then(|c| c.column_by_name("region")));
    let account = cloud
        .and_then(|c| c.column_by_name("account"))
        .map(|a| a.as_struct())
        .and_then(|a| text(a.column_by_name("uid")));
    let time = events
        .column_by_name("time")
        .expect("OCSF events have a time")
        .as_primitive::<Int64Type>();
    fn value(array: &Option<StringArray>, row: usize) -> Option<&str> {
        array
            .as_ref()
            .filter(|a| a.is_valid(row))
            .map(|a| a.value(row))
    }
    let mut rows: HashMap<Partition, Vec<u32>> = HashMap::new();
    let mut orphans = Vec::new();
    for row in 0..events.num_rows() {
        let Some(region) = value(&region, row)
            .filter(|r| is_region(r))
            .or(default_region.filter(|r| is_region(r)))
        else {
            orphans.push((row, NO_REGION));
            continue;
        };
        let Some(account) = value(&account, row)
            .filter(|a| is_account(a))
            .or(default_account.filter(|a| is_account(a)))
        else {
            orphans.push((row, NO_ACCOUNT));
            continue;
        };
        let day = chrono::DateTime::from_timestamp_millis(time.value(row))
            .unwrap_or_default()
            .format("%Y%m%d")
            .to_string();
        rows.entry(Partition {
            region: region.to_string(),
            account: account.to_string(),
            day,
        })
        .or_default()
        .push(row as u32);
    }
    let mut parts = Vec::with_capacity(rows.len());
    for (partition, indices) in rows {
        let part = if indices.len() == events.num_rows() {
            events.clone()
        } else {
            arrow_select::take::take_record_batch(events, &UInt32Array::from(indices))?
        };
        parts.push((partition, part));
    }
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Split { parts, orphans })
}

/// One partition's open object: its spool file, and how much its events take in memory
/// (what writing it will need).
pub struct Open {
    pub file: SpoolFile,
    pub bytes: usize,
    pub opened: Instant,
}

impl Open {
    pub fn new(file: SpoolFile) -> Self {
        Self {
            file,
            bytes: 0,
            opened: Instant::now(),
        }
    }

    pub fn append(&mut self, events: &RecordBatch, bytes: usize) -> std::io::Result<()> {
        self.file.append(events)?;
        self.bytes += bytes;
        Ok(())
    }
}

/// How objects are encoded.
#[derive(Debug, Clone)]
pub struct Encoding {
    pub zstd_level: i32,
    pub row_group_rows: usize,
}

/// The events as one Parquet file, sorted by `time`: zstd, pages of at most 1 MiB, row
/// groups of `row_group_rows`.
pub fn parquet(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    encoding: &Encoding,
) -> Result<Vec<u8>, ParquetError> {
    let all = arrow_select::concat::concat_batches(schema, batches)?;
    let time = all
        .column_by_name("time")
        .expect("OCSF events have a time")
        .as_primitive::<Int64Type>();
    // A stable sort (arrow-ord's is not), so events of the same millisecond keep the
    // order they arrived in.
    let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
    order.sort_by_key(|&row| time.value(row as usize));
    let sorted = arrow_select::take::take_record_batch(&all, &UInt32Array::from(order))?;
    drop(all);
    let properties = properties(encoding)?;
    let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties))?;
    writer.write(&sorted)?;
    writer.into_inner()
}

/// The writer's settings for `encoding`.
pub fn properties(encoding: &Encoding) -> Result<WriterProperties, ParquetError> {
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(encoding.zstd_level)?))
        .set_max_row_group_row_count(Some(encoding.row_group_rows))
        .set_data_page_size_limit(1 << 20)
        .set_created_by(format!("flowlog {}", env!("CARGO_PKG_VERSION")))
        .build())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StructArray};
    use arrow_schema::{DataType, Field, Fields, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    fn events(rows: &[(Option<&str>, Option<&str>, i64)]) -> RecordBatch {
        let account = StructArray::from(vec![(
            Arc::new(Field::new("uid", DataType::Utf8, true)),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )) as Arc<dyn Array>,
        )]);
        let cloud = StructArray::from(vec![
            (
                Arc::new(Field::new("region", DataType::Utf8, true)),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )) as Arc<dyn Array>,
            ),
            (
                Arc::new(Field::new("account", account.data_type().clone(), true)),
                Arc::new(account) as Arc<dyn Array>,
            ),
        ]);
        let schema = Schema::new(vec![
            Field::new("time", DataType::Int64, true),
            Field::new(
                "cloud",
                DataType::Struct(Fields::from(vec![
                    Field::new("region", DataType::Utf8, true),
                    Field::new(
                        "account",
                        DataType::Struct(Fields::from(vec![Field::new(
                            "uid",
                            DataType::Utf8,
                            true,
                        )])),
                        true,
                    ),
                ])),
                true,
            ),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
                Arc::new(cloud),
            ],
        )
        .unwrap()
    }

    const DAY: i64 = 86_400_000;

    #[test]
    fn events_are_split_by_region_account_and_utc_day() {
        const A: &str = "111111111111";
        const B: &str = "222222222222";
        let batch = events(&[
            (Some("us-east-1"), Some(A), 0),
            (None, Some(A), DAY - 1),
            (Some("us-east-1"), Some(A), DAY),
            (Some("eu-west-1"), None, 5),
            (Some("eu-west-1"), Some(B), 5),
            // Not an account: `unknown` (AWS-managed interfaces), or a path.
            (Some("eu-west-1"), Some("unknown"), 5),
            (Some("../../etc"), Some(B), 5),
        ]);
        let Split { parts, orphans } = split(&batch, Some("us-east-1"), None).unwrap();
        let keys: Vec<_> = parts
            .iter()
            .map(|(p, b)| (p.key("ext/x", "o.parquet"), b.num_rows()))
            .collect();
        assert_eq!(
            keys,
            [
                (
                    format!("ext/x/region=eu-west-1/accountId={B}/eventDay=19700101/o.parquet"),
                    1
                ),
                (
                    format!("ext/x/region=us-east-1/accountId={A}/eventDay=19700101/o.parquet"),
                    2
                ),
                (
                    format!("ext/x/region=us-east-1/accountId={A}/eventDay=19700102/o.parquet"),
                    1
                ),
                // A region that is not one: the default's.
                (
                    format!("ext/x/region=us-east-1/accountId={B}/eventDay=19700101/o.parquet"),
                    1
                ),
            ]
        );
        assert_eq!(orphans, [(3, NO_ACCOUNT), (5, NO_ACCOUNT)]);
        // With defaults nothing is left over; without a region, rows without one are.
        let Split { parts, orphans } =
            split(&batch, Some("us-east-1"), Some("333333333333")).unwrap();
        assert!(orphans.is_empty());
        assert!(parts.iter().any(|(p, _)| p.account == "333333333333"));
        let Split { orphans, .. } = split(&batch, None, Some("333333333333")).unwrap();
        assert_eq!(orphans, [(1, NO_REGION), (6, NO_REGION)]);
    }

    #[test]
    fn objects_are_sorted_by_time_and_compressed_with_zstd() {
        let a = events(&[(Some("r"), Some("1"), 30), (Some("r"), Some("1"), 10)]);
        let b = events(&[(Some("r"), Some("1"), 20)]);
        let schema = a.schema();
        let encoding = Encoding {
            zstd_level: 3,
            row_group_rows: 2,
        };
        let bytes = parquet(&schema, &[a, b], &encoding).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).unwrap();
        let metadata = reader.metadata().clone();
        assert_eq!(metadata.num_row_groups(), 2);
        assert!(matches!(
            metadata.row_group(0).column(0).compression(),
            Compression::ZSTD(_)
        ));
        let times: Vec<i64> = reader
            .build()
            .unwrap()
            .flat_map(|b| {
                let b = b.unwrap();
                b.column(0).as_primitive::<Int64Type>().values().to_vec()
            })
            .collect();
        assert_eq!(times, [10, 20, 30]);
    }

    #[test]
    fn events_of_the_same_millisecond_keep_their_order() {
        // Arrival order is kept in the region's number; three times, interleaved.
        let names: Vec<String> = (0..3000).map(|i| format!("r{i}")).collect();
        let rows: Vec<(Option<&str>, Option<&str>, i64)> = names
            .iter()
            .enumerate()
            .map(|(i, name)| (Some(name.as_str()), Some("1"), (i % 3) as i64))
            .collect();
        let batch = events(&rows);
        let encoding = Encoding {
            zstd_level: 1,
            row_group_rows: 10_000,
        };
        let bytes = parquet(&batch.schema(), &[batch], &encoding).unwrap();
        let sorted: Vec<RecordBatch> =
            ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
                .unwrap()
                .build()
                .unwrap()
                .map(Result::unwrap)
                .collect();
        let mut last = (i64::MIN, -1);
        for b in &sorted {
            let time = b.column(0).as_primitive::<Int64Type>();
            let region = b.column(1).as_struct().column(0).as_string::<i32>();
            for row in 0..b.num_rows() {
                let arrived: i64 = region.value(row)[1..].parse().unwrap();
                let key = (time.value(row), arrived);
                assert!(key > last, "{key:?} after {last:?}");
                last = key;
            }
        }
    }
}
