//! The enricher on whole batches, with databases written in code.

use super::*;
use flowlog_decode::{decode_reader, DeadLetter, DecodeOptions, RecordSink, SinkError};
use flowlog_model::SourceId;

#[derive(Default)]
struct Collect(Vec<FlowBatch>);

impl RecordSink for Collect {
    fn batch(&mut self, batch: FlowBatch) -> Result<(), SinkError> {
        self.0.push(batch);
        Ok(())
    }
    fn dead_letter(&mut self, letter: DeadLetter) -> Result<(), SinkError> {
        panic!("dead letter {}", letter.to_json())
    }
}

fn batch(lines: &str) -> FlowBatch {
    let mut sink = Collect::default();
    decode_reader(
        lines.as_bytes(),
        SourceId::new("t"),
        &DecodeOptions::default(),
        &mut sink,
    )
    .unwrap();
    sink.0.remove(0)
}

fn text(batch: &FlowBatch, column: &str, row: usize) -> Option<String> {
    let a = batch.records.column_by_name(column).unwrap();
    let dictionary = a
        .as_dictionary_opt::<arrow_array::types::UInt32Type>()
        .expect("enrichment columns are dictionary-encoded");
    let key = dictionary.keys();
    (key.is_valid(row) && dictionary.values().is_valid(key.value(row) as usize))
        .then(|| arrow_cast_text(dictionary.values().as_ref(), key.value(row) as usize))
}

fn arrow_cast_text(a: &dyn Array, row: usize) -> String {
    match a.data_type() {
        arrow_schema::DataType::Utf8View => a.as_string_view().value(row).to_string(),
        arrow_schema::DataType::Int64 => a
            .as_primitive::<arrow_array::types::Int64Type>()
            .value(row)
            .to_string(),
        arrow_schema::DataType::Float64 => a
            .as_primitive::<arrow_array::types::Float64Type>()
            .value(row)
            .to_string(),
        other => panic!("{other}"),
    }
}

