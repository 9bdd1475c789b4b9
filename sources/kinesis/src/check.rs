//! What `flowlog check` asks of a Kinesis source: the stream (status, retention, shards),
//! the lease table (there or not, its owners and checkpoints), and each IAM permission
//! `run` uses that can be asked without changing anything. A refusal is a failure that
//! names the action; the permissions that hold are said on one line, and those that could
//! not be asked (`CreateTable` while the table is missing, `Scan` of a missing table,
//! `kms:Decrypt` of an encrypted stream) are said to be untried.

use std::collections::BTreeMap;

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::types::ShardIteratorType;
use flowlog_source::{Findings, SourceError};

use crate::lease::{Checkpoint, LeaseTable};
use crate::settings::KinesisSource;
use crate::shards::{self, Stream};

/// A shard id for the read probe when the shards cannot be listed: a caller allowed to
/// read is told it does not exist, a refused one is refused.
const SOME_SHARD: &str = "shardId-000000000000";

pub(crate) async fn check(
    settings: &KinesisSource,
    kinesis: &aws_sdk_kinesis::Client,
    dynamodb: aws_sdk_dynamodb::Client,
) -> Findings {
    let label = settings.stream_label();
    let stream = settings.stream();
    let mut findings = Vec::new();
    let unavailable = |text: String| Err(SourceError::Unavailable(text));

    // The stream as Kinesis describes it.
    let mut summary = kinesis.describe_stream_summary();
    summary = match &stream {
        Stream::Name(name) => summary.stream_name(name),
        Stream::Arn(arn) => summary.stream_arn(arn),
    };
    let mut encrypted = false;
    findings.push(match summary.send().await {
        Ok(answer) => match answer.stream_description_summary() {
            Some(s) => {
                let encryption = s.encryption_type().map_or("NONE", |e| e.as_str());
                encrypted = encryption == "KMS";
                Ok(format!(
                    "stream {label}: {}, {} open shards, retention {} h, encryption {encryption}",
                    s.stream_status().as_str(),
                    s.open_shard_count(),
                    s.retention_period_hours(),
                ))
            }
            None => Ok(format!("stream {label}: described without a summary")),
        },
        Err(e) => unavailable(format!(
            "stream {label}: DescribeStreamSummary: {}",
            flowlog_aws::explain(&e, "Kinesis", "kinesis:DescribeStreamSummary")
        )),
    });

    // Its shards, and the permissions to read one.
    let mut probe_shard = SOME_SHARD.to_owned();
    match shards::list(kinesis, &stream).await {
        Ok(list) => {
            let open = list.iter().filter(|s| !s.closed).count();
            findings.push(Ok(format!(
                "stream {label}: {} shards listed ({open} open, {} closed)",
                list.len(),
                list.len() - open
            )));
            if let Some(first) = list.first() {
                probe_shard = first.id.clone();
            }
        }
        Err(e) => findings.push(unavailable(format!("stream {label}: {e}"))),
    }
    findings.extend(may_read(kinesis, &stream, &probe_shard).await);
    if encrypted {
        findings.push(Ok(
            "kms:Decrypt on the stream's key: not tried (a read at the tip has no record to \
             decrypt; `run` names it if Kinesis refuses)"
                .into(),
        ));
    }

    // The lease table, and the permissions to keep leases in it.
    let table = LeaseTable::new(dynamodb, settings.lease_table());
    match table.exists().await {
        Ok(true) => match table.list().await {
            Ok(leases) => {
                let mut owners: BTreeMap<&str, usize> = BTreeMap::new();
                let (mut ended, mut reading, mut unread) = (0, 0, 0);
                for lease in &leases {
                    *owners
                        .entry(lease.owner.as_deref().unwrap_or("nobody"))
                        .or_default() += 1;
                    match lease.checkpoint {
                        Checkpoint::ShardEnd => ended += 1,
                        Checkpoint::At { .. } => reading += 1,
                        _ => unread += 1,
                    }
                }
                let owners: Vec<String> = owners.iter().map(|(o, n)| format!("{o}: {n}")).collect();
                findings.push(Ok(format!(
                    "lease table {}: {} leases (held by {}); checkpoints: {reading} within a \
                     shard, {ended} at SHARD_END, {unread} not started",
                    table.name(),
                    leases.len(),
                    if owners.is_empty() {
                        "nobody".to_owned()
                    } else {
                        owners.join(", ")
                    },
                )));
            }
            Err(e) => findings.push(unavailable(e.to_string())),
        },
        Ok(false) => findings.push(Ok(format!(
            "lease table {}: not there yet; `run` creates it (dynamodb:CreateTable and \
             dynamodb:Scan not tried)",
            table.name()
        ))),
        Err(e) => findings.push(unavailable(e.to_string())),
    }
    let writes = table
        .may_write()
        .await
        .into_iter()
        .map(|(action, result)| (action, result.map_err(|e| e.to_string())))
        .collect();
    findings.extend(said(writes));
    findings
}

/// Whether this caller may read `shard`: an iterator at the tip, and one GetRecords with
/// it (which reads at most what arrives at that instant, and moves nothing).
async fn may_read(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &Stream,
    shard: &str,
) -> Vec<Result<String, SourceError>> {
    let mut request = kinesis
        .get_shard_iterator()
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::Latest);
    request = match stream {
        Stream::Name(name) => request.stream_name(name),
        Stream::Arn(arn) => request.stream_arn(arn),
    };
    let iterator = match request.send().await {
        Ok(answer) => answer.shard_iterator().map(str::to_owned),
        Err(e) if e.code() == Some("ResourceNotFoundException") => None,
        Err(e) => {
            return vec![
                Err(SourceError::Unavailable(format!(
                    "GetShardIterator on {shard}: {}",
                    flowlog_aws::explain(&e, "Kinesis", "kinesis:GetShardIterator")
                ))),
                Ok("kinesis:GetRecords not tried (it needs an iterator)".into()),
            ];
        }
    };
    let Some(iterator) = iterator else {
        let mut found = said(vec![("kinesis:GetShardIterator", Ok(()))]);
        found.push(Ok(format!(
            "kinesis:GetRecords not tried ({shard} gave no iterator)"
        )));
        return found;
    };
    let read = match kinesis
        .get_records()
        .shard_iterator(iterator)
        .limit(1)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "GetRecords on {shard}: {}",
            flowlog_aws::explain(&e, "Kinesis", "kinesis:GetRecords")
        )),
    };
    said(vec![
        ("kinesis:GetShardIterator", Ok(())),
        ("kinesis:GetRecords", read),
    ])
}

/// Permissions asked about, as findings: those that hold on one line, each refusal (or
/// other failure) on its own.
fn said(asked: Vec<(&'static str, Result<(), String>)>) -> Vec<Result<String, SourceError>> {
    let allowed: Vec<&str> = asked
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(action, _)| *action)
        .collect();
    let mut findings = Vec::new();
    if !allowed.is_empty() {
        findings.push(Ok(format!("{}: allowed", and_list(&allowed))));
    }
    for (_, result) in asked {
        if let Err(why) = result {
            findings.push(Err(SourceError::Unavailable(why)));
        }
    }
    findings
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_that_hold_share_a_line_and_each_refusal_has_its_own() {
        let found = said(vec![
            ("a:One", Ok(())),
            ("a:Two", Err("Two: refused: flowlog needs a:Two".into())),
            ("a:Three", Ok(())),
        ]);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].as_ref().unwrap(), "a:One and a:Three: allowed");
        assert!(found[1]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("flowlog needs a:Two"));
        assert_eq!(and_list(&["x", "y", "z"]), "x, y and z");
    }
}
