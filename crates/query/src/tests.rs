use super::*;

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use flowlog_decode::Collected;

/// 200 records: ports 0..200 as dstport, every third a REJECT, every fifth NODATA-ish
/// (no addresses or ports), starts one minute apart from 2026-08-01T00:00Z.
fn batch() -> RecordBatch {
    let mut text = String::new();
    for i in 0..200 {
        let start = 1_785_542_400 + i * 60;
        let action = if i % 3 == 0 { "REJECT" } else { "ACCEPT" };
        if i % 5 == 4 {
            text.push_str(&format!(
                "2 123456789012 eni-1 - - - - - - - {start} {} - NODATA\n",
                start + 60
            ));
        } else {
            text.push_str(&format!(
                "2 123456789012 eni-1 10.0.0.{} 10.1.0.1 443 {i} 6 1 100 {start} {} {action} OK\n",
                i % 250,
                start + 60
            ));
        }
    }
    let mut out = Collected::decode(text.as_bytes(), "t").unwrap();
    out.batches.remove(0).records
}

fn kept(sql: &str, batch: &RecordBatch) -> Vec<usize> {
    let mut predicate = Predicate::new(sql, false).unwrap();
    let selected = predicate.select(batch).unwrap();
    (0..batch.num_rows())
        .filter(|&i| selected.value(i))
        .collect()
}

#[test]
fn a_predicate_keeps_what_the_same_filter_by_hand_keeps() {
    let batch = batch();
    let dstport = batch
        .column_by_name("dstport")
        .unwrap()
        .as_primitive::<Int32Type>();
    let action = batch.column_by_name("action").unwrap().as_string_view();
    let by_hand: Vec<usize> = (0..batch.num_rows())
        .filter(|&i| {
            !dstport.is_null(i)
                && dstport.value(i) < 50
                && !action.is_null(i)
                && action.value(i) == "REJECT"
        })
        .collect();
    assert!(!by_hand.is_empty());
    assert_eq!(kept("dstport < 50 AND action = 'REJECT'", &batch), by_hand);
    // Null is not true: NODATA rows have no port, and are neither kept nor counted as
    // "not 22".
    let not_22 = kept("dstport <> 22", &batch);
    assert_eq!(not_22.len(), 200 - 40 - 1);
    assert_eq!(kept("dstport IS NULL", &batch).len(), 40);
    assert_eq!(kept("log_status IN ('NODATA')", &batch).len(), 40);
    assert_eq!(kept("srcaddr LIKE '10.0.0.1_'", &batch).len(), 8);
}

#[test]
fn times_compare_as_moments_and_bound_the_plan() {
    let batch = batch();
    let sql = "start >= '2026-08-01T01:00:00Z' AND start < '2026-08-01T02:00:00Z'";
    assert_eq!(kept(sql, &batch), (60..120).collect::<Vec<_>>());
    let predicate = Predicate::new(sql, false).unwrap();
    assert_eq!(
        predicate.start_bounds(),
        (Some(1_785_546_000_000), Some(1_785_549_600_000))
    );
    let between = Predicate::new(
        "action = 'REJECT' AND start BETWEEN '2026-08-01' AND '2026-08-02'",
        false,
    )
    .unwrap();
    assert_eq!(
        between.start_bounds(),
        (Some(1_785_542_400_000), Some(1_785_628_800_001))
    );
    // A disjunction bounds nothing.
    let either = Predicate::new("start < '2026-08-01' OR dstport = 22", false).unwrap();
    assert_eq!(either.start_bounds(), (None, None));
}

#[test]
fn what_cannot_work_is_refused_with_the_reason() {
    for (sql, needle) in [
        (
            "dstprot = 22",
            "No field named dstprot. Did you mean 'dstport'?",
        ),
        (
            "dst_geo_country_iso_code = 'RU'",
            "configure [transform.enrich]",
        ),
        ("dstport", "not true or false"),
        ("dstport = ", ""),
        ("no_such_function(dstport)", ""),
    ] {
        let err = Predicate::new(sql, false).unwrap_err().to_string();
        assert!(
            err.contains(needle) && err.starts_with("where "),
            "{sql}: {err}"
        );
    }
    // With enrichment, its columns are there.
    Predicate::new(
        "dst_geo_country_iso_code = 'RU' AND dst_as_number <> 16509",
        true,
    )
    .unwrap();
}

#[test]
fn an_enrichment_column_a_batch_lacks_is_null() {
    let batch = batch();
    let mut predicate = Predicate::new("dst_geo_country_iso_code IS NULL", true).unwrap();
    assert!(!predicate.reads_only(&batch.schema()));
    let selected = predicate.select(&batch).unwrap();
    assert_eq!(selected.true_count(), batch.num_rows());
    let mut predicate = Predicate::new("dst_geo_country_iso_code = 'RU'", true).unwrap();
    assert_eq!(predicate.select(&batch).unwrap().true_count(), 0);
}

#[test]
fn a_long_chain_is_planned_and_evaluated_and_a_longer_one_refused() {
    let mut terms = Vec::new();
    while terms.join(" OR ").len() < MAX_SQL_BYTES - 32 {
        terms.push(format!("dstport = {}", terms.len()));
    }
    let sql = terms.join(" OR ");
    let mut predicate = Predicate::new(&sql, false).unwrap();
    let batch = batch();
    // On a stack as large as the transform stage's.
    let kept = std::thread::Builder::new()
        .stack_size(STACK_BYTES)
        .spawn(move || predicate.select(&batch).unwrap().true_count())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(kept, 160);
    let longer = format!("{sql} OR dstport = 1 OR dstport = 2 OR dstport = 3");
    let err = Predicate::new(&longer, false).unwrap_err().to_string();
    assert!(err.contains("longer than"), "{err}");
}
