//! GeoIP and ASN lookups in MaxMind DB files.
//!
//! Two record layouts are read: MaxMind's GeoIP2/GeoLite2 City, Country and ASN schema
//! (nested `country.iso_code`, `city.names.en`, `location.latitude`, ...) and the flat
//! layout of DB-IP lite as packaged by ip-location-db (`country_code`, `state1`, `city`,
//! `latitude`, ...). Flat databases carry no country or continent names; those come from
//! the country table in `data/countries.csv`.
//!
//! Files are memory-mapped, so only the pages lookups touch are resident. geoipupdate and
//! package managers replace a database by renaming a new file over it, which leaves the
//! mapping of the old file valid; [`MmdbFile::reload_if_changed`] then opens the new one
//! between batches.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use maxminddb::Reader;
use memmap2::Mmap;
use serde::Deserialize;

use crate::EnrichError;

/// What a GeoIP database says about an address.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Geo {
    pub country_iso_code: Option<Arc<str>>,
    pub country_name: Option<Arc<str>>,
    pub continent_code: Option<Arc<str>>,
    pub continent_name: Option<Arc<str>>,
    pub region_iso_code: Option<Arc<str>>,
    pub region_name: Option<Arc<str>>,
    pub city_name: Option<Arc<str>>,
    pub postal_code: Option<Arc<str>>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub timezone: Option<Arc<str>>,
}

/// An autonomous system.
#[derive(Debug, Clone, PartialEq)]
pub struct Asn {
    pub number: u32,
    pub organization: Option<Arc<str>>,
}

/// One MaxMind DB file, reopened when it changes on disk.
pub struct MmdbFile {
    path: PathBuf,
    reader: Reader<Mmap>,
    /// (modification time, length) when opened.
    stamp: (SystemTime, u64),
    /// `database_type@YYYY-MM-DD` of the build, stamped on events.
    label: Arc<str>,
}

impl std::fmt::Debug for MmdbFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmdbFile")
            .field("path", &self.path)
            .field("label", &self.label)
            .finish()
    }
}

/// True if the file ends with a MaxMind DB metadata section (rather than being CSV).
pub(crate) fn looks_like_mmdb(path: &Path) -> Result<bool, EnrichError> {
    const MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).map_err(|e| EnrichError::io(path, e))?;
    let len = file.metadata().map_err(|e| EnrichError::io(path, e))?.len();
    // The metadata section is at most 128 KiB from the end.
    let tail = len.min(128 * 1024);
    file.seek(SeekFrom::Start(len - tail))
        .map_err(|e| EnrichError::io(path, e))?;
    let mut buf = Vec::with_capacity(tail as usize);
    file.read_to_end(&mut buf)
        .map_err(|e| EnrichError::io(path, e))?;
    Ok(memchr::memmem::find(&buf, MARKER).is_some())
}

fn file_stamp(path: &Path) -> Result<(SystemTime, u64), EnrichError> {
    let meta = std::fs::metadata(path).map_err(|e| EnrichError::io(path, e))?;
    Ok((
        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        meta.len(),
    ))
}

