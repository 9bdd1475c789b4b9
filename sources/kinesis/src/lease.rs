//! Shard leases in a DynamoDB table laid out as the KCL 2.x lease table, so that any
//! number of processes split a stream's shards between them.
//!
//! One item per shard, keyed by `leaseKey` (the shard id). `leaseOwner` names the worker
//! that reads it; `leaseCounter` goes up by one on every write, which is how the others
//! see that the owner is alive: a lease whose counter has not moved for a lease duration,
//! by the observer's own clock, has expired (no two clocks are compared). `checkpoint`
//! (with `checkpointSubSequenceNumber`) is the last record delivered, or one of the KCL's
//! sentinels; `ownerSwitchesSinceCheckpoint` counts the owners since it last moved;
//! `parentShardId` and `childShardIds` are string sets that carry the shard lineage.
//!
//! Every write is conditional on what the writer last saw: taking or stealing on the
//! counter it observed, renewing, checkpointing and giving up on its own counter and
//! ownership. A write whose condition fails means someone else moved the lease: the
//! caller has lost it (or never had it) and must stop reading the shard.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus,
};
use aws_sdk_dynamodb::Client;

const KEY: &str = "leaseKey";
const OWNER: &str = "leaseOwner";
const COUNTER: &str = "leaseCounter";
const CHECKPOINT: &str = "checkpoint";
const SUB_SEQUENCE: &str = "checkpointSubSequenceNumber";
const OWNER_SWITCHES: &str = "ownerSwitchesSinceCheckpoint";
const PARENTS: &str = "parentShardId";
const CHILDREN: &str = "childShardIds";

/// Where a shard's reading stands: a record's sequence number (and sub-sequence, for a
/// record the KPL aggregated), or one of the KCL's sentinels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkpoint {
    /// Not read yet: start at the oldest record kept.
    TrimHorizon,
    /// Not read yet: start at the records put from now on.
    Latest,
    /// Not read yet: start at the configured time.
    AtTimestamp,
    /// Read to its end: its children may start.
    ShardEnd,
    /// Delivered up to and including this record.
    At { sequence: String, sub_sequence: u64 },
}

impl Checkpoint {
    fn text(&self) -> &str {
        match self {
            Checkpoint::TrimHorizon => "TRIM_HORIZON",
            Checkpoint::Latest => "LATEST",
            Checkpoint::AtTimestamp => "AT_TIMESTAMP",
            Checkpoint::ShardEnd => "SHARD_END",
            Checkpoint::At { sequence, .. } => sequence,
        }
    }

    fn sub_sequence(&self) -> u64 {
        match self {
            Checkpoint::At { sub_sequence, .. } => *sub_sequence,
            _ => 0,
        }
    }

    fn parse(text: &str, sub_sequence: u64) -> Self {
        match text {
            "TRIM_HORIZON" => Checkpoint::TrimHorizon,
            "LATEST" => Checkpoint::Latest,
            "AT_TIMESTAMP" => Checkpoint::AtTimestamp,
            "SHARD_END" => Checkpoint::ShardEnd,
            sequence => Checkpoint::At {
                sequence: sequence.to_owned(),
                sub_sequence,
            },
        }
    }
}

/// One shard's lease as the table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The shard id.
    pub key: String,
    pub owner: Option<String>,
    pub counter: u64,
    pub checkpoint: Checkpoint,
    pub owner_switches: u64,
    pub parents: Vec<String>,
    pub children: Vec<String>,
}

impl Lease {
    /// A new shard's lease: nobody's, nothing read.
    pub fn new(key: impl Into<String>, start: Checkpoint, parents: Vec<String>) -> Self {
        Self {
            key: key.into(),
            owner: None,
            counter: 0,
            checkpoint: start,
            owner_switches: 0,
            parents,
            children: Vec::new(),
        }
    }

