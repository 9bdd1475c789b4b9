//! The live ENI inventory: DescribeNetworkInterfaces and DescribeInstances through the AWS
//! SDK for Rust, refreshed on a TTL by a background thread.
//!
//! Credentials and region come from the SDK's default chain (environment, profile, SSO,
//! instance or task role); `AWS_ENDPOINT_URL_EC2` or [`Ec2Options::endpoint`] points it
//! elsewhere (a VPC endpoint, or moto server in tests).

use std::sync::mpsc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::Client;

use crate::inventory::{
    join, Interface, RawAssociation, RawAttachment, RawGroup, RawInstance, RawInterface, RawIpv6,
    RawPrivateIp, RawTag,
};
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
    pub fn start(options: Ec2Options) -> Result<(Self, Vec<Interface>), EnrichError> {
        let (tx, rx) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("flowlog-ec2-inventory".into())
            .spawn(move || refresh_loop(options, tx))
            .map_err(|e| EnrichError::Ec2(format!("cannot start the refresh thread: {e}")))?;
        let first = rx
            .recv()
            .map_err(|_| EnrichError::Ec2("the refresh thread stopped".into()))??;
        Ok((Self { snapshots: rx }, first))
    }

    /// The newest snapshot, if one arrived since the last call.
    pub fn try_next(&self) -> Option<Result<Vec<Interface>, EnrichError>> {
        self.snapshots.try_recv().ok()
    }
}

fn refresh_loop(options: Ec2Options, tx: mpsc::SyncSender<Result<Vec<Interface>, EnrichError>>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = tx.send(Err(EnrichError::Ec2(format!(
                "cannot start a runtime: {e}"
            ))));
            return;
        }
    };
    runtime.block_on(async {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &options.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &options.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let client = Client::new(&loader.load().await);
        loop {
            // The receiver is gone when the enricher is dropped: stop then.
            if tx.send(describe(&client).await).is_err() {
                return;
            }
            tokio::time::sleep(options.ttl).await;
        }
    });
}

/// One full read of the account's interfaces and instance tags.
pub async fn describe(client: &Client) -> Result<Vec<Interface>, EnrichError> {
    // The SDK's Display says only "service error"; the source chain has AWS's code and
    // message.
    let error = |e: &dyn std::error::Error| EnrichError::Ec2(flowlog_model::error_chain(e));
    let interfaces: Vec<_> = client
        .describe_network_interfaces()
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| error(&e))?;
    let reservations: Vec<_> = client
        .describe_instances()
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| error(&e))?;
    let instances = reservations
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| RawInstance {
            instance_id: i.instance_id().map(str::to_string),
            tags: tags(i.tags()),
        })
        .collect();
    Ok(join(
        interfaces.iter().map(raw_interface).collect(),
        instances,
    ))
}

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_string)
}

fn tags(tags: &[aws_sdk_ec2::types::Tag]) -> Vec<RawTag> {
    tags.iter()
        .map(|t| RawTag {
            key: owned(t.key()),
            value: owned(t.value()),
        })
        .collect()
}

/// The SDK's interface in the CLI's shape, so both go through one join.
fn raw_interface(i: &aws_sdk_ec2::types::NetworkInterface) -> RawInterface {
    RawInterface {
        network_interface_id: i.network_interface_id().unwrap_or_default().to_string(),
        attachment: i.attachment().map(|a| RawAttachment {
            instance_id: owned(a.instance_id()),
            attach_time: a
                .attach_time()
                .and_then(|t| t.to_millis().ok())
                .map(serde_json::Value::from),
        }),
        groups: i
            .groups()
            .iter()
            .map(|g| RawGroup {
                group_id: owned(g.group_id()),
            })
            .collect(),
        subnet_id: owned(i.subnet_id()),
        vpc_id: owned(i.vpc_id()),
        interface_type: i.interface_type().map(|t| t.as_str().to_string()),
        requester_id: owned(i.requester_id()),
        description: owned(i.description()),
        private_ip_address: owned(i.private_ip_address()),
        private_ip_addresses: i
            .private_ip_addresses()
            .iter()
            .map(|p| RawPrivateIp {
                private_ip_address: owned(p.private_ip_address()),
                association: p.association().map(|a| RawAssociation {
                    public_ip: owned(a.public_ip()),
                }),
            })
            .collect(),
        ipv6_addresses: i
            .ipv6_addresses()
            .iter()
            .map(|a| RawIpv6 {
                ipv6_address: owned(a.ipv6_address()),
            })
            .collect(),
        association: i.association().map(|a| RawAssociation {
            public_ip: owned(a.public_ip()),
        }),
        tag_set: tags(i.tag_set()),
    }
}