impl MmdbFile {
    pub fn open(path: &Path) -> Result<Self, EnrichError> {
        let stamp = file_stamp(path)?;
        let mmdb = |source| EnrichError::Mmdb {
            path: path.to_path_buf(),
            source,
        };
        // SAFETY: the mapping is read-only. A database replaced by rename (what
        // geoipupdate and package managers do) keeps the old inode alive for this mapping;
        // only rewriting the file in place could change bytes under us, which the README
        // warns against.
        let reader = unsafe { Reader::open_mmap(path) }.map_err(mmdb)?;
        // A file cut short is caught now rather than at the first lookup. (Not with
        // `verify`, which refuses real databases for cosmetic metadata, such as DB-IP
        // lite's empty description.)
        for probe in [IpAddr::from([1, 1, 1, 1]), IpAddr::from([8, 8, 8, 8])] {
            reader.lookup(probe).map_err(mmdb)?;
        }
        let meta = reader.metadata();
        let label = format!(
            "{}@{}",
            meta.database_type,
            civil_date(meta.build_epoch as i64 / 86_400)
        );
        Ok(Self {
            path: path.to_path_buf(),
            reader,
            stamp,
            label: label.into(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `database_type@build date`.
    pub fn label(&self) -> &Arc<str> {
        &self.label
    }

    fn ip_version(&self) -> u16 {
        self.reader.metadata().ip_version
    }

    /// Opens the file again if it changed since it was opened. Returns true when it did;
    /// a changed file that cannot be opened is an error and the old database stays.
    pub fn reload_if_changed(&mut self) -> Result<bool, EnrichError> {
        if file_stamp(&self.path)? == self.stamp {
            return Ok(false);
        }
        *self = Self::open(&self.path)?;
        Ok(true)
    }

    /// The data record for `ip`, decoded into `T`, with its offset (a key shared by every
    /// address that points at the same record).
    fn decode<'de, T: Deserialize<'de>>(&'de self, ip: IpAddr) -> Option<(usize, T)> {
        if self.ip_version() == 4 && ip.is_ipv6() {
            return None;
        }
        let result = self.reader.lookup(ip).ok()?;
        let offset = result.offset()?;
        // A record that does not decode is treated as absent: one bad record must not
        // stop a stream.
        result.decode::<T>().ok().flatten().map(|t| (offset, t))
    }

    /// Geo fields for `ip`, if the database has a record for it.
    pub fn geo(&self, ip: IpAddr) -> Option<Geo> {
        let (_, record) = self.decode::<GeoRecord<'_>>(ip)?;
        let geo = record.into_geo();
        (geo != Geo::default()).then_some(geo)
    }

    /// The autonomous system of `ip`, if the database has one.
    pub fn asn(&self, ip: IpAddr) -> Option<Asn> {
        let (_, record) = self.decode::<AsnRecord<'_>>(ip)?;
        Some(Asn {
            number: record.autonomous_system_number?,
            organization: record.autonomous_system_organization.map(Arc::from),
        })
    }
}

#[derive(Deserialize, Default)]
struct Names<'a> {
    #[serde(borrow)]
    en: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct Place<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
    #[serde(borrow)]
    code: Option<&'a str>,
    #[serde(borrow, default)]
    names: Names<'a>,
}

/// A coordinate stored as a double (MaxMind) or a float (some DB-IP builds).
fn any_float<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Option<f64>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a number")
        }
        fn visit_f32<E>(self, v: f32) -> Result<Self::Value, E> {
            // Through the shortest decimal, so 58.4167f32 stays 58.4167 rather than
            // 58.41669845581055.
            Ok(v.to_string().parse().ok())
        }
        fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v as f64))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v as f64))
        }
    }
    d.deserialize_any(Visitor)
}

#[derive(Deserialize, Default)]
struct Location<'a> {
    #[serde(default, deserialize_with = "any_float")]
    latitude: Option<f64>,
    #[serde(default, deserialize_with = "any_float")]
    longitude: Option<f64>,
    #[serde(borrow)]
    time_zone: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct Postal<'a> {
    #[serde(borrow)]
    code: Option<&'a str>,
}

/// `city` is a map in MaxMind's schema and a string in the flat one.
#[derive(Deserialize)]
#[serde(untagged)]
enum City<'a> {
    #[serde(borrow)]
    Place(Place<'a>),
    Name(&'a str),
}

/// Both layouts in one struct: each database fills the members of its own.
#[derive(Deserialize, Default)]
struct GeoRecord<'a> {
    // MaxMind GeoIP2 / GeoLite2.
    #[serde(borrow)]
    country: Option<Place<'a>>,
    #[serde(borrow)]
    registered_country: Option<Place<'a>>,
    #[serde(borrow)]
    continent: Option<Place<'a>>,
    #[serde(borrow)]
    subdivisions: Option<Vec<Place<'a>>>,
    #[serde(borrow)]
    city: Option<City<'a>>,
    #[serde(borrow)]
    postal: Option<Postal<'a>>,
    #[serde(borrow)]
    location: Option<Location<'a>>,
    // DB-IP lite / ip-location-db.
    #[serde(borrow)]
    country_code: Option<&'a str>,
    #[serde(borrow)]
    state1: Option<&'a str>,
    #[serde(borrow)]
    postcode: Option<&'a str>,
    #[serde(default, deserialize_with = "any_float")]
    latitude: Option<f64>,
    #[serde(default, deserialize_with = "any_float")]
    longitude: Option<f64>,
    #[serde(borrow)]
    timezone: Option<&'a str>,
}