    fn from_item(item: &HashMap<String, AttributeValue>) -> Result<Self, LeaseError> {
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let number = |name: &str| -> Result<u64, LeaseError> {
            match item.get(name) {
                None => Ok(0),
                Some(v) => v
                    .as_n()
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| LeaseError::Unreadable(format!("{name} is not a number"))),
            }
        };
        let set = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_ss().ok())
                .cloned()
                .unwrap_or_default()
        };
        let key =
            text(KEY).ok_or_else(|| LeaseError::Unreadable(format!("an item without {KEY}")))?;
        let checkpoint = text(CHECKPOINT).unwrap_or_else(|| "TRIM_HORIZON".into());
        Ok(Self {
            owner: text(OWNER),
            counter: number(COUNTER)?,
            checkpoint: Checkpoint::parse(&checkpoint, number(SUB_SEQUENCE)?),
            owner_switches: number(OWNER_SWITCHES)?,
            parents: set(PARENTS),
            children: set(CHILDREN),
            key,
        })
    }
}

/// What went wrong with the lease table.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease table {table}: {message}")]
    Aws { table: String, message: String },
    #[error("lease table {table} is {status}, not ACTIVE, after {waited:?}")]
    NotActive {
        table: String,
        status: String,
        waited: Duration,
    },
    #[error("an unreadable lease: {0}")]
    Unreadable(String),
}

/// The lease table of one application.
#[derive(Clone)]
pub struct LeaseTable {
    client: Client,
    table: String,
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

/// True when the failure is a condition that did not hold: someone else wrote the lease.
fn condition_failed<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

impl LeaseTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn name(&self) -> &str {
        &self.table
    }

