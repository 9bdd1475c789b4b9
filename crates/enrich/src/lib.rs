//! Enrichment: what flow records do not say about their addresses and interfaces.
//!
//! [`Enricher::enrich`] appends the columns of [`flowlog_model::enrichment_fields`] to a
//! [`FlowBatch`]: for the source and destination address, GeoIP ([`geoip`]), the
//! autonomous system ([`geoip`] or CSV ranges in [`asn_ranges`]), the AWS service and
//! region ([`ip_ranges`]), the instance holding the address ([`inventory`]) and watch-list
//! matches ([`watchlist`]); for the recording interface, its instance, name, tags,
//! security groups, subnet, VPC and type ([`inventory`], from files or live from EC2 via
//! [`ec2`]); and the build of each database used, so a backfill can be reproduced.
//!
//! Each distinct address of a batch is looked up once, and answers are kept across
//! batches in a bounded cache, so the cost follows the number of distinct peers, not the
//! number of records. Databases are reopened between batches when their files change;
//! the live inventory is refreshed by a background thread.
//!
//! Encoders find the columns by name; which output fields they become is the business of
//! `flowlog-normalize`.

pub mod asn_ranges;
pub mod ec2;
mod error;
pub mod geoip;
pub mod inventory;
pub mod ip_ranges;
mod prefixes;
pub mod watchlist;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::{
    new_null_array, Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringViewArray,
    UInt32Array, UInt32DictionaryArray,
};
use arrow_schema::{Schema, SchemaRef};
use flowlog_model::enrichment::enrichment_schema_fields;
use flowlog_model::{enrichment_fields, EnrichKind, FlowBatch};
use hashbrown::HashMap;

pub use asn_ranges::AsnRanges;
pub use ec2::{Ec2Options, Ec2Refresher};
pub use error::EnrichError;
pub use flowlog_model::address::is_public;
pub use geoip::{Asn, Geo, MmdbFile};
pub use inventory::{Interface, Inventory};
pub use ip_ranges::{AwsIpRanges, AwsRange};
pub use watchlist::{WatchHit, Watchlist};

/// Where geoipupdate writes databases by default (Debian/Ubuntu packages, source builds,
/// and the Docker image's volume), searched when no `--geoip` is given.
pub const GEOIPUPDATE_DIRS: &[&str] = &[
    "/usr/share/GeoIP",
    "/usr/local/share/GeoIP",
    "/var/lib/GeoIP",
];

/// What to enrich with. Every source is optional.
#[derive(Debug, Clone, Default)]
pub struct EnrichConfig {
    /// MaxMind DB files with geo data (City or Country; MaxMind or DB-IP layout). Several
    /// may be given (DB-IP ships IPv4 and IPv6 apart); the first with an answer wins.
    pub geoip: Vec<PathBuf>,
    /// ASN sources: MaxMind DB files (GeoLite2-ASN layout) or CSV range files.
    pub asn: Vec<PathBuf>,
    /// describe-network-interfaces / describe-instances JSON files.
    pub eni_files: Vec<PathBuf>,
    /// Read the ENI inventory live from EC2.
    pub ec2: Option<Ec2Options>,
    pub ip_ranges: Option<PathBuf>,
    pub watchlists: Vec<PathBuf>,
    /// Addresses whose answers are kept across batches (0: the default).
    pub cache_capacity: usize,
    /// Interfaces kept in the inventory (0: the default).
    pub eni_capacity: usize,
    /// How often database files are checked for replacement.
    pub reload_interval: Option<Duration>,
}

impl EnrichConfig {
    /// With no GeoIP or ASN database given, the databases geoipupdate keeps in its
    /// default directories, if any. Returns what was found.
    pub fn find_geoipupdate_databases(&mut self, dirs: &[&Path]) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let first = |names: &[&str]| {
            dirs.iter()
                .flat_map(|d| names.iter().map(move |n| d.join(n)))
                .find(|p| p.is_file())
        };
        if self.geoip.is_empty() {
            if let Some(p) = first(&[
                "GeoIP2-City.mmdb",
                "GeoLite2-City.mmdb",
                "GeoIP2-Country.mmdb",
                "GeoLite2-Country.mmdb",
            ]) {
                self.geoip.push(p.clone());
                found.push(p);
            }
        }
        if self.asn.is_empty() {
            if let Some(p) = first(&["GeoLite2-ASN.mmdb", "GeoIP2-ASN.mmdb"]) {
                self.asn.push(p.clone());
                found.push(p);
            }
        }
        found
    }

    pub fn is_empty(&self) -> bool {
        self.geoip.is_empty()
            && self.asn.is_empty()
            && self.eni_files.is_empty()
            && self.ec2.is_none()
            && self.ip_ranges.is_none()
            && self.watchlists.is_empty()
    }
}