fn text(s: Option<&str>) -> Option<Arc<str>> {
    s.filter(|s| !s.is_empty()).map(Arc::from)
}

impl GeoRecord<'_> {
    fn into_geo(self) -> Geo {
        let country = self.country.or(self.registered_country).unwrap_or_default();
        let country_code = country.iso_code.or(self.country_code);
        let known = country_code.and_then(country_info);
        let continent = self.continent.unwrap_or_default();
        let continent_code = continent.code.or(known.map(|k| k.1));
        let region = self
            .subdivisions
            .and_then(|s| s.into_iter().next())
            .unwrap_or_default();
        let (city, flat_city) = match self.city {
            Some(City::Place(p)) => (p.names.en, None),
            Some(City::Name(n)) => (None, Some(n)),
            None => (None, None),
        };
        let location = self.location.unwrap_or_default();
        Geo {
            country_iso_code: text(country_code),
            country_name: text(country.names.en.or(known.map(|k| k.0))),
            continent_code: text(continent_code),
            continent_name: text(
                continent
                    .names
                    .en
                    .or(continent_code.and_then(continent_name)),
            ),
            region_iso_code: match (country_code, region.iso_code) {
                (Some(c), Some(r)) => Some(format!("{c}-{r}").into()),
                _ => None,
            },
            region_name: text(region.names.en.or(self.state1)),
            city_name: text(city.or(flat_city)),
            postal_code: text(self.postal.and_then(|p| p.code).or(self.postcode)),
            lat: location.latitude.or(self.latitude),
            lon: location.longitude.or(self.longitude),
            timezone: text(location.time_zone.or(self.timezone)),
        }
    }
}

#[derive(Deserialize)]
struct AsnRecord<'a> {
    autonomous_system_number: Option<u32>,
    #[serde(borrow)]
    autonomous_system_organization: Option<&'a str>,
}

/// (English name, continent code) of an ISO 3166-1 alpha-2 code.
fn country_info(code: &str) -> Option<(&'static str, &'static str)> {
    static TABLE: OnceLock<HashMap<&'static str, (&'static str, &'static str)>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            include_str!("../data/countries.csv")
                .lines()
                .filter(|l| !l.starts_with('#'))
                .skip(1)
                .filter_map(|l| {
                    let mut parts = l.split(',');
                    Some((parts.next()?, (parts.next()?, parts.next()?)))
                })
                .collect()
        })
        .get(code)
        .copied()
}

/// MaxMind's English continent names.
fn continent_name(code: &str) -> Option<&'static str> {
    Some(match code {
        "AF" => "Africa",
        "AN" => "Antarctica",
        "AS" => "Asia",
        "EU" => "Europe",
        "NA" => "North America",
        "OC" => "Oceania",
        "SA" => "South America",
        _ => return None,
    })
}

