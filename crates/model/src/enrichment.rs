//! The columns enrichment adds to a batch: what each means and how it is stored.
//!
//! `flowlog-enrich` appends these columns (all of them, in this order) after a batch's
//! flow-log columns; encoders find them by name. Like [`crate::catalogue::FIELDS`], the
//! table is the one description: the schema is built from it and every output format is
//! tested to carry each column somewhere.

use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Fields, TimeUnit};

/// How a column added to a batch (enrichment, envelope metadata) is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrichKind {
    Text,
    Int,
    Float,
    /// Milliseconds since the epoch, UTC.
    Time,
    /// A JSON object or array as text (Arrow's canonical `arrow.json` extension type):
    /// written into documents as JSON, not as a string.
    Json,
}

impl EnrichKind {
    /// The type of the distinct values.
    pub fn value_type(self) -> DataType {
        match self {
            EnrichKind::Text | EnrichKind::Json => DataType::Utf8View,
            EnrichKind::Int => DataType::Int64,
            EnrichKind::Float => DataType::Float64,
            EnrichKind::Time => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        }
    }

    /// The column's type. Enrichment columns are dictionary-encoded: the distinct values of
    /// a batch and one `UInt32` key per row. Enrichment answers repeat (a batch has few
    /// distinct peers), and every column filled from one lookup shares that lookup's keys,
    /// so a writer can tell that a group of fields depends on the key alone.
    pub fn data_type(self) -> DataType {
        DataType::Dictionary(Box::new(DataType::UInt32), Box::new(self.value_type()))
    }
}

/// One enrichment column.
#[derive(Debug, Clone, Copy)]
pub struct EnrichField {
    pub column: &'static str,
    pub kind: EnrichKind,
    pub meaning: &'static str,
}

/// The column `[transform.reduce]` adds to a record it made of several: how many it
/// merged. Plain `Int64`, after the other columns; encoders find it by name like the
/// enrichment and envelope columns.
pub const MERGED_COUNT: EnrichField = EnrichField {
    column: "merged_count",
    kind: EnrichKind::Int,
    meaning: "how many records [transform.reduce] merged into this one (bytes and packets summed, start and end widened)",
};

/// A column added after the flow-log ones (enrichment, envelope, [`MERGED_COUNT`]) by
/// name.
pub fn added_field(column: &str) -> Option<&'static EnrichField> {
    enrichment_field(column)
        .or_else(|| crate::envelope::envelope_field(column))
        .or_else(|| (column == MERGED_COUNT.column).then_some(&MERGED_COUNT))
}

/// Field metadata that marks a text column as JSON (Arrow's canonical extension type).
pub const JSON_EXTENSION: (&str, &str) = ("ARROW:extension:name", "arrow.json");

macro_rules! side {
    ($($side:literal),*) => {
        [$(
            [
                EnrichField { column: concat!($side, "_geo_country_iso_code"), kind: EnrichKind::Text, meaning: "ISO 3166-1 alpha-2 country of the address" },
                EnrichField { column: concat!($side, "_geo_country_name"), kind: EnrichKind::Text, meaning: "country name (English)" },
                EnrichField { column: concat!($side, "_geo_continent_code"), kind: EnrichKind::Text, meaning: "continent code (AF AN AS EU NA OC SA)" },
                EnrichField { column: concat!($side, "_geo_continent_name"), kind: EnrichKind::Text, meaning: "continent name (English)" },
                EnrichField { column: concat!($side, "_geo_region_iso_code"), kind: EnrichKind::Text, meaning: "ISO 3166-2 code of the first subdivision (MaxMind schema only)" },
                EnrichField { column: concat!($side, "_geo_region_name"), kind: EnrichKind::Text, meaning: "first subdivision (state, county)" },
                EnrichField { column: concat!($side, "_geo_city_name"), kind: EnrichKind::Text, meaning: "city" },
                EnrichField { column: concat!($side, "_geo_postal_code"), kind: EnrichKind::Text, meaning: "postal code" },
                EnrichField { column: concat!($side, "_geo_lat"), kind: EnrichKind::Float, meaning: "latitude" },
                EnrichField { column: concat!($side, "_geo_lon"), kind: EnrichKind::Float, meaning: "longitude" },
                EnrichField { column: concat!($side, "_geo_timezone"), kind: EnrichKind::Text, meaning: "IANA time zone" },
                EnrichField { column: concat!($side, "_as_number"), kind: EnrichKind::Int, meaning: "autonomous system number" },
                EnrichField { column: concat!($side, "_as_organization"), kind: EnrichKind::Text, meaning: "autonomous system organization" },
                EnrichField { column: concat!($side, "_aws_service"), kind: EnrichKind::Text, meaning: "AWS service owning the address (ip-ranges.json; the most specific prefix, a service other than AMAZON preferred)" },
                EnrichField { column: concat!($side, "_aws_region"), kind: EnrichKind::Text, meaning: "AWS region of that prefix" },
                EnrichField { column: concat!($side, "_instance_id"), kind: EnrichKind::Text, meaning: "EC2 instance whose interface holds the address (ENI inventory)" },
                EnrichField { column: concat!($side, "_instance_name"), kind: EnrichKind::Text, meaning: "that instance's Name tag" },
                EnrichField { column: concat!($side, "_interface_id"), kind: EnrichKind::Text, meaning: "the interface holding the address" },
                EnrichField { column: concat!($side, "_watchlist"), kind: EnrichKind::Text, meaning: "watch-list entry (IP or CIDR) the address matched" },
                EnrichField { column: concat!($side, "_watchlist_name"), kind: EnrichKind::Text, meaning: "file name of the watch list that matched" },
            ],
        )*]
    };
}

