//! The live ENI inventory: DescribeNetworkInterfaces and DescribeInstances through the AWS
//! SDK for Rust, refreshed on a TTL by a background thread.
//!
//! Credentials and region come from the SDK's default chain (environment, profile, SSO,
//! instance or task role); `AWS_ENDPOINT_URL_EC2` or [`Ec2Options::endpoint`] points it
//! elsewhere (a VPC endpoint, or moto server in tests).
//!
//! The SDK calls (`describe`) are the `ec2` cargo feature: a build without it refuses
//! `eni_inventory = ["ec2"]` at start, saying so.

use std::sync::mpsc;
use std::time::Duration;

#[cfg(feature = "ec2")]
mod describe;

use crate::inventory::Interface;
use crate::EnrichError;

/// Where and how often to read the inventory.
#[derive(Debug, Clone)]
pub struct Ec2Options {
    pub region: Option<String>,
    pub endpoint: Option<String>,
    /// Time between refreshes.
    pub ttl: Duration,
}

impl Default for Ec2Options {
    fn default() -> Self {
        Self {
            region: None,
            endpoint: None,
            ttl: Duration::from_secs(300),
        }
    }
}

/// A running refresher: snapshots arrive on [`Ec2Refresher::try_next`].
pub struct Ec2Refresher {
    snapshots: mpsc::Receiver<Result<Vec<Interface>, EnrichError>>,
}

impl Ec2Refresher {
    /// Starts the refresher and waits for the first snapshot, which is returned (an error
    /// there, such as missing credentials, is returned too: better to stop at start than
    /// run unlabelled). Later failures arrive as errors and the last good inventory stays.
    #[cfg(feature = "ec2")]
    pub fn start(options: Ec2Options) -> Result<(Self, Vec<Interface>), EnrichError> {
        let (tx, rx) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("flowlog-ec2-inventory".into())
            .spawn(move || describe::refresh_loop(options, tx))
            .map_err(|e| EnrichError::Ec2(format!("cannot start the refresh thread: {e}")))?;
        let first = rx
            .recv()
            .map_err(|_| EnrichError::Ec2("the refresh thread stopped".into()))??;
        Ok((Self { snapshots: rx }, first))
    }

    /// Without the `ec2` feature there is nothing to start.
    #[cfg(not(feature = "ec2"))]
    pub fn start(_: Ec2Options) -> Result<(Self, Vec<Interface>), EnrichError> {
        Err(EnrichError::Ec2(
            "this flowlog was built without the live EC2 inventory (cargo feature `ec2`)".into(),
        ))
    }

    /// The newest snapshot, if one arrived since the last call.
    pub fn try_next(&self) -> Option<Result<Vec<Interface>, EnrichError>> {
        self.snapshots.try_recv().ok()
    }
}