/// `YYYY-MM-DD` of a day count since 1970-01-01.
fn civil_date(days: i64) -> String {
    let (year, month, day) = flowlog_model::time::civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use maxminddb_writer::metadata::IpVersion;
    use maxminddb_writer::paths::IpAddrWithMask;
    use maxminddb_writer::Database;
    use serde::Serialize;
    use std::collections::BTreeMap;

    #[derive(Serialize)]
    struct MmPlace {
        #[serde(skip_serializing_if = "Option::is_none")]
        iso_code: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<&'static str>,
        names: BTreeMap<&'static str, &'static str>,
    }

    fn names(en: &'static str) -> BTreeMap<&'static str, &'static str> {
        [("en", en), ("de", "x")].into()
    }

    #[derive(Serialize)]
    struct MmLocation {
        latitude: f64,
        longitude: f64,
        time_zone: &'static str,
    }

    /// A GeoIP2-City-schema record, as MaxMind writes them.
    #[derive(Serialize)]
    struct MmCity {
        city: MmPlace,
        continent: MmPlace,
        country: MmPlace,
        location: MmLocation,
        subdivisions: Vec<MmPlace>,
    }

    fn write(db: &Database, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        db.write_to(std::fs::File::create(&path).unwrap()).unwrap();
        path
    }

    fn new_db(kind: &str, version: IpVersion) -> Database {
        let mut db = Database::default();
        db.metadata.ip_version = version;
        db.metadata.database_type = kind.into();
        db.metadata.binary_format_major_version = 2;
        db.metadata.languages = vec!["en".into()];
        db.metadata.build_epoch = 1_780_000_000; // 2026-05-28
        db.metadata.description =
            [("en".to_string(), format!("{kind} written by flowlog tests"))].into();
        db
    }

    /// A small GeoIP2-City database: 89.160.20.0/24 is Linköping, Sweden; 2a02:cf40::/32
    /// is Oslo, Norway.
    pub(crate) fn city_db(dir: &Path) -> PathBuf {
        let mut db = new_db("GeoIP2-City", IpVersion::V6);
        let linkoping = db
            .insert_value(MmCity {
                city: MmPlace {
                    iso_code: None,
                    code: None,
                    names: names("Linköping"),
                },
                continent: MmPlace {
                    iso_code: None,
                    code: Some("EU"),
                    names: names("Europe"),
                },
                country: MmPlace {
                    iso_code: Some("SE"),
                    code: None,
                    names: names("Sweden"),
                },
                location: MmLocation {
                    latitude: 58.4167,
                    longitude: 15.6167,
                    time_zone: "Europe/Stockholm",
                },
                subdivisions: vec![MmPlace {
                    iso_code: Some("E"),
                    code: None,
                    names: names("Östergötland County"),
                }],
            })
            .unwrap();
        let oslo = db
            .insert_value(MmCity {
                city: MmPlace {
                    iso_code: None,
                    code: None,
                    names: names("Oslo"),
                },
                continent: MmPlace {
                    iso_code: None,
                    code: Some("EU"),
                    names: names("Europe"),
                },
                country: MmPlace {
                    iso_code: Some("NO"),
                    code: None,
                    names: names("Norway"),
                },
                location: MmLocation {
                    latitude: 59.9,
                    longitude: 10.7,
                    time_zone: "Europe/Oslo",
                },
                subdivisions: vec![],
            })
            .unwrap();
        db.insert_node(
            "::89.160.20.0/120".parse::<IpAddrWithMask>().unwrap(),
            linkoping,
        );
        db.insert_node("2a02:cf40::/32".parse::<IpAddrWithMask>().unwrap(), oslo);
        write(&db, dir, "city.mmdb")
    }

    #[derive(Serialize)]
    struct MmAsn {
        autonomous_system_number: u32,
        autonomous_system_organization: &'static str,
    }

    /// A GeoLite2-ASN-schema database: 89.160.0.0/16 is AS29518 Bredband2 AB.
    pub(crate) fn asn_db(dir: &Path) -> PathBuf {
        let mut db = new_db("GeoLite2-ASN", IpVersion::V4);
        let bredband = db
            .insert_value(MmAsn {
                autonomous_system_number: 29518,
                autonomous_system_organization: "Bredband2 AB",
            })
            .unwrap();
        db.insert_node("89.160.0.0/16".parse::<IpAddrWithMask>().unwrap(), bredband);
        write(&db, dir, "asn.mmdb")
    }

    /// The flat layout of DB-IP lite as ip-location-db packages it.
    #[derive(Serialize)]
    struct Flat {
        country_code: &'static str,
        state1: &'static str,
        city: &'static str,
        latitude: f32,
        longitude: f32,
    }

    #[test]
    fn maxmind_city_schema() {
        let dir = tempfile::tempdir().unwrap();
        let db = MmdbFile::open(&city_db(dir.path())).unwrap();
        assert_eq!(&*db.label, "GeoIP2-City@2026-05-28");
        let geo = db.geo("89.160.20.156".parse().unwrap()).unwrap();
        assert_eq!(geo.country_iso_code.as_deref(), Some("SE"));
        assert_eq!(geo.country_name.as_deref(), Some("Sweden"));
        assert_eq!(geo.continent_name.as_deref(), Some("Europe"));
        assert_eq!(geo.region_iso_code.as_deref(), Some("SE-E"));
        assert_eq!(geo.region_name.as_deref(), Some("Östergötland County"));
        assert_eq!(geo.city_name.as_deref(), Some("Linköping"));
        assert_eq!((geo.lat, geo.lon), (Some(58.4167), Some(15.6167)));
        assert_eq!(geo.timezone.as_deref(), Some("Europe/Stockholm"));
        let oslo = db.geo("2a02:cf40::1".parse().unwrap()).unwrap();
        assert_eq!(oslo.city_name.as_deref(), Some("Oslo"));
        assert_eq!(oslo.region_name, None);
        assert!(db.geo("8.8.8.8".parse().unwrap()).is_none());
    }

    #[test]
    fn asn_schema() {
        let dir = tempfile::tempdir().unwrap();
        let db = MmdbFile::open(&asn_db(dir.path())).unwrap();
        let asn = db.asn("89.160.20.156".parse().unwrap()).unwrap();
        assert_eq!(asn.number, 29518);
        assert_eq!(asn.organization.as_deref(), Some("Bredband2 AB"));
        // An IPv4-only database has nothing for IPv6 addresses.
        assert!(db.asn("2a02:cf40::1".parse().unwrap()).is_none());
    }

    #[test]
    fn flat_schema_gets_names_from_the_country_table() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = new_db("dbip-city-lite", IpVersion::V4);
        db.metadata.languages = vec![];
        let r = db
            .insert_value(Flat {
                country_code: "DE",
                state1: "Hesse",
                city: "Frankfurt am Main",
                latitude: 50.11,
                longitude: 8.68,
            })
            .unwrap();
        db.insert_node("185.220.101.0/24".parse::<IpAddrWithMask>().unwrap(), r);
        let db = MmdbFile::open(&write(&db, dir.path(), "flat.mmdb")).unwrap();
        let geo = db.geo("185.220.101.4".parse().unwrap()).unwrap();
        assert_eq!(geo.country_name.as_deref(), Some("Germany"));
        assert_eq!(geo.continent_code.as_deref(), Some("EU"));
        assert_eq!(geo.continent_name.as_deref(), Some("Europe"));
        assert_eq!(geo.region_name.as_deref(), Some("Hesse"));
        assert_eq!(geo.region_iso_code, None);
        assert_eq!(geo.city_name.as_deref(), Some("Frankfurt am Main"));
        assert!((geo.lat.unwrap() - 50.11).abs() < 1e-4);
    }

    #[test]
    fn corrupt_and_missing_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.mmdb");
        std::fs::write(&bad, b"not a database").unwrap();
        let err = MmdbFile::open(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.mmdb"), "{err}");
        let err = MmdbFile::open(&dir.path().join("missing.mmdb"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("missing.mmdb") && err.contains("cannot read"),
            "{err}"
        );
    }

    #[test]
    fn reopens_a_replaced_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = city_db(dir.path());
        let mut db = MmdbFile::open(&path).unwrap();
        assert!(!db.reload_if_changed().unwrap());
        // Replace by rename, as geoipupdate does, with an ASN database (different answers).
        let other = asn_db(dir.path());
        std::fs::rename(&other, &path).unwrap();
        assert!(db.reload_if_changed().unwrap());
        assert!(db.label().starts_with("GeoLite2-ASN@"));
        assert!(db.asn("89.160.20.156".parse().unwrap()).is_some());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(20_601), "2026-05-28");
    }
}
