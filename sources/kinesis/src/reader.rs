//! Reading one shard: an iterator from the lease's checkpoint, then GetRecords until the
//! shard ends. Throttling (`ProvisionedThroughputExceededException`,
//! `LimitExceededException`) and failed calls are retried with backoff; an expired
//! iterator is replaced by one after the last record read, so nothing is skipped or read
//! twice by it.
//!
//! A shard has ended when GetRecords gives no next iterator (as Kinesis does at the end
//! of a closed shard), or once the record at the shard's ending sequence number is read
//! (as ListShards gives it for a closed shard: emulators such as moto keep handing out
//! iterators past the end).

use std::time::Duration;

use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_kinesis::Client;

use crate::lease::Checkpoint;
use crate::shards::Stream;

/// One record as GetRecords gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub sequence: String,
    pub partition_key: String,
    pub data: Vec<u8>,
    /// When Kinesis took it (milliseconds since the epoch).
    pub arrived_ms: Option<i64>,
}

/// What one poll read.
#[derive(Debug, Default)]
pub struct Poll {
    pub records: Vec<Record>,
    /// How far behind the stream's tip the shard's reader is.
    pub millis_behind: Option<i64>,
    /// The shard is closed and read to its end: its children follow.
    pub ended: bool,
    /// The children GetRecords named at the end (where the service says; moto does not).
    pub children: Vec<String>,
}

/// Why a shard cannot be read (after the retries).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("shard {shard}: {message}")]
    Aws { shard: String, message: String },
}

/// How retries back off: doubling from `first` up to `most`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub most: Duration,
    /// Calls tried before a failure that is not throttling is given up.
    pub attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(200),
            most: Duration::from_secs(10),
            attempts: 8,
        }
    }
}

/// One shard's reader.
pub struct ShardReader {
    client: Client,
    stream: Stream,
    shard: String,
    max_records: i32,
    backoff: Backoff,
    /// Where the next iterator starts when the current one is lost.
    position: Checkpoint,
    /// The time of `AT_TIMESTAMP` (milliseconds), for a shard with no record read yet.
    at_timestamp_ms: Option<i64>,
    iterator: Option<String>,
    /// A closed shard's ending sequence number.
    ending: Option<String>,
    ended: bool,
}

/// `a >= b` for sequence numbers (decimal, up to 128 bits and more: compared as text of
/// equal length).
fn at_or_after(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    (a.len(), a) >= (b.len(), b)
}

fn throttled(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ProvisionedThroughputExceededException"
                | "LimitExceededException"
                | "ThrottlingException"
        )
    )
}

