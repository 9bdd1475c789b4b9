//! `type = "kinesis"` (in progress): CloudWatch Logs subscription records from a Kinesis
//! data stream, the stream's shards split between any number of flowlog processes by
//! leases in a DynamoDB table laid out as the KCL 2.x lease table.
//!
//! Built so far: the settings (`settings`), the lease table (`lease`: create, list, take,
//! renew, steal, checkpoint, give up, delete, every write conditional), the taker's
//! decisions (`balance`: expired leases first, then one stolen from the most loaded
//! worker; children after their parents end) and the shards' leases (`shards`: ListShards,
//! a lease for every shard still to be read, with its parents) and what a checkpoint may
//! cover (`progress`: records in shard order, the checkpoint at the last one before the
//! first not yet delivered) and the shard reader (`reader`: an iterator from a checkpoint,
//! GetRecords to the shard's end, throttling and expired iterators handled) and the
//! coordinator (`coordinator`: renewals, rounds of taking and stealing, checkpoints
//! through the same lock as renewals). Not yet: a reader per lease that decodes and
//! checkpoints after delivery, parents' leases deleted once their children start, the
//! source in the registry, metrics, `check`, the IAM policy, the end-to-end tests.

pub mod balance;
pub mod coordinator;
pub mod lease;
pub mod progress;
pub mod reader;
pub mod settings;
pub mod shards;
mod source;
#[cfg(test)]
mod testing;

pub use balance::{Balance, Decision, Taker};
pub use coordinator::{Coordinator, Round};
pub use lease::{Checkpoint, Lease, LeaseError, LeaseTable};
pub use settings::{KinesisSource, StartingPosition};
pub use shards::{Shard, Stream};