/// Counters since the enricher was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnrichStats {
    pub batches: u64,
    pub rows: u64,
    /// Address values seen (source and destination, non-empty).
    pub addresses: u64,
    /// Distinct addresses per batch, summed: what the per-batch step looked up.
    pub distinct: u64,
    /// Of those, answered from the cross-batch cache.
    pub cache_hits: u64,
    /// Database files reopened after they changed.
    pub reloads: u64,
    /// Live inventory refreshes merged.
    pub inventory_refreshes: u64,
}

impl EnrichStats {
    /// Share of address values answered without a lookup of their own (repeats within a
    /// batch).
    pub fn batch_hit_rate(&self) -> f64 {
        ratio(
            self.addresses - self.distinct.min(self.addresses),
            self.addresses,
        )
    }

    /// Share of per-batch lookups answered by the cross-batch cache.
    pub fn cache_hit_rate(&self) -> f64 {
        ratio(self.cache_hits, self.distinct)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// What is known about one address.
#[derive(Debug, Default, PartialEq)]
pub struct AddressInfo {
    pub geo: Option<Geo>,
    pub asn: Option<Asn>,
    pub aws: Option<AwsRange>,
    pub watch: Option<WatchHit>,
    pub interface: Option<Arc<Interface>>,
}

/// Adds enrichment columns to batches. One per pipeline thread: it owns its caches.
pub struct Enricher {
    geo: Vec<MmdbFile>,
    asn_mmdb: Vec<MmdbFile>,
    asn_ranges: AsnRanges,
    inventory: Inventory,
    ec2: Option<Ec2Refresher>,
    ip_ranges: Option<AwsIpRanges>,
    watchlist: Watchlist,
    cache: quick_cache::unsync::Cache<IpAddr, Option<Arc<AddressInfo>>>,
    geo_label: Option<Arc<str>>,
    asn_label: Option<Arc<str>>,
    reload_interval: Duration,
    last_reload_check: Instant,
    schemas: Vec<(SchemaRef, SchemaRef)>,
    stats: EnrichStats,
}

impl std::fmt::Debug for Enricher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enricher")
            .field("geo", &self.geo)
            .field("asn_mmdb", &self.asn_mmdb)
            .field("asn_ranges", &self.asn_ranges.len())
            .field("inventory", &self.inventory.len())
            .field("stats", &self.stats)
            .finish()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Enricher {
    /// Opens every source. Any that cannot be read is an error naming its file; the
    /// caller decides whether that stops it.
    pub fn new(config: &EnrichConfig) -> Result<Self, EnrichError> {
        let geo = config
            .geoip
            .iter()
            .map(|p| MmdbFile::open(p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut asn_mmdb = Vec::new();
        let mut asn_ranges = AsnRanges::default();
        for path in &config.asn {
            if geoip::looks_like_mmdb(path)? {
                asn_mmdb.push(MmdbFile::open(path)?);
            } else {
                asn_ranges.add_file(path)?;
            }
        }
        let mut inventory = Inventory::with_capacity(match config.eni_capacity {
            0 => Inventory::DEFAULT_CAPACITY,
            n => n,
        });
        if !config.eni_files.is_empty() {
            let paths: Vec<&Path> = config.eni_files.iter().map(PathBuf::as_path).collect();
            inventory.merge(Inventory::load_files(&paths)?, now_ms());
        }
        let ec2 = match &config.ec2 {
            Some(options) => {
                let (refresher, first) = Ec2Refresher::start(options.clone())?;
                inventory.merge(first, now_ms());
                Some(refresher)
            }
            None => None,
        };
        let ip_ranges = config
            .ip_ranges
            .as_deref()
            .map(AwsIpRanges::load)
            .transpose()?;
        let mut watchlist = Watchlist::default();
        for path in &config.watchlists {
            watchlist.add_file(path)?;
        }
        let mut enricher = Self {
            geo,
            asn_mmdb,
            asn_ranges,
            inventory,
            ec2,
            ip_ranges,
            watchlist,
            cache: quick_cache::unsync::Cache::new(match config.cache_capacity {
                0 => 100_000,
                n => n,
            }),
            geo_label: None,
            asn_label: None,
            reload_interval: config.reload_interval.unwrap_or(Duration::from_secs(10)),
            last_reload_check: Instant::now(),
            schemas: Vec::new(),
            stats: EnrichStats::default(),
        };
        enricher.relabel();
        Ok(enricher)
    }

    pub fn stats(&self) -> EnrichStats {
        self.stats
    }

    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// The databases in use, as stamped on events (`type@build date`).
    pub fn database_labels(&self) -> Vec<Arc<str>> {
        self.geo_label
            .iter()
            .chain(&self.asn_label)
            .cloned()
            .collect()
    }

    fn relabel(&mut self) {
        let join = |labels: Vec<String>| (!labels.is_empty()).then(|| Arc::from(labels.join(",")));
        self.geo_label = join(self.geo.iter().map(|d| d.label().to_string()).collect());
        self.asn_label = join(
            self.asn_mmdb
                .iter()
                .map(|d| d.label().to_string())
                .chain(self.asn_ranges.labels.iter().cloned())
                .collect(),
        );
    }

    /// Answers everything known about one address (no cache).
    pub fn lookup(&self, ip: IpAddr) -> AddressInfo {
        let public = is_public(ip);
        AddressInfo {
            geo: if public {
                self.geo.iter().find_map(|d| d.geo(ip))
            } else {
                None
            },
            asn: if public {
                self.asn_mmdb
                    .iter()
                    .find_map(|d| d.asn(ip))
                    .or_else(|| self.asn_ranges.lookup(ip))
            } else {
                None
            },
            aws: self.ip_ranges.as_ref().and_then(|r| r.lookup(ip)).cloned(),
            watch: self.watchlist.lookup(ip).cloned(),
            interface: self.inventory.by_address(ip).cloned(),
        }
    }

    /// Reopens changed databases and merges inventory refreshes. Problems are returned as
    /// messages for the caller to log; the enricher goes on with what it had.
    pub fn maintain(&mut self) -> Vec<String> {
        let mut notices = Vec::new();
        let mut changed = false;
        if let Some(ec2) = &self.ec2 {
            while let Some(snapshot) = ec2.try_next() {
                match snapshot {
                    Ok(interfaces) => {
                        self.inventory.merge(interfaces, now_ms());
                        self.stats.inventory_refreshes += 1;
                        changed = true;
                    }
                    Err(e) => notices.push(format!(
                        "ENI inventory refresh failed, keeping the last one: {e}"
                    )),
                }
            }
        }
        if self.last_reload_check.elapsed() >= self.reload_interval {
            self.last_reload_check = Instant::now();
            for db in self.geo.iter_mut().chain(self.asn_mmdb.iter_mut()) {
                match db.reload_if_changed() {
                    Ok(true) => {
                        self.stats.reloads += 1;
                        notices.push(format!(
                            "{}: reopened ({})",
                            db.path().display(),
                            db.label()
                        ));
                        changed = true;
                    }
                    Ok(false) => {}
                    Err(e) => notices.push(format!("{e}; keeping the database already open")),
                }
            }
        }
        if changed {
            self.cache.clear();
            self.relabel();
        }
        notices
    }

    /// The batch with the enrichment columns appended.
    pub fn enrich(&mut self, batch: FlowBatch) -> FlowBatch {
        let rows = batch.num_rows();
        self.stats.batches += 1;
        self.stats.rows += rows as u64;
        let records = &batch.records;
        let text_column = |name: &str| {
            records
                .column_by_name(name)
                .filter(|a| a.null_count() < a.len())
                .map(|a| a.as_string_view().clone())
        };
        // Each source fills the columns it knows; the rest stay null.
        let mut columns: Vec<Option<ArrayRef>> = vec![None; enrichment_fields().len()];
        let mut plain = batch.plain_text;
        for (side, name) in [(Side::Src, "srcaddr"), (Side::Dst, "dstaddr")] {
            if let Some(addresses) = text_column(name) {
                self.address_columns(side, &addresses, &mut columns, &mut plain);
            }
        }
        let starts = records
            .column_by_name("start")
            .filter(|a| a.null_count() < a.len())
            .map(|a| a.as_primitive::<TimestampMillisecondType>().clone());
        if let Some(ids) = text_column("interface_id").filter(|_| !self.inventory.is_empty()) {
            self.interface_columns(&ids, starts.as_ref(), &mut columns, &mut plain);
        }
        // One set of zero keys for the constant columns, so they share their keys too;
        // made only when a database label is there to write.
        let mut zeros = None;
        for (i, source) in sources().iter().enumerate() {
            let label = match source {
                Source::GeoDatabase => &self.geo_label,
                Source::AsnDatabase => &self.asn_label,
                _ => continue,
            };
            columns[i] = label.as_deref().map(|l| {
                let zeros = zeros.get_or_insert_with(|| UInt32Array::from(vec![0u32; rows]));
                constant(l, zeros, &mut plain)
            });
        }
        let fields = enrichment_schema_fields();
        let columns = columns
            .into_iter()
            .zip(fields.iter())
            .map(|(c, f)| c.unwrap_or_else(|| new_null_array(f.data_type(), rows)));
        let schema = self.schema_for(records.schema());
        let mut all = records.columns().to_vec();
        all.extend(columns);
        let records = RecordBatch::try_new(schema, all).expect("columns built to the schema");
        FlowBatch {
            records,
            plain_text: plain,
            ..batch
        }
    }

    fn schema_for(&mut self, input: SchemaRef) -> SchemaRef {
        if let Some((_, out)) = self.schemas.iter().find(|(i, _)| Arc::ptr_eq(i, &input)) {
            return Arc::clone(out);
        }
        let mut fields: Vec<_> = input.fields().iter().cloned().collect();
        fields.extend(enrichment_schema_fields().iter().cloned());
        let out = Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()));
        // Formats are few; keep the most recent ones.
        if self.schemas.len() >= 16 {
            self.schemas.remove(0);
        }
        self.schemas.push((input, Arc::clone(&out)));
        out
    }

    /// The columns of one side, from its address column.
    fn address_columns(
        &mut self,
        side: Side,
        addresses: &StringViewArray,
        columns: &mut [Option<ArrayRef>],
        plain: &mut bool,
    ) {
        // Distinct addresses of the batch, and each row's index among them.
        let mut index: HashMap<&str, u32> = HashMap::with_capacity(256);
        let mut distinct: Vec<&str> = Vec::with_capacity(256);
        let keys: UInt32Array = addresses
            .iter()
            .map(|a| {
                a.filter(|a| !a.is_empty()).map(|a| {
                    *index.entry(a).or_insert_with(|| {
                        distinct.push(a);
                        distinct.len() as u32 - 1
                    })
                })
            })
            .collect();
        self.stats.addresses += (keys.len() - keys.null_count()) as u64;
        self.stats.distinct += distinct.len() as u64;
        let infos: Vec<Option<Arc<AddressInfo>>> = distinct
            .iter()
            .map(|text| {
                let ip = flowlog_model::address::parse_ip(text.as_bytes())?;
                if let Some(hit) = self.cache.get(&ip) {
                    self.stats.cache_hits += 1;
                    return hit.clone();
                }
                let info = self.lookup(ip);
                let info = (info != AddressInfo::default()).then(|| Arc::new(info));
                self.cache.insert(ip, info.clone());
                info
            })
            .collect();
        let infos: Vec<Option<&AddressInfo>> = infos.iter().map(Option::as_deref).collect();
        for (i, source) in sources().iter().enumerate() {
            if let Source::Address(s, field) = *source {
                if s == side {
                    let kind = enrichment_fields()[i].kind;
                    columns[i] = gather(&infos, &keys, kind, plain, |info| side_value(info, field));
                }
            }
        }
    }

    fn interface_columns(
        &self,
        ids: &StringViewArray,
        starts: Option<&arrow_array::TimestampMillisecondArray>,
        columns: &mut [Option<ArrayRef>],
        plain: &mut bool,
    ) {
        // Distinct mappings of the batch (an interface whose mapping changed during the
        // batch has two), by address of the shared mapping.
        let mut index: HashMap<*const Interface, u32> = HashMap::new();
        let mut distinct: Vec<Option<&Interface>> = Vec::new();
        let keys: UInt32Array = (0..ids.len())
            .map(|row| {
                if ids.is_null(row) {
                    return None;
                }
                let at = starts.filter(|s| s.is_valid(row)).map(|s| s.value(row));
                let interface = self.inventory.interface(ids.value(row), at)?;
                Some(*index.entry(Arc::as_ptr(interface)).or_insert_with(|| {
                    distinct.push(Some(interface));
                    distinct.len() as u32 - 1
                }))
            })
            .collect();
        for (i, source) in sources().iter().enumerate() {
            if let Source::Interface(field) = *source {
                let kind = enrichment_fields()[i].kind;
                columns[i] = gather(&distinct, &keys, kind, plain, |interface| {
                    interface_value(interface, field)
                });
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Src,
    Dst,
}

/// What fills an enrichment column.
#[derive(Clone, Copy)]
enum Source {
    Address(Side, SideField),
    Interface(InterfaceField),
    GeoDatabase,
    AsnDatabase,
}

/// The source of each column of the model's enrichment table, in its order: the table
/// names the columns, this reads the names, so the two cannot drift apart.
fn sources() -> &'static [Source] {
    static SOURCES: OnceLock<Vec<Source>> = OnceLock::new();
    SOURCES.get_or_init(|| {
        enrichment_fields()
            .iter()
            .map(|f| {
                let name = f.column;
                let side = |prefix, side| {
                    let field = SideField::named(name.strip_prefix(prefix)?)?;
                    Some(Source::Address(side, field))
                };
                side("src_", Side::Src)
                    .or_else(|| side("dst_", Side::Dst))
                    .or_else(|| Some(Source::Interface(InterfaceField::named(name)?)))
                    .or(match name {
                        "geoip_database" => Some(Source::GeoDatabase),
                        "asn_database" => Some(Source::AsnDatabase),
                        _ => None,
                    })
                    .unwrap_or_else(|| panic!("no source fills enrichment column {name}"))
            })
            .collect()
    })
}

/// A value of one enrichment column for one distinct address or interface.
enum Value<'a> {
    Text(&'a str),
    Int(i64),
    Float(f64),
}

#[derive(Clone, Copy)]
enum SideField {
    CountryIso,
    CountryName,
    ContinentCode,
    ContinentName,
    RegionIso,
    RegionName,
    City,
    Postal,
    Lat,
    Lon,
    Timezone,
    AsNumber,
    AsOrganization,
    AwsService,
    AwsRegion,
    InstanceId,
    InstanceName,
    InterfaceId,
    Watch,
    WatchList,
}

impl SideField {
    /// The field named `suffix` after `src_`/`dst_` in the model's table.
    fn named(suffix: &str) -> Option<Self> {
        Some(match suffix {
            "geo_country_iso_code" => Self::CountryIso,
            "geo_country_name" => Self::CountryName,
            "geo_continent_code" => Self::ContinentCode,
            "geo_continent_name" => Self::ContinentName,
            "geo_region_iso_code" => Self::RegionIso,
            "geo_region_name" => Self::RegionName,
            "geo_city_name" => Self::City,
            "geo_postal_code" => Self::Postal,
            "geo_lat" => Self::Lat,
            "geo_lon" => Self::Lon,
            "geo_timezone" => Self::Timezone,
            "as_number" => Self::AsNumber,
            "as_organization" => Self::AsOrganization,
            "aws_service" => Self::AwsService,
            "aws_region" => Self::AwsRegion,
            "instance_id" => Self::InstanceId,
            "instance_name" => Self::InstanceName,
            "interface_id" => Self::InterfaceId,
            "watchlist" => Self::Watch,
            "watchlist_name" => Self::WatchList,
            _ => return None,
        })
    }
}

fn side_value(info: &AddressInfo, field: SideField) -> Option<Value<'_>> {
    fn text(s: Option<&Arc<str>>) -> Option<Value<'_>> {
        s.map(|s| Value::Text(s))
    }
    let geo = info.geo.as_ref();
    match field {
        SideField::CountryIso => text(geo?.country_iso_code.as_ref()),
        SideField::CountryName => text(geo?.country_name.as_ref()),
        SideField::ContinentCode => text(geo?.continent_code.as_ref()),
        SideField::ContinentName => text(geo?.continent_name.as_ref()),
        SideField::RegionIso => text(geo?.region_iso_code.as_ref()),
        SideField::RegionName => text(geo?.region_name.as_ref()),
        SideField::City => text(geo?.city_name.as_ref()),
        SideField::Postal => text(geo?.postal_code.as_ref()),
        SideField::Lat => geo?.lat.map(Value::Float),
        SideField::Lon => geo?.lon.map(Value::Float),
        SideField::Timezone => text(geo?.timezone.as_ref()),
        SideField::AsNumber => info.asn.as_ref().map(|a| Value::Int(a.number.into())),
        SideField::AsOrganization => text(info.asn.as_ref()?.organization.as_ref()),
        SideField::AwsService => text(Some(&info.aws.as_ref()?.service)),
        SideField::AwsRegion => text(Some(&info.aws.as_ref()?.region)),
        SideField::InstanceId => text(info.interface.as_ref()?.instance_id.as_ref()),
        SideField::InstanceName => text(info.interface.as_ref()?.name.as_ref()),
        SideField::InterfaceId => text(Some(&info.interface.as_ref()?.id)),
        SideField::Watch => text(Some(&info.watch.as_ref()?.entry)),
        SideField::WatchList => text(Some(&info.watch.as_ref()?.list)),
    }
}

#[derive(Clone, Copy)]
enum InterfaceField {
    InstanceId,
    Name,
    Tags,
    SecurityGroups,
    Subnet,
    Vpc,
    Type,
    Requester,
    Description,
}

impl InterfaceField {
    fn named(column: &str) -> Option<Self> {
        Some(match column {
            "eni_instance_id" => Self::InstanceId,
            "eni_instance_name" => Self::Name,
            "eni_tags" => Self::Tags,
            "eni_security_groups" => Self::SecurityGroups,
            "eni_subnet_id" => Self::Subnet,
            "eni_vpc_id" => Self::Vpc,
            "eni_type" => Self::Type,
            "eni_requester_id" => Self::Requester,
            "eni_description" => Self::Description,
            _ => return None,
        })
    }
}

fn interface_value(i: &Interface, field: InterfaceField) -> Option<Value<'_>> {
    let value = match field {
        InterfaceField::InstanceId => &i.instance_id,
        InterfaceField::Name => &i.name,
        InterfaceField::Tags => &i.tags_json,
        InterfaceField::SecurityGroups => &i.security_groups_json,
        InterfaceField::Subnet => &i.subnet_id,
        InterfaceField::Vpc => &i.vpc_id,
        InterfaceField::Type => &i.interface_type,
        InterfaceField::Requester => &i.requester_id,
        InterfaceField::Description => &i.description,
    };
    value.as_deref().map(Value::Text)
}

/// One column, dictionary-encoded: the value of each distinct entry, and `keys` (shared
/// by every column of the same lookups) for the rows. `plain` is cleared when a text value
/// holds a byte JSON must escape (see [`FlowBatch::plain_text`]).
fn gather<T>(
    distinct: &[Option<&T>],
    keys: &UInt32Array,
    kind: EnrichKind,
    plain: &mut bool,
    value: impl Fn(&T) -> Option<Value<'_>>,
) -> Option<ArrayRef> {
    let values: Vec<Option<Value<'_>>> = distinct.iter().map(|d| d.and_then(&value)).collect();
    if values.iter().all(Option::is_none) {
        return None;
    }
    let dictionary: ArrayRef = match kind {
        EnrichKind::Text | EnrichKind::Json => {
            let text = StringViewArray::from_iter(values.iter().map(|v| match v {
                Some(Value::Text(s)) => Some(*s),
                _ => None,
            }));
            // JSON values are written as they are, never escaped.
            if kind == EnrichKind::Text && *plain {
                *plain = !text.iter().flatten().any(flowlog_model::needs_json_escape);
            }
            Arc::new(text)
        }
        EnrichKind::Int => Arc::new(Int64Array::from_iter(values.iter().map(|v| match v {
            Some(Value::Int(n)) => Some(*n),
            _ => None,
        }))),
        EnrichKind::Float => Arc::new(Float64Array::from_iter(values.iter().map(|v| match v {
            Some(Value::Float(n)) => Some(*n),
            _ => None,
        }))),
        EnrichKind::Time => unreachable!("no enrichment column holds a time"),
    };
    debug_assert!(keys
        .iter()
        .flatten()
        .all(|k| (k as usize) < dictionary.len()));
    // SAFETY: every key was made as an index into `distinct`, which has one value per
    // entry in `dictionary`. (Checking costs a pass over the keys per column: 51 per batch.)
    Some(Arc::new(unsafe {
        UInt32DictionaryArray::new_unchecked(keys.clone(), dictionary)
    }))
}

/// A text column with the same value in every row (`zeros`: a key of 0 for every row).
fn constant(value: &str, zeros: &UInt32Array, plain: &mut bool) -> ArrayRef {
    *plain &= !flowlog_model::needs_json_escape(value);
    let one = Arc::new(StringViewArray::from_iter_values([value]));
    Arc::new(UInt32DictionaryArray::try_new(zeros.clone(), one).expect("key 0 exists"))
}

/// True if JSON needs `s` escaped: it holds a control character, `"` or `\`.
#[cfg(test)]
mod tests;
