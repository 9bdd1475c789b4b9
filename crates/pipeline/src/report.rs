//! What a run tells its operator as it goes: a status line every `status_interval_secs`
//! (records read and delivered, rates, dead letters, how far delivery lags) and the same
//! figures once at the end.

use std::time::Duration;

use flowlog_component::metrics::human_bytes;
use flowlog_component::{Metrics, Totals};

/// Logs a status line every `every` until the task is dropped.
pub(crate) async fn status_lines(metrics: Metrics, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut before = metrics.totals();
    loop {
        ticks.tick().await;
        let now = metrics.totals();
        log(&now, Some((&before, every)), "status");
        before = now;
    }
}

/// The summary at the end of a run.
pub(crate) fn summary(totals: &Totals, elapsed: Duration) {
    log(totals, None, "finished");
    tracing::info!(
        elapsed_secs = elapsed.as_secs_f64(),
        "ran {:.1} s",
        elapsed.as_secs_f64()
    );
}

/// One line for people, with the same figures as fields for JSON logs.
fn log(totals: &Totals, since: Option<(&Totals, Duration)>, what: &str) {
    let line = line(totals, since);
    let delivered: u64 = totals
        .delivered
        .iter()
        .map(|(_, n)| n)
        .min()
        .copied()
        .unwrap_or(0);
    tracing::info!(
        records_read = totals.records_read,
        bytes_read = totals.bytes_read,
        records_delivered = delivered,
        dead_letters = totals.dead_letters,
        unacknowledged_batches = totals.unacknowledged,
        oldest_unacknowledged_secs = totals
            .oldest_unacknowledged
            .map_or(0.0, |d| d.as_secs_f64()),
        "{what}: {line}"
    );
}

/// `read 1200000 records (45.2 MiB, 40000/s); delivered splunk 1199000 (39950/s); 3 dead
/// letters; 2 batches unacknowledged, oldest 0.8 s`.
pub(crate) fn line(totals: &Totals, since: Option<(&Totals, Duration)>) -> String {
    let per_sec = |now: u64, before: u64| {
        since
            .filter(|(_, every)| !every.is_zero())
            .map(|(_, every)| now.saturating_sub(before) as f64 / every.as_secs_f64())
    };
    let before = since.map(|(b, _)| b);
    let read_rate = per_sec(totals.records_read, before.map_or(0, |b| b.records_read));
    let mut line = format!(
        "read {} records ({}{})",
        totals.records_read,
        human_bytes(totals.bytes_read),
        read_rate.map_or(String::new(), |r| format!(", {r:.0}/s"))
    );
    if !totals.delivered.is_empty() {
        let sinks: Vec<String> = totals
            .delivered
            .iter()
            .map(|(name, n)| {
                let earlier = before
                    .and_then(|b| b.delivered.iter().find(|(m, _)| m == name))
                    .map_or(0, |(_, n)| *n);
                let rate = per_sec(*n, earlier);
                format!(
                    "{name} {n}{}",
                    rate.map_or(String::new(), |r| format!(" ({r:.0}/s)"))
                )
            })
            .collect();
        line.push_str(&format!("; delivered {}", sinks.join(", ")));
    }
    line.push_str(&format!("; {} dead letters", totals.dead_letters));
    match totals.oldest_unacknowledged {
        Some(oldest) => line.push_str(&format!(
            "; {} batches unacknowledged, oldest {:.1} s",
            totals.unacknowledged,
            oldest.as_secs_f64()
        )),
        None => line.push_str("; nothing unacknowledged"),
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_line_says_what_went_through_and_how_fast() {
        let before = Totals {
            records_read: 1000,
            bytes_read: 0,
            delivered: vec![("splunk".into(), 500)],
            ..Totals::default()
        };
        let now = Totals {
            records_read: 21_000,
            bytes_read: 3 * 1024 * 1024,
            delivered: vec![("splunk".into(), 20_500)],
            dead_letters: 2,
            unacknowledged: 3,
            oldest_unacknowledged: Some(Duration::from_millis(1250)),
        };
        assert_eq!(
            line(&now, Some((&before, Duration::from_secs(10)))),
            "read 21000 records (3.0 MiB, 2000/s); delivered splunk 20500 (2000/s); \
             2 dead letters; 3 batches unacknowledged, oldest 1.2 s"
        );
        assert_eq!(
            line(&Totals::default(), None),
            "read 0 records (0 B); 0 dead letters; nothing unacknowledged"
        );
    }
}
