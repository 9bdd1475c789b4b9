//! What the tests share: clients of the moto server `scripts/test.sh` starts, and names
//! no earlier run on the same server used (moto keeps its state between runs).

use std::time::Duration;

use crate::lease::LeaseTable;

pub(crate) fn endpoint() -> String {
    std::env::var("FLOWLOG_MOTO_ENDPOINT")
        .expect("FLOWLOG_MOTO_ENDPOINT is not set: run ./scripts/test.sh, which starts moto server")
}

/// `test` with the process id and the time: unique on a server that outlives runs.
pub(crate) fn unique(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{test}-{}-{nanos}", std::process::id())
}

pub(crate) fn kinesis() -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::from_conf(
        aws_sdk_kinesis::Config::builder()
            .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
            .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
            .endpoint_url(endpoint())
            .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .build(),
    )
}

pub(crate) fn dynamodb() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .endpoint_url(endpoint())
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .build(),
    )
}

/// A new stream of `shards` shards named for `test`, and a client of it.
pub(crate) async fn stream(test: &str, shards: i32) -> (String, aws_sdk_kinesis::Client) {
    let name = unique(test);
    let client = kinesis();
    client
        .create_stream()
        .stream_name(&name)
        .shard_count(shards)
        .send()
        .await
        .unwrap();
    (name, client)
}

/// The first shard of stream `name`, as ListShards describes it.
pub(crate) async fn first_shard(
    client: &aws_sdk_kinesis::Client,
    name: &str,
) -> aws_sdk_kinesis::types::Shard {
    client
        .list_shards()
        .stream_name(name)
        .send()
        .await
        .unwrap()
        .shards()[0]
        .clone()
}

/// Splits `shard` of stream `name` at the middle of its hash key range.
pub(crate) async fn split_in_half(
    client: &aws_sdk_kinesis::Client,
    name: &str,
    shard: &aws_sdk_kinesis::types::Shard,
) {
    let range = shard.hash_key_range().unwrap();
    let (low, high): (u128, u128) = (
        range.starting_hash_key().parse().unwrap(),
        range.ending_hash_key().parse().unwrap(),
    );
    client
        .split_shard()
        .stream_name(name)
        .shard_to_split(shard.shard_id())
        .new_starting_hash_key((low + (high - low) / 2).to_string())
        .send()
        .await
        .unwrap();
}

/// A new lease table named for the test.
pub(crate) async fn lease_table(test: &str) -> LeaseTable {
    let table = LeaseTable::new(dynamodb(), unique(test));
    table
        .create_if_missing(Duration::from_millis(50), Duration::from_secs(10))
        .await
        .unwrap();
    table
}
