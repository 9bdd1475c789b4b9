//! DescribeNetworkInterfaces and DescribeInstances through the AWS SDK, on a thread of
//! their own with a runtime of their own.

use std::sync::mpsc;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::Client;

use super::Ec2Options;
use crate::inventory::{
    join, Interface, RawAssociation, RawAttachment, RawGroup, RawInstance, RawInterface, RawIpv6,
    RawPrivateIp, RawTag,
};
use crate::EnrichError;

pub(super) fn refresh_loop(
    options: Ec2Options,
    tx: mpsc::SyncSender<Result<Vec<Interface>, EnrichError>>,
) {
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
    // Each operation's paginator is its own type, with nothing in common to be generic over.
    macro_rules! every_item {
        ($operation:expr) => {
            $operation
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(|e| error(&e))?
        };
    }
    let interfaces = every_item!(client.describe_network_interfaces());
    let reservations = every_item!(client.describe_instances());
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