impl ShardReader {
    /// A reader that starts after `checkpoint` (or where a sentinel says); `ending` is a
    /// closed shard's ending sequence number.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        stream: Stream,
        shard: impl Into<String>,
        checkpoint: Checkpoint,
        ending: Option<String>,
        at_timestamp_ms: Option<i64>,
        max_records: i32,
        backoff: Backoff,
    ) -> Self {
        let past_end = match (&checkpoint, &ending) {
            (Checkpoint::At { sequence, .. }, Some(end)) => at_or_after(sequence, end),
            _ => false,
        };
        Self {
            ending,
            client,
            stream,
            shard: shard.into(),
            max_records,
            backoff,
            ended: checkpoint == Checkpoint::ShardEnd || past_end,
            position: checkpoint,
            at_timestamp_ms,
            iterator: None,
        }
    }

    pub fn shard(&self) -> &str {
        &self.shard
    }

    /// A failed call as a read error; `what` is the operation, whose IAM action a refusal
    /// names.
    fn error<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        what: &str,
        e: &SdkError<E, HttpResponse>,
    ) -> ReadError {
        ReadError::Aws {
            shard: self.shard.clone(),
            message: format!(
                "{what}: {}",
                flowlog_aws::explain(e, "Kinesis", &format!("kinesis:{what}"))
            ),
        }
    }

    async fn new_iterator(&self) -> Result<Option<String>, ReadError> {
        let mut request = self.client.get_shard_iterator().shard_id(&self.shard);
        request = match &self.stream {
            Stream::Name(name) => request.stream_name(name),
            Stream::Arn(arn) => request.stream_arn(arn),
        };
        request = match &self.position {
            Checkpoint::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            Checkpoint::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
            Checkpoint::AtTimestamp => request
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(DateTime::from_millis(self.at_timestamp_ms.unwrap_or(0))),
            Checkpoint::At { sequence, .. } => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(sequence),
            Checkpoint::ShardEnd => return Ok(None),
        };
        let mut delay = self.backoff.first;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match request.clone().send().await {
                Ok(answer) => return Ok(answer.shard_iterator().map(str::to_owned)),
                Err(e) if throttled(e.code()) || attempt < self.backoff.attempts => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.backoff.most);
                }
                Err(e) => return Err(self.error("GetShardIterator", &e)),
            }
        }
    }

    /// The next records (none when there are none yet). After `ended`, nothing more.
    pub async fn poll(&mut self) -> Result<Poll, ReadError> {
        if self.ended {
            return Ok(Poll {
                ended: true,
                ..Poll::default()
            });
        }
        let mut delay = self.backoff.first;
        let mut attempt = 0;
        loop {
            let iterator = match self.iterator.take() {
                Some(iterator) => iterator,
                None => match self.new_iterator().await? {
                    Some(iterator) => iterator,
                    None => {
                        self.ended = true;
                        return Ok(Poll {
                            ended: true,
                            ..Poll::default()
                        });
                    }
                },
            };
            attempt += 1;
            match self
                .client
                .get_records()
                .shard_iterator(&iterator)
                .limit(self.max_records)
                .send()
                .await
            {
                Ok(answer) => {
                    let records: Vec<Record> = answer
                        .records()
                        .iter()
                        .map(|r| Record {
                            sequence: r.sequence_number().to_owned(),
                            partition_key: r.partition_key().unwrap_or_default().to_owned(),
                            data: r.data().as_ref().to_vec(),
                            arrived_ms: r
                                .approximate_arrival_timestamp()
                                .and_then(|t| t.to_millis().ok()),
                        })
                        .collect();
                    if let Some(last) = records.last() {
                        self.position = Checkpoint::At {
                            sequence: last.sequence.clone(),
                            sub_sequence: 0,
                        };
                    }
                    self.iterator = answer.next_shard_iterator().map(str::to_owned);
                    let at_end = match (&self.position, &self.ending) {
                        (Checkpoint::At { sequence, .. }, Some(end)) => at_or_after(sequence, end),
                        _ => false,
                    };
                    self.ended = self.iterator.is_none() || at_end;
                    let children = answer
                        .child_shards()
                        .iter()
                        .map(|c| c.shard_id().to_owned())
                        .collect();
                    return Ok(Poll {
                        records,
                        millis_behind: answer.millis_behind_latest(),
                        ended: self.ended,
                        children,
                    });
                }
                // The iterator lived past its five minutes: a new one after the last
                // record read.
                Err(e) if e.code() == Some("ExpiredIteratorException") => {}
                Err(e) if throttled(e.code()) || attempt < self.backoff.attempts => {
                    // The iterator stays good for a retry of the same call.
                    self.iterator = Some(iterator);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.backoff.most);
                }
                Err(e) => return Err(self.error("GetRecords", &e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kinesis::primitives::Blob;

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert!(at_or_after("10", "9"));
        assert!(!at_or_after("9", "10"));
        assert!(at_or_after("0042", "42"));
        let end = "49546986683135544286507457936321625675700192471156785154";
        assert!(at_or_after(end, end));
        assert!(!at_or_after(
            "49546986683135544286507457936321625675700192471156785153",
            end
        ));
    }

    async fn read_all(reader: &mut ShardReader) -> (Vec<Record>, bool) {
        let mut all = Vec::new();
        loop {
            let poll = reader.poll().await.unwrap();
            let empty = poll.records.is_empty();
            all.extend(poll.records);
            if poll.ended || empty {
                return (all, poll.ended);
            }
        }
    }

    #[tokio::test]
    async fn a_shard_is_read_from_its_checkpoint_to_its_end() {
        let (name, client) = crate::testing::stream("reader", 1).await;
        for i in 0..25 {
            client
                .put_record()
                .stream_name(&name)
                .partition_key(format!("key-{}", i % 3))
                .data(Blob::new(format!("record {i}")))
                .send()
                .await
                .unwrap();
        }
        let shard = crate::testing::first_shard(&client, &name).await;
        let stream = Stream::Name(name.clone());
        let reader = |checkpoint, ending: Option<String>| {
            ShardReader::new(
                client.clone(),
                stream.clone(),
                shard.shard_id(),
                checkpoint,
                ending,
                None,
                10,
                Backoff::default(),
            )
        };
        // From the start, ten at a time: every record, in order.
        let (records, ended) = read_all(&mut reader(Checkpoint::TrimHorizon, None)).await;
        assert!(!ended);
        let data: Vec<String> = records
            .iter()
            .map(|r| String::from_utf8(r.data.clone()).unwrap())
            .collect();
        assert_eq!(
            data,
            (0..25).map(|i| format!("record {i}")).collect::<Vec<_>>()
        );
        // After a checkpoint: the records after it, none twice.
        let at = Checkpoint::At {
            sequence: records[9].sequence.clone(),
            sub_sequence: 0,
        };
        let (rest, _) = read_all(&mut reader(at, None)).await;
        assert_eq!(rest, records[10..]);
        // Split the shard: the parent is read to its end, and says so.
        crate::testing::split_in_half(&client, &name, &shard).await;
        let ending = crate::shards::list(&client, &stream)
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.id == shard.shard_id())
            .unwrap()
            .ending;
        assert!(ending.is_some(), "the split shard is closed");
        let (again, ended) = read_all(&mut reader(Checkpoint::TrimHorizon, ending.clone())).await;
        // (moto gives the records new arrival times when it splits the shard.)
        let plain = |r: &[Record]| -> Vec<(String, String, Vec<u8>)> {
            r.iter()
                .map(|r| (r.sequence.clone(), r.partition_key.clone(), r.data.clone()))
                .collect()
        };
        assert_eq!(plain(&again), plain(&records));
        assert!(ended, "a closed shard ends");
        // A shard checkpointed at its end is not read again.
        let mut done = reader(Checkpoint::ShardEnd, ending.clone());
        let poll = done.poll().await.unwrap();
        assert!(poll.ended && poll.records.is_empty());
        // Nor one checkpointed at its last record.
        let last = Checkpoint::At {
            sequence: records[24].sequence.clone(),
            sub_sequence: 0,
        };
        let mut done = reader(last, ending);
        let poll = done.poll().await.unwrap();
        assert!(poll.ended && poll.records.is_empty());
    }
}
