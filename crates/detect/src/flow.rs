//! The facts rules read from a record, bound once per batch.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use arrow_array::Array;
use flowlog_model::address::parse_ip;
use flowlog_model::FlowBatch;
use flowlog_normalize::columns::Column;
use hashbrown::{DefaultHashBuilder, HashTable};
use serde::{Deserialize, Serialize};

use crate::settings::Networks;
use crate::window::Context;

/// One flow record, as the rules see it.
pub(crate) struct Flow<'a> {
    /// `start`, milliseconds: event time.
    pub time: i64,
    pub end: i64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_internal: bool,
    pub dst_internal: bool,
    pub dst_port: Option<u16>,
    pub protocol: Option<u8>,
    /// `ACCEPT` true, `REJECT` false, unknown none.
    pub accepted: Option<bool>,
    pub packets: u64,
    pub bytes: u64,
    pub interface_id: Option<&'a str>,
    pub account_id: Option<&'a str>,
    pub region: Option<&'a str>,
    pub instance_id: Option<&'a str>,
    /// The watch-list entry and list each side matched (enrichment columns).
    pub src_watch: Option<(&'a str, &'a str)>,
    pub dst_watch: Option<(&'a str, &'a str)>,
    /// Where the record came from: its id is `prefix-line`.
    pub prefix: &'a Arc<str>,
    pub line: u64,
    contexts: &'a RefCell<Contexts>,
}

impl Flow<'_> {
    /// The record's interface, instance, account and region, shared with the records
    /// that have the same.
    pub(crate) fn context(&self) -> Arc<Context> {
        self.contexts.borrow_mut().get([
            self.interface_id,
            self.instance_id,
            self.account_id,
            self.region,
        ])
    }
}

/// The contexts made so far: a key's first record is kept as one of a few hundred
/// interfaces, not as four strings of its own for every key of every rule.
#[derive(Default)]
pub(crate) struct Contexts {
    table: HashTable<Arc<Context>>,
    hasher: DefaultHashBuilder,
}

impl Contexts {
    /// Past this many, the table starts again (keys already made keep theirs).
    const MAX: usize = 4096;

    fn get(&mut self, parts: [Option<&str>; 4]) -> Arc<Context> {
        let hash = self.hasher.hash_one(parts);
        if let Some(found) = self.table.find(hash, |c| c.parts() == parts) {
            return Arc::clone(found);
        }
        if self.table.len() >= Self::MAX {
            self.table.clear();
        }
        let context = Arc::new(Context::new(parts));
        let hasher = &self.hasher;
        self.table
            .insert_unique(hash, Arc::clone(&context), |c| hasher.hash_one(c.parts()));
        context
    }
}

/// Where a record can be found again: its deterministic event id, in two parts so that
/// keeping one costs no hashing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Example {
    pub prefix: Arc<str>,
    pub line: u64,
}

impl Example {
    pub(crate) fn id(&self) -> String {
        format!("{}-{}", self.prefix, self.line)
    }
}

/// The columns of one batch the rules read.
struct Columns<'a> {
    start: Column<'a>,
    end: Option<Column<'a>>,
    src: Column<'a>,
    dst: Column<'a>,
    dst_port: Option<Column<'a>>,
    protocol: Option<Column<'a>>,
    action: Option<Column<'a>>,
    log_status: Option<Column<'a>>,
    packets: Option<Column<'a>>,
    bytes: Option<Column<'a>>,
    interface_id: Option<Column<'a>>,
    account_id: Option<Column<'a>>,
    region: Option<Column<'a>>,
    instance_id: Option<Column<'a>>,
    src_watch: Option<(Column<'a>, Column<'a>)>,
    dst_watch: Option<(Column<'a>, Column<'a>)>,
}

fn column<'a>(batch: &'a FlowBatch, name: &str) -> Option<Column<'a>> {
    let schema = batch.records.schema_ref();
    let (i, field) = schema.column_with_name(name)?;
    let array: &dyn Array = batch.records.column(i).as_ref();
    if array.null_count() == array.len() {
        return None;
    }
    Column::new(field, array).ok()
}

/// Calls `each` for every record of `batch` that has a time and both addresses and whose
/// log status (when given) is `OK`; returns how many records it skipped.
pub(crate) fn for_each_flow(
    batch: &FlowBatch,
    networks: &Networks,
    contexts: &RefCell<Contexts>,
    mut each: impl FnMut(&Flow<'_>),
) -> u64 {
    let rows = batch.num_rows();
    let (Some(start), Some(src), Some(dst)) = (
        column(batch, "start"),
        column(batch, "srcaddr"),
        column(batch, "dstaddr"),
    ) else {
        return rows as u64;
    };
    let watch = |side: &str| {
        Some((
            column(batch, &format!("{side}_watchlist"))?,
            column(batch, &format!("{side}_watchlist_name"))?,
        ))
    };
    let c = Columns {
        start,
        end: column(batch, "end"),
        src,
        dst,
        dst_port: column(batch, "dstport"),
        protocol: column(batch, "protocol"),
        action: column(batch, "action"),
        log_status: column(batch, "log_status"),
        packets: column(batch, "packets"),
        bytes: column(batch, "bytes"),
        interface_id: column(batch, "interface_id"),
        account_id: column(batch, "account_id"),
        region: column(batch, "region"),
        instance_id: column(batch, "instance_id"),
        src_watch: watch("src"),
        dst_watch: watch("dst"),
    };
    let prefix: Arc<str> = batch.source.event_id_prefix().into();
    let mut skipped = 0;
    for row in 0..rows {
        if text(&c.log_status, row).is_some_and(|s| s != "OK") {
            skipped += 1;
            continue;
        }
        let (Some(time), Some(src), Some(dst)) = (
            c.start.int(row),
            c.src.text(row).and_then(|t| parse_ip(t.as_bytes())),
            c.dst.text(row).and_then(|t| parse_ip(t.as_bytes())),
        ) else {
            skipped += 1;
            continue;
        };
        let flow = Flow {
            time,
            end: int(&c.end, row).unwrap_or(time),
            src,
            dst,
            src_internal: networks.internal(src),
            dst_internal: networks.internal(dst),
            dst_port: int(&c.dst_port, row).and_then(|p| u16::try_from(p).ok()),
            protocol: int(&c.protocol, row).and_then(|p| u8::try_from(p).ok()),
            accepted: match text(&c.action, row) {
                Some("ACCEPT") => Some(true),
                Some("REJECT") => Some(false),
                _ => None,
            },
            packets: int(&c.packets, row).map_or(0, |v| v.max(0) as u64),
            bytes: int(&c.bytes, row).map_or(0, |v| v.max(0) as u64),
            interface_id: text(&c.interface_id, row),
            account_id: text(&c.account_id, row),
            region: text(&c.region, row),
            instance_id: text(&c.instance_id, row),
            src_watch: watch_hit(&c.src_watch, row),
            dst_watch: watch_hit(&c.dst_watch, row),
            prefix: &prefix,
            line: batch.line_numbers[row],
            contexts,
        };
        each(&flow);
    }
    skipped
}

fn text<'a>(col: &Option<Column<'a>>, row: usize) -> Option<&'a str> {
    col.as_ref().and_then(|c| c.text(row))
}

fn int(col: &Option<Column<'_>>, row: usize) -> Option<i64> {
    col.as_ref().and_then(|c| c.int(row))
}

fn watch_hit<'a>(w: &Option<(Column<'a>, Column<'a>)>, row: usize) -> Option<(&'a str, &'a str)> {
    w.as_ref()
        .and_then(|(entry, list)| Some((entry.text(row)?, list.text(row)?)))
}
