//! Flow logs already in S3 (or in a copy of a bucket on disk), found by their key layout:
//! the `s3` source `flowlog backfill` runs, and reading S3 objects, which the `sqs`
//! source shares.
//!
//! AWS writes a flow log's objects under `AWSLogs/<account>/vpcflowlogs/<region>/` and
//! then one folder per day (and per hour, with hourly partitions), or the same levels
//! named Hive-style (`aws-account-id=...`, `year=...`). [`layout`] reads those names;
//! [`plan()`] walks them through a [`Listing`] (S3's ListObjectsV2, or a directory tree),
//! listing only the partitions a time range can need, and keeps the objects whose names
//! fit the accounts, regions, flow logs and times asked for. Records are kept by their
//! own `start` later, in the transform stage: partitions and object names say when an
//! object was delivered, not when its flows began, so the plan takes a margin on both
//! sides.
//!
//! Without the `client` feature (on by default) only the layout, the planner and the
//! object identity are built, with no AWS SDK: what the SQS notification parser's fuzz
//! target needs.

pub mod layout;
pub mod listing;
pub mod object;
pub mod plan;

#[cfg(feature = "client")]
pub mod aws;
#[cfg(feature = "client")]
pub mod backfill;
#[cfg(feature = "client")]
pub mod enqueue;
#[cfg(feature = "client")]
pub mod job;
#[cfg(feature = "client")]
pub mod progress;
#[cfg(feature = "client")]
mod settings;
#[cfg(feature = "client")]
mod source;

pub use layout::{Level, ObjectName, Style, TimeRange};
pub use listing::{DirectoryListing, ListError, Listed, Listing, ObjectInfo};
pub use object::ObjectRef;
pub use plan::{plan, Filter, Plan};

#[cfg(feature = "client")]
pub use listing::S3Listing;
#[cfg(feature = "client")]
pub use settings::{Location, S3Source};
#[cfg(feature = "client")]
pub use source::PlanFile;
