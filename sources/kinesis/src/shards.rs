//! The stream's shards and the leases that stand for them: every shard still to be read
//! gets a lease, with its parents, so that the lease taker starts children only after
//! their parents end.

use aws_sdk_kinesis::Client;

use crate::lease::{Checkpoint, Lease, LeaseError, LeaseTable};
use crate::settings::StartingPosition;

/// One shard as ListShards describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub id: String,
    /// The shard it was split from, or the two it was merged from.
    pub parents: Vec<String>,
    /// Closed by a split or merge: it ends, and its children go on.
    pub closed: bool,
    /// A closed shard's ending sequence number.
    pub ending: Option<String>,
}

/// Which stream, by name or ARN.
#[derive(Debug, Clone)]
pub enum Stream {
    Name(String),
    Arn(String),
}

/// Every shard of the stream (open and closed, within the retention period).
pub async fn list(client: &Client, stream: &Stream) -> Result<Vec<Shard>, String> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut request = client.list_shards();
        // With a NextToken, the stream must not be named again.
        request = match (&token, stream) {
            (Some(t), _) => request.next_token(t),
            (None, Stream::Name(name)) => request.stream_name(name),
            (None, Stream::Arn(arn)) => request.stream_arn(arn),
        };
        let page = request.send().await.map_err(|e| {
            format!(
                "ListShards: {}",
                flowlog_aws::explain(&e, "Kinesis", "kinesis:ListShards")
            )
        })?;
        for shard in page.shards() {
            let parents = [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
                .into_iter()
                .flatten()
                .map(str::to_owned)
                .collect();
            let ending = shard
                .sequence_number_range()
                .and_then(|r| r.ending_sequence_number())
                .map(str::to_owned);
            shards.push(Shard {
                id: shard.shard_id().to_owned(),
                parents,
                closed: ending.is_some(),
                ending,
            });
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => break,
        }
    }
    Ok(shards)
}

/// The leases to create for `shards`, given the table's `leases`: one for every shard
/// without one that is still to be read. A closed shard without a lease whose children
/// (or their descendants) have leases was read to its end and its lease deleted; when
/// reading starts at `latest`, closed shards are skipped (nothing will be put in them)
/// and their open descendants start at `LATEST`.
pub fn missing(shards: &[Shard], leases: &[Lease], start: StartingPosition) -> Vec<Lease> {
    let leased = |id: &str| leases.iter().any(|l| l.key == id);
    let children = |id: &str| -> Vec<&Shard> {
        shards
            .iter()
            .filter(|s| s.parents.iter().any(|p| p == id))
            .collect()
    };
    // True when a descendant of `id` has a lease: `id` was finished before it.
    fn descendant_leased<'a>(
        id: &str,
        children: &dyn Fn(&str) -> Vec<&'a Shard>,
        leased: &dyn Fn(&str) -> bool,
    ) -> bool {
        children(id)
            .into_iter()
            .any(|c| leased(&c.id) || descendant_leased(&c.id, children, leased))
    }
    let checkpoint = match start {
        StartingPosition::TrimHorizon => Checkpoint::TrimHorizon,
        StartingPosition::Latest => Checkpoint::Latest,
        StartingPosition::AtTimestamp => Checkpoint::AtTimestamp,
    };
    shards
        .iter()
        .filter(|s| !leased(&s.id))
        .filter(|s| !(s.closed && start == StartingPosition::Latest))
        .filter(|s| !(s.closed && descendant_leased(&s.id, &children, &leased)))
        .map(|s| {
            // Parents that are not among the shards (past the retention period) or that
            // are skipped are not waited for.
            let parents = s
                .parents
                .iter()
                .filter(|p| {
                    shards
                        .iter()
                        .any(|x| &x.id == *p && !(x.closed && start == StartingPosition::Latest))
                })
                .cloned()
                .collect();
            Lease::new(s.id.clone(), checkpoint.clone(), parents)
        })
        .collect()
}

/// The leases of shards read to their end whose children have all started (their
/// checkpoints moved past the starting sentinels): no longer needed to order anything.
pub fn finished_parents<'a>(shards: &[Shard], leases: &'a [Lease]) -> Vec<&'a Lease> {
    let started = |id: &str| {
        leases.iter().any(|l| {
            l.key == id && matches!(l.checkpoint, Checkpoint::At { .. } | Checkpoint::ShardEnd)
        })
    };
    leases
        .iter()
        .filter(|l| l.checkpoint == Checkpoint::ShardEnd)
        .filter(|l| {
            let children: Vec<&Shard> = shards
                .iter()
                .filter(|s| s.parents.contains(&l.key))
                .collect();
            !children.is_empty() && children.iter().all(|c| started(&c.id))
        })
        .collect()
}