    /// A failed call as a lease error; `what` starts with the operation's name, which is
    /// also the IAM action a refusal names.
    fn aws<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        what: &str,
        e: SdkError<E, HttpResponse>,
    ) -> LeaseError {
        let operation = what.split(' ').next().unwrap_or(what);
        let explained = flowlog_aws::explain(&e, "DynamoDB", &format!("dynamodb:{operation}"));
        LeaseError::Aws {
            table: self.table.clone(),
            message: format!("{what}: {explained}"),
        }
    }

    /// True when the table exists.
    pub async fn exists(&self) -> Result<bool, LeaseError> {
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(false),
            Err(e) => Err(self.aws("DescribeTable", e)),
        }
    }

    /// Creates the table (on-demand capacity) unless it exists, and waits until it is
    /// active, polling every `poll` for at most `wait`.
    pub async fn create_if_missing(
        &self,
        poll: Duration,
        wait: Duration,
    ) -> Result<(), LeaseError> {
        if !self.exists().await? {
            let created = self
                .client
                .create_table()
                .table_name(&self.table)
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(KEY)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .expect("name and type are set"),
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(KEY)
                        .key_type(KeyType::Hash)
                        .build()
                        .expect("name and type are set"),
                )
                .billing_mode(BillingMode::PayPerRequest)
                .send()
                .await;
            match created {
                Ok(_) => {}
                // Another worker created it first.
                Err(e) if e.code() == Some("ResourceInUseException") => {}
                Err(e) => return Err(self.aws("CreateTable", e)),
            }
        }
        let started = tokio::time::Instant::now();
        loop {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| self.aws("DescribeTable", e))?;
            let status = described.table().and_then(|t| t.table_status());
            if status == Some(&TableStatus::Active) {
                return Ok(());
            }
            if started.elapsed() >= wait {
                return Err(LeaseError::NotActive {
                    table: self.table.clone(),
                    status: status.map_or("unknown".into(), |s| s.as_str().to_owned()),
                    waited: wait,
                });
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Whether this caller may write leases, asked without writing anything: each write
    /// goes to a key no shard has, on the condition that the item exists. An allowed
    /// caller is told the condition failed (or that the table is missing); a refused one
    /// is refused, since permissions are evaluated before conditions.
    pub async fn may_write(&self) -> Vec<(&'static str, Result<(), LeaseError>)> {
        const PROBE: &str = "flowlog-check-no-such-shard";
        const EXISTS: &str = "attribute_exists(#key)";
        let allowed = |code: Option<&str>| {
            matches!(
                code,
                Some("ConditionalCheckFailedException" | "ResourceNotFoundException")
            )
        };
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, s(PROBE))
            .condition_expression(EXISTS)
            .expression_attribute_names("#key", KEY)
            .send()
            .await;
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, s(PROBE))
            .update_expression("SET #counter = :counter")
            .condition_expression(EXISTS)
            .expression_attribute_names("#key", KEY)
            .expression_attribute_names("#counter", COUNTER)
            .expression_attribute_values(":counter", n(0))
            .send()
            .await;
        let delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, s(PROBE))
            .condition_expression(EXISTS)
            .expression_attribute_names("#key", KEY)
            .send()
            .await;
        vec![
            (
                "dynamodb:PutItem",
                match put {
                    Err(e) if !allowed(e.code()) => Err(self.aws("PutItem", e)),
                    _ => Ok(()),
                },
            ),
            (
                "dynamodb:UpdateItem",
                match update {
                    Err(e) if !allowed(e.code()) => Err(self.aws("UpdateItem", e)),
                    _ => Ok(()),
                },
            ),
            (
                "dynamodb:DeleteItem",
                match delete {
                    Err(e) if !allowed(e.code()) => Err(self.aws("DeleteItem", e)),
                    _ => Ok(()),
                },
            ),
        ]
    }

    /// Every lease, read consistently.
    pub async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        let mut leases = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.aws("Scan", e))?;
            for item in page.items() {
                leases.push(Lease::from_item(item)?);
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        leases.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(leases)
    }

    /// Writes a new shard's lease unless one exists; true when it was written.
    pub async fn create(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let mut item = HashMap::from([
            (KEY.to_owned(), s(&lease.key)),
            (COUNTER.to_owned(), n(lease.counter)),
            (CHECKPOINT.to_owned(), s(lease.checkpoint.text())),
            (SUB_SEQUENCE.to_owned(), n(lease.checkpoint.sub_sequence())),
            (OWNER_SWITCHES.to_owned(), n(lease.owner_switches)),
        ]);
        if let Some(owner) = &lease.owner {
            item.insert(OWNER.to_owned(), s(owner));
        }
        // DynamoDB refuses an empty set: no parents is no attribute.
        if !lease.parents.is_empty() {
            item.insert(
                PARENTS.to_owned(),
                AttributeValue::Ss(lease.parents.clone()),
            );
        }
        if !lease.children.is_empty() {
            item.insert(
                CHILDREN.to_owned(),
                AttributeValue::Ss(lease.children.clone()),
            );
        }
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#key)")
            .expression_attribute_names("#key", KEY)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(self.aws("PutItem", e)),
        }
    }

    /// Takes `lease` for `owner`, if its counter is still the one `lease` holds (the
    /// lease expired, or is stolen, as its taker saw it). The lease as written, or `None`
    /// when someone else wrote it in between.
    pub async fn take(&self, lease: &Lease, owner: &str) -> Result<Option<Lease>, LeaseError> {
        let switched = lease.owner.as_deref() != Some(owner);
        let mut update = "SET #owner = :owner, #counter = :next".to_owned();
        if switched {
            // A table the KCL wrote may lack the attribute.
            update.push_str(", #switches = if_not_exists(#switches, :zero) + :one");
        }
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, s(&lease.key))
            .update_expression(update)
            .condition_expression("#counter = :counter")
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_names("#counter", COUNTER)
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":counter", n(lease.counter))
            .expression_attribute_values(":next", n(lease.counter + 1));
        if switched {
            request = request
                .expression_attribute_names("#switches", OWNER_SWITCHES)
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":zero", n(0));
        }
        match request.send().await {
            Ok(_) => Ok(Some(Lease {
                owner: Some(owner.to_owned()),
                counter: lease.counter + 1,
                owner_switches: lease.owner_switches + u64::from(switched),
                ..lease.clone()
            })),
            Err(e) if condition_failed(&e) => Ok(None),
            Err(e) => Err(self.aws("UpdateItem (take)", e)),
        }
    }

    /// Writes `then` on a lease `held` still owns (same owner and counter), moving the
    /// counter on: renewal (nothing else changed), a checkpoint, giving it up.
    async fn owned_update(
        &self,
        held: &Lease,
        what: &str,
        set: &str,
        values: Vec<(&str, AttributeValue)>,
        names: Vec<(&str, &str)>,
    ) -> Result<bool, LeaseError> {
        let Some(owner) = &held.owner else {
            return Ok(false);
        };
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, s(&held.key))
            .update_expression(set)
            .condition_expression("#counter = :counter AND #owner = :owner")
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_names("#counter", COUNTER)
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":counter", n(held.counter))
            .expression_attribute_values(":next", n(held.counter + 1));
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        for (placeholder, name) in names {
            request = request.expression_attribute_names(placeholder, name);
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(self.aws(what, e)),
        }
    }

    /// Renews a lease `held` owns: the counter moves, nothing else. `None` when it was
    /// lost (taken by another, or changed since).
    pub async fn renew(&self, held: &Lease) -> Result<Option<Lease>, LeaseError> {
        let ok = self
            .owned_update(
                held,
                "UpdateItem (renew)",
                "SET #counter = :next",
                vec![],
                vec![],
            )
            .await?;
        Ok(ok.then(|| Lease {
            counter: held.counter + 1,
            ..held.clone()
        }))
    }

    /// Moves the checkpoint of a lease `held` owns. `None` when it was lost: the records
    /// after the old checkpoint are then read again by the new owner.
    pub async fn checkpoint(
        &self,
        held: &Lease,
        checkpoint: Checkpoint,
    ) -> Result<Option<Lease>, LeaseError> {
        let ok = self
            .owned_update(
                held,
                "UpdateItem (checkpoint)",
                "SET #counter = :next, #checkpoint = :checkpoint, #sub = :sub, #switches = :zero",
                vec![
                    (":checkpoint", s(checkpoint.text())),
                    (":sub", n(checkpoint.sub_sequence())),
                    (":zero", n(0)),
                ],
                vec![
                    ("#checkpoint", CHECKPOINT),
                    ("#sub", SUB_SEQUENCE),
                    ("#switches", OWNER_SWITCHES),
                ],
            )
            .await?;
        Ok(ok.then(|| Lease {
            counter: held.counter + 1,
            checkpoint,
            owner_switches: 0,
            ..held.clone()
        }))
    }

    /// Records a finished shard's children on its lease (`held` owns it).
    pub async fn set_children(
        &self,
        held: &Lease,
        children: Vec<String>,
    ) -> Result<Option<Lease>, LeaseError> {
        if children.is_empty() {
            return Ok(Some(held.clone()));
        }
        let ok = self
            .owned_update(
                held,
                "UpdateItem (children)",
                "SET #counter = :next, #children = :children",
                vec![(":children", AttributeValue::Ss(children.clone()))],
                vec![("#children", CHILDREN)],
            )
            .await?;
        Ok(ok.then(|| Lease {
            counter: held.counter + 1,
            children,
            ..held.clone()
        }))
    }

    /// Gives up a lease `held` owns (a shutdown, or a shard handed to a less loaded
    /// worker), so another can take it at once rather than after it expires. False when
    /// it was not held any more.
    pub async fn give_up(&self, held: &Lease) -> Result<bool, LeaseError> {
        self.owned_update(
            held,
            "UpdateItem (give up)",
            "SET #counter = :next REMOVE #owner",
            vec![],
            vec![],
        )
        .await
    }

    /// Deletes a finished parent's lease once its children have started. Conditional on
    /// its counter, so a lease someone changed meanwhile stays.
    pub async fn delete(&self, lease: &Lease) -> Result<bool, LeaseError> {
        match self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, s(&lease.key))
            .condition_expression("#counter = :counter")
            .expression_attribute_names("#counter", COUNTER)
            .expression_attribute_values(":counter", n(lease.counter))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(self.aws("DeleteItem", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_table_is_created_once_and_leases_once() {
        let t = crate::testing::lease_table("leases-created-once").await;
        // A second worker finds it there.
        t.create_if_missing(Duration::from_millis(50), Duration::from_secs(10))
            .await
            .unwrap();
        let parent = Lease::new("shardId-000000000000", Checkpoint::TrimHorizon, Vec::new());
        let child = Lease::new(
            "shardId-000000000001",
            Checkpoint::TrimHorizon,
            vec!["shardId-000000000000".into()],
        );
        assert!(t.create(&parent).await.unwrap());
        assert!(t.create(&child).await.unwrap());
        assert!(!t.create(&parent).await.unwrap(), "a lease is written once");
        assert_eq!(t.list().await.unwrap(), vec![parent, child]);
    }

    #[tokio::test]
    async fn only_one_of_two_takers_gets_a_lease() {
        let t = crate::testing::lease_table("leases-one-taker").await;
        let free = Lease::new("shardId-000000000000", Checkpoint::TrimHorizon, Vec::new());
        t.create(&free).await.unwrap();
        // Both saw it free at counter 0; the second write finds the counter moved.
        let a = t
            .take(&free, "worker-a")
            .await
            .unwrap()
            .expect("first taker wins");
        assert!(t.take(&free, "worker-b").await.unwrap().is_none());
        assert_eq!(
            (a.owner.as_deref(), a.counter, a.owner_switches),
            (Some("worker-a"), 1, 1)
        );
        assert_eq!(t.list().await.unwrap(), vec![a.clone()]);
        // The owner renews; what it holds follows the table.
        let a = t.renew(&a).await.unwrap().expect("still the owner");
        assert_eq!(t.list().await.unwrap(), vec![a.clone()]);
    }

    #[tokio::test]
    async fn a_stolen_lease_is_lost_to_its_old_owner() {
        let t = crate::testing::lease_table("leases-stolen").await;
        let free = Lease::new("shardId-000000000000", Checkpoint::TrimHorizon, Vec::new());
        t.create(&free).await.unwrap();
        let a = t.take(&free, "worker-a").await.unwrap().unwrap();
        // Worker b read the table, saw a's lease, and steals it.
        let seen = t.list().await.unwrap().remove(0);
        let b = t.take(&seen, "worker-b").await.unwrap().expect("stolen");
        assert_eq!(
            (b.owner.as_deref(), b.owner_switches),
            (Some("worker-b"), 2)
        );
        // Every write of a's now fails: it must stop reading the shard.
        assert!(t.renew(&a).await.unwrap().is_none());
        let at = Checkpoint::At {
            sequence: "49590338271490256608559692538361571095921575989136588898".into(),
            sub_sequence: 0,
        };
        assert!(t.checkpoint(&a, at.clone()).await.unwrap().is_none());
        assert!(!t.give_up(&a).await.unwrap());
        // b's checkpoint holds and resets the owner switches.
        let b = t
            .checkpoint(&b, at.clone())
            .await
            .unwrap()
            .expect("b owns it");
        let stored = t.list().await.unwrap().remove(0);
        assert_eq!(stored, b);
        assert_eq!((stored.checkpoint, stored.owner_switches), (at, 0));
    }

    #[tokio::test]
    async fn a_lease_given_up_is_free_and_a_finished_parent_is_deleted() {
        let t = crate::testing::lease_table("leases-given-up").await;
        let free = Lease::new("shardId-000000000000", Checkpoint::Latest, Vec::new());
        t.create(&free).await.unwrap();
        let a = t.take(&free, "worker-a").await.unwrap().unwrap();
        let a = t
            .set_children(
                &a,
                vec!["shardId-000000000002".into(), "shardId-000000000003".into()],
            )
            .await
            .unwrap()
            .unwrap();
        let a = t
            .checkpoint(&a, Checkpoint::ShardEnd)
            .await
            .unwrap()
            .unwrap();
        assert!(t.give_up(&a).await.unwrap());
        let stored = t.list().await.unwrap().remove(0);
        assert_eq!(stored.owner, None);
        assert_eq!(stored.checkpoint, Checkpoint::ShardEnd);
        assert_eq!(stored.children.len(), 2);
        // Deleting needs the counter as it stands.
        assert!(!t.delete(&a).await.unwrap());
        assert!(t.delete(&stored).await.unwrap());
        assert!(t.list().await.unwrap().is_empty());
    }
}
