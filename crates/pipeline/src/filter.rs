//! The transform stage's record filter: which records go on to the sinks.
//!
//! Records left out are counted (`flowlog_records_filtered_total`), not dead-lettered:
//! they were read and understood, and dropping them is what the configuration asks for.
//! A batch filtered down to nothing is acknowledged at once.

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::Array;
use flowlog_model::FlowBatch;
use serde::Deserialize;

/// `[transform.filter]`: each list given keeps only records whose field is one of its
/// values (a record without the field is kept only if the list holds `"-"`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// `action`: `ACCEPT`, `REJECT`.
    pub action: Option<Vec<String>>,
    /// `log_status`: `OK`, `NODATA`, `SKIPDATA`.
    pub log_status: Option<Vec<String>>,
    /// `interface_id`: the network interfaces to keep.
    pub interface_id: Option<Vec<String>>,
    /// `flow_direction`: `ingress`, `egress`.
    pub flow_direction: Option<Vec<String>>,
    /// Only records that started at or after this moment (RFC 3339, or a date: its
    /// midnight UTC).
    #[serde(default, deserialize_with = "instant")]
    pub since: Option<i64>,
    /// Only records that started before this moment.
    #[serde(default, deserialize_with = "instant")]
    pub until: Option<i64>,
    /// Only records for which this SQL expression is true (`dstport = 22 AND action =
    /// 'REJECT'`), over the record's columns and, with enrichment, its columns; a column
    /// the record's format lacks is null, and null is not true.
    #[serde(rename = "where")]
    pub predicate: Option<String>,
}

/// A moment as milliseconds since the epoch, from RFC 3339 or a date.
fn instant<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let text = String::deserialize(d)?;
    flowlog_model::time::parse_instant(&text)
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{text:?} is not a moment: RFC 3339 (`2026-08-01T00:00:00Z`) or a date \
                 (`2026-08-01`, its midnight UTC)"
            ))
        })
}

/// Checks a `where` predicate (over the enrichment columns too with `enriched`), and says
/// the range of `start` its conjuncts bound, in milliseconds (what a backfill can plan
/// by).
pub fn check_where(sql: &str, enriched: bool) -> Result<(Option<i64>, Option<i64>), String> {
    let planned = Where::new(sql, enriched)?;
    #[cfg(feature = "sql")]
    return Ok(planned.predicate.start_bounds());
    #[cfg(not(feature = "sql"))]
    {
        let _ = planned;
        Ok((None, None))
    }
}

/// The `where` predicate, planned, as the transform stage applies it.
pub(crate) struct Where {
    #[cfg(feature = "sql")]
    predicate: flowlog_query::Predicate,
}

impl Where {
    /// Plans `sql` over the canonical columns and, with `enriched`, the enrichment ones.
    pub(crate) fn new(sql: &str, enriched: bool) -> Result<Self, String> {
        #[cfg(feature = "sql")]
        {
            flowlog_query::Predicate::new(sql, enriched)
                .map(|predicate| Self { predicate })
                .map_err(|e| e.to_string())
        }
        #[cfg(not(feature = "sql"))]
        {
            let _ = (sql, enriched);
            Err("where: this flowlog was built without SQL (cargo feature `sql`)".into())
        }
    }

    /// Whether batches of `schema` hold every column it reads (then it runs before
    /// enrichment, which the records it drops are spared).
    pub(crate) fn reads_only(&self, schema: &arrow_schema::Schema) -> bool {
        #[cfg(feature = "sql")]
        return self.predicate.reads_only(schema);
        #[cfg(not(feature = "sql"))]
        {
            let _ = schema;
            true
        }
    }