#[test]
fn every_source_on_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("enis.json");
    std::fs::write(
        &inventory,
        r#"{"NetworkInterfaces":[{"NetworkInterfaceId":"eni-1","PrivateIpAddress":"10.0.3.17",
            "Attachment":{"InstanceId":"i-0abc"},"Groups":[{"GroupId":"sg-1"}],"SubnetId":"subnet-1","VpcId":"vpc-1",
            "InterfaceType":"interface","TagSet":[{"Key":"Name","Value":"payments-api"},{"Key":"team","Value":"checkout"}]}]}"#,
    )
    .unwrap();
    let watch = dir.path().join("bad.txt");
    std::fs::write(&watch, "89.160.20.0/24\n").unwrap();
    let config = EnrichConfig {
        geoip: vec![geoip::tests::city_db(dir.path())],
        asn: vec![geoip::tests::asn_db(dir.path())],
        eni_files: vec![inventory],
        watchlists: vec![watch],
        ..EnrichConfig::default()
    };
    let mut enricher = Enricher::new(&config).unwrap();
    let lines = "2 123456789012 eni-1 10.0.3.17 89.160.20.156 443 49152 6 10 840 1763800000 1763800060 ACCEPT OK\n\
                 2 123456789012 eni-1 89.160.20.156 10.0.3.17 49152 443 6 10 840 1763800000 1763800060 ACCEPT OK\n\
                 2 123456789012 eni-2 192.168.0.1 10.9.9.9 1 2 17 1 50 1763800000 1763800060 ACCEPT OK\n\
                 2 123456789012 eni-1 - - - - - - - 1763800000 1763800060 - NODATA\n";
    let b = enricher.enrich(batch(lines));
    assert_eq!(
        b.records.num_columns(),
        flowlog_model::FIELDS.len() + enrichment_fields().len()
    );
    assert_eq!(
        text(&b, "dst_geo_city_name", 0).as_deref(),
        Some("Linköping")
    );
    assert_eq!(
        text(&b, "src_geo_country_iso_code", 1).as_deref(),
        Some("SE")
    );
    assert_eq!(text(&b, "dst_geo_lat", 0).as_deref(), Some("58.4167"));
    assert_eq!(text(&b, "dst_as_number", 0).as_deref(), Some("29518"));
    assert_eq!(
        text(&b, "dst_watchlist", 0).as_deref(),
        Some("89.160.20.0/24")
    );
    assert_eq!(
        text(&b, "dst_watchlist_name", 0).as_deref(),
        Some("bad.txt")
    );
    assert_eq!(
        text(&b, "src_instance_name", 0).as_deref(),
        Some("payments-api")
    );
    assert_eq!(text(&b, "dst_instance_id", 1).as_deref(), Some("i-0abc"));
    assert_eq!(
        text(&b, "src_geo_city_name", 0),
        None,
        "private addresses are not looked up"
    );
    assert_eq!(
        text(&b, "eni_instance_name", 0).as_deref(),
        Some("payments-api")
    );
    assert_eq!(
        text(&b, "eni_tags", 3).as_deref(),
        Some(r#"{"Name":"payments-api","team":"checkout"}"#)
    );
    assert_eq!(
        text(&b, "eni_security_groups", 1).as_deref(),
        Some(r#"["sg-1"]"#)
    );
    assert_eq!(
        text(&b, "eni_instance_id", 2),
        None,
        "eni-2 is not in the inventory"
    );
    assert_eq!(
        text(&b, "geoip_database", 2).as_deref(),
        Some("GeoIP2-City@2026-05-28")
    );
    assert_eq!(
        text(&b, "asn_database", 3).as_deref(),
        Some("GeoLite2-ASN@2026-05-28")
    );
    for (name, kind) in enrichment_fields()
        .iter()
        .map(|f| (f.column, f.kind.data_type()))
    {
        assert_eq!(
            b.records.column_by_name(name).unwrap().data_type(),
            &kind,
            "{name}"
        );
    }
    // 6 address values, 3 distinct per side; the destination side finds the two
    // addresses the source side looked up, and a second batch finds them all.
    let s = enricher.stats();
    assert_eq!((s.addresses, s.distinct, s.cache_hits), (6, 6, 2));
    enricher.enrich(batch(lines));
    assert_eq!(enricher.stats().cache_hits, 8);
}

#[test]
fn geoipupdate_directories_are_searched() {
    let dir = tempfile::tempdir().unwrap();
    let city = geoip::tests::city_db(dir.path());
    std::fs::rename(&city, dir.path().join("GeoLite2-City.mmdb")).unwrap();
    let mut config = EnrichConfig::default();
    let found = config.find_geoipupdate_databases(&[Path::new("/nonexistent"), dir.path()]);
    assert_eq!(found, vec![dir.path().join("GeoLite2-City.mmdb")]);
    assert!(config.asn.is_empty());
}

/// Values from inventories and databases are not the decoder's: one that JSON must
/// escape clears the batch's `plain_text` promise, and only such a value does.
#[test]
fn a_value_to_escape_clears_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let inventory = dir.path().join("enis.json");
        let interface = serde_json::json!({"NetworkInterfaces": [{
            "NetworkInterfaceId": "eni-1", "PrivateIpAddress": "10.0.3.17",
            "Attachment": {"InstanceId": "i-0abc"},
            "TagSet": [{"Key": "Name", "Value": name}]}]});
        std::fs::write(&inventory, interface.to_string()).unwrap();
        let config = EnrichConfig {
            eni_files: vec![inventory],
            ..EnrichConfig::default()
        };
        let mut enricher = Enricher::new(&config).unwrap();
        let input = batch("2 123456789012 eni-1 10.0.3.17 10.0.0.1 443 49152 6 10 840 1763800000 1763800060 ACCEPT OK\n");
        assert!(input.plain_text);
        enricher.enrich(input).plain_text
    };
    assert!(run("payments-api"));
    assert!(!run("payments \"blue\""));
    assert!(!run("back\\slash"));
}
