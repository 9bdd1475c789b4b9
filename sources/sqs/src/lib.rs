//! `type = "sqs"`: S3 objects announced by event notifications on an SQS queue (the way
//! flow logs delivered to S3 reach a sidecar).
//!
//! The queue is the lease. A message received is invisible to every other consumer for
//! `visibility_timeout_secs`; while its objects are read and delivered, a heartbeat extends
//! that every half timeout, so a slow sink does not make the message reappear and its
//! objects duplicate. The message is deleted (in batches of up to ten) only once every
//! record of every object it names is delivered by every sink or dead-lettered. If the
//! process dies, the message simply reappears and is read again, with the same event ids:
//! records are identified by the object's bucket, key and version (or ETag) and their
//! line. Any number of processes can read one queue without coordinating.
//!
//! Objects are streamed from S3 and decoded as they arrive (gzip text, or Parquet spilled
//! to a temporary file), off the runtime's workers. A message that cannot be read is
//! left to reappear; one received `max_receive_count` times is given up (dead-lettered
//! with its body, and deleted) unless the queue has a redrive policy, which then moves it
//! to the queue's own dead-letter queue. A body that is not a notification is
//! dead-lettered and deleted; S3's test event and events with nothing to read (removals)
//! are counted and deleted.

//!
//! The notification parser (`notification`) needs no AWS SDK and is always built; the
//! source itself is the `client` feature (on by default), so a fuzz target can take the
//! parser alone.

pub mod notification;
#[cfg(feature = "client")]
mod object;
#[cfg(feature = "client")]
mod queue;
#[cfg(feature = "client")]
mod settings;

pub use notification::{parse as parse_notification, Notice, ObjectRef};
#[cfg(feature = "client")]
pub use settings::SqsSource;