const SIDES: [[EnrichField; 20]; 2] = side!("src", "dst");

/// Fields about the recording interface (`interface_id`), from the ENI inventory, and the
/// stamps that make a backfill reproducible.
const INTERFACE: [EnrichField; 11] = [
    EnrichField { column: "eni_instance_id", kind: EnrichKind::Text, meaning: "instance the recording interface is attached to" },
    EnrichField { column: "eni_instance_name", kind: EnrichKind::Text, meaning: "that instance's Name tag (else the interface's)" },
    EnrichField { column: "eni_tags", kind: EnrichKind::Json, meaning: "tags of the instance and the interface (instance wins), as a JSON object" },
    EnrichField { column: "eni_security_groups", kind: EnrichKind::Json, meaning: "security group ids of the interface, as a JSON array" },
    EnrichField { column: "eni_subnet_id", kind: EnrichKind::Text, meaning: "subnet of the interface" },
    EnrichField { column: "eni_vpc_id", kind: EnrichKind::Text, meaning: "VPC of the interface" },
    EnrichField { column: "eni_type", kind: EnrichKind::Text, meaning: "interface type (interface, nat_gateway, network_load_balancer, vpc_endpoint, lambda, ...)" },
    EnrichField { column: "eni_requester_id", kind: EnrichKind::Text, meaning: "service or account that created the interface for a managed resource" },
    EnrichField { column: "eni_description", kind: EnrichKind::Text, meaning: "description of the interface (names the load balancer, NAT gateway, endpoint...)" },
    EnrichField { column: "geoip_database", kind: EnrichKind::Text, meaning: "GeoIP databases used, as `type@build date` (comma separated)" },
    EnrichField { column: "asn_database", kind: EnrichKind::Text, meaning: "ASN database used, as `type@build date`" },
];

/// Every enrichment column, in the order they follow a batch's flow-log columns.
pub fn enrichment_fields() -> &'static [EnrichField] {
    static ALL: OnceLock<Vec<EnrichField>> = OnceLock::new();
    ALL.get_or_init(|| {
        SIDES
            .iter()
            .flatten()
            .chain(INTERFACE.iter())
            .copied()
            .collect()
    })
}

/// The enrichment field named `column`.
pub fn enrichment_field(column: &str) -> Option<&'static EnrichField> {
    enrichment_fields().iter().find(|f| f.column == column)
}

/// The Arrow fields of the enrichment columns.
pub fn enrichment_schema_fields() -> Fields {
    static FIELDS: OnceLock<Fields> = OnceLock::new();
    FIELDS
        .get_or_init(|| {
            enrichment_fields()
                .iter()
                .map(|f| f.arrow_field(f.kind.data_type()))
                .collect()
        })
        .clone()
}

impl EnrichField {
    /// The column as an Arrow field of `data_type`, marked as JSON when it holds JSON.
    pub fn arrow_field(&self, data_type: DataType) -> Arc<Field> {
        let field = Field::new(self.column, data_type, true);
        Arc::new(if self.kind == EnrichKind::Json {
            field.with_metadata(
                [(JSON_EXTENSION.0.to_string(), JSON_EXTENSION.1.to_string())].into(),
            )
        } else {
            field
        })
    }
}

/// True if an Arrow field holds JSON text (see [`JSON_EXTENSION`]).
pub fn is_json_field(field: &Field) -> bool {
    field.metadata().get(JSON_EXTENSION.0).map(String::as_str) == Some(JSON_EXTENSION.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_not_flow_log_fields() {
        let fields = enrichment_fields();
        for (i, f) in fields.iter().enumerate() {
            assert!(
                fields[..i].iter().all(|g| g.column != f.column),
                "{}",
                f.column
            );
            assert!(
                crate::lookup(f.column).is_none(),
                "{} is a flow-log field",
                f.column
            );
        }
        assert!(is_json_field(
            &enrichment_schema_fields()[enrichment_fields().len() - 9]
        ));
    }
}
