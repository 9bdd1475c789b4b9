//! `type = "kinesis"`: CloudWatch Logs subscription records from a Kinesis data stream,
//! the stream's shards split between any number of flowlog processes by leases in a
//! DynamoDB table laid out as the KCL 2.x lease table.
//!
//! - `lease`: the table (create, list, take, renew, steal, checkpoint, give up, delete;
//!   every write conditional on the counter or owner its writer last saw);
//! - `balance`: which leases a process takes (expired first, then one stolen from the
//!   busiest process; children only after their parents end);
//! - `coordinator`: the leases a process holds, renewed three times a lease duration, and
//!   its rounds of taking and stealing; checkpoints go through the same lock as renewals;
//! - `shards`: ListShards, and a lease for every shard still to be read, with its parents;
//! - `reader`: one shard's GetRecords loop (throttling, expired iterators, the shard's end);
//! - `progress`: what a checkpoint may cover (records in shard order, up to the first not
//!   yet delivered);
//! - `check`: what `flowlog check` asks: the stream, the lease table, and each permission
//!   `run` uses, without changing anything;
//! - `source`: the source, a reader per leased shard decoding each record off the runtime.

pub mod balance;
mod check;
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
