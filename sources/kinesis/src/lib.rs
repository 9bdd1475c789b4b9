//! `type = "kinesis"` (in progress): CloudWatch Logs subscription records from a Kinesis
//! data stream, the stream's shards split between any number of flowlog processes by
//! leases in a DynamoDB table laid out as the KCL 2.x lease table.
//!
//! Built so far: the lease table (`lease`: create, list, take, renew, steal, checkpoint,
//! give up, delete, every write conditional) and the taker's decisions (`balance`:
//! expired leases first, then one stolen from the most loaded worker; children after
//! their parents end). Not yet: the shard readers, checkpoints after delivery, the source
//! in the registry.

pub mod balance;
pub mod lease;

pub use balance::{Balance, Decision, Taker};
pub use lease::{Checkpoint, Lease, LeaseError, LeaseTable};