/// Creates the leases `shards` lack, and deletes those of finished parents; how many
/// were written (another worker may have written some first).
pub async fn sync(
    table: &LeaseTable,
    shards: &[Shard],
    start: StartingPosition,
) -> Result<usize, LeaseError> {
    let leases = table.list().await?;
    let mut created = 0;
    for lease in missing(shards, &leases, start) {
        if table.create(&lease).await? {
            created += 1;
        }
    }
    for parent in finished_parents(shards, &leases) {
        // Conditional on its counter: one another worker changed meanwhile stays.
        table.delete(parent).await?;
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parents: &[&str], closed: bool) -> Shard {
        Shard {
            id: id.into(),
            parents: parents.iter().map(|p| p.to_string()).collect(),
            closed,
            ending: closed.then(|| "1000".to_owned()),
        }
    }

    fn keys(leases: &[Lease]) -> Vec<(&str, Vec<&str>)> {
        leases
            .iter()
            .map(|l| {
                (
                    l.key.as_str(),
                    l.parents.iter().map(String::as_str).collect(),
                )
            })
            .collect()
    }

    /// s0 split into s1 and s2; s1 and s2 merged into s3.
    fn resharded() -> Vec<Shard> {
        vec![
            shard("s0", &[], true),
            shard("s1", &["s0"], true),
            shard("s2", &["s0"], true),
            shard("s3", &["s1", "s2"], false),
        ]
    }

    #[test]
    fn every_shard_gets_a_lease_with_its_parents() {
        let made = missing(&resharded(), &[], StartingPosition::TrimHorizon);
        assert_eq!(
            keys(&made),
            [
                ("s0", vec![]),
                ("s1", vec!["s0"]),
                ("s2", vec!["s0"]),
                ("s3", vec!["s1", "s2"])
            ]
        );
        assert!(made.iter().all(|l| l.checkpoint == Checkpoint::TrimHorizon));
    }

    #[test]
    fn finished_shards_whose_leases_were_deleted_are_not_read_again() {
        // s0 was read and its lease deleted once s1 and s2 started.
        let leases: Vec<Lease> = ["s1", "s2"]
            .iter()
            .map(|k| Lease::new(*k, Checkpoint::TrimHorizon, vec!["s0".into()]))
            .collect();
        let made = missing(&resharded(), &leases, StartingPosition::TrimHorizon);
        assert_eq!(keys(&made), [("s3", vec!["s1", "s2"])]);
    }

    #[test]
    fn a_parent_is_deleted_once_all_its_children_started() {
        let shards = resharded();
        let at = |key: &str, checkpoint: Checkpoint| Lease {
            checkpoint,
            ..Lease::new(key, Checkpoint::TrimHorizon, vec![])
        };
        let started = Checkpoint::At {
            sequence: "7".into(),
            sub_sequence: 0,
        };
        let leases = vec![
            at("s0", Checkpoint::ShardEnd),
            at("s1", started.clone()),
            at("s2", Checkpoint::TrimHorizon),
        ];
        assert!(
            finished_parents(&shards, &leases).is_empty(),
            "s2 has not started"
        );
        let leases = vec![
            at("s0", Checkpoint::ShardEnd),
            at("s1", started.clone()),
            at("s2", started),
        ];
        let done: Vec<&str> = finished_parents(&shards, &leases)
            .iter()
            .map(|l| l.key.as_str())
            .collect();
        assert_eq!(done, ["s0"]);
    }

    #[test]
    fn latest_skips_closed_shards() {
        let made = missing(&resharded(), &[], StartingPosition::Latest);
        assert_eq!(keys(&made), [("s3", vec![])]);
        assert_eq!(made[0].checkpoint, Checkpoint::Latest);
    }
}

#[cfg(test)]
mod moto {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_split_shard_and_its_children_get_leases_once() {
        let (name, client) = crate::testing::stream("shards-split", 2).await;
        let stream = Stream::Name(name.clone());
        let before = list(&client, &stream).await.unwrap();
        assert_eq!(before.len(), 2);
        assert!(before.iter().all(|s| !s.closed && s.parents.is_empty()));
        // Split the first shard at the middle of its hash key range.
        let first = crate::testing::first_shard(&client, &name).await;
        crate::testing::split_in_half(&client, &name, &first).await;
        let after = list(&client, &stream).await.unwrap();
        assert_eq!(after.len(), 4, "{after:?}");
        let parent = after.iter().find(|s| s.id == first.shard_id()).unwrap();
        assert!(parent.closed);
        let children: Vec<&Shard> = after
            .iter()
            .filter(|s| s.parents == [first.shard_id().to_owned()])
            .collect();
        assert_eq!(children.len(), 2);

        let table = LeaseTable::new(crate::testing::dynamodb(), format!("{name}-leases"));
        table
            .create_if_missing(Duration::from_millis(50), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(
            sync(&table, &after, StartingPosition::TrimHorizon)
                .await
                .unwrap(),
            4
        );
        // A second worker's sync finds them all.
        assert_eq!(
            sync(&table, &after, StartingPosition::TrimHorizon)
                .await
                .unwrap(),
            0
        );
        let leases = table.list().await.unwrap();
        assert_eq!(leases.len(), 4);
        for child in children {
            let lease = leases.iter().find(|l| l.key == child.id).unwrap();
            assert_eq!(lease.parents, [first.shard_id().to_owned()]);
        }
    }
}