    /// The rows of `batch` it keeps, and how many it dropped. A batch it cannot be
    /// evaluated on (a cast that fails on a value) is kept whole, with the error: records
    /// are not dropped for a reason that is not theirs.
    pub(crate) fn apply(&mut self, batch: FlowBatch) -> (FlowBatch, Result<usize, String>) {
        #[cfg(feature = "sql")]
        {
            let rows = batch.num_rows();
            match self.predicate.select(&batch.records) {
                Ok(mask) => {
                    let kept = mask.true_count();
                    (batch.filter(&mask), Ok(rows - kept))
                }
                Err(e) => (batch, Err(e.to_string())),
            }
        }
        #[cfg(not(feature = "sql"))]
        (batch, Ok(0))
    }
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.rules().next().is_none() && self.since.is_none() && self.until.is_none()
    }

    /// Whether a record that started at `start` (milliseconds) is in the time range. The
    /// start decides: it puts each flow in exactly one of two adjacent ranges, and every
    /// record has one (a NODATA or SKIPDATA record too).
    fn in_range(&self, start: i64) -> bool {
        self.since.is_none_or(|since| start >= since)
            && self.until.is_none_or(|until| start < until)
    }

    fn rules(&self) -> impl Iterator<Item = (&'static str, &Vec<String>)> {
        [
            ("action", &self.action),
            ("log_status", &self.log_status),
            ("interface_id", &self.interface_id),
            ("flow_direction", &self.flow_direction),
        ]
        .into_iter()
        .filter_map(|(column, values)| values.as_ref().map(|v| (column, v)))
    }

    /// The rows of `batch` that pass; None when all do.
    pub fn apply(&self, batch: FlowBatch) -> (FlowBatch, usize) {
        let rows = batch.num_rows();
        let mut keep = vec![true; rows];
        for (column, values) in self.rules() {
            let keeps_absent = values.iter().any(|v| v == "-");
            match batch.records.column_by_name(column) {
                Some(array) => {
                    let text = array.as_string_view();
                    for (row, k) in keep.iter_mut().enumerate() {
                        if *k {
                            *k = if text.is_null(row) {
                                keeps_absent
                            } else {
                                let value = text.value(row);
                                values.iter().any(|v| v == value)
                            };
                        }
                    }
                }
                None => keep.iter_mut().for_each(|k| *k &= keeps_absent),
            }
        }
        if self.since.is_some() || self.until.is_some() {
            // A record without a start (a format without the field) cannot be placed in
            // time: it is kept, not dropped unseen.
            if let Some(array) = batch.records.column_by_name("start") {
                let start = array.as_primitive::<TimestampMillisecondType>();
                for (row, k) in keep.iter_mut().enumerate() {
                    *k = *k && (start.is_null(row) || self.in_range(start.value(row)));
                }
            }
        }
        let kept = keep.iter().filter(|&&k| k).count();
        (batch.keep_rows(keep), rows - kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowlog_decode::{decode_reader, Collected, DecodeOptions};
    use flowlog_model::SourceId;

    #[test]
    fn keeps_only_what_the_lists_name() {
        let text = "\
2 1 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 1 1700000000 1700000001 ACCEPT OK
2 1 eni-1 10.0.0.1 10.0.0.3 1 2 6 1 1 1700000000 1700000001 REJECT OK
2 1 eni-2 - - - - - - - 1700000000 1700000001 - NODATA
2 1 eni-2 10.0.0.1 10.0.0.4 1 2 6 1 1 1700000000 1700000001 REJECT OK
";
        let mut out = Collected::default();
        let options = DecodeOptions {
            keep_lines: true,
            ..DecodeOptions::default()
        };
        decode_reader(text.as_bytes(), SourceId::new("t"), &options, &mut out).unwrap();
        let batch = out.batches.remove(0);
        let filter = Filter {
            action: Some(vec!["REJECT".into()]),
            ..Filter::default()
        };
        let (kept, dropped) = filter.apply(batch.clone());
        assert_eq!(dropped, 2);
        assert_eq!(&kept.line_numbers[..], &[2, 4]);
        assert!(kept.lines.as_ref().unwrap().value(1).contains("10.0.0.4"));
        let filter = Filter {
            log_status: Some(vec!["OK".into()]),
            interface_id: Some(vec!["eni-1".into()]),
            ..Filter::default()
        };
        let (kept, dropped) = filter.apply(batch.clone());
        assert_eq!((&kept.line_numbers[..], dropped), (&[1, 2][..], 2));
        let (kept, dropped) = Filter::default().apply(batch);
        assert_eq!((kept.num_rows(), dropped), (4, 0));
    }

    #[test]
    fn a_time_range_keeps_records_by_their_start() {
        let text = "\
2 1 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 1 1785542399 1785542460 ACCEPT OK
2 1 eni-1 10.0.0.1 10.0.0.3 1 2 6 1 1 1785542400 1785542460 ACCEPT OK
2 1 eni-1 10.0.0.1 10.0.0.4 1 2 6 1 1 1785628799 1785628860 ACCEPT OK
2 1 eni-1 10.0.0.1 10.0.0.5 1 2 6 1 1 1785628800 1785628860 ACCEPT OK
";
        let mut out = Collected::decode(text.as_bytes(), "t").unwrap();
        let filter: Filter =
            toml::from_str("since = \"2026-08-01\"\nuntil = \"2026-08-02T00:00:00Z\"").unwrap();
        // 1785542400 is 2026-08-01T00:00:00Z: the first line started a second before.
        let (kept, dropped) = filter.apply(out.batches.remove(0));
        assert_eq!((&kept.line_numbers[..], dropped), (&[2, 3][..], 2));
        let wrong = toml::from_str::<Filter>("since = \"last tuesday\"").unwrap_err();
        assert!(wrong.to_string().contains("is not a moment"), "{wrong}");
    }
}
